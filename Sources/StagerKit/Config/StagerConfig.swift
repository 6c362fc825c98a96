import Foundation

/// Stager's validated configuration. Built once at start-up by `ConfigLoader`; everything else reads these
/// typed values and never the YAML.
public struct StagerConfig: Sendable {
    public struct Server: Sendable {
        public var host: String
        public var port: Int
        public var maxBodyBytes: Int
        /// When set, the dashboard, the JSON API and /metrics answer 401 without `Authorization: Bearer <token>`.
        public var adminToken: String?
        /// The dashboard as people reach it (no trailing '/'): links in PR comments and GitHub deployments.
        public var publicURL: String
        /// `server.public_read`: serve may listen beyond loopback without an admin token (everyone reads).
        public var publicRead = false
        /// How long a kept-alive connection may stay idle before serve closes it.
        public var idleTimeout: Duration = .seconds(60)

        /// Whether the dashboard's cookies must carry `Secure` (it is reached over https).
        public var secureCookies: Bool { publicURL.lowercased().hasPrefix("https://") }

        /// One environment's page on the dashboard.
        public func environmentPage(_ key: PullRequestKey) -> String {
            "\(publicURL)/environments/\(key.repo)/\(key.number)"
        }
    }

    public struct GitHub: Sendable {
        public var apiURL: URL
        /// nil: no token configured, comments go to the log and dashboard only.
        public var token: String?
        public var deployments: Bool
        /// Mustache (number, slug, repo): the GitHub environment each PR deploys to.
        public var deploymentEnvironment: String
        /// How long one API request may take before it counts as failed.
        public var requestTimeout: Duration
        /// Attempts for one logical call (5xx, timeouts and rate limits are retried).
        public var maxAttempts: Int

        /// The web side of the API: github.com for api.github.com, the API's own host for GitHub Enterprise.
        public var webHost: String {
            guard let host = apiURL.host, host != "api.github.com" else { return "github.com" }
            return host
        }

        public var webURL: String {
            guard webHost != "github.com" else { return "https://github.com" }
            return "\(apiURL.scheme ?? "https")://\(webHost)\(apiURL.port.map { ":\($0)" } ?? "")"
        }

        public func pullRequestPage(_ key: PullRequestKey) -> String {
            "\(webURL)/\(key.repo)/pull/\(key.number)"
        }

        public func branchPage(_ repo: String, _ branch: String) -> String {
            "\(webURL)/\(repo)/tree/\(branch.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? branch)"
        }
    }

    public struct Preview: Sendable {
        public var domain: String
        public var scheme: String
        public var publicPort: Int?

        /// `<scheme>://<slug>.<domain>[:<port>]`, the port left out when it is the scheme's default.
        public func url(forSlug slug: String) -> String {
            let host = "\(slug).\(domain)"
            guard let publicPort, !(scheme == "http" && publicPort == 80), !(scheme == "https" && publicPort == 443) else {
                return "\(scheme)://\(host)"
            }
            return "\(scheme)://\(host):\(publicPort)"
        }
    }

    public struct Nginx: Sendable {
        public var sitesDir: URL
        public var listenHost: String
        public var listenPort: Int
        public var testCommand: [String]
        public var reloadCommand: [String]
        /// How long to wait for nginx's new workers to serve a changed vhost before giving up.
        public var confirmTimeout: Duration
        /// After a batch of vhost changes, what arrives within this long joins the next batch (one test, one reload).
        public var batchDelay: Duration = .milliseconds(20)
        /// Where nginx sends a line for each request to an environment (syslog over UDP, on loopback) and serve
        /// listens: `last_request_at` (`nginx.activity_listen`).
        public var activityHost = "127.0.0.1"
        public var activityPort = 8089
        /// The http-level lines that send each request's server name there (`nginx.activity_file`); nginx's
        /// http block includes it beside the sites folder.
        public var activityFile: URL = URL(fileURLWithPath: "/etc/nginx/stager-activity.conf")

        /// The `listen` directive's argument, as written in the configuration.
        public var listen: String { "\(listenHost):\(listenPort)" }
    }

    public struct Limits: Sendable {
        public var maxEnvironments: Int
        public var memory: String
        public var cpus: String
        public var pids: Int
        /// Different pull requests converged at the same time.
        public var concurrentDeploys: Int
        /// `stager gc` removes environments with no webhook event, manual action or deploy for this long; nil: never.
        public var idleTTL: Duration?
        /// `docker build`s at a time; others wait in order.
        public var concurrentBuilds: Int = 1
        /// More environments awake than this: the least recently used one sleeps; nil: no limit.
        public var maxAwake: Int? = nil
    }

    public struct Repo: Sendable {
        public var name: String
        /// Mustache template of the image reference (number, branch, sha, slug, repo).
        public var image: String
        public var command: [String]
        public var port: Int
        public var healthPath: String
        public var healthTimeout: Duration
        /// Paths that must answer 2xx on a new container before traffic switches to it (the live-test gate).
        public var smoke: [String] = []
        /// After a redeploy switches traffic, the old container serves requests already under way this long.
        public var drain: Duration = .seconds(2)
        public var env: [String: String]
        public var allowForks: Bool
        public var memory: String?
        public var cpus: String?
        public var pids: Int?
        /// This repository's share of `limits.max_environments`; nil: only the global limit applies.
        public var maxEnvironments: Int?
        /// Capabilities added back after `--cap-drop ALL`.
        public var capAdd: [String]
        /// Read-only root filesystem, tmpfs `/tmp`.
        public var readOnly: Bool
        /// Every PR, not only fork PRs, waits for the deploy label from a writer.
        public var requireLabel: Bool
        /// Set: the image is built from the PR's head at its exact sha, and `image` (when given) names the tag.
        public var build: RepoBuild? = nil
        /// Overrides the payload's `head.repo.clone_url`.
        public var cloneURL: String? = nil
        /// This repository's own webhook secret; nil: the global one.
        public var webhookSecret: String?
        public var access: Access
        /// Services beside the app, one set per environment, in an order where each comes after those it
        /// depends on.
        public var services: [Service] = []
        /// Run once per deploy in the new app image, after the services are healthy, before traffic switches.
        public var release: [String]? = nil
        /// No request, deploy or event for this long: the environment sleeps; nil: never.
        public var sleepAfter: Duration? = nil
        /// This repository's own Slack incoming webhook for notifications (`slack_webhook_url_env`).
        public var slackWebhookURL: URL? = nil
        /// `shared_host`, `default_env` and `canary`: one URL for every environment of the repository.
        public var sharedHost: SharedHost? = nil
        /// Branches whose pushes deploy a long-lived environment of the branch (`branches`).
        public var branches: [String] = []
    }

    /// Slack: slash commands (verified with the signing secret) and notifications to incoming webhooks.
    public struct Slack: Sendable {
        /// nil: `/slack/commands` answers 404.
        public var signingSecret: String?
        /// Slack user ids that may change environments; everyone may read.
        public var allowedUsers: Set<String>
        /// Where notifications go; nil: none (a repository may still have its own).
        public var webhookURL: URL?
        /// Hosts a slash command's `response_url` may point at; follow-ups go nowhere else.
        public var responseHosts: [String] = ["hooks.slack.com"]
        /// The Slack workspace whose commands are taken; nil: any workspace that signs with the secret.
        public var teamID: String? = nil
    }

    /// A service beside the app (`repos.X.services.NAME`): its own container on the environment's network,
    /// reachable by its name, never published on the host.
    public struct Service: Sendable, Equatable {
        public var name: String
        /// Mustache template of the image reference, like the app's.
        public var image: String
        public var command: [String]
        public var env: [String: String]
        /// Healthy once this TCP port accepts inside the network; nil: once the container runs.
        public var port: Int?
        /// With `port`: healthy once GET this path answers below 500.
        public var healthPath: String?
        public var healthTimeout: Duration
        /// Volume name → mount path; one docker volume per environment and name.
        public var volumes: [String: String]
        /// Volume name → the docker volume it starts as a copy of.
        public var seed: [String: String]
        public var memory: String?
        public var cpus: String?
        public var pids: Int?
        public var capAdd: [String]
        public var dependsOn: [String]
    }

    /// How a repository that builds from the branch builds its image (`repos.X.build`).
    public struct RepoBuild: Sendable, Equatable {
        /// Relative to the checkout's root, never outside it.
        public var context: String
        /// Relative to the checkout's root.
        public var dockerfile: String
        /// Mustache values (number, branch, sha, slug, repo), passed as `--build-arg`.
        public var args: [String: String]
        public var target: String?
    }

    /// Where clone URLs may point (`build:`).
    public struct Build: Sendable {
        /// Host names a clone URL may have (https only).
        public var allowedHosts: [String]
        /// Lets `file://` clone URLs through (tests, local mirrors).
        public var allowFileURLs: Bool
        /// How long one fetch or one `docker build` may run (`build.timeout`).
        public var timeout: Duration = .seconds(1200)
        /// The memory a build's containers may use (`build.memory`).
        public var memory: String = "2g"
        /// The build log keeps its last this many bytes (`build.log_limit_bytes`).
        public var logLimitBytes: Int = 5 * 1024 * 1024
        /// Processes all builds' RUN steps may have together (`build.pids`; `BuildCgroup`).
        public var pids: Int = 1024
    }

    /// Who may open a preview: basic auth and an IP allow-list, rendered into the vhost.
    public struct Access: Sendable, Equatable {
        /// An htpasswd file for nginx's `auth_basic_user_file`; nil: no basic auth.
        public var htpasswdFile: URL?
        /// The file's content when Stager writes it from `users_env` (salted SHA-1, `{SSHA}`, which nginx reads).
        public var generatedHtpasswd: String?
        /// Addresses or CIDR ranges allowed; empty: everyone.
        public var allowIPs: [String]

        public static let open = Access(htpasswdFile: nil, generatedHtpasswd: nil, allowIPs: [])
    }

    public struct Forks: Sendable {
        /// The label a writer adds to let a fork PR (or any PR under `require_label`) deploy.
        public var label: String
        /// Blocked PRs kept per repository; beyond it a new one is not recorded (its label, later, still deploys it).
        public var maxBlocked: Int = 200
    }

    /// Where environments run: containers on one engine, or services on a Docker Swarm (`runtime`).
    public enum Runtime: String, Sendable, CaseIterable {
        case docker, swarm
    }

    /// `<name>.<domain>` serves any of a repository's routed environments by the visitor's choice, else a
    /// canary's share of new visitors, else `defaultEnv` (see CONTRACT.md, "one URL for every version").
    public struct SharedHost: Sendable, Equatable {
        public struct Canary: Sendable, Equatable {
            public var env: String
            public var percent: Double
        }

        /// A DNS label, reserved: no environment's slug takes it.
        public var name: String
        /// An environment's name: `pr-<N>`, or a configured branch's name (its slug, `Slug.readable`).
        public var defaultEnv: String
        public var canary: Canary?
    }

    /// `swarm.*`: how services are placed and published, and where built images go so every node can pull them.
    public struct Swarm: Sendable, Equatable {
        /// `host[:port]` of the registry images Stager builds are pushed to; nil when nothing is built.
        public var registry: String?
        /// Placement constraints every service gets (`node.labels.previews==true`).
        public var constraints: [String]
        /// Host-mode published ports are taken from here.
        public var publishedPorts: ClosedRange<Int>

        public static let standard = Swarm(registry: nil, constraints: [], publishedPorts: 30000...32767)
    }

    public var configFile: URL?
    public var runtime: Runtime = .docker
    public var swarm: Swarm = .standard
    public var server: Server
    public var dataDir: URL
    public var instance: String
    public var reconcileInterval: Duration
    public var webhookSecret: String
    public var forks: Forks
    public var github: GitHub
    public var preview: Preview
    public var nginx: Nginx
    public var dockerCommand: [String]
    /// The image of the short-lived container that copies a seed volume (`docker.seed_image`); it must hold
    /// `busybox`. nil: each service's own image copies its seed (nothing is pulled).
    public var seedImage: String? = nil
    public var repos: [String: Repo]
    public var limits: Limits
    public var templatesDir: URL?
    /// `stager gc` also removes the images of the environments it removes (per-PR image tags only).
    public var gcRemovesImages: Bool
    public var build: Build = Build(allowedHosts: ["github.com"], allowFileURLs: false)
    /// How long a request to a sleeping environment is held while it wakes (`sleep.wake_timeout`).
    public var wakeTimeout: Duration = .seconds(60)
    /// Requests held at once for sleeping environments (`sleep.max_held_requests`); more are told to retry.
    public var maxHeldRequests = 256
    /// Wakes begun by requests in one minute (`sleep.wakes_per_minute`); more are told to retry.
    public var wakesPerMinute = 30
    public var slack = Slack(signingSecret: nil, allowedUsers: [], webhookURL: nil)

    public func repo(_ fullName: String) -> Repo? {
        repos[fullName]
    }

    /// The repository's shared host with this environment chosen; nil without `shared_host`.
    public func sharedURL(for env: Environment) -> String? {
        guard let name = repo(env.repo)?.sharedHost?.name else { return nil }
        return preview.url(forSlug: name) + "/?stager-env=pr-\(env.number)"
    }

    /// Labels no environment's slug may take: the shared hosts' names, and their files' names in the sites folder.
    public var reservedSlugs: Set<String> {
        Set(repos.values.compactMap(\.sharedHost).flatMap { [$0.name, SharedHostVhost.filePrefix + $0.name] })
    }

    /// The configured branches' slugs: a PR's environment does not take one, so a branch environment's URL
    /// is its branch's slug.
    public var branchSlugs: Set<String> {
        Set(repos.values.flatMap(\.branches).map { Slug.readable(branch: $0) })
    }

    /// The reference a repository's image has where containers run: on swarm, an image Stager builds lives
    /// in `swarm.registry`, so that any node can pull it.
    public func runnableImage(_ rendered: String, builds: Bool) -> String {
        guard runtime == .swarm, builds, let registry = swarm.registry, !rendered.hasPrefix("\(registry)/") else { return rendered }
        return "\(registry)/\(rendered)"
    }
}

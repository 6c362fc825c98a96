import Foundation

/// Stager's validated configuration. Built once at start-up by `ConfigLoader`; everything else reads these
/// typed values and never the YAML.
public struct StagerConfig: Sendable {
    public struct Server: Sendable {
        public var host: String
        public var port: Int
        public var maxBodyBytes: Int
    }

    public struct GitHub: Sendable {
        public var apiURL: URL
        /// nil: no token configured, comments go to the log and dashboard only.
        public var token: String?
        public var deployments: Bool
        /// How long one API request may take before it counts as failed.
        public var requestTimeout: Duration
        /// Attempts for one logical call (5xx, timeouts and rate limits are retried).
        public var maxAttempts: Int
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
    }

    public struct Repo: Sendable {
        public var name: String
        /// Mustache template of the image reference (number, branch, sha, slug, repo).
        public var image: String
        public var command: [String]
        public var port: Int
        public var healthPath: String
        public var healthTimeout: Duration
        public var env: [String: String]
        public var allowForks: Bool
        public var memory: String?
        public var cpus: String?
        public var pids: Int?
        /// This repository's share of `limits.max_environments`; nil: only the global limit applies.
        public var maxEnvironments: Int?
    }

    public var configFile: URL?
    public var server: Server
    public var dataDir: URL
    public var instance: String
    public var reconcileInterval: Duration
    public var webhookSecret: String
    public var github: GitHub
    public var preview: Preview
    public var nginx: Nginx
    public var dockerCommand: [String]
    public var repos: [String: Repo]
    public var limits: Limits
    public var templatesDir: URL?
    /// `stager gc` also removes the images of the environments it removes (per-PR image tags only).
    public var gcRemovesImages: Bool

    public func repo(_ fullName: String) -> Repo? {
        repos[fullName]
    }
}

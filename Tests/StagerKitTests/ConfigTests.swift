import Foundation
import StagerTestSupport
import Testing

@testable import StagerKit

@Suite("Configuration")
struct ConfigTests {
    let dir: URL

    init() throws {
        dir = try TestConfig.temporaryDirectory("config")
    }

    @Test func embeddedDefaults() throws {
        let config = try TestConfig.load("repos:\n  acme/web:\n    image: \"acme/web:pr-{{number}}\"\n", in: dir)
        #expect(config.server.host == "127.0.0.1" && config.server.port == 8080)
        #expect(config.instance == "default")
        #expect(config.reconcileInterval == .seconds(60))
        #expect(config.server.maxBodyBytes == 5 * 1024 * 1024)
        #expect(config.nginx.listen == "127.0.0.1:8088")
        #expect(config.nginx.sitesDir.path == "/etc/nginx/stager")
        #expect(config.dataDir.path == dir.appendingPathComponent(".stager").path)
        #expect(config.preview.url(forSlug: "feature") == "http://feature.preview.localhost:8088")
        #expect(config.github.token == nil)
        #expect(config.repo("acme/web")?.port == 8080)
        #expect(config.repo("acme/web")?.healthPath == "/")
        #expect(config.limits.memory == "512m")
    }

    @Test func theContractsExampleLoads() throws {
        let yaml = """
            server:
              listen: "127.0.0.1:8080"
            data_dir: ".stager"
            instance: "default"
            reconcile_interval: "60s"
            webhook:
              secret_env: STAGER_WEBHOOK_SECRET
            github:
              api_url: "https://api.github.com"
              token_env: STAGER_GITHUB_TOKEN
              deployments: true
            preview:
              domain: "preview.localhost"
              scheme: "http"
              public_port: 80
            nginx:
              sites_dir: "/etc/nginx/stager"
              listen: "127.0.0.1:8088"
              test_command: ["nginx", "-t"]
              reload_command: ["nginx", "-s", "reload"]
            docker:
              command: ["docker"]
            repos:
              "acme/web":
                image: "acme/web:pr-{{number}}"
                command: []
                port: 8080
                health_path: "/"
                env: {}
                allow_forks: false
            limits:
              max_environments: 100
              memory: "512m"
              cpus: "1"
              pids: 256
            forks:
              label: "stager:deploy"
            build:
              allowed_hosts: ["github.com"]
              allow_file_urls: false
            """
        let config = try TestConfig.load(yaml, in: dir, environment: ["STAGER_GITHUB_TOKEN": "t0ken"])
        #expect(config.github.token == "t0ken")
        #expect(config.preview.url(forSlug: "x") == "http://x.preview.localhost")
    }

    @Test(arguments: [
        ("server:\n  listen: \"nowhere\"\n", "server.listen"),
        ("instance: \"Bad Name\"\n", "instance"),
        ("reconcile_interval: \"soon\"\n", "reconcile_interval"),
        ("github:\n  api_url: \"ftp://x\"\n", "github.api_url"),
        ("preview:\n  domain: \"bad_domain!\"\n", "preview.domain"),
        ("nginx:\n  test_command: []\n", "nginx.test_command"),
        ("repos:\n  acme/web:\n    port: 8080\n", "repos.acme/web.image"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    port: 99999\n", "repos.acme/web.port"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    health_path: \"health\"\n", "repos.acme/web.health_path"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    env: {STAGER_PR: \"1\"}\n", "repos.acme/web.env.STAGER_PR"),
        ("repos:\n  not-a-repo:\n    image: \"x\"\n", "repos.not-a-repo"),
        ("limits:\n  memory: \"lots\"\n", "limits.memory"),
        ("limits:\n  cpus: \"0\"\n", "limits.cpus"),
        ("sever:\n  listen: \"127.0.0.1:1\"\n", "sever"),
        ("nginx:\n  sites: \"/x\"\n", "nginx.sites"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    helth_path: \"/\"\n", "repos.acme/web.helth_path"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    build: {dockerfil: \"Dockerfile\"}\n", "repos.acme/web.build.dockerfil"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    access: {user_env: X}\n", "repos.acme/web.access.user_env"),
        ("server:\n  listen: [1, 2]\n", "server.listen"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    privileged: true\n", "repos.acme/web.privileged"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    privileged: false\n", "repos.acme/web.privileged"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    cap_add: [\"ALL\"]\n", "repos.acme/web.cap_add"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    cap_add: [\"sys_admin\"]\n", "repos.acme/web.cap_add"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    env: {A: \"line\\nbreak\"}\n", "repos.acme/web.env.A"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    access: {allow_ips: [\"10.0.0.0/33\"]}\n", "repos.acme/web.access.allow_ips"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    access: {users_env: NOT_SET_ANYWHERE}\n", "repos.acme/web.access.users_env"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    webhook_secret_env: NOT_SET_ANYWHERE\n", "repos.acme/web.webhook_secret_env"),
        ("server:\n  admin_token_env: NOT_SET_ANYWHERE\n", "server.admin_token_env"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    services:\n      Bad_Name: {image: \"y\"}\n", "repos.acme/web.services.Bad_Name"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    services:\n      db: {port: 5432}\n", "repos.acme/web.services.db.image"),
        (
            "repos:\n  acme/web:\n    image: \"x\"\n    services:\n      db: {image: \"y\", depends_on: [cache]}\n",
            "repos.acme/web.services.db.depends_on"
        ),
        (
            "repos:\n  acme/web:\n    image: \"x\"\n    services:\n      db: {image: \"y\", depends_on: [db]}\n",
            "repos.acme/web.services.db.depends_on"
        ),
        (
            "repos:\n  acme/web:\n    image: \"x\"\n    services:\n      a: {image: \"y\", depends_on: [b]}\n      b: {image: \"y\", depends_on: [a]}\n",
            "repos.acme/web.services"
        ),
        (
            "repos:\n  acme/web:\n    image: \"x\"\n    services:\n      db: {image: \"y\", seed: {data: \"s\"}}\n",
            "repos.acme/web.services.db.seed.data"
        ),
        (
            "repos:\n  acme/web:\n    image: \"x\"\n    services:\n      db: {image: \"y\", health_path: \"/\"}\n",
            "repos.acme/web.services.db.health_path"
        ),
        (
            "repos:\n  acme/web:\n    image: \"x\"\n    services:\n      db: {image: \"y\", volumes: {data: \"relative\"}}\n",
            "repos.acme/web.services.db.volumes.data"
        ),
        (
            "repos:\n  acme/web:\n    image: \"x\"\n    services:\n      db: {image: \"y\", cap_add: [\"ALL\"]}\n",
            "repos.acme/web.services.db.cap_add"
        ),
        ("repos:\n  acme/web:\n    image: \"x\"\n    services:\n      db: {image: \"y\", imagee: \"z\"}\n", "repos.acme/web.services.db.imagee"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    release: []\n", "repos.acme/web.release"),
        ("docker:\n  seed_image: \"\"\n", "docker.seed_image"),
        ("nginx:\n  activity_listen: \"0.0.0.0:8089\"\n", "nginx.activity_listen"),
        ("nginx:\n  sites_dir: \"/tmp/s\"\n  activity_file: \"/tmp/s/a.conf\"\n", "nginx.activity_file"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    sleep_after: \"soon\"\n", "repos.acme/web.sleep_after"),
        ("limits:\n  max_awake: 0\n", "limits.max_awake"),
        ("sleep:\n  wake_timeout: \"-1s\"\n", "sleep.wake_timeout"),
        ("slack:\n  signing_secret_env: NOT_SET_ANYWHERE\n", "slack.signing_secret_env"),
        ("slack:\n  allowed_users: [\"U1 <!channel>\"]\n", "slack.allowed_users"),
        ("slack:\n  webhook_url_env: NOT_SET_ANYWHERE\n", "slack.webhook_url_env"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    slack_webhook_url_env: NOT_SET_ANYWHERE\n", "repos.acme/web.slack_webhook_url_env"),
        // Hostile pull requests: serve beyond loopback without a token, capabilities off the allow-list, limits.
        ("server:\n  listen: \"0.0.0.0:8080\"\n", "server.admin_token_env"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    cap_add: [\"SYS_PTRACE\"]\n", "repos.acme/web.cap_add"),
        ("repos:\n  acme/web:\n    image: \"x\"\n    cap_add: [\"NET_ADMIN\"]\n", "repos.acme/web.cap_add"),
        ("build:\n  timeout: \"soon\"\n", "build.timeout"),
        ("build:\n  memory: \"lots\"\n", "build.memory"),
        ("sleep:\n  max_held_requests: 0\n", "sleep.max_held_requests"),
        ("forks:\n  max_blocked: -1\n", "forks.max_blocked"),
        ("slack:\n  response_hosts: [\"hooks.slack.com/x\"]\n", "slack.response_hosts"),
        ("slack:\n  team_id: \"T1 <!here>\"\n", "slack.team_id"),
    ])
    func errorsNameTheKey(yaml: String, key: String) {
        do {
            _ = try TestConfig.load(yaml, in: dir)
            Issue.record("expected an error for \(key)")
        } catch let error as ConfigError {
            #expect(error.key == key)
            #expect(error.file.hasSuffix("stager.yml"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    /// Services start after what they depend on, by name among equals.
    @Test func servicesStartInDependencyOrder() throws {
        let config = try TestConfig.load(
            """
            repos:
              acme/web:
                image: "x"
                release: ["bin/migrate"]
                services:
                  worker: {image: "w", depends_on: [db, cache]}
                  db: {image: "postgres:16", port: 5432, volumes: {data: "/var/lib/postgresql/data"}, seed: {data: "seed-db"}}
                  cache: {image: "redis:7", port: 6379}
            """,
            in: dir
        )
        let repo = try #require(config.repo("acme/web"))
        #expect(repo.services.map(\.name) == ["cache", "db", "worker"])
        #expect(repo.release == ["bin/migrate"])
        #expect(repo.services.first { $0.name == "db" }?.seed == ["data": "seed-db"])
        // Nothing named: each service's own image copies its seed, and nothing is pulled.
        #expect(config.seedImage == nil)
    }

    @Test func missingSecretSaysWhichVariable() throws {
        let file = dir.appendingPathComponent("stager.yml")
        try "webhook:\n  secret_env: MY_SECRET\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.self) { try ConfigLoader(environment: [:]).load(file: file) }
        do {
            _ = try ConfigLoader(environment: [:]).load(file: file)
        } catch let error as ConfigError {
            #expect(error.key == "webhook.secret_env")
            #expect(error.message.contains("MY_SECRET"))
        }
        #expect(try ConfigLoader(environment: ["MY_SECRET": "x"]).load(file: file).webhookSecret == "x")
    }

    @Test func secretFromAFile() throws {
        try "from-file\n".write(to: dir.appendingPathComponent("secret"), atomically: true, encoding: .utf8)
        let config = try TestConfig.load("webhook:\n  secret_file: secret\n", in: dir)
        #expect(config.webhookSecret == "from-file")
    }

    @Test func configPathResolution() {
        #expect(ConfigLoader(environment: [:]).resolvePath("/a.yml").path == "/a.yml")
        #expect(ConfigLoader(environment: ["STAGER_CONFIG": "/b.yml"]).resolvePath(nil).path == "/b.yml")
        #expect(ConfigLoader(environment: [:]).resolvePath(nil).lastPathComponent == "stager.yml")
    }

    @Test(arguments: [("250ms", Duration.milliseconds(250)), ("60s", .seconds(60)), ("5m", .seconds(300)), ("72h", .seconds(259_200))])
    func durations(text: String, duration: Duration) {
        #expect(DurationParser.parse(text) == duration)
    }
}

@Suite("Configuration: sleep and Slack")
struct SleepAndSlackConfigTests {
    /// `stager check` renders the vhost template as serve does: a custom one without the wake path fails.
    @Test func checkFindsACustomTemplateWithoutTheWakePath() async throws {
        let dir = try TestConfig.temporaryDirectory("wake-template")
        let templates = dir.appendingPathComponent("templates")
        try FileManager.default.createDirectory(at: templates, withIntermediateDirectories: true)
        try "server { listen {{listen}}; server_name {{host}}; location / { proxy_pass http://127.0.0.1:{{upstream_port}}; } }\n"
            .write(to: templates.appendingPathComponent("vhost.conf.mustache"), atomically: true, encoding: .utf8)
        let sleepy = "repos:\n  acme/web: {image: \"x\", sleep_after: 10m}\n"
        let custom = try TestConfig.load(sleepy + "templates_dir: templates\n", in: dir)
        let refused = await Preflight(config: custom, runner: SubprocessRunner()).wakePathInTemplate()
        #expect(refused.map(\.passed) == [false] && refused.first?.detail.contains("{{#asleep}}") == true)
        let builtIn = try TestConfig.load(sleepy, in: dir)
        #expect(await Preflight(config: builtIn, runner: SubprocessRunner()).wakePathInTemplate().map(\.passed) == [true])
        let awake = try TestConfig.load("repos:\n  acme/web: {image: \"x\"}\n", in: dir)
        #expect(await Preflight(config: awake, runner: SubprocessRunner()).wakePathInTemplate().isEmpty)
    }

    /// A repository's own Slack channel takes its notices; the others go to the global one.
    @Test func aRepositorysOwnWebhookComesFirst() throws {
        let config = try TestConfig.load(
            """
            slack: {webhook_url_env: GLOBAL_HOOK}
            repos:
              acme/web: {image: "x", slack_webhook_url_env: TEAM_HOOK}
              acme/api: {image: "y"}
            """,
            in: try TestConfig.temporaryDirectory("slack-hooks"),
            environment: ["GLOBAL_HOOK": "https://hooks.slack.com/services/T/B/global", "TEAM_HOOK": "https://hooks.slack.com/services/T/B/team"]
        )
        #expect(config.slackWebhook(for: "acme/web")?.lastPathComponent == "team")
        #expect(config.slackWebhook(for: "acme/api")?.lastPathComponent == "global")
        #expect(config.notifiesSlack)
        // Plain http only to this machine: a webhook URL is a secret, never sent in the clear.
        #expect(throws: ConfigError.self) {
            try TestConfig.load(
                "slack: {webhook_url_env: HTTP_HOOK}\n",
                in: try TestConfig.temporaryDirectory("slack-http"),
                environment: ["HTTP_HOOK": "http://hooks.example.com/x"]
            )
        }
    }
}

@Suite("Configuration: hostile pull requests")
struct HostileConfigTests {
    /// Beyond loopback, serve needs the admin token, or `server.public_read: true` saying everyone may read.
    @Test func aPublicListenNeedsATokenOrPublicRead() throws {
        let dir = try TestConfig.temporaryDirectory("public-listen")
        let open = try TestConfig.load("server:\n  listen: \"0.0.0.0:8080\"\n  public_read: true\n", in: dir)
        #expect(open.server.publicRead && open.server.adminToken == nil)
        let guarded = try TestConfig.load(
            "server:\n  listen: \"0.0.0.0:8080\"\n  admin_token_env: TOKEN\n",
            in: dir,
            environment: ["TOKEN": "t0ken-long"]
        )
        #expect(guarded.server.adminToken == "t0ken-long")
        #expect(try TestConfig.load("server:\n  listen: \"127.0.0.1:8080\"\n", in: dir).server.adminToken == nil)
    }

    @Test func theDefaultsBoundWhatStrangersCanCost() throws {
        let config = try TestConfig.load(
            "repos:\n  acme/web:\n    image: \"x\"\n    cap_add: [\"net_bind_service\", \"CAP_CHOWN\"]\n",
            in: try TestConfig.temporaryDirectory("hostile-defaults")
        )
        #expect(config.repo("acme/web")?.capAdd == ["NET_BIND_SERVICE", "CHOWN"])
        #expect(config.build.timeout == .seconds(1200) && config.build.memory == "2g" && config.build.logLimitBytes == 5 * 1024 * 1024)
        #expect(config.maxHeldRequests == 256 && config.wakesPerMinute == 30 && config.forks.maxBlocked == 200)
        #expect(config.slack.responseHosts == ["hooks.slack.com"] && config.slack.teamID == nil)
        #expect(config.server.idleTimeout == .seconds(60) && !config.server.secureCookies)
    }

    /// Every configured secret, and a repository's longer variable values, are masked as they are and as a
    /// page or a JSON string spells them; short settings are not secrets and stay.
    @Test func everyConfiguredSecretIsMasked() throws {
        let config = try TestConfig.load(
            #"""
            server: {admin_token_env: TOKEN}
            github: {token_env: GH}
            repos:
              acme/web: {image: "x", env: {API_KEY: "a\"b<c>d-long-value", MODE: "prod"}}
            """#,
            in: try TestConfig.temporaryDirectory("secret-values"),
            environment: ["TOKEN": "admin-token-1", "GH": "ghp_configured1"]
        )
        let secrets = SecretValues(config: config)
        let text =
            #"t=admin-token-1 g=ghp_configured1 raw=a"b<c>d-long-value page=a&quot;b&lt;c&gt;d-long-value json=a\"b<c>d-long-value mode=prod"#
            + " w=\(TestConfig.secret)"
        #expect(secrets.mask(text) == "t=*** g=*** raw=*** page=*** json=*** mode=prod w=***")
    }

}

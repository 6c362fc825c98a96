import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// Everything `stager serve` runs, assembled from typed configuration. Tests build the same thing with
/// their own configuration, runner and GitHub publisher.
public struct StagerApp: Sendable {
    /// The concrete parts `serve` and the commands are assembled from.
    public struct Dependencies: Sendable {
        public let store: Store
        public let runtime: any StackRuntime
        public let frontDoor: NginxFrontDoor
        public let templates: Templates
        public let metrics: StagerMetrics
        public let logger: Logger
    }

    public let config: StagerConfig
    public let store: Store
    public let controller: Controller
    public let deps: Dependencies
    let wakePath: WakePath
    /// serve's HTTP clients, shut down when it stops.
    let clients: HTTPClients
    /// The one place that talks to Slack.
    let slackPoster: SlackPoster
    /// Every configured secret, hidden from each text that leaves serve.
    let secrets: SecretValues
    /// Keys the dashboard forms' CSRF tokens.
    let csrfSecret: String
    /// Vouches for requests through serve's Unix socket.
    let localTrust = LocalTrust()
    /// nil when no token is configured.
    public let github: GitHubClient?

    public init(
        config: StagerConfig,
        runner: any CommandRunner = SubprocessRunner(niceness: 10),
        publisher: (any CommentPublisher)? = nil,
        logger: Logger
    ) throws {
        self.config = config
        let templates = try Templates.load(overrideDir: config.templatesDir)
        try Self.writeGeneratedHtpasswd(config)
        let store = try Store(
            path: config.dataDir.appendingPathComponent("stager.sqlite"),
            reservedSlugs: config.reservedSlugs,
            branchSlugs: config.branchSlugs
        )
        let metrics = StagerMetrics()
        let secrets = SecretValues(config: config)
        self.secrets = secrets
        let clients = HTTPClients()
        self.clients = clients
        slackPoster = SlackPoster(client: clients.outbound, secrets: secrets)
        let github = GitHubClient(config: config.github, client: clients.outbound, metrics: metrics, secrets: secrets, logger: logger)
        let publisher: any CommentPublisher = publisher ?? github.map(GitHubCommentPublisher.init) ?? LogCommentPublisher(logger: logger)
        let probe = HTTPProbe(client: clients.local)
        let wakePath = try WakePath(config: config, store: store)
        let deps = Dependencies(
            store: store,
            runtime: EngineStacks(
                engine: config.makeEngine(runner: runner, scratchDir: config.dataDir.appendingPathComponent("run")),
                probe: probe,
                logger: logger
            ),
            frontDoor: NginxFrontDoor(
                config: config.nginx,
                wakePath: wakePath,
                template: templates.vhost,
                runner: runner,
                probe: probe,
                metrics: metrics,
                shared: SharedHostVhost(config: config, keys: wakePath.keys),
                logger: logger
            ),
            templates: templates,
            metrics: metrics,
            logger: logger
        )
        let seams = ControllerSeams(
            environments: store.environments,
            runtime: deps.runtime,
            frontDoor: deps.frontDoor,
            announcer: Announcer(
                environments: store.environments,
                publisher: publisher,
                deployments: DeploymentTracker(client: github, config: config),
                comment: templates.comment,
                config: config,
                logger: logger,
                outbox: store
            ),
            probe: probe,
            builder: ImageBuilder(config: config, runner: runner, slots: Slots(limit: config.limits.concurrentBuilds)),
            permissions: github
        )
        self.store = store
        self.deps = deps
        self.wakePath = wakePath
        csrfSecret = try store.secret(named: DashboardActions.secretName)
        self.github = github
        self.controller = Controller(config: config, seams: seams, metrics: metrics, logger: logger)
    }

    /// Repositories with `access.users_env` get an htpasswd file Stager writes at start-up: hashes only, and
    /// 0640, readable by nginx's workers through their group (Debian's `www-data`, where it exists) and by
    /// nobody else on the host.
    static func writeGeneratedHtpasswd(_ config: StagerConfig) throws {
        for repo in config.repos.values {
            guard let text = repo.access.generatedHtpasswd, let file = repo.access.htpasswdFile else { continue }
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: file, options: .atomic)
            var attributes: [FileAttributeKey: Any] = [.posixPermissions: 0o640]
            if geteuid() == 0, let group = getgrnam(Self.nginxGroup) { attributes[.groupOwnerAccountID] = NSNumber(value: group.pointee.gr_gid) }
            try FileManager.default.setAttributes(attributes, ofItemAtPath: file.path)
        }
    }

    /// The group Debian's nginx workers run in.
    static let nginxGroup = "www-data"

    public func buildRouter() -> Router<BasicRequestContext> {
        let router = Router()
        WebhookController(
            secrets: WebhookSecrets(config: config),
            maxBodyBytes: config.server.maxBodyBytes,
            config: config,
            store: store,
            controller: controller,
            metrics: deps.metrics,
            logger: deps.logger
        ).addRoutes(to: router)
        WakeController(
            wakePath: wakePath,
            store: store,
            controller: controller,
            limits: WakeLimits(maxHeld: config.maxHeldRequests, wakesPerMinute: config.wakesPerMinute),
            secrets: secrets,
            logger: deps.logger
        ).addRoutes(to: router)
        let actions = EnvironmentActions(control: ManualControl(config: config, store: store, github: github), store: store, controller: controller)
        let admin = router.group().add(middleware: CrossSiteCheck(publicURL: config.server.publicURL))
            .add(middleware: AdminTokenCheck(token: config.server.adminToken, acceptsBasic: false, local: localTrust))
        ActionController(actions: actions, adminTokenSet: config.server.adminToken != nil).addRoutes(to: admin)
        CommandController(commands: ServeCommands(app: self), adminTokenSet: config.server.adminToken != nil, local: localTrust).addRoutes(to: admin)
        SlackController(
            signature: config.slack.signingSecret.map(SlackSignature.init),
            handler: SlackCommandHandler(config: config, store: store, actions: actions, poster: slackPoster, logger: deps.logger),
            slack: config.slack,
            logger: deps.logger
        ).addRoutes(to: router)
        var dashboard = DashboardController(
            config: config,
            store: store,
            templates: deps.templates,
            metrics: deps.metrics,
            engineHealth: controller.engineHealth,
            runtime: deps.runtime,
            logger: deps.logger
        )
        dashboard.actions = DashboardActions(
            actions: actions,
            secret: csrfSecret,
            enabled: config.server.adminToken != nil,
            secureCookie: config.server.secureCookies
        )
        dashboard.secrets = secrets
        dashboard.addRoutes(to: router)
        return router
    }

    /// The HTTP server, the commands' Unix socket and the controller, stopped together on SIGTERM/SIGINT.
    public func buildApplication(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let responder = buildRouter().buildResponder()
        let socket = ServeSocket(dataDir: config.dataDir)
        if socket.answers() {
            throw ServeSocket.SocketError("another stager serve runs on \(config.dataDir.path): its socket \(socket.path.path) answers")
        }
        let staged = try socket.stagingFolder().appendingPathComponent("stager.sock")
        let socketServer = Application(
            responder: LocalSocketResponder(inner: responder, trust: localTrust),
            configuration: .init(address: .unixDomainSocket(path: staged.path), serverName: "stager"),
            onServerRunning: { [logger = deps.logger] _ in
                do {
                    try socket.publish(from: staged)
                } catch {
                    logger.error("the commands' socket is not available; stager commands cannot reach serve", metadata: ["error": "\(error)"])
                }
            },
            logger: deps.logger
        )
        return Application(
            responder: responder,
            // A connection that sends nothing (or a request a byte at a time) is closed, not kept for ever;
            // a held wake request is a request in progress and is not cut.
            server: .http1(configuration: .init(idleTimeout: .nanoseconds(Int64(config.server.idleTimeout.seconds * 1_000_000_000)))),
            configuration: .init(address: .hostname(config.server.host, port: config.server.port), serverName: "stager"),
            // Stopped in reverse order: the socket (and the commands it runs) before the controller, the HTTP
            // clients last, once nothing uses them.
            services: [
                clients, ServeSocket.Removal(socket: socket), controller, RequestActivity(config: config, store: store, logger: deps.logger),
                SlackNotifier(config: config, store: store, poster: slackPoster, logger: deps.logger), socketServer,
            ],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: deps.logger
        )
    }
}

import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// Everything `stager serve` runs, assembled from typed configuration. Tests build the same thing with
/// their own configuration, runner and GitHub publisher.
public struct StagerApp: Sendable {
    public let config: StagerConfig
    public let store: Store
    public let controller: Controller
    public let deps: ControllerDependencies
    /// nil when no token is configured.
    public let github: GitHubClient?

    public init(config: StagerConfig, runner: any CommandRunner = SubprocessRunner(), publisher: (any CommentPublisher)? = nil, logger: Logger) throws {
        self.config = config
        let templates = try Templates.load(overrideDir: config.templatesDir)
        let store = try Store(path: config.dataDir.appendingPathComponent("stager.sqlite"))
        let github = config.github.token.map { token in
            GitHubClient(baseURL: config.github.apiURL, token: token, timeout: config.github.requestTimeout,
                         maxAttempts: config.github.maxAttempts, logger: logger)
        }
        let publisher: any CommentPublisher = publisher ?? github.map(GitHubCommentPublisher.init) ?? LogCommentPublisher(logger: logger)
        let deps = ControllerDependencies(
            config: config,
            store: store,
            runtime: DockerCLI(command: config.dockerCommand, instance: config.instance, runner: runner),
            frontDoor: NginxFrontDoor(config: config.nginx, template: templates.vhost, runner: runner, logger: logger),
            publisher: publisher,
            templates: templates,
            probe: HTTPProbe(),
            metrics: StagerMetrics(),
            logger: logger
        )
        self.store = store
        self.deps = deps
        self.github = github
        self.controller = Controller(deps)
    }

    public func buildRouter() -> Router<BasicRequestContext> {
        let router = Router()
        WebhookController(
            signature: WebhookSignature(secret: config.webhookSecret), maxBodyBytes: config.server.maxBodyBytes,
            config: config, store: store, controller: controller, metrics: deps.metrics, logger: deps.logger
        ).addRoutes(to: router)
        DashboardController(config: config, store: store, templates: deps.templates, metrics: deps.metrics, engineHealth: deps.engineHealth)
            .addRoutes(to: router)
        return router
    }

    /// The HTTP server and the controller, stopped together on SIGTERM/SIGINT.
    public func buildApplication(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(
            router: buildRouter(),
            configuration: .init(address: .hostname(config.server.host, port: config.server.port), serverName: "stager"),
            services: [controller],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: deps.logger
        )
    }
}

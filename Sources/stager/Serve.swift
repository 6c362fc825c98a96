import ArgumentParser
import Foundation
import Hummingbird
import StagerKit

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Receive webhooks, converge environments, serve the dashboard; stops gracefully on SIGTERM/SIGINT."
    )

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let config = try options.load()
        let logger = options.logger(default: .info, secrets: SecretValues(config: config))
        let app = try StagerApp(config: config, logger: logger)
        do {
            try await app.buildApplication { port in
                logger.notice(
                    "stager serving",
                    metadata: ["webhook": "http://\(config.server.host):\(port)/webhook", "dashboard": "http://\(config.server.host):\(port)/"]
                )
            }.runService()
        } catch is CancellationError {
            // SIGTERM or SIGINT: a graceful stop, which supervisors must read as success.
        }
        logger.notice("stager stopped")
    }
}

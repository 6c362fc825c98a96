import ArgumentParser
import Foundation
import Logging
import StagerKit

@main
struct Stager: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stager",
        abstract: "Per-pull-request preview environments: docker containers behind nginx, driven by GitHub webhooks.",
        subcommands: [Serve.self, List.self, Logs.self, GarbageCollect.self, Sync.self, Deploy.self, Destroy.self, Sleep.self, Wake.self, Check.self]
    )

    /// Exit status per the contract: 0 done, 1 failed, 2 bad usage or bad configuration.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("stager: \(error)\n".utf8))
            Foundation.exit(2)
        } catch let error as CommandFailure {
            FileHandle.standardError.write(Data("stager: \(error)\n".utf8))
            Foundation.exit(1)
        } catch let error as ServeUnreachable {
            FileHandle.standardError.write(Data("stager: \(error)\n".utf8))
            Foundation.exit(1)
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data("\(fullMessage(for: error))\n".utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (default: $STAGER_CONFIG, then ./stager.yml).")
    var config: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (default: info for serve, warning otherwise).")
    var logLevel: Logger.Level?

    @Option(name: .long, help: "Log format on standard error: text or json (one object a line).")
    var logFormat: LogFormat = .text

    func load() throws -> StagerConfig {
        let loader = ConfigLoader()
        return try loader.load(file: loader.resolvePath(config))
    }

    func logger(default level: Logger.Level = .warning, secrets: SecretValues = .none) -> Logger {
        logFormat.makeLogger(label: "stager", level: logLevel ?? level, secrets: secrets)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}

import ArgumentParser
import Foundation
import StagerKit

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List environments.")

    @OptionGroup var options: ConfigOptions

    @Flag(name: .long, help: "Print a JSON array instead of a table.")
    var json = false

    func run() async throws {
        let config = try options.load()
        let store = try Store(path: config.dataDir.appendingPathComponent("stager.sqlite"))
        // Ask the engine too: while it does not answer, the statuses are only the last ones known.
        var degraded: String?
        do {
            try await config.makeRuntime(runner: SubprocessRunner()).ping()
        } catch {
            degraded = "\(error)"
        }
        let views = try EnvironmentView.current(in: store, config: config, degraded: degraded)
        print(json ? try EnvironmentTable.json(views) : EnvironmentTable.text(views, now: Date(), degraded: degraded))
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate the configuration and check the engine, nginx, the sites folder and the GitHub token."
    )

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let config = try options.load()
        let results = await Preflight(config: config, runner: SubprocessRunner()).run()
        for result in results { print(result.line) }
        if results.contains(where: { !$0.passed }) { throw ExitCode.failure }
    }
}

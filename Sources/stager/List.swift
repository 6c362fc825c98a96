import ArgumentParser
import Foundation
import StagerKit

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List environments.")

    @OptionGroup var client: ClientOptions

    @Flag(name: .long, help: "Print a JSON array instead of a table.")
    var json = false

    func run() async throws {
        try await client.run(.ls, CommandArguments(json: json))
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

import ArgumentParser
import Foundation
import StagerKit

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a pull request's container log, or with --build its last build log.")

    @OptionGroup var client: ClientOptions

    @Argument(help: EnvironmentArgument.help)
    var environment: EnvironmentArgument

    @Flag(name: .shortAndLong, help: "Keep printing as the container writes (until interrupted).")
    var follow = false

    @Option(name: .long, help: "Only the last N lines (default: all).")
    var tail: Int?

    @Flag(name: .long, help: "The last image build's log instead (repositories that build from the branch).")
    var build = false

    @Option(name: .long, help: "A service's log instead of the app's (repos.X.services), e.g. --service db.")
    var service: String?

    func validate() throws {
        if let tail, tail < 0 { throw ValidationError("--tail: expected a number of lines, 0 or more") }
        if build, service != nil { throw ValidationError("--build and --service: give one of them") }
    }

    func run() async throws {
        try await client.run(
            .logs,
            CommandArguments(
                environment: environment.reference.description,
                follow: follow,
                tail: tail,
                build: build,
                service: service
            )
        )
    }
}

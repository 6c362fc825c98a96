import ArgumentParser
import Foundation
import StagerKit

struct GarbageCollect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove leaked and stale environments, containers and vhosts; reload nginx once.",
        discussion:
            "stager serve does the removing and reports each item as it goes. Exit status: 0 done, 1 something could not be removed (each failure is listed) or serve is not running, 2 bad configuration."
    )

    @OptionGroup var client: ClientOptions

    @Flag(name: .long, help: "Print the plan without changing anything.")
    var dryRun = false

    @Flag(name: .long, help: "Print JSON lines (one per item, then the summary) instead of a table.")
    var json = false

    func run() async throws {
        try await client.run(.gc, CommandArguments(json: json, dryRun: dryRun))
    }
}

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the environments of open pull requests whose webhook was lost (asks GitHub)."
    )

    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await client.run(.sync)
    }
}

/// A pull request's environment (`OWNER/NAME#N`) or a branch's (`OWNER/NAME@BRANCH`).
struct EnvironmentArgument: ExpressibleByArgument {
    var reference: EnvironmentReference

    init?(argument: String) {
        guard let reference = EnvironmentReference(parsing: argument) else { return nil }
        self.reference = reference
    }

    static let help: ArgumentHelp = "The environment: OWNER/NAME#N for a pull request's, OWNER/NAME@BRANCH for a branch's (repos.X.branches)."
}

/// What deploy, destroy, sleep and wake share: serve, the environment, and how long to wait for it.
struct ManualTarget: ParsableArguments {
    @OptionGroup var client: ClientOptions

    @Flag(name: .long, help: "Return once the change is recorded instead of waiting for stager serve to apply it.")
    var noWait = false

    @Option(name: .long, help: "How long to wait for stager serve, e.g. 120s.")
    var timeout: String = "300s"

    @Argument(help: EnvironmentArgument.help)
    var environment: EnvironmentArgument

    func validate() throws {
        guard DurationParser.parse(timeout) != nil else { throw ValidationError("--timeout: expected a duration such as 120s") }
    }

    func run(_ verb: ServeCommands.Verb, sha: String? = nil) async throws {
        let limit = DurationParser.parse(timeout) ?? .seconds(300)
        try await client.run(
            verb,
            CommandArguments(
                environment: environment.reference.description,
                sha: sha,
                noWait: noWait,
                timeoutSeconds: limit.seconds
            )
        )
    }
}

struct Deploy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Deploy a pull request by hand (reads it from GitHub); --sha redeploys an earlier commit."
    )

    @OptionGroup var target: ManualTarget

    @Option(name: .long, help: "The commit to deploy (default: the PR's head).")
    var sha: String?

    func validate() throws {
        if let sha, !(7...40).contains(sha.count) || !sha.allSatisfy(\.isHexDigit) {
            throw ValidationError("--sha: expected 7 to 40 hexadecimal characters, got \"\(sha)\"")
        }
    }

    func run() async throws {
        try await target.run(.deploy, sha: sha)
    }
}

struct Destroy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tear a pull request's environment down by hand (a later push deploys it again)."
    )

    @OptionGroup var target: ManualTarget

    func run() async throws {
        try await target.run(.destroy)
    }
}

struct Sleep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put an environment to sleep: its containers stop (kept, with their volumes) and a request to its URL wakes it."
    )

    @OptionGroup var target: ManualTarget

    func run() async throws {
        try await target.run(.sleep)
    }
}

struct Wake: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wake a sleeping environment: its services, then its app, each healthy."
    )

    @OptionGroup var target: ManualTarget

    func run() async throws {
        try await target.run(.wake)
    }
}

/// A failure with its message: printed to stderr, exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

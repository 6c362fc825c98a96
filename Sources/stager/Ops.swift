import ArgumentParser
import Foundation
import StagerKit

struct GarbageCollect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove leaked and stale environments, containers and vhosts; reload nginx once.",
        discussion: "Exit status: 0 done, 1 something could not be removed (each failure is listed), 2 bad configuration."
    )

    @OptionGroup var options: ConfigOptions

    @Flag(name: .long, help: "Print the plan without changing anything.")
    var dryRun = false

    @Flag(name: .long, help: "Print JSON lines (one per item, then the summary) instead of a table.")
    var json = false

    func run() async throws {
        let app = try StagerApp(config: options.load(), logger: options.logger())
        let collector = GarbageCollector(app: app)
        let plan: GcPlan
        do {
            plan = try await collector.plan()
        } catch {
            throw CommandFailure("gc: cannot read the current state: \(error)")
        }
        let printer = GcPrinter(json: json)
        let summary = await collector.run(plan, dryRun: dryRun) { printer.print($0) }
        printer.finish(summary)
        if summary.failed > 0 { throw ExitCode.failure }
    }
}

/// gc's output: aligned rows printed as each item is done, or JSON lines.
struct GcPrinter {
    let json: Bool
    private static let widths = [13, 13, 44]

    init(json: Bool) {
        self.json = json
        if !json { emit(Self.row(["ACTION", "KIND", "ITEM", "REASON"])) }
    }

    func print(_ item: GcItem) {
        emit(json ? Self.encode(item) : Self.row([item.action.rawValue, item.kind.rawValue, item.item, item.reason]))
    }

    func finish(_ summary: GarbageCollector.Summary) {
        struct Line: Encodable { var summary: GarbageCollector.Summary; var line: String }
        emit(json ? Self.encode(Line(summary: summary, line: summary.line)) : summary.line)
    }

    private func emit(_ line: String) {
        // Unbuffered: each item shows up as soon as it is done, even through a pipe.
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    private static func row(_ cells: [String]) -> String {
        cells.enumerated().map { index, cell in
            index < widths.count ? cell.padding(toLength: max(widths[index], cell.count), withPad: " ", startingAt: 0) : cell
        }.joined(separator: " ")
    }

    private static func encode(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "{}"  // GcItem and the summary always encode
    }
}

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the environments of open pull requests whose webhook was lost (asks GitHub)."
    )

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let (_, control) = try options.manualControl()
        let (queued, failures) = try await control.sync()
        for line in queued {
            print("queued \(line.key) (\(line.branch)) at \(line.sha.prefix(12))")
        }
        for (repo, reason) in failures.sorted(by: { $0.key < $1.key }) {
            print("FAIL \(repo): \(reason)")
        }
        print("sync: queued \(queued.count); \(Self.applying(control))")
        if !failures.isEmpty { throw ExitCode.failure }
    }

    static func applying(_ control: ManualControl) -> String {
        control.serveIsRunning() ? "stager serve is applying it" : "stager serve is not running: it applies this when it starts"
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

/// Options shared by deploy and destroy: wait for serve to apply the change.
struct WaitOptions: ParsableArguments {
    @Flag(name: .long, help: "Return once the change is recorded instead of waiting for stager serve to apply it.")
    var noWait = false

    @Option(name: .long, help: "How long to wait for stager serve, e.g. 120s.")
    var timeout: String = "300s"

    func report(_ control: ManualControl, key: PullRequestKey, name: String, version: Int, config: StagerConfig) async throws {
        guard !noWait, control.serveIsRunning() else {
            print(noWait ? "recorded" : Sync.applying(control))
            return
        }
        guard let limit = DurationParser.parse(timeout) else { throw ValidationError("--timeout: expected a duration such as 120s") }
        guard let env = try await control.waitApplied(key, version: version, timeout: limit) else { return }
        if env.appliedVersion < version, !control.serveIsRunning() {
            print("stager serve stopped: it applies this when it starts again")
            return
        }
        let view = EnvironmentView(env, config: config)
        print("\(name): \(view.status)\(view.url.map { " at \($0)" } ?? "")\(view.failure_reason.map { " (\($0))" } ?? "")")
        if env.appliedVersion < version, env.status != .waiting {
            throw CommandFailure("\(name): stager serve did not finish within \(timeout)")
        }
        if env.status == .failed { throw ExitCode.failure }
    }
}

/// What deploy and destroy share: the configuration, the PR, and waiting for serve.
struct ManualTarget: ParsableArguments {
    @OptionGroup var options: ConfigOptions
    @OptionGroup var wait: WaitOptions

    @Argument(help: EnvironmentArgument.help)
    var environment: EnvironmentArgument

    /// What the person typed, for what is printed.
    var name: String { environment.reference.description }

    /// The configuration, the control, and the environment's key.
    func open() async throws -> (StagerConfig, ManualControl, PullRequestKey) {
        let (config, control) = try options.manualControl()
        return (config, control, try await control.key(environment.reference))
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
        let (config, control, key) = try await target.open()
        let (env, version) = try await control.deploy(key, sha: sha?.lowercased())
        print("deploy \(target.name) (\(env.branch)) at \(env.desiredSha.prefix(12)) recorded")
        try await target.wait.report(control, key: key, name: target.name, version: version, config: config)
    }
}

struct Destroy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tear a pull request's environment down by hand (a later push deploys it again)."
    )

    @OptionGroup var target: ManualTarget

    func run() async throws {
        let (config, control, key) = try await target.open()
        let (_, version) = try await control.destroy(key)
        print("destroy \(target.name) recorded")
        try await target.wait.report(control, key: key, name: target.name, version: version, config: config)
    }
}

struct Sleep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put an environment to sleep: its containers stop (kept, with their volumes) and a request to its URL wakes it."
    )

    @OptionGroup var target: ManualTarget

    func run() async throws {
        try await target.change("sleep", unlessAlready: "asleep") { try await $0.sleep($1) }
    }
}

struct Wake: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wake a sleeping environment: its services, then its app, each healthy."
    )

    @OptionGroup var target: ManualTarget

    func run() async throws {
        try await target.change("wake", unlessAlready: "awake") { try await $0.wake($1) }
    }
}

extension ManualTarget {
    /// Records a sleep or a wake, or says that it is so already; then waits for serve.
    func change(_ verb: String, unlessAlready state: String,
                _ record: (ManualControl, PullRequestKey) async throws -> (env: Environment, version: Int)?) async throws {
        let (config, control, key) = try await open()
        guard let (_, version) = try await record(control, key) else {
            print("\(name) is \(state) already")
            return
        }
        print("\(verb) \(name) recorded")
        try await wait.report(control, key: key, name: name, version: version, config: config)
    }
}

extension ConfigOptions {
    func manualControl() throws -> (StagerConfig, ManualControl) {
        let config = try load()
        let app = try StagerApp(config: config, logger: logger())
        return (config, ManualControl(config: config, store: app.store, github: app.github))
    }
}

/// A failure with its message: printed to stderr, exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

import Foundation

/// What `stager ls | logs | deploy | destroy | sleep | wake | sync | gc` ask serve: the command's own
/// arguments. The CLI parses and checks them; serve checks them again, since anyone with the token can send any.
public struct CommandArguments: Codable, Sendable, Equatable {
    public var environment: String?
    public var json: Bool?
    public var dryRun: Bool?
    public var sha: String?
    public var noWait: Bool?
    public var timeoutSeconds: Double?
    public var follow: Bool?
    public var tail: Int?
    public var build: Bool?
    public var service: String?

    public init(
        environment: String? = nil,
        json: Bool? = nil,
        dryRun: Bool? = nil,
        sha: String? = nil,
        noWait: Bool? = nil,
        timeoutSeconds: Double? = nil,
        follow: Bool? = nil,
        tail: Int? = nil,
        build: Bool? = nil,
        service: String? = nil
    ) {
        self.environment = environment
        self.json = json
        self.dryRun = dryRun
        self.sha = sha
        self.noWait = noWait
        self.timeoutSeconds = timeoutSeconds
        self.follow = follow
        self.tail = tail
        self.build = build
        self.service = service
    }
}

/// One piece of a command's answer as it comes, a JSON object a line: text for standard output or standard
/// error, and last the exit status.
public struct CommandEvent: Codable, Sendable, Equatable {
    public var out: String?
    public var err: String?
    public var exit: Int32?

    public static func out(_ text: String) -> CommandEvent { CommandEvent(out: text) }
    public static func err(_ text: String) -> CommandEvent { CommandEvent(err: text) }
    public static func exit(_ status: Int32) -> CommandEvent { CommandEvent(exit: status) }

    /// The same with every configured secret hidden: a container's log or a failure reason can quote one.
    public func masked(with secrets: SecretValues) -> CommandEvent {
        CommandEvent(out: out.map(secrets.mask), err: err.map(secrets.mask), exit: exit)
    }
}

/// The commands as serve carries them out: only serve runs docker, nginx and GitHub requests; the CLI sends
/// the arguments and prints what comes back. Output and exit statuses are the contract's.
public struct ServeCommands: Sendable {
    public enum Verb: String, Sendable, CaseIterable {
        case ls, logs, deploy, destroy, sleep, wake, sync, gc
    }

    /// Sends one event; text ends with a newline where the command printed a line.
    public typealias Emit = @Sendable (CommandEvent) -> Void

    let app: StagerApp

    public init(app: StagerApp) {
        self.app = app
    }

    var control: ManualControl { ManualControl(config: app.config, store: app.store, github: app.github) }

    /// Runs `verb`; returns its exit status. A refusal (an unknown environment, a closed PR) is said on the
    /// error stream with status 1.
    public func run(_ verb: Verb, _ arguments: CommandArguments, emit unmasked: @escaping Emit) async -> Int32 {
        let emit: Emit = { [secrets = app.secrets] in unmasked($0.masked(with: secrets)) }
        do {
            switch verb {
            case .ls: return try await list(arguments, emit)
            case .logs: return try await logs(arguments, emit)
            case .deploy, .destroy, .sleep, .wake: return try await change(verb, arguments, emit)
            case .sync: return try await sync(emit)
            case .gc: return await gc(arguments, emit)
            }
        } catch let error as ManualControlError {
            emit(.err("stager: \(error.message)\n"))
        } catch is CancellationError {
            emit(.err("stager: stager serve stopped before the command finished\n"))
        } catch {
            emit(.err("stager: \(verb.rawValue): \(error)\n"))
        }
        return 1
    }

    private func list(_ arguments: CommandArguments, _ emit: Emit) async throws -> Int32 {
        let degraded = await app.controller.engineHealth.down.map { EngineHealth.describe($0) }
        let views = try await EnvironmentView.current(in: app.store, config: app.config, degraded: degraded)
        emit(.out((arguments.json == true ? try EnvironmentTable.json(views) : EnvironmentTable.text(views, now: Date(), degraded: degraded)) + "\n"))
        return 0
    }

    private func logs(_ arguments: CommandArguments, _ emit: @escaping Emit) async throws -> Int32 {
        let key = try await key(arguments)
        if let tail = arguments.tail, tail < 0 { throw ManualControlError(message: "--tail: expected a number of lines, 0 or more") }
        let logs = ContainerLogs(store: app.store, runtime: app.deps.runtime)
        if arguments.build == true {
            try await logs.printBuildLog(key, dataDir: app.config.dataDir, tail: arguments.tail, follow: arguments.follow == true) { emit(.out($0)) }
            return 0
        }
        let receiver = ChunkReceiver { emit(.out(String(decoding: $0, as: UTF8.self))) }
        return try await logs.stream(key, service: arguments.service, tail: arguments.tail, follow: arguments.follow == true, to: .chunks(receiver))
    }

    private func sync(_ emit: Emit) async throws -> Int32 {
        let (queued, failures) = try await control.sync()
        for line in queued {
            emit(.out("queued \(line.key) (\(line.branch)) at \(line.sha.prefix(12))\n"))
        }
        for (repo, reason) in failures.sorted(by: { $0.key < $1.key }) {
            emit(.out("FAIL \(repo): \(reason)\n"))
        }
        for line in queued { await app.controller.enqueue(line.key) }
        emit(.out("sync: queued \(queued.count); stager serve is applying it\n"))
        return failures.isEmpty ? 0 : 1
    }

    private func gc(_ arguments: CommandArguments, _ emit: Emit) async -> Int32 {
        let collector = GarbageCollector(app: app)
        let plan: GcPlan
        do {
            plan = try await collector.plan()
        } catch {
            emit(.err("stager: gc: cannot read the current state: \(error)\n"))
            return 1
        }
        let printer = GcPrinter(json: arguments.json == true)
        if let header = printer.header { emit(.out(header)) }
        let summary = await collector.run(plan, dryRun: arguments.dryRun == true) { emit(.out(printer.line($0))) }
        emit(.out(printer.line(summary)))
        return summary.failed > 0 ? 1 : 0
    }

    private func key(_ arguments: CommandArguments) async throws -> PullRequestKey {
        guard let text = arguments.environment, let reference = EnvironmentReference(parsing: text) else {
            throw ManualControlError(message: "expected an environment: OWNER/NAME#N or OWNER/NAME@BRANCH, got \"\(arguments.environment ?? "")\"")
        }
        return try await app.store.key(reference)
    }
}

extension ServeCommands {
    /// deploy, destroy, sleep and wake: records the change as a webhook would, takes it up at once, and
    /// (unless `noWait`) waits until it is applied.
    private func change(_ verb: Verb, _ arguments: CommandArguments, _ emit: Emit) async throws -> Int32 {
        let key = try await key(arguments)
        let name = arguments.environment ?? key.description
        let version: Int
        switch verb {
        case .deploy:
            if let sha = arguments.sha, !(7...40).contains(sha.count) || !sha.allSatisfy(\.isHexDigit) {
                throw ManualControlError(message: "--sha: expected 7 to 40 hexadecimal characters, got \"\(sha.prefix(60))\"")
            }
            let (env, recorded) = try await control.deploy(key, sha: arguments.sha?.lowercased())
            emit(.out("deploy \(name) (\(env.branch)) at \(env.desiredSha.prefix(12)) recorded\n"))
            version = recorded
        case .destroy:
            version = try await control.destroy(key).version
            emit(.out("destroy \(name) recorded\n"))
        default:
            let record = verb == .sleep ? control.sleep : control.wake
            guard let (_, recorded) = try await record(key) else {
                emit(.out("\(name) is \(verb == .sleep ? "asleep" : "awake") already\n"))
                return 0
            }
            emit(.out("\(verb.rawValue) \(name) recorded\n"))
            version = recorded
        }
        await app.controller.enqueue(key)
        guard arguments.noWait != true else {
            emit(.out("recorded\n"))
            return 0
        }
        let timeout = Duration.seconds(arguments.timeoutSeconds ?? 300)
        guard let env = try await control.waitApplied(key, version: version, timeout: timeout) else { return 0 }
        let view = EnvironmentView(env, config: app.config)
        emit(.out("\(name): \(view.status)\(view.url.map { " at \($0)" } ?? "")\(view.failure_reason.map { " (\($0))" } ?? "")\n"))
        if env.appliedVersion < version, env.status != .waiting {
            emit(.err("stager: \(name): stager serve did not finish within \(timeout.seconds) s\n"))
            return 1
        }
        return env.status == .failed ? 1 : 0
    }
}

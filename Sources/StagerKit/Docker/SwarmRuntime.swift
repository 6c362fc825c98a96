import Foundation

/// A start the swarm did not carry out: a node could not pull the image or run the task, or no node took it.
public struct PlacementFailure: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var description: String { message }
}

/// The runtime on a Docker Swarm (`runtime: swarm`), through the docker CLI of a manager (`docker.command`):
/// each app and service is a swarm service of one replica carrying the usual labels; an app's port is
/// published in host mode on the node that runs its task, on a port from `swarm.published_ports` that the
/// service keeps wherever its task moves. Sleep scales to 0, wake back to 1. Images this instance builds are
/// pushed to `swarm.registry`.
public struct SwarmRuntime: ContainerEngine {
    let engine: DockerCLI
    let instance: String
    private let settings: StagerConfig.Swarm
    private let ports: PortReservations
    let nodeCache = NodeCache()
    /// How long a start waits for a node to run the task.
    private let placementTimeout: Duration
    /// How long one try of `docker service logs` may take (see `logTries`).
    private let logTimeout: Duration

    public init(
        engine: DockerCLI,
        instance: String,
        settings: StagerConfig.Swarm,
        placementTimeout: Duration = .seconds(120),
        logTimeout: Duration = .seconds(5)
    ) {
        self.engine = engine
        self.logTimeout = logTimeout
        self.instance = instance
        self.settings = settings
        self.placementTimeout = placementTimeout
        self.ports = PortReservations(range: settings.publishedPorts)
    }

    public var placesTasks: Bool { true }

    func run(_ arguments: [String], allowFailure: Bool = false, timeout: Duration? = nil) async throws -> CommandResult {
        try await engine.run(arguments, allowFailure: allowFailure, timeout: timeout)
    }

    // MARK: Starting

    /// `docker service create`'s argv (variables go through `envFile`).
    static func createArguments(
        _ spec: ContainerSpec,
        settings: StagerConfig.Swarm,
        publishedPort: Int?,
        envFile: String?,
        job: Bool = false
    ) -> [String] {
        // Each node pulls the tag itself (images here are tagged by sha); names resolve to the task's own
        // address (dnsrr), not a virtual IP, which needs IPVS on every node.
        var args = ["service", "create", "--detach", "--quiet", "--name", spec.name, "--no-resolve-image", "--endpoint-mode", "dnsrr"]
        args += job ? ["--mode", "replicated-job", "--restart-condition", "none"] : ["--replicas", "1", "--restart-condition", "any", "--init"]
        if let publishedPort { args += ["--publish", "mode=host,target=\(spec.containerPort),published=\(publishedPort)"] }
        args += ["--limit-memory", spec.memory, "--limit-cpu", spec.cpus, "--limit-pids", String(spec.pids), "--cap-drop", "ALL"]
        for capability in spec.capAdd { args += ["--cap-add", capability] }
        if spec.readOnly { args += ["--read-only", "--mount", "type=tmpfs,destination=/tmp"] }
        for constraint in settings.constraints { args += ["--constraint", constraint] }
        if let network = spec.network {
            args += ["--network", spec.alias.map { "name=\(network),alias=\($0)" } ?? network]
        }
        let volumeLabels = spec.labels.filter {
            [ContainerLabels.managed, ContainerLabels.instance, ContainerLabels.repo, ContainerLabels.pr, ContainerLabels.branchEnvironment].contains(
                $0.key
            )
        }
        .sorted { $0.key < $1.key }.map { ",volume-label=\($0.key)=\($0.value)" }.joined()
        for (volume, path) in spec.mounts.sorted(by: { $0.key < $1.key }) {
            args += ["--mount", "type=volume,source=\(volume),destination=\(path)\(volumeLabels)"]
        }
        // The service carries the labels (what `list` filters on), and so do its containers on their node.
        for (key, value) in spec.labels.sorted(by: { $0.key < $1.key }) {
            args += ["--label", "\(key)=\(value)", "--container-label", "\(key)=\(value)"]
        }
        if let envFile { args += ["--env-file", envFile] }
        return args + ["--", spec.image] + spec.command
    }

    public func start(_ spec: ContainerSpec) async throws -> (id: String, upstream: Upstream) {
        let taken: Set<Int>
        if let known = await ports.recentlyTaken(within: .seconds(30)) {
            taken = known
        } else {
            taken = try await publishedPorts()
            await ports.remember(taken)
        }
        let port = try await ports.reserve(excluding: taken)
        do {
            let id = try await create(spec, publishedPort: port)
            let task = try await awaitRunning(id, name: spec.name)
            return (id, Upstream(host: task.address, port: port))
        } catch {
            await ports.release(port)
            throw error
        }
    }

    public func startService(_ spec: ContainerSpec) async throws -> String {
        let id = try await create(spec, publishedPort: nil)
        _ = try await awaitRunning(id, name: spec.name)
        return id
    }

    private func create(_ spec: ContainerSpec, publishedPort: Int?, job: Bool = false) async throws -> String {
        let settings = settings
        let result = try await engine.withEnvFile(spec) { envFile in
            try await run(Self.createArguments(spec, settings: settings, publishedPort: publishedPort, envFile: envFile, job: job))
        }
        return result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Ports every service of the swarm publishes (Stager's and anyone else's).
    private func publishedPorts() async throws -> Set<Int> {
        let ids = try await run(["service", "ls", "--quiet"]).standardOutput.split(separator: "\n").map(String.init)
        guard !ids.isEmpty else { return [] }
        let inspected = try await run(["service", "inspect", "--format", Self.publishedPortFormat, "--"] + ids, allowFailure: true)
        return Set(inspected.standardOutput.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int($0) })
    }

    /// Waits until the service's task runs on a node; a task the node rejected or that failed is a
    /// `PlacementFailure` naming the node, and the service goes.
    private func awaitRunning(_ id: String, name: String) async throws -> SwarmTask {
        var last: String?
        let outcome: Result<SwarmTask, PlacementFailure>? = try await Poller(first: .milliseconds(10), longest: .milliseconds(100)).first(
            timeout: placementTimeout
        ) {
            // One docker call a round, for the tasks' states; a task that runs or failed is then read whole.
            let states = try await self.taskStates(of: id)
            last = states.first.map { "\($0.state)\($0.error.isEmpty ? "" : ": \($0.error)")" } ?? last
            let running = states.first { $0.state.hasPrefix("Running") }
            guard let chosen = running ?? states.first(where: { $0.state.hasPrefix("Rejected") || $0.state.hasPrefix("Failed") }),
                let task = try await self.inspectTasks([chosen.id]).first
            else { return nil }
            let node = try await self.node(task.nodeID)
            if running != nil {
                guard let node else { return nil }
                var placed = task
                placed.address = node.address
                return .success(placed)
            }
            let named = node.map { "\($0.hostname) (\($0.address))" } ?? "(not placed)"
            return .failure(PlacementFailure(message: "the swarm task of \(name) was \(task.state) on node \(named): \(task.error)"))
        }
        switch outcome {
        case .success(let task):
            return task
        case .failure(let failure):
            _ = try? await remove(id)  // best effort: the failure is what is reported
            throw failure
        case nil:
            _ = try? await remove(id)  // best effort: the failure is what is reported
            throw PlacementFailure(message: "no swarm node ran \(name) within \(placementTimeout) (its task: \(last ?? "none yet"))")
        }
    }

    public func runToEnd(_ spec: ContainerSpec, timeout: Duration) async throws -> (exitCode: Int32, output: String) {
        let id = try await create(spec, publishedPort: nil, job: true)
        let outcome = await Result {
            let exit: Int32? = try await Poller(first: .milliseconds(100)).first(timeout: timeout) {
                // A task not started yet has no container status: `with` prints nothing then.
                let format = "{{.Status.State}}\t{{with .Status.ContainerStatus}}{{.ExitCode}}{{end}}"
                guard let first = try await self.taskIDs(of: [id], onlyRunning: false).first else { return nil }
                let line = try await self.run(["inspect", "--type", "task", "--format", format, "--", first]).standardOutput
                let fields = line.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\t").map(String.init)
                guard let state = fields.first, ["complete", "failed", "rejected"].contains(state) else { return nil }
                return state == "rejected" ? 125 : Int32(fields.count > 1 ? fields[1] : "") ?? 1
            }
            guard let exit else { return (Int32(124), "stopped after \(timeout)") }
            do {
                return (exit, try await self.logTail(id, lines: 1000))
            } catch CommandError.timedOut(_, let limit) {
                return (exit, "(its log could not be read: docker service logs did not answer within \(limit), \(Self.logTries) times)")
            }
        }
        try await remove(id)
        return try outcome.get()
    }

    // MARK: Changing

    public func remove(_ idOrName: String) async throws {
        let result = try await run(["service", "rm", "--", idOrName], allowFailure: true)
        guard result.succeeded || result.message.contains("not found") else {
            throw CommandError.failed(engine.command(["service", "rm", idOrName]), result)
        }
    }

    public func stop(_ idOrName: String) async throws {
        try await run(["service", "update", "--detach", "--quiet", "--replicas", "0", "--", idOrName])
        // Stopped once no task of it runs any more.
        let active = ["running", "starting", "preparing", "assigned", "accepted", "pending", "new", "ready"]
        let stopped: Bool? = try await Poller(first: .milliseconds(50)).first(timeout: .seconds(30)) {
            try await self.tasks(of: [idOrName], onlyRunning: false).allSatisfy { !active.contains($0.state) } ? true : nil
        }
        guard stopped != nil else { throw PlacementFailure(message: "the tasks of \(idOrName) did not stop within 30 s") }
    }

    public func restart(_ idOrName: String, containerPort: Int?) async throws -> Upstream? {
        try await run(["service", "update", "--detach", "--quiet", "--replicas", "1", "--", idOrName])
        let task = try await awaitRunning(idOrName, name: idOrName)
        guard containerPort != nil else { return nil }
        let port = try await run(["service", "inspect", "--format", Self.publishedPortFormat, "--", idOrName])
        guard let published = Int(port.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw CommandError.failed(engine.command(["service", "inspect", idOrName]), port)
        }
        return Upstream(host: task.address, port: published)
    }

    /// `docker service logs` now and then never ends, most often right after the service changed
    /// (docker/cli#4678, moby/swarmkit#1956): each try is cut off, and a cut-off try is tried again.
    static let logTries = 3

    static func logArguments(_ idOrName: String, tail: Int?, follow: Bool = false) -> [String] {
        ["service", "logs", "--raw"] + (follow ? ["--follow"] : []) + (tail.map { ["--tail", String($0)] } ?? []) + ["--", idOrName]
    }

    private func serviceLogs(_ idOrName: String, tail: Int?) async throws -> CommandResult {
        let arguments = Self.logArguments(idOrName, tail: tail)
        var attempt = 1
        while true {
            do {
                return try await run(arguments, allowFailure: true, timeout: logTimeout)
            } catch CommandError.timedOut where attempt < Self.logTries {
                attempt += 1
            }
        }
    }

    public func logTail(_ idOrName: String, lines: Int) async throws -> String {
        let result = try await serviceLogs(idOrName, tail: lines)
        guard result.succeeded else { throw CommandError.failed(engine.command(["service", "logs", idOrName]), result) }
        return (result.standardOutput + result.standardError).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func streamLogs(_ idOrName: String, tail: Int?, follow: Bool, to sink: OutputSink) async throws -> Int32 {
        if follow {
            return try await engine.stream(Self.logArguments(idOrName, tail: tail, follow: true), to: sink)
        }
        // Collected rather than streamed, so that a try that hung can be tried again without sending twice.
        let result = try await serviceLogs(idOrName, tail: tail)
        switch sink {
        case .chunks(let receiver): receiver.receive(Data((result.standardOutput + result.standardError).utf8))
        case .file(let url, _):
            let handle = try FileHandle(forWritingTo: url)
            defer { try? handle.close() }  // written already; a failed close changes nothing read
            try handle.seekToEnd()
            try handle.write(contentsOf: Data((result.standardOutput + result.standardError).utf8))
        }
        return result.exitCode
    }

}

/// The swarm's nodes as last read: a deploy asks for its task's node, and nodes change seldom.
actor NodeCache {
    private var last: (at: ContinuousClock.Instant, table: [String: SwarmRuntime.Node])?

    func table(within age: Duration) -> [String: SwarmRuntime.Node]? {
        guard let last, ContinuousClock.now - last.at <= age else { return nil }
        return last.table
    }

    func remember(_ table: [String: SwarmRuntime.Node]) { last = (ContinuousClock.now, table) }
}

/// Published ports handed out and not yet visible in the swarm's services: two starts at once never take
/// the same one. The swarm's own ports are read again after half a minute; one another user's service took
/// meanwhile is the scheduler's to avoid (it places a host-mode task only where its port is free).
actor PortReservations {
    private let range: ClosedRange<Int>
    private var reserved: [Int: ContinuousClock.Instant] = [:]
    private var taken: (at: ContinuousClock.Instant, ports: Set<Int>)?

    init(range: ClosedRange<Int>) { self.range = range }

    func recentlyTaken(within age: Duration) -> Set<Int>? {
        guard let taken, ContinuousClock.now - taken.at <= age else { return nil }
        return taken.ports
    }

    func remember(_ ports: Set<Int>) { taken = (ContinuousClock.now, ports) }

    /// A free port of the range, at random (a port some other process on a node holds is then unlikely twice).
    func reserve(excluding taken: Set<Int>) throws -> Int {
        let now = ContinuousClock.now
        // Once its service exists, `taken` has it; a minute covers the time in between.
        reserved = reserved.filter { now - $0.value < .seconds(60) }
        let unavailable = taken.union(reserved.keys).filter(range.contains)
        guard unavailable.count < range.count else {
            throw PlacementFailure(message: "every port of swarm.published_ports (\(range.lowerBound)-\(range.upperBound)) is taken")
        }
        for _ in 0..<1000 {
            let port = Int.random(in: range)
            if !taken.contains(port), reserved[port] == nil {
                reserved[port] = now
                return port
            }
        }
        guard let port = range.first(where: { !taken.contains($0) && reserved[$0] == nil }) else {
            throw PlacementFailure(message: "every port of swarm.published_ports (\(range.lowerBound)-\(range.upperBound)) is taken")
        }
        reserved[port] = now
        return port
    }

    func release(_ port: Int) { reserved[port] = nil }
}

extension StagerConfig {
    /// The engine `runtime` names, reached through `docker.command`: the engine itself, or a swarm's manager.
    public func makeEngine(runner: any CommandRunner, scratchDir: URL? = nil) -> any ContainerEngine {
        let engine =
            scratchDir.map { DockerCLI(command: dockerCommand, instance: instance, runner: runner, scratchDir: $0) }
            ?? DockerCLI(command: dockerCommand, instance: instance, runner: runner)
        switch runtime {
        case .docker: return engine
        case .swarm: return SwarmRuntime(engine: engine, instance: instance, settings: swarm)
        }
    }
}

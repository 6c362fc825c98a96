import Crypto
import Foundation

/// The docker CLI, run through the one `CommandRunner`, with argv only.
public struct DockerCLI: ContainerEngine {
    private let docker: [String]
    private let instance: String
    private let runner: any CommandRunner
    /// Where the 0600 `--env-file` of a starting container lives for the moment `docker run` reads it.
    private let scratchDir: URL
    /// docker CLI processes at a time: each costs tens of milliseconds of CPU to start, and a burst of them
    /// would starve the webhook's answers on a small machine.
    private let processes = Slots(limit: 8)

    public init(
        command: [String],
        instance: String,
        runner: any CommandRunner,
        scratchDir: URL = FileManager.default.temporaryDirectory.appendingPathComponent("stager-run")
    ) {
        self.docker = command
        self.instance = instance
        self.runner = runner
        self.scratchDir = scratchDir
    }

    func command(_ arguments: [String]) -> Command {
        Command(argv: docker, appending: arguments)
    }

    /// Runs docker; an engine that does not answer is `EngineUnavailable`, any other refusal `CommandError`.
    @discardableResult
    func run(_ arguments: [String], allowFailure: Bool = false, timeout: Duration? = nil) async throws -> CommandResult {
        var invocation = command(arguments)
        invocation.timeout = timeout
        let result: CommandResult
        do {
            result = try await processes.withSlot { [invocation] in try await runner.run(invocation) }
        } catch CommandError.couldNotStart(_, let reason) {
            throw EngineUnavailable(message: "cannot run \(docker.joined(separator: " ")): \(reason)")
        }
        if !result.succeeded, EngineUnavailable.matches(result.message) {
            throw EngineUnavailable(message: String(result.message.prefix(500)))
        }
        guard result.succeeded || allowFailure else { throw CommandError.failed(invocation, result) }
        return result
    }

    /// `docker run`'s argv. Variables are not in it (argv is visible to every user of the machine): they go
    /// through `envFile`.
    public static func runArguments(_ spec: ContainerSpec, envFile: String?) -> [String] {
        var args = ["run", "--detach", "--name", spec.name]
        if spec.publish { args += ["--publish", "127.0.0.1::\(spec.containerPort)"] }
        // An init as PID 1 passes docker stop's SIGTERM on (an app as PID 1 that never asked for it would
        // ignore it, and each sleep would wait out docker's 10 s), and reaps what the app leaves.
        args += ["--restart", "unless-stopped", "--init"]
        return args + isolationArguments(spec, envFile: envFile)
    }

    /// What every container Stager runs has: limits, hardening, network, volumes, labels, variables, then
    /// the image and command.
    static func isolationArguments(_ spec: ContainerSpec, envFile: String?) -> [String] {
        var args = [
            "--memory", spec.memory, "--cpus", spec.cpus, "--pids-limit", String(spec.pids),
            "--security-opt", "no-new-privileges", "--cap-drop", "ALL",
        ]
        if let network = spec.network {
            args += ["--network", network]
            if let alias = spec.alias { args += ["--network-alias", alias] }
        }
        for (volume, path) in spec.mounts.sorted(by: { $0.key < $1.key }) {
            args += ["--mount", "type=volume,src=\(volume),dst=\(path)"]
        }
        for capability in spec.capAdd { args += ["--cap-add", capability] }
        if spec.readOnly { args += ["--read-only", "--tmpfs", "/tmp"] }
        args += labelArguments(spec.labels)
        if let envFile { args += ["--env-file", envFile] }
        // "--" ends docker's options: an image or command can never be read as a flag.
        return args + ["--", spec.image] + spec.command
    }

    /// The env-file lines; docker reads each to the end of the line, so a value may not contain one.
    static func envFileText(_ environment: [String: String]) throws -> String {
        try environment.sorted { $0.key < $1.key }.map { key, value in
            guard !value.hasLineBreak else {
                throw ContainerSpecError.lineBreakInVariable(key)
            }
            return "\(key)=\(value)\n"
        }.joined()
    }

    public var placesTasks: Bool { false }

    public func start(_ spec: ContainerSpec) async throws -> (id: String, upstream: Upstream) {
        let id = try await launch(spec, arguments: Self.runArguments)
        let port = try await run(["port", id, "\(spec.containerPort)/tcp"])
        guard let hostPort = Self.parsePort(port.standardOutput) else {
            throw CommandError.failed(command(["port", id]), port)
        }
        return (id, Upstream(port: hostPort))
    }

    public func startService(_ spec: ContainerSpec) async throws -> String {
        try await launch(spec, arguments: Self.runArguments)
    }

    public func runToEnd(_ spec: ContainerSpec, timeout: Duration) async throws -> (exitCode: Int32, output: String) {
        let arguments: @Sendable (ContainerSpec, String?) -> [String] = { spec, envFile in
            ["run", "--rm", "--name", spec.name] + Self.isolationArguments(spec, envFile: envFile)
        }
        do {
            let result = try await withEnvFile(spec) { envFile in
                try await run(arguments(spec, envFile), allowFailure: true, timeout: timeout)
            }
            return (result.exitCode, (result.standardOutput + result.standardError).trimmingCharacters(in: .whitespacesAndNewlines))
        } catch CommandError.timedOut {
            // The client was stopped; the container it ran is not: it goes too.
            try await remove(spec.name)
            return (124, "stopped after \(timeout)")
        }
    }

    /// Runs docker with the spec's variables in a 0600 env file that exists only meanwhile; the id it printed.
    private func launch(_ spec: ContainerSpec, arguments: (ContainerSpec, String?) -> [String]) async throws -> String {
        let result = try await withEnvFile(spec) { envFile in try await run(arguments(spec, envFile)) }
        return result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func withEnvFile<T>(_ spec: ContainerSpec, _ body: (String?) async throws -> T) async throws -> T {
        var envFile: URL?
        if !spec.environment.isEmpty {
            let text = try Self.envFileText(spec.environment)
            try FileManager.default.createDirectory(at: scratchDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let file = scratchDir.appendingPathComponent("\(spec.name).env")
            // Created 0600 before anything is written, so the values are never readable by others.
            guard FileManager.default.createFile(atPath: file.path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
                throw ContainerSpecError.cannotWrite(file.path)
            }
            envFile = file
            let handle = try FileHandle(forWritingTo: file)
            defer { try? handle.close() }  // closing after a failed write: the write error is thrown
            try handle.write(contentsOf: Data(text.utf8))
        }
        // a leftover 0600 env file in the scratch folder is overwritten next time
        defer { if let envFile { try? FileManager.default.removeItem(at: envFile) } }
        return try await body(envFile?.path)
    }

    /// `docker port` prints lines like `127.0.0.1:49153`.
    static func parsePort(_ output: String) -> Int? {
        for line in output.split(separator: "\n") {
            if let colon = line.lastIndex(of: ":"), let port = Int(line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)) {
                return port
            }
        }
        return nil
    }

    static let listFormat = [
        "{{.ID}}", "{{.Names}}", "{{.State}}", "{{.Label \"stager.repo\"}}", ContainerLabels.numberTemplate(),
        "{{.Label \"stager.sha\"}}", "{{.Label \"stager.slug\"}}", "{{.Ports}}",
        "{{.Label \"stager.role\"}}", "{{.Label \"stager.service\"}}", "{{.Label \"stager.definition\"}}",
    ].joined(separator: "\t")

    public func list(for key: PullRequestKey?) async throws -> [ContainerInfo] {
        let args = ["ps", "--all", "--no-trunc"] + Self.filters(instance: instance, key: key) + ["--format", Self.listFormat]
        return Self.parseList(try await run(args).standardOutput)
    }

    public func ids(for key: PullRequestKey) async throws -> [String] {
        try await run(["ps", "--all", "--quiet", "--no-trunc"] + Self.filters(instance: instance, key: key)).standardOutput
            .split(separator: "\n").map(String.init)
    }

    /// The label filters that select this instance's objects, optionally one PR's.
    static func filters(instance: String, key: PullRequestKey?) -> [String] {
        var filters = ["--filter", "label=\(ContainerLabels.managed)=true", "--filter", "label=\(ContainerLabels.instance)=\(instance)"]
        if let key {
            filters +=
                ["--filter", "label=\(ContainerLabels.repo)=\(key.repo)"]
                + ContainerLabels.owner(key).flatMap { ["--filter", "label=\($0.key)=\($0.value)"] }
        }
        return filters
    }

    static func parseList(_ output: String) -> [ContainerInfo] {
        DockerOutput.rows(output, fields: 11).compactMap { fields in
            guard let number = Int(fields[4]) else { return nil }
            // Ports look like "127.0.0.1:49153->8080/tcp".
            let hostPort = fields[7].split(separator: ",").lazy.compactMap { mapping -> Int? in
                guard let arrow = mapping.range(of: "->") else { return nil }
                return parsePort(String(mapping[..<arrow.lowerBound]))
            }.first
            // Containers from before services had no role: they are apps.
            return ContainerInfo(
                id: fields[0],
                name: fields[1],
                repo: fields[3],
                number: number,
                sha: fields[5],
                slug: fields[6],
                running: fields[2] == "running",
                hostPort: hostPort,
                service: fields[8] == "service" && !fields[9].isEmpty ? fields[9] : nil,
                definition: fields[10].isEmpty ? nil : fields[10]
            )
        }
    }

    public func remove(_ idOrName: String) async throws {
        let result = try await run(["rm", "--force", "--volumes", idOrName], allowFailure: true)
        // Already gone is what we wanted.
        if result.succeeded || result.message.contains("No such container") { return }
        guard result.message.contains("is already in progress") else {
            throw CommandError.failed(command(["rm", idOrName]), result)
        }
        // Someone else (serve beside gc) started the removal: it is done only once the container is gone.
        let gone = try await Poller(first: .milliseconds(50), longest: .milliseconds(500)).until(timeout: .seconds(30)) {
            // An engine hiccup while looking counts as not gone yet.
            // an engine hiccup while looking counts as not gone yet
            guard let inspect = try? await run(["container", "inspect", "--format", "{{.Id}}", idOrName], allowFailure: true) else { return false }
            return !inspect.succeeded && inspect.message.contains("No such container")
        }
        guard gone else { throw CommandError.failed(command(["rm", idOrName]), result) }
    }

    public func logTail(_ idOrName: String, lines: Int) async throws -> String {
        let result = try await run(["logs", "--tail", String(lines), idOrName])
        return (result.standardOutput + result.standardError).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Prints the container's log to this process's output as it comes (`stager logs`).
    public func streamLogs(_ idOrName: String, tail: Int?, follow: Bool, to sink: OutputSink) async throws -> Int32 {
        var arguments = ["logs"]
        if let tail { arguments += ["--tail", String(tail)] }
        if follow { arguments.append("--follow") }
        return try await stream(arguments + ["--", idOrName], to: sink)
    }

    /// Runs docker with its output going to `sink` as it comes; docker's exit status.
    func stream(_ arguments: [String], to sink: OutputSink) async throws -> Int32 {
        try await runner.stream(command(arguments), to: sink)
    }

    public func imageExists(_ reference: String) async throws -> Bool {
        try await run(["image", "inspect", "--format", "{{.Id}}", "--", reference], allowFailure: true).succeeded
    }

    /// `docker image ls` has no `.Label` in its format (on 28.x clients or 20.10 engines alike): it lists the
    /// ids the label filters select, and `docker image inspect` reads their tags and labels.
    public func builtImages() async throws -> [(image: String, key: PullRequestKey)] {
        let listed = try await run([
            "image", "ls", "--filter", "label=\(ContainerLabels.managed)=true",
            "--filter", "label=\(ContainerLabels.instance)=\(instance)", "--no-trunc", "--format", "{{.ID}}",
        ]).standardOutput
        var seen = Set<String>()
        let ids = listed.split(separator: "\n").map(String.init).filter { seen.insert($0).inserted }
        guard !ids.isEmpty else { return [] }
        // An image removed between the two calls makes inspect fail for it alone; the others are still printed.
        let inspected = try await run(["image", "inspect", "--format", Self.imageLabelsFormat, "--"] + ids, allowFailure: true)
        return Self.parseBuiltImages(inspected.standardOutput)
    }

    static let imageLabelsFormat =
        "{{json .RepoTags}}\t{{index .Config.Labels \"stager.repo\"}}\t" + ContainerLabels.numberTemplate(labels: ".Config.Labels")

    /// Lines of `imageLabelsFormat`: one entry per tag; an untagged image has nothing to remove by name.
    static func parseBuiltImages(_ output: String) -> [(image: String, key: PullRequestKey)] {
        DockerOutput.rows(output, fields: 3).flatMap { fields -> [(image: String, key: PullRequestKey)] in
            guard let number = Int(fields[2]), !fields[1].isEmpty,
                let tags = try? JSONDecoder().decode([String]?.self, from: Data(fields[0].utf8))
            else { return [] }  // a line docker printed otherwise is not one of ours
            return (tags ?? []).map { ($0, PullRequestKey(repo: fields[1], number: number)) }
        }
    }

    public func removeImage(_ reference: String) async throws -> Bool {
        let result = try await run(["image", "rm", "--", reference], allowFailure: true)
        if result.succeeded || result.message.contains("No such image") { return true }
        if result.message.contains("is using its referenced image") || result.message.contains("image is being used") { return false }
        throw CommandError.failed(command(["image", "rm", reference]), result)
    }

    public func ping() async throws {
        try await run(["version", "--format", "{{.Server.Version}}"])
    }

    public func stop(_ idOrName: String) async throws {
        try await run(["stop", "--", idOrName])
    }

    public func restart(_ idOrName: String, containerPort: Int?) async throws -> Upstream? {
        try await run(["start", "--", idOrName])
        guard let containerPort else { return nil }
        let port = try await run(["port", idOrName, "\(containerPort)/tcp"])
        guard let hostPort = Self.parsePort(port.standardOutput) else { throw CommandError.failed(command(["port", idOrName]), port) }
        return Upstream(port: hostPort)
    }

    // MARK: Networks and volumes

    /// A bridge network's addresses are reachable from this machine: the service must answer there.
    public func serviceReady(_ container: String, on network: String, answers: @Sendable (String) async -> Bool) async throws -> Bool {
        guard let address = try await address(of: container, on: network) else { return false }
        return await answers(address)
    }

    /// The container's address on `network`; nil when it is not on it (or not running).
    func address(of container: String, on network: String) async throws -> String? {
        let format = "{{with index .NetworkSettings.Networks \"\(network)\"}}{{.IPAddress}}{{end}}"
        let result = try await run(["container", "inspect", "--format", format, "--", container], allowFailure: true)
        let address = result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        return result.succeeded && !address.isEmpty ? address : nil
    }

    public func ensureNetwork(_ name: String, labels: [String: String]) async throws {
        let result = try await run(["network", "create", "--driver", "bridge"] + Self.labelArguments(labels) + ["--", name], allowFailure: true)
        guard result.succeeded || result.message.contains("already exists") else {
            throw CommandError.failed(command(["network", "create", name]), result)
        }
    }

    public func ensureVolume(_ name: String, labels: [String: String]) async throws {
        // `volume create` of an existing name answers with the name: it is idempotent by itself.
        try await run(["volume", "create"] + Self.labelArguments(labels) + ["--", name])
    }

    public func volumeExists(_ name: String) async throws -> Bool {
        try await run(["volume", "inspect", "--format", "{{.Name}}", "--", name], allowFailure: true).succeeded
    }

    public func copyVolume(from seed: String, to volume: String, with copier: SeedCopier, labels: [String: String]) async throws {
        // The seed is mounted read-only; `cp -a` keeps owners and modes, which a database's files need.
        let args =
            [
                "run", "--rm", "--pull", "never", "--network", "none", "--security-opt", "no-new-privileges",
                "--cap-drop", "ALL", "--cap-add", "CHOWN", "--cap-add", "DAC_OVERRIDE", "--cap-add", "FOWNER",
            ]
            + Self.labelArguments(labels)
            + [
                "--mount", "type=volume,src=\(seed),dst=/from,readonly", "--mount", "type=volume,src=\(volume),dst=/to",
            ] + copier.arguments
        try await run(args)
    }

    public func stackResources(for key: PullRequestKey?) async throws -> [StackResource] {
        let filters = Self.filters(instance: instance, key: key)
        let format = "{{.Name}}\t{{.Label \"stager.repo\"}}\t" + ContainerLabels.numberTemplate()
        let networks = try await run(["network", "ls"] + filters + ["--format", format]).standardOutput
        let volumes = try await run(["volume", "ls"] + filters + ["--format", format]).standardOutput
        return Self.parseResources(networks, kind: .network) + Self.parseResources(volumes, kind: .volume)
    }

    static func parseResources(_ output: String, kind: StackResource.Kind) -> [StackResource] {
        DockerOutput.rows(output, fields: 3).compactMap { fields in
            guard let number = Int(fields[2]), !fields[1].isEmpty else { return nil }
            return StackResource(kind: kind, name: fields[0], repo: fields[1], number: number)
        }
    }

    public func remove(_ resource: StackResource) async throws {
        let result = try await run([resource.kind.rawValue, "rm", "--", resource.name], allowFailure: true)
        let gone = ["No such network", "not found", "No such volume", "no such volume"]
        guard result.succeeded || gone.contains(where: result.message.contains) else {
            throw CommandError.failed(command([resource.kind.rawValue, "rm", resource.name]), result)
        }
    }

    static func labelArguments(_ labels: [String: String]) -> [String] {
        labels.sorted { $0.key < $1.key }.flatMap { ["--label", "\($0.key)=\($0.value)"] }
    }
}

import Foundation

/// Everything needed to start one environment's container.
public struct ContainerSpec: Sendable, Equatable {
    public var name: String
    public var image: String
    public var command: [String]
    public var containerPort: Int
    public var labels: [String: String]
    public var environment: [String: String]
    public var memory: String
    public var cpus: String
    public var pids: Int
}

/// The engine as Stager needs it. The docker CLI implements it; the seam lets other backends follow.
public protocol ContainerRuntime: Sendable {
    /// Starts the container detached and returns its id and the loopback port it was published on.
    func start(_ spec: ContainerSpec) async throws -> (id: String, hostPort: Int)
    /// Containers of this instance, optionally only those of one PR.
    func list(for key: PullRequestKey?) async throws -> [ContainerInfo]
    func remove(_ idOrName: String) async throws
    func logTail(_ idOrName: String, lines: Int) async throws -> String
    /// Removes an image unless a container still uses it; false when one does.
    func removeImage(_ reference: String) async throws -> Bool
    /// Whether the engine answers at all.
    func ping() async throws
}

/// Labels every Stager container carries (see CONTRACT.md).
public enum ContainerLabels {
    public static let managed = "stager.managed"
    public static let instance = "stager.instance"
    public static let repo = "stager.repo"
    public static let pr = "stager.pr"
    public static let branch = "stager.branch"
    public static let sha = "stager.sha"
    public static let slug = "stager.slug"
}

/// The docker CLI, run through the one `CommandRunner`, with argv only.
public struct DockerCLI: ContainerRuntime {
    private let docker: [String]
    private let instance: String
    private let runner: any CommandRunner

    public init(command: [String], instance: String, runner: any CommandRunner) {
        self.docker = command
        self.instance = instance
        self.runner = runner
    }

    private func command(_ arguments: [String]) -> Command {
        Command(argv: docker, appending: arguments)
    }

    /// Runs docker; an engine that does not answer is `EngineUnavailable`, any other refusal `CommandError`.
    @discardableResult
    private func run(_ arguments: [String], allowFailure: Bool = false) async throws -> CommandResult {
        let result: CommandResult
        do {
            result = try await runner.run(command(arguments))
        } catch CommandError.couldNotStart(_, let reason) {
            throw EngineUnavailable(message: "cannot run \(docker.joined(separator: " ")): \(reason)")
        }
        if !result.succeeded, EngineUnavailable.matches(result.message) {
            throw EngineUnavailable(message: String(result.message.prefix(500)))
        }
        guard result.succeeded || allowFailure else { throw CommandError.failed(command(arguments), result) }
        return result
    }

    public static func runArguments(_ spec: ContainerSpec) -> [String] {
        var args = ["run", "--detach", "--name", spec.name,
                    "--publish", "127.0.0.1::\(spec.containerPort)",
                    "--memory", spec.memory, "--cpus", spec.cpus, "--pids-limit", String(spec.pids),
                    "--restart", "unless-stopped"]
        for (key, value) in spec.labels.sorted(by: { $0.key < $1.key }) {
            args += ["--label", "\(key)=\(value)"]
        }
        for (key, value) in spec.environment.sorted(by: { $0.key < $1.key }) {
            args += ["--env", "\(key)=\(value)"]
        }
        // "--" ends docker's options: an image or command can never be read as a flag.
        return args + ["--", spec.image] + spec.command
    }

    public func start(_ spec: ContainerSpec) async throws -> (id: String, hostPort: Int) {
        let result = try await run(Self.runArguments(spec))
        let id = result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let port = try await run(["port", id, "\(spec.containerPort)/tcp"])
        guard let hostPort = Self.parsePort(port.standardOutput) else {
            throw CommandError.failed(command(["port", id]), port)
        }
        return (id, hostPort)
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
        "{{.ID}}", "{{.Names}}", "{{.State}}", "{{.Label \"stager.repo\"}}", "{{.Label \"stager.pr\"}}",
        "{{.Label \"stager.sha\"}}", "{{.Label \"stager.slug\"}}", "{{.Ports}}",
    ].joined(separator: "\t")

    public func list(for key: PullRequestKey?) async throws -> [ContainerInfo] {
        var args = ["ps", "--all", "--no-trunc",
                    "--filter", "label=\(ContainerLabels.managed)=true",
                    "--filter", "label=\(ContainerLabels.instance)=\(instance)"]
        if let key {
            args += ["--filter", "label=\(ContainerLabels.repo)=\(key.repo)", "--filter", "label=\(ContainerLabels.pr)=\(key.number)"]
        }
        args += ["--format", Self.listFormat]
        return Self.parseList(try await run(args).standardOutput)
    }

    static func parseList(_ output: String) -> [ContainerInfo] {
        output.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 8, let number = Int(fields[4]) else { return nil }
            // Ports look like "127.0.0.1:49153->8080/tcp".
            let hostPort = fields[7].split(separator: ",").lazy.compactMap { mapping -> Int? in
                guard let arrow = mapping.range(of: "->") else { return nil }
                return parsePort(String(mapping[..<arrow.lowerBound]))
            }.first
            return ContainerInfo(id: fields[0], name: fields[1], repo: fields[3], number: number, sha: fields[5],
                                 slug: fields[6], running: fields[2] == "running", hostPort: hostPort)
        }
    }

    public func remove(_ idOrName: String) async throws {
        let result = try await run(["rm", "--force", "--volumes", idOrName], allowFailure: true)
        // Already gone is what we wanted; so is a removal someone else (serve beside gc) already started.
        guard result.succeeded || result.message.contains("No such container") || result.message.contains("is already in progress") else {
            throw CommandError.failed(command(["rm", idOrName]), result)
        }
    }

    public func logTail(_ idOrName: String, lines: Int) async throws -> String {
        let result = try await run(["logs", "--tail", String(lines), idOrName])
        return (result.standardOutput + result.standardError).trimmingCharacters(in: .whitespacesAndNewlines)
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
}

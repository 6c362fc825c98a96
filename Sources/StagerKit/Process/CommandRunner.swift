import Foundation
import Subprocess

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// An external program to run: an executable and its argument list, never a shell string.
/// A command is plain data until a `CommandRunner` runs it, so tests can assert on it.
public struct Command: Sendable, Equatable, CustomStringConvertible {
    public var executable: String
    public var arguments: [String]
    /// Variables added to the inherited environment (used for values that must not appear in argv).
    public var environment: [String: String]
    /// How long it may run before it is killed and `CommandError.timedOut` thrown; the runner's own limit when nil.
    public var timeout: Duration?

    public init(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:], timeout: Duration? = nil) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.timeout = timeout
    }

    /// Builds a command from an argv array such as `["nginx", "-s", "reload"]` taken from configuration.
    public init(argv: [String], appending extra: [String] = []) {
        self.executable = argv.first ?? ""
        self.arguments = Array(argv.dropFirst()) + extra
        self.environment = [:]
        self.timeout = nil
    }

    public var description: String { ([executable] + arguments).joined(separator: " ") }
}

public struct CommandResult: Sendable, Equatable {
    public var exitCode: Int32
    public var standardOutput: String
    public var standardError: String

    public init(exitCode: Int32, standardOutput: String = "", standardError: String = "") {
        self.exitCode = exitCode
        self.standardOutput = standardOutput
        self.standardError = standardError
    }

    public var succeeded: Bool { exitCode == 0 }

    /// What the program said, for error messages: its error output, or its output when that is empty.
    public var message: String {
        let text = standardError.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) : text
    }
}

public enum CommandError: Error, CustomStringConvertible, Equatable {
    case failed(Command, CommandResult)
    case couldNotStart(Command, String)
    case timedOut(Command, Duration)

    public var description: String {
        switch self {
        case .failed(let command, let result):
            // Only the head of the command: enough to tell which one failed, never a long argument list.
            let head = ([command.executable] + command.arguments.prefix(3)).joined(separator: " ")
            return "`\(head)` exited \(result.exitCode): \(result.message.suffix(2000))"
        case .couldNotStart(let command, let reason):
            return "could not start `\(command.executable)`: \(reason)"
        case .timedOut(let command, let limit):
            let head = ([command.executable] + command.arguments.prefix(3)).joined(separator: " ")
            return "`\(head)` did not finish within \(limit) and was killed"
        }
    }
}

/// Where a streamed command's output (standard output and error together) goes as it is written.
public enum OutputSink: Sendable, Equatable {
    /// Appended to a file, created 0600 if missing (a build log); with `keepLast`, the file keeps only its
    /// last that many bytes (a build that prints without end cannot fill the disk).
    case file(URL, keepLast: Int? = nil)
    /// Handed to `receiver` chunk by chunk, output and errors together (`stager logs` answered by serve).
    case chunks(ChunkReceiver)
}

/// Takes a streamed command's output as it comes; equal only to itself.
public final class ChunkReceiver: Sendable, Equatable {
    let receive: @Sendable (Data) -> Void

    public init(_ receive: @escaping @Sendable (Data) -> Void) {
        self.receive = receive
    }

    public static func == (lhs: ChunkReceiver, rhs: ChunkReceiver) -> Bool { lhs === rhs }
}

/// The one place that starts processes.
public protocol CommandRunner: Sendable {
    /// Runs to the end and collects the output.
    func run(_ command: Command) async throws -> CommandResult
    /// Runs to the end with the output going to `sink` as it comes; returns the exit status. Only the
    /// command's own `timeout` limits it (a build or `logs --follow` may rightly run long).
    func stream(_ command: Command, to sink: OutputSink) async throws -> Int32
}

extension CommandRunner {
    /// Runs the command and throws `CommandError.failed` unless it exits 0.
    @discardableResult
    public func check(_ command: Command) async throws -> CommandResult {
        let result = try await run(command)
        guard result.succeeded else { throw CommandError.failed(command, result) }
        return result
    }
}

/// Runs commands with swift-subprocess.
public struct SubprocessRunner: CommandRunner {
    /// Output beyond this is an error rather than silently cut (container logs are asked for with --tail).
    private let outputLimit: Int
    /// Started through `nice -n N` when set: docker, git and nginx then yield the CPU to Stager's own
    /// threads, so a webhook's answer does not wait behind a burst of deploys on a small host.
    private let niceness: Int?

    /// How long a collected command may run when it names no limit: a hung program (`docker service logs`
    /// is known to hang now and then) becomes an error instead of a deploy that never ends.
    private let timeout: Duration

    public init(outputLimit: Int = 16 * 1024 * 1024, niceness: Int? = nil, timeout: Duration = .seconds(900)) {
        self.outputLimit = outputLimit
        self.niceness = niceness
        self.timeout = timeout
    }

    public func run(_ command: Command) async throws -> CommandResult {
        try await Self.within(command.timeout ?? timeout, command) { try await collect(command) }
    }

    public func stream(_ command: Command, to sink: OutputSink) async throws -> Int32 {
        guard let limit = command.timeout else { return try await send(command, to: sink) }
        return try await Self.within(limit, command) { try await send(command, to: sink) }
    }

    /// The body's answer, or `CommandError.timedOut` once `limit` passes: the body's task is cancelled then,
    /// and swift-subprocess kills a process whose task is cancelled.
    private static func within<T: Sendable>(_ limit: Duration, _ command: Command, _ body: @escaping @Sendable () async throws -> T) async throws -> T
    {
        try await withDeadline(limit, onTimeout: { CommandError.timedOut(command, limit) }, body)
    }

    private func collect(_ command: Command) async throws -> CommandResult {
        do {
            let (executable, arguments) = launch(command)
            let result = try await Subprocess.run(
                executable,
                arguments: arguments,
                environment: try Self.environment(command),
                output: .string(limit: outputLimit),
                error: .string(limit: outputLimit)
            )
            let collected = CommandResult(
                exitCode: Self.code(result.terminationStatus),
                standardOutput: result.standardOutput,
                standardError: result.standardError
            )
            try throwIfNiceCouldNotStart(command, collected)
            return collected
        } catch let error as SubprocessError {
            throw CommandError.couldNotStart(command, "\(error)")
        }
    }

    private func send(_ command: Command, to sink: OutputSink) async throws -> Int32 {
        if case .file(let url, let keepLast?) = sink { return try await send(command, toLog: url, keepLast: keepLast) }
        let descriptor: FileDescriptor
        switch sink {
        case .chunks(let receiver):
            return try await send(command) { receiver.receive($0) }
        case .file(let url, _):
            do {
                descriptor = try FileDescriptor.open(FilePath(url.path), .writeOnly, options: [.create, .append], permissions: [.ownerReadWrite])
            } catch {
                throw CommandError.couldNotStart(command, "cannot open \(url.path): \(error)")
            }
        }
        defer { try? descriptor.close() }  // the command already ran; closing cannot change its result
        let errors = descriptor
        do {
            let (executable, arguments) = launch(command)
            let result = try await Subprocess.run(
                executable,
                arguments: arguments,
                environment: try Self.environment(command),
                output: .fileDescriptor(descriptor, closeAfterSpawningProcess: false),
                error: .fileDescriptor(errors, closeAfterSpawningProcess: false)
            )
            return Self.code(result.terminationStatus)
        } catch let error as SubprocessError {
            throw CommandError.couldNotStart(command, "\(error)")
        }
    }

    /// Output and errors together through Stager, into a log that keeps its last `keepLast` bytes.
    private func send(_ command: Command, toLog url: URL, keepLast: Int) async throws -> Int32 {
        let log: CappedLog
        do {
            log = try CappedLog(url: url, keepLast: keepLast)
        } catch {
            throw CommandError.couldNotStart(command, "cannot open \(url.path): \(error)")
        }
        defer { log.close() }
        return try await send(command) { log.append($0) }
    }

    /// Output and errors together, chunk by chunk, to `receive`.
    private func send(_ command: Command, _ receive: @escaping @Sendable (Data) -> Void) async throws -> Int32 {
        do {
            let (executable, arguments) = launch(command)
            let result = try await Subprocess.run(
                executable,
                arguments: arguments,
                environment: try Self.environment(command),
                input: .none,
                output: .sequence,
                error: .combinedWithOutput
            ) { execution in
                for try await chunk in execution.standardOutput {
                    chunk.withUnsafeBytes { receive(Data($0)) }
                }
            }
            return Self.code(result.terminationStatus)
        } catch let error as SubprocessError {
            throw CommandError.couldNotStart(command, "\(error)")
        }
    }

    /// `nice` reports a command it cannot find (127) or run (126) in its own words: the same "could not
    /// start" as without it, so callers tell a missing docker or nginx from one that refused.
    private func throwIfNiceCouldNotStart(_ command: Command, _ result: CommandResult) throws {
        // nice names itself first ("nice: …" or "/usr/bin/nice: …"); the program's own 126 or 127 does not.
        guard niceness != nil, [126, 127].contains(result.exitCode), result.standardError.prefix(while: { $0 != ":" }).hasSuffix("nice") else {
            return
        }
        throw CommandError.couldNotStart(command, result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    private func launch(_ command: Command) -> (Executable, Arguments) {
        guard let niceness else {
            let executable: Executable = command.executable.contains("/") ? .path(FilePath(command.executable)) : .name(command.executable)
            return (executable, Arguments(command.arguments))
        }
        return (.name("nice"), Arguments(["-n", String(niceness), command.executable] + command.arguments))
    }

    /// What a child gets of serve's environment: what finding programs, docker and locales need, never the
    /// rest (serve's own variables hold the webhook secret, the admin token, the GitHub token…, and a PR's
    /// build can make the docker CLI read `/proc/self/environ`). The command's own variables come on top.
    static func inheritedVariables(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        environment.filter { name, _ in
            ["PATH", "HOME", "USER", "LANG", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "XDG_RUNTIME_DIR"].contains(name)
                || name.hasPrefix("LC_") || name.hasPrefix("DOCKER_")
        }
    }

    private static func environment(_ command: Command) throws -> Subprocess.Environment {
        var variables: [Subprocess.Environment.Key: String] = [:]
        for (name, value) in inheritedVariables().merging(command.environment, uniquingKeysWith: { _, own in own }) {
            guard let key = Subprocess.Environment.Key(rawValue: name) else {
                throw CommandError.couldNotStart(command, "invalid environment variable name \(name.debugDescription)")
            }
            variables[key] = value
        }
        return .custom(variables)
    }

    private static func code(_ status: TerminationStatus) -> Int32 {
        switch status {
        case .exited(let value): return value
        case .signaled(let signal): return 128 + signal
        }
    }
}

/// A log file that keeps its last `keepLast` bytes: appended to as output comes, and cut back to its tail
/// (on a line boundary where there is one) whenever it grows past twice that.
final class CappedLog: @unchecked Sendable {
    private let handle: FileHandle
    private let keepLast: Int
    private var size: Int

    /// Serialised by its one caller, the loop over a command's output.
    init(url: URL, keepLast: Int) throws {
        if !FileManager.default.fileExists(atPath: url.path) {
            FileManager.default.createFile(atPath: url.path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        handle = try FileHandle(forUpdating: url)
        size = Int(try handle.seekToEnd())
        self.keepLast = keepLast
    }

    func append(_ data: Data) {
        do {
            try handle.write(contentsOf: data)
            size += data.count
            if size > 2 * keepLast { try cut() }
        } catch {
            return  // the log is a courtesy: the command's result never depends on it
        }
    }

    private func cut() throws {
        try handle.seek(toOffset: UInt64(size - keepLast))
        var tail = try handle.readToEnd() ?? Data()
        if let newline = tail.firstIndex(of: 0x0A), newline - tail.startIndex < 4096 { tail = tail[(newline + 1)...] }
        let note = Data("[… the build log was cut here; it keeps its last \(keepLast) bytes …]\n".utf8)
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: note + tail)
        size = note.count + tail.count
    }

    func close() {
        try? handle.close()  // written already; closing cannot lose it
    }
}

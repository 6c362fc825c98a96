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

    public init(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:]) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
    }

    /// Builds a command from an argv array such as `["nginx", "-s", "reload"]` taken from configuration.
    public init(argv: [String], appending extra: [String] = []) {
        self.executable = argv.first ?? ""
        self.arguments = Array(argv.dropFirst()) + extra
        self.environment = [:]
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

    public var description: String {
        switch self {
        case .failed(let command, let result):
            // Only the head of the command: enough to tell which one failed, never a long argument list.
            let head = ([command.executable] + command.arguments.prefix(3)).joined(separator: " ")
            return "`\(head)` exited \(result.exitCode): \(result.message.suffix(2000))"
        case .couldNotStart(let command, let reason):
            return "could not start `\(command.executable)`: \(reason)"
        }
    }
}

/// The one place that starts processes.
public protocol CommandRunner: Sendable {
    func run(_ command: Command) async throws -> CommandResult
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

    public init(outputLimit: Int = 16 * 1024 * 1024) {
        self.outputLimit = outputLimit
    }

    public func run(_ command: Command) async throws -> CommandResult {
        let executable: Executable = command.executable.contains("/")
            ? .path(FilePath(command.executable)) : .name(command.executable)
        var environment = Subprocess.Environment.inherit
        if !command.environment.isEmpty {
            environment = environment.updating(
                Dictionary(uniqueKeysWithValues: command.environment.map { (Subprocess.Environment.Key(rawValue: $0.key) ?? "INVALID", Optional($0.value)) })
            )
        }
        do {
            let result = try await Subprocess.run(
                executable,
                arguments: Arguments(command.arguments),
                environment: environment,
                output: .string(limit: outputLimit),
                error: .string(limit: outputLimit)
            )
            let code: Int32
            switch result.terminationStatus {
            case .exited(let value): code = value
            case .signaled(let signal): code = 128 + signal
            }
            return CommandResult(
                exitCode: code,
                standardOutput: result.standardOutput,
                standardError: result.standardError
            )
        } catch let error as SubprocessError {
            throw CommandError.couldNotStart(command, "\(error)")
        }
    }
}

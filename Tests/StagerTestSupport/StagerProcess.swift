import Foundation
import StagerKit
import Subprocess

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// `stager serve` as a separate process, so it can be killed with SIGKILL mid-deploy and started again.
public final class StagerProcess: @unchecked Sendable {
    private let pid = PortBox()
    private let task: Task<Int32, any Error>

    /// The debug build beside the test runner, else the repository's `.build/debug/stager`.
    public static var binary: String {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("stager").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        return Fixtures.repoRoot.appendingPathComponent(".build/debug/stager").path
    }

    public init(binary: String = StagerProcess.binary, config: URL, environment: [String: String], log: URL) throws {
        let box = pid
        let logFD = try FileDescriptor.open(FilePath(log.path), .writeOnly, options: [.create, .append], permissions: [.ownerReadWrite])
        var env: [Subprocess.Environment.Key: String?] = [:]
        for (key, value) in environment { if let name = Subprocess.Environment.Key(rawValue: key) { env[name] = value } }
        let variables = env
        task = Task {
            let result = try await Subprocess.run(
                .path(FilePath(binary)),
                arguments: ["serve", "--config", config.path],
                environment: .inherit.updating(variables),
                input: .none,
                output: .fileDescriptor(logFD, closeAfterSpawningProcess: false),
                error: .fileDescriptor(logFD, closeAfterSpawningProcess: true)
            ) { execution in
                await box.set(Int(execution.processIdentifier.value))
            }
            switch result.terminationStatus {
            case .exited(let code): return code
            case .signaled(let signal): return 128 + signal
            }
        }
    }

    /// The process id, once it runs.
    public var processID: Int {
        get async throws { try await pid.wait() }
    }

    public func kill9() async throws {
        let value = try await pid.wait()
        kill(pid_t(value), SIGKILL)
        _ = try? await task.value
    }

    /// SIGTERM, then the exit status once it has stopped.
    @discardableResult
    public func terminate() async throws -> Int32 {
        let value = try await pid.wait()
        kill(pid_t(value), SIGTERM)
        return try await task.value
    }

    /// The exit status of a process that ends by itself (a refused configuration).
    public func exitStatus() async throws -> Int32 {
        try await task.value
    }
}

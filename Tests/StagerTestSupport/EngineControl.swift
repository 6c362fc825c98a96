import Foundation
import StagerKit

/// Stops and starts this machine's Docker engine, for the tests of an engine that goes away. Every
/// container on the engine stops with it, so these tests run alone, after the other suites
/// (`scripts/test` runs them in a second `swift test` with `STAGER_ENGINE_FAULT_TESTS=1`).
public enum EngineControl {
    public static var enabled: Bool {
        ProcessInfo.processInfo.environment["STAGER_ENGINE_FAULT_TESTS"] == "1"
    }

    private static let runner = SubprocessRunner()

    /// Whether `docker info` gets an answer from the engine.
    public static func answers() async -> Bool {
        (try? await runner.run(Command("docker", ["info", "--format", "{{.ServerVersion}}"])))?.succeeded == true
    }

    /// Stops dockerd by its pid (SIGTERM, as a service manager would) and waits until it has exited.
    public static func stop() async throws {
        let pidText = try String(contentsOfFile: "/var/run/docker.pid", encoding: .utf8)
        guard let pid = pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw EngineControlError("no pid in /var/run/docker.pid: \(pidText)")
        }
        guard kill(pid, SIGTERM) == 0 else { throw EngineControlError("kill \(pid): errno \(errno)") }
        let deadline = ContinuousClock.now + .seconds(60)
        while ProcessLiveness.isRunning(pid) {
            guard ContinuousClock.now < deadline else { throw EngineControlError("dockerd \(pid) still runs 60 s after SIGTERM") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Starts the engine the way `scripts/setup` does (it starts dockerd when `docker info` fails) and
    /// waits until it answers.
    public static func start() async throws {
        let setup = Fixtures.repoRoot.appendingPathComponent("scripts/setup").path
        let result = try await runner.run(Command(setup, []))
        guard result.succeeded, await answers() else {
            throw EngineControlError("scripts/setup did not bring the engine back: \(result.standardError)")
        }
    }

    /// Runs `body` with the engine stopped, and always starts it again, whatever `body` did.
    public static func whileStopped<T>(_ body: () async throws -> T) async throws -> T {
        try await stop()
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        try await start()
        return try result.get()
    }
}

public struct EngineControlError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

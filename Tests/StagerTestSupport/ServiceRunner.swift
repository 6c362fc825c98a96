import Logging
import ServiceLifecycle

/// Runs a service (a Hummingbird application) in a task and stops it the way SIGTERM stops `stager serve`:
/// gracefully. Cancelling the task instead drops connections the server accepted but had not handled yet,
/// and NIO traps on each ("Deinited NIOAsyncWriter without calling finish()"), taking the test run with it.
public final class ServiceRunner: Sendable {
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    public init(_ service: some Service, logger: Logger) {
        let group = ServiceGroup(configuration: .init(services: [service], logger: logger))
        self.group = group
        task = Task { try await group.run() }
    }

    /// Returns once the service has stopped.
    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value  // how it ended does not matter to a test that is done with it
    }
}

/// `withDeadline` ran out of time; the work was cancelled.
public struct DeadlineExceeded: Error, CustomStringConvertible {
    public var description: String { "did not finish in time" }
}

/// Runs `body`, cancelling it (and its timer once it ends) when `timeout` passes first.
func withDeadline<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw DeadlineExceeded() }
        return value
    }
}

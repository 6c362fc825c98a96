/// At most `limit` of something at a time (`docker build`s, `docker run`s); the others wait in the order
/// they asked. A waiter whose task is cancelled (a newer push) leaves the line.
public actor Slots {
    private let limit: Int
    private var running = 0
    private var waiting: [(id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextID = 0

    public init(limit: Int) {
        self.limit = limit
    }

    /// Builds waiting for a slot.
    public var queued: Int { waiting.count }

    public func acquire() async throws {
        if running < limit, waiting.isEmpty {
            running += 1
            return
        }
        nextID += 1
        let id = nextID
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    waiting.append((id, continuation))
                }
            }
        } onCancel: {
            Task { await self.leave(id) }
        }
    }

    /// Runs `body` holding a slot, and gives the slot back however `body` ends.
    public nonisolated func withSlot<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await acquire()
        let result = await Result { try await body() }
        await release()
        return try result.get()
    }

    public func release() {
        if waiting.isEmpty {
            running -= 1
        } else {
            // The slot passes straight to the next in line.
            waiting.removeFirst().continuation.resume()
        }
    }

    private func leave(_ id: Int) {
        guard let index = waiting.firstIndex(where: { $0.id == id }) else { return }
        waiting.remove(at: index).continuation.resume(throwing: CancellationError())
    }
}

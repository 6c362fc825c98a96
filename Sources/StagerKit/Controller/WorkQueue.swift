/// Pull requests waiting for the controller. A key is handed to one worker at a time; one enqueued while
/// a worker has it is handed out again when that worker is done, so no intent is missed.
public actor WorkQueue {
    private var waiting: [PullRequestKey] = []
    private var active: Set<PullRequestKey> = []
    private var again: Set<PullRequestKey> = []
    private var workers: [(id: Int, continuation: CheckedContinuation<PullRequestKey?, Never>)] = []
    private var nextWorkerID = 0
    private var closed = false

    public init() {}

    public var depth: Int { waiting.count }

    /// The keys waiting for a worker, in order.
    public var queued: [PullRequestKey] { waiting }

    public func enqueue(_ key: PullRequestKey) {
        guard !closed else { return }
        if active.contains(key) {
            again.insert(key)
        } else if !waiting.contains(key) {
            if workers.isEmpty {
                waiting.append(key)
            } else {
                active.insert(key)
                workers.removeFirst().continuation.resume(returning: key)
            }
        }
    }

    /// The next key to work on; nil once the queue is closed or the waiting task is cancelled.
    public func next() async -> PullRequestKey? {
        if closed || Task.isCancelled { return nil }
        if !waiting.isEmpty {
            let key = waiting.removeFirst()
            active.insert(key)
            return key
        }
        nextWorkerID += 1
        let id = nextWorkerID
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled {
                    continuation.resume(returning: nil)
                } else {
                    workers.append((id, continuation))
                }
            }
        } onCancel: {
            Task { await self.leave(id) }
        }
    }

    /// A cancelled worker stops waiting.
    private func leave(_ id: Int) {
        guard let index = workers.firstIndex(where: { $0.id == id }) else { return }
        workers.remove(at: index).continuation.resume(returning: nil)
    }

    public func done(_ key: PullRequestKey) {
        active.remove(key)
        if again.remove(key) != nil { enqueue(key) }
    }

    public func close() {
        closed = true
        for worker in workers { worker.continuation.resume(returning: nil) }
        workers.removeAll()
    }
}

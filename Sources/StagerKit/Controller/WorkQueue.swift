/// Pull requests waiting for the controller. A key is handed to one worker at a time; one enqueued while
/// a worker has it is handed out again when that worker is done, so no intent is missed.
public actor WorkQueue {
    private var waiting: [PullRequestKey] = []
    private var active: Set<PullRequestKey> = []
    private var again: Set<PullRequestKey> = []
    private var workers: [CheckedContinuation<PullRequestKey?, Never>] = []
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
                workers.removeFirst().resume(returning: key)
            }
        }
    }

    /// The next key to work on; nil once the queue is closed.
    public func next() async -> PullRequestKey? {
        if closed { return nil }
        if !waiting.isEmpty {
            let key = waiting.removeFirst()
            active.insert(key)
            return key
        }
        return await withCheckedContinuation { workers.append($0) }
    }

    public func done(_ key: PullRequestKey) {
        active.remove(key)
        if again.remove(key) != nil { enqueue(key) }
    }

    public func close() {
        closed = true
        for worker in workers { worker.resume(returning: nil) }
        workers.removeAll()
    }
}

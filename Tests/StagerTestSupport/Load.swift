import Foundation
import StagerKit

/// A bounded request load on loopback: a fixed rate, each request on its own connection, until told to
/// stop or its time limit passes (whichever comes first), so a test or the bench can never leave it running.
public enum Load {
    public struct Outcome: Sendable {
        /// The request's number, from 0 in the order sent (a load client sends it as `X-Load-Id`).
        public var id: Int
        /// nil when the request got no HTTP answer (refused, reset, timed out).
        public var status: Int?
        /// Why there was no answer.
        public var error: String?
        public var body: String
        public var latency: Duration
        /// When the request was sent, from the start of the load.
        public var sentAt: Duration
        public var ok: Bool { status == 200 }
    }

    public actor Switch {
        public private(set) var stopped = false
        public init() {}
        public func stop() { stopped = true }
    }

    public static func run(
        perSecond: Int,
        limit: Duration,
        until stop: Switch,
        _ request: @escaping @Sendable (_ id: Int) async throws -> ProbeAnswer
    ) async -> [Outcome] {
        let clock = ContinuousClock()
        let start = clock.now
        let interval = Duration.seconds(1) / perSecond
        return await withTaskGroup(of: Outcome.self) { group in
            var sent = 0
            while clock.now - start < limit, await !stop.stopped {
                let id = sent
                group.addTask {
                    let began = clock.now
                    let answer = await Result(catching: { try await request(id) })
                    return Outcome(
                        id: id,
                        status: try? answer.get().status,
                        error: answer.failureDescription,
                        body: (try? answer.get().body) ?? "",
                        latency: clock.now - began,
                        sentAt: began - start
                    )
                }
                sent += 1
                // Paced from the start, not from the last send, so slow answers do not lower the rate.
                let next = start + interval * sent
                if next > clock.now { try? await Task.sleep(until: next, clock: clock) }
            }
            var outcomes: [Outcome] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes.sorted { $0.sentAt < $1.sentAt }
        }
    }
}

extension Result where Failure == any Error {
    var failureDescription: String? {
        if case .failure(let error) = self { return "\(error)" }
        return nil
    }
}

import Foundation
import Logging
import ServiceLifecycle

/// Sends the notices the announcer left in the store to Slack's incoming webhook (the repository's own,
/// else `slack.webhook_url_env`): each once, retried with backoff on a 5xx, a 429 or no answer, given up on
/// another 4xx or after `maxAttempts`. A task of its own: a slow or failing Slack never holds a deploy up.
public final class SlackNotifier: Service, Sendable {
    private let config: StagerConfig
    private let store: Store
    private let poster: SlackPoster
    private let logger: Logger

    static let pollEvery: Duration = .milliseconds(250)
    /// Notices sent or given up are kept this long (for a look at what went out), then forgotten.
    static let keepFor: TimeInterval = 7 * 86400
    static let pruneEvery: Duration = .seconds(3600)
    static let maxAttempts = 8
    static let backoff = Backoff(first: .seconds(1), longest: .seconds(60))

    public init(config: StagerConfig, store: Store, poster: SlackPoster, logger: Logger) {
        self.config = config
        self.store = store
        self.poster = poster
        self.logger = logger
    }

    public func run() async throws {
        // Nothing to send without a webhook; a service that returned would stop serve, so it waits for the end.
        guard config.notifiesSlack else {
            try await gracefulShutdown()
            return
        }
        try await cancelWhenGracefulShutdown {
            var pruned = ContinuousClock.now - Self.pruneEvery
            while !Task.isCancelled {
                do {
                    if ContinuousClock.now - pruned >= Self.pruneEvery {
                        try await self.store.pruneNotifications(before: Date().addingTimeInterval(-Self.keepFor))
                        pruned = ContinuousClock.now
                    }
                    for pending in try await self.store.dueNotifications() { try await self.send(pending) }
                } catch is CancellationError {
                    return
                } catch {
                    self.logger.error("cannot read or record Slack notifications; trying again shortly", metadata: ["error": "\(error)"])
                }
                try await Task.sleep(for: Self.pollEvery)
            }
        }
    }

    private func send(_ pending: PendingNotice) async throws {
        guard let url = config.slackWebhook(for: pending.notice.repo) else {
            try await store.notificationAttempted(
                pending.id,
                sentAt: nil,
                retryAt: nil,
                failure: "no Slack webhook is configured for \(pending.notice.repo)"
            )
            return
        }
        let problem: String
        do {
            let status = try await poster.post(SlackMessage(text: pending.notice.text), to: url)
            if (200..<300).contains(status) {
                try await store.notificationAttempted(pending.id, sentAt: Date(), retryAt: nil, failure: nil)
                return
            }
            guard status >= 500 || status == 429 else {
                logger.error("Slack refused a notification; not retried", metadata: ["status": "\(status)", "event": "\(pending.notice.eventKey)"])
                try await store.notificationAttempted(pending.id, sentAt: nil, retryAt: nil, failure: "Slack answered \(status)")
                return
            }
            problem = "Slack answered \(status)"
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            problem = "no answer from Slack: \(error)"
        }
        let attempts = pending.attempts + 1
        guard attempts < Self.maxAttempts else {
            logger.error(
                "gave up a Slack notification",
                metadata: ["attempts": "\(attempts)", "event": "\(pending.notice.eventKey)", "error": "\(problem)"]
            )
            try await store.notificationAttempted(pending.id, sentAt: nil, retryAt: nil, failure: problem)
            return
        }
        let delay = Self.backoff.delay(after: attempts)
        logger.warning(
            "a Slack notification failed; retrying",
            metadata: ["event": "\(pending.notice.eventKey)", "error": "\(problem)", "retry_in": "\(delay)"]
        )
        try await store.notificationAttempted(pending.id, sentAt: nil, retryAt: Date().addingTimeInterval(delay.seconds), failure: nil)
    }
}

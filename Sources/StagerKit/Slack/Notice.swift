import Foundation

/// One Slack notification: an environment became ready, failed, or was removed. `eventKey` names the event
/// (PR, what happened, sha, desired version), so one event is never sent twice.
public struct Notice: Sendable, Equatable {
    public var eventKey: String
    public var repo: String
    public var text: String

    public init(eventKey: String, repo: String, text: String) {
        self.eventKey = eventKey
        self.repo = repo
        self.text = text
    }
}

/// A notice waiting in the store, with the attempts made so far.
public struct PendingNotice: Sendable, Equatable {
    public var id: Int64
    public var notice: Notice
    public var attempts: Int
}

/// Where the announcer leaves notices for `SlackNotifier` to send: the store in serve.
public protocol NoticeOutbox: Sendable {
    func enqueue(_ notice: Notice, at date: Date) async throws
}

extension Store: NoticeOutbox {}

import AsyncHTTPClient
import Foundation
import NIOCore

/// The one place that talks to Slack: a JSON `{"text": …}` (or a slash command's answer) POSTed to an
/// incoming webhook or a `response_url`.
public final class SlackPoster: Sendable {
    private let client: HTTPClient
    private let timeout: Duration
    /// Hidden from every message sent.
    private let secrets: SecretValues

    /// `client`: serve's outbound client (`HTTPClients`), which serve shuts down; each request has `timeout`.
    public init(client: HTTPClient, timeout: Duration = .seconds(5), secrets: SecretValues = .none) {
        self.client = client
        self.timeout = timeout
        self.secrets = secrets
    }

    /// The HTTP status Slack answered; throws when it did not answer in time (worth a retry, like a 5xx).
    public func post(_ message: SlackMessage, to url: URL) async throws -> Int {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        request.body = .bytes(ByteBuffer(string: secrets.mask(String(decoding: try encoder.encode(message), as: UTF8.self))))
        let response = try await client.execute(request, timeout: .nanoseconds(Int64(timeout.seconds * 1_000_000_000)))
        _ = try await response.body.collect(upTo: 64 * 1024)
        return Int(response.status.code)
    }
}

/// What Stager sends to Slack: a message, and for a slash command whether the channel sees it.
public struct SlackMessage: Codable, Sendable, Equatable {
    /// `ephemeral` (only who asked) or `in_channel`; nil for an incoming webhook.
    public var response_type: String?
    public var text: String

    public init(text: String, inChannel: Bool? = nil) {
        self.text = text
        response_type = inChannel.map { $0 ? "in_channel" : "ephemeral" }
    }
}

extension URL {
    /// Where Stager posts to Slack: https; http only to this machine (a stand-in in tests).
    var isSlackPostable: Bool {
        guard let host else { return false }
        return scheme == "https" || (scheme == "http" && ["127.0.0.1", "localhost", "::1"].contains(host))
    }
}

extension StagerConfig {
    /// The incoming webhook a repository's notices go to: its own, else the global one; nil: none.
    func slackWebhook(for repo: String) -> URL? {
        self.repo(repo)?.slackWebhookURL ?? slack.webhookURL
    }

    /// Whether any notice can go anywhere.
    var notifiesSlack: Bool {
        slack.webhookURL != nil || repos.values.contains { $0.slackWebhookURL != nil }
    }
}

import Foundation
import Hummingbird
import Logging

/// `POST /slack/commands`: a slash command as Slack sends it (a form body). The signature over the raw
/// body and the timestamp are checked first; anything else is 401 and does nothing.
public struct SlackController: Sendable {
    let signature: SlackSignature?
    let handler: SlackCommandHandler
    /// Where follow-ups may go, and the workspace whose commands are taken.
    let slack: StagerConfig.Slack
    let logger: Logger

    public func addRoutes(to router: Router<some RequestContext>) {
        router.post("/slack/commands") { request, _ in
            try await self.handle(request)
        }
    }

    static let maxBody = 64 * 1024

    func handle(_ request: Request) async throws -> Response {
        guard let signature else { throw HTTPError(.notFound, message: "Slack is not configured (slack.signing_secret_env)") }
        var request = request
        let body = Data(try await request.collectBody(upTo: Self.maxBody).readableBytesView)
        guard
            signature.isValid(
                signature: request.headers.value(named: "x-slack-signature"),
                timestamp: request.headers.value(named: "x-slack-request-timestamp"),
                body: body
            )
        else {
            logger.warning("refused a Slack command: missing, wrong or stale signature")
            throw HTTPError(.unauthorized, message: "missing, wrong or stale X-Slack-Signature")
        }
        let form = FormBody.fields(String(decoding: body, as: UTF8.self))
        if let team = slack.teamID, form["team_id"] != team {
            logger.warning("refused a Slack command from another workspace", metadata: ["team": "\(form["team_id"] ?? "")"])
            throw HTTPError(.forbidden, message: "commands are taken from the Slack workspace of slack.team_id only")
        }
        let caller = SlackCommandHandler.Caller(
            userID: form["user_id"] ?? "",
            userName: form["user_name"] ?? "",
            responseURL: form["response_url"].flatMap { Self.responseURL($0, hosts: slack.responseHosts) }
        )
        let answer = await handler.answer(SlackCommand(text: form["text"] ?? ""), from: caller)
        return Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(answer)))
        )
    }

    /// A follow-up goes only to `slack.response_hosts` (host, or host:port): a signed command is still only
    /// as trustworthy as the secret, and its `response_url` would otherwise make serve POST anywhere.
    static func responseURL(_ text: String, hosts: [String]) -> URL? {
        guard let url = URL(string: text), url.isSlackPostable, let host = url.host?.lowercased() else { return nil }
        let named = url.port.map { "\(host):\($0)" } ?? host
        return hosts.contains(host) || hosts.contains(named) ? url : nil
    }
}

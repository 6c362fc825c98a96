import Foundation
import Hummingbird
import StagerKit

/// Slack's side, in process: incoming webhooks (`/hooks/NAME`) and slash commands' `response_url`s
/// (`/respond/ID`), answering as Slack does — a JSON body with a non-empty `text` is `200 ok`, anything else
/// `400 no_text` — and recording what it took. It can fail the next posts with a status, or hold them.
public actor SlackFake {
    public struct Post: Sendable, Equatable {
        public var path: String
        public var text: String
        public var responseType: String?
    }

    public private(set) var posts: [Post] = []
    /// Every POST that reached it, answered or not.
    public private(set) var attempts = 0
    private var failures: [Int] = []
    /// While set, every post is held unanswered; released, the held ones are answered 503 (Slack was down).
    private var holding = false

    public init() {}

    /// The next `count` posts are answered `status` and not recorded.
    public func fail(_ count: Int, status: Int = 500) { failures += Array(repeating: status, count: count) }

    /// Holds every post unanswered until `release`: a Slack that hangs.
    public func hold() { holding = true }

    public func release() { holding = false }

    public func posts(to path: String) -> [Post] { posts.filter { $0.path == path } }

    public func start() async throws -> (url: URL, server: ServiceRunner) {
        let router = Router()
        for prefix in ["/hooks/:name", "/respond/:id"] {
            router.post(RouterPath(prefix)) { request, _ in try await self.take(request) }
        }
        let port = PortBox()
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "slack-fake"),
            onServerRunning: { channel in await port.set(channel.localAddress?.port ?? 0) },
            logger: .init(label: "slack-fake")
        )
        let server = ServiceRunner(app, logger: .init(label: "slack-fake"))
        guard let url = URL(string: "http://127.0.0.1:\(try await port.wait())") else { throw URLError(.badURL) }
        return (url, server)
    }

    private func take(_ request: Request) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: 1024 * 1024)
        attempts += 1
        if holding {
            while holding { try await Task.sleep(for: .milliseconds(50)) }
            return Self.answer(.serviceUnavailable, "internal_error")
        }
        if !failures.isEmpty {
            return Self.answer(HTTPResponse.Status(code: failures.removeFirst()), "internal_error")
        }
        struct Message: Decodable {
            var text: String?
            var response_type: String?
        }
        guard request.headers[.contentType]?.hasPrefix("application/json") == true,
            let message = try? JSONDecoder().decode(Message.self, from: Data(body.readableBytesView)), let text = message.text, !text.isEmpty
        else {
            return Self.answer(.badRequest, "no_text")
        }
        posts.append(Post(path: request.uri.path, text: text, responseType: message.response_type))
        return Self.answer(.ok, "ok")
    }

    private static func answer(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

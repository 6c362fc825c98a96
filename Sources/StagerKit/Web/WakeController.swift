import Foundation
import Hummingbird
import Logging

/// `GET /_stager/wake/SLUG`: where a sleeping environment's vhost sends its requests. The first one records
/// the wake; each GET or HEAD is held until the app answers its health path and then handed back to nginx
/// (`X-Accel-Redirect` to the port it answers on), so the app itself answers it; other methods get 503 and
/// `Retry-After`. Only nginx knows the token the vhost carries.
public struct WakeController: Sendable {
    let wakePath: WakePath
    let store: Store
    let controller: Controller
    let logger: Logger

    public func addRoutes(to router: Router<some RequestContext>) {
        router.get("\(WakePath.route)/:slug") { request, context in
            try await self.handle(request, slug: context.parameters.get("slug") ?? "")
        }
    }

    static let retryAfterSeconds = 2
    /// Where the vhost's internal location hands a request to the app at `upstream`.
    static func location(of upstream: Upstream) -> String { "/.stager-upstream/\(upstream.host)/\(upstream.port)" }

    func handle(_ request: Request, slug: String) async throws -> Response {
        guard ConstantTime.equal(request.headers.value(named: WakePath.tokenHeader) ?? "", wakePath.token) else {
            return Self.text(.forbidden, "only nginx's vhost of a sleeping environment wakes it\n")
        }
        guard Slug.isValidLabel(slug), let env = try await store.liveEnvironment(slug: slug), env.desired == .present else {
            return Self.text(.notFound, "no environment is at \(slug)\n")
        }
        let key = env.key
        if env.asleep, case .accepted = try await store.accept(Intents.wake(env, source: .request, actor: "a request to \(slug)")) {
            // Only the request that recorded the wake clears the last outcome; those after it wait for this one's.
            await controller.wakes.forget(key)
            await controller.enqueue(key)
            logger.info("waking", metadata: ["repo": "\(key.repo)", "pr": "\(key.number)"])
        }
        let method = request.headers.value(named: WakePath.methodHeader) ?? "GET"
        guard method == "GET" || method == "HEAD" else {
            return Response(status: .serviceUnavailable,
                            headers: [.retryAfter: String(Self.retryAfterSeconds), .contentType: "text/plain; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: "\(slug) is waking up; send the \(method) again in a moment\n")))
        }
        // Nothing is under way to wait for: a wake that failed before this serve started, or one already done.
        if await controller.wakes.outcome(for: key) == nil, !env.asleep {
            if env.status == .failed { return failedPage(env, reason: env.failureReason ?? "the wake failed") }
            if env.status == .ready, let port = env.hostPort { return Self.handBack(Upstream(host: env.hostAddress ?? Upstream.loopback, port: port)) }
        }
        switch await controller.wakes.wait(for: key, timeout: wakePath.holdFor) {
        case .awake(let upstream): return Self.handBack(upstream)
        case .failed(let reason): return failedPage(env, reason: reason)
        case nil: return failedPage(env, reason: "it did not wake within \(wakePath.holdFor) (sleep.wake_timeout)")
        }
    }

    private static func handBack(_ upstream: Upstream) -> Response {
        var headers = HTTPFields()
        if let name = HTTPFields.Element.Name("X-Accel-Redirect") { headers[name] = location(of: upstream) }  // a valid name: never nil
        return Response(status: .ok, headers: headers)
    }

    /// A short page naming the environment and why it did not wake.
    private func failedPage(_ env: Environment, reason: String) -> Response {
        let page = """
        <!doctype html>
        <meta charset="utf-8"><title>\(env.slug) could not wake</title>
        <h1>The preview \(Self.escaped(env.slug)) of \(Self.escaped(env.key.description)) could not wake</h1>
        <p>\(Self.escaped(reason))</p>
        <p><a href="\(Self.escaped(controller.config.server.environmentPage(env.key)))">Its page on the Stager dashboard</a></p>

        """
        return Response(status: .badGateway, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: page)))
    }

    private static func text(_ status: HTTPResponse.Status, _ message: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: message)))
    }

    static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

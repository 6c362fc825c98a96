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
    let limits: WakeLimits
    let secrets: SecretValues
    let logger: Logger

    public func addRoutes(to router: Router<some RequestContext>) {
        router.get("\(WakePath.route)/:slug") { request, context in
            try await self.handle(request, slug: context.parameters.get("slug") ?? "")
        }
    }

    static let retryAfterSeconds = 2
    /// Where the vhost's internal location hands a request to the app at `upstream`: behind the slug's own key.
    static func location(of upstream: Upstream, slug: String, keys: VhostKeys) -> String {
        "/.stager-upstream/\(keys.handBack(slug: slug))/\(upstream.host)/\(upstream.port)"
    }

    func handle(_ request: Request, slug: String) async throws -> Response {
        // The key names the slug: a vhost (or whoever read one) wakes its own environment and no other.
        guard Slug.isValidLabel(slug), ConstantTime.equal(request.headers.value(named: WakePath.tokenHeader) ?? "", wakePath.keys.wake(slug: slug))
        else {
            return Self.text(.forbidden, "only nginx's vhost of a sleeping environment wakes it\n")
        }
        guard let env = try await store.liveEnvironment(slug: slug), env.desired == .present else {
            return Self.text(.notFound, "no environment is at \(slug)\n")
        }
        // A stranger's flood is answered at once instead of held: serve's memory and the engine stay bounded.
        guard let hold = limits.hold() else {
            return Self.retryLater("too many requests are waiting for previews to wake; try again in a moment\n")
        }
        defer { hold.release() }
        let key = env.key
        if env.asleep, !limits.mayWake(key) {
            return Self.retryLater("too many previews woke in the last minute; try again in a moment\n")
        }
        if env.asleep, case .accepted = try await store.accept(Intents.wake(env, source: .request, actor: "a request to \(slug)")) {
            // Only the request that recorded the wake clears the last outcome; those after it wait for this one's.
            await controller.wakes.forget(key)
            await controller.enqueue(key)
            logger.info("waking", metadata: ["repo": "\(key.repo)", "pr": "\(key.number)"])
        }
        let method = request.headers.value(named: WakePath.methodHeader) ?? "GET"
        guard method == "GET" || method == "HEAD" else {
            return Self.retryLater("\(slug) is waking up; send the \(method) again in a moment\n")
        }
        // Nothing is under way to wait for: a wake that failed before this serve started, or one already done.
        if await controller.wakes.outcome(for: key) == nil, !env.asleep {
            if env.status == .failed { return failedPage(env, reason: env.failureReason ?? "the wake failed") }
            if env.status == .ready, let port = env.hostPort {
                return handBack(Upstream(host: env.hostAddress ?? Upstream.loopback, port: port), slug: slug)
            }
        }
        switch await controller.wakes.wait(for: key, timeout: wakePath.holdFor) {
        case .awake(let upstream): return handBack(upstream, slug: slug)
        case .failed(let reason): return failedPage(env, reason: reason)
        case nil: return failedPage(env, reason: "it did not wake within \(wakePath.holdFor) (sleep.wake_timeout)")
        }
    }

    private func handBack(_ upstream: Upstream, slug: String) -> Response {
        var headers = HTTPFields()
        // a valid name: never nil
        if let name = HTTPFields.Element.Name("X-Accel-Redirect") { headers[name] = Self.location(of: upstream, slug: slug, keys: wakePath.keys) }
        return Response(status: .ok, headers: headers)
    }

    private static func retryLater(_ message: String) -> Response {
        Response(
            status: .serviceUnavailable,
            headers: [.retryAfter: String(retryAfterSeconds), .contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: message))
        )
    }

    /// A short page naming the environment and why it did not wake.
    private func failedPage(_ env: Environment, reason: String) -> Response {
        let page = """
            <!doctype html>
            <meta charset="utf-8"><title>\(env.slug) could not wake</title>
            <h1>The preview \(HTMLEscaping.escape(env.slug)) of \(HTMLEscaping.escape(env.key.description)) could not wake</h1>
            <p>\(HTMLEscaping.escape(reason))</p>
            <p><a href="\(HTMLEscaping.escape(controller.config.server.environmentPage(env.key)))">Its page on the Stager dashboard</a></p>

            """
        return DashboardController.page(secrets.mask(page), status: .badGateway)
    }

    private static func text(_ status: HTTPResponse.Status, _ message: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: message)))
    }
}

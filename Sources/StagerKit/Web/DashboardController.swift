import Foundation
import Hummingbird

/// The read side: dashboard, JSON API, metrics and health.
public struct DashboardController: Sendable {
    let config: StagerConfig
    let store: Store
    let templates: Templates
    let metrics: StagerMetrics
    let engineHealth: EngineHealth

    public func addRoutes(to router: Router<some RequestContext>) {
        router.get("/healthz") { _, _ in "ok\n" }
        let router = router.group().add(middleware: AdminTokenCheck(token: config.server.adminToken))
        router.get("/api/environments") { _, _ in
            try self.json(await self.views())
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: self.metrics.render())))
        }
        router.get("/") { _, _ in
            let degraded = await self.degraded()
            let views = try EnvironmentView.current(in: self.store, preview: self.config.preview, degraded: degraded)
            let rows: [[String: Any]] = views.map { view in
                [
                    "repo": view.repo, "number": view.number, "title": view.title, "branch": view.branch,
                    "status": view.status, "url": view.url ?? "", "short_sha": String(view.sha.prefix(12)),
                    "updated_at": view.updated_at, "failure_reason": view.failure_reason ?? "",
                    "comment_body": view.comment_body ?? "",
                ]
            }
            let html = self.templates.dashboard.render([
                "environments": rows, "has_environments": !rows.isEmpty, "degraded": degraded ?? "",
            ])
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: html)))
        }
    }

    func views() async throws -> [EnvironmentView] {
        try EnvironmentView.current(in: store, preview: config.preview, degraded: await degraded())
    }

    func degraded() async -> String? {
        await engineHealth.down.map { EngineHealth.describe($0) }
    }

    private func json(_ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: try encoder.encode(value))))
    }
}

/// With `server.admin_token_env` set, the dashboard, the API and /metrics need the token: as a bearer token
/// for scripts, or as the password of basic auth (any user name) so a browser can ask for it.
struct AdminTokenCheck<Context: RequestContext>: RouterMiddleware {
    let token: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token else { return try await next(request, context) }
        let header = request.headers[.authorization] ?? ""
        var offered = ""
        if header.hasPrefix("Bearer ") {
            offered = String(header.dropFirst("Bearer ".count))
        } else if header.hasPrefix("Basic "), let data = Data(base64Encoded: String(header.dropFirst("Basic ".count))),
                  let pair = String(data: data, encoding: .utf8), let colon = pair.firstIndex(of: ":") {
            offered = String(pair[pair.index(after: colon)...])
        }
        guard Self.same(offered, token) else {
            return Response(status: .unauthorized, headers: [.wwwAuthenticate: "Basic realm=\"stager\", charset=\"UTF-8\"", .contentType: "text/plain; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: "the admin token is required (server.admin_token_env)\n")))
        }
        return try await next(request, context)
    }

    /// Compares in time that depends only on the lengths.
    static func same(_ offered: String, _ token: String) -> Bool {
        let a = Array(offered.utf8), b = Array(token.utf8)
        var difference = a.count ^ b.count
        for index in 0..<max(a.count, b.count) {
            difference |= Int((index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0))
        }
        return difference == 0
    }
}

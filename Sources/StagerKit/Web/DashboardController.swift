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

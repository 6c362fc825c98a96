import Foundation
import Hummingbird
import Logging

/// The read side: dashboard, environment pages, JSON API, metrics and health.
public struct DashboardController: Sendable {
    let config: StagerConfig
    let store: Store
    let templates: Templates
    let metrics: StagerMetrics
    let engineHealth: EngineHealth
    let runtime: any ContainerRuntime
    let logger: Logger
    /// The environment page's buttons; nil in commands that only read.
    var actions: DashboardActions? = nil

    /// Lines of the container log an environment page shows.
    static let logLines = 200

    public func addRoutes(to router: Router<some RequestContext>) {
        router.get("/healthz") { _, _ in "ok\n" }
        let router = router.group().add(middleware: AdminTokenCheck(token: config.server.adminToken))
        router.get("/api/environments") { request, _ in
            let filter = try self.filter(request)
            return try self.json(filter.apply(try await self.views()))
        }
        router.get("/api/environments/:owner/:name/:number") { _, context in
            guard let key = Self.key(context), let env = try self.store.environment(key) else {
                throw HTTPError(.notFound, message: "no such environment")
            }
            let detail = EnvironmentDetail(environment: EnvironmentView(env, config: self.config, degraded: await self.degraded()),
                                           events: try self.store.auditEvents(for: key, limit: 500).map(EventView.init))
            return try self.json(detail)
        }
        router.get("/api/events") { request, _ in
            let limit = try Self.limit(request)
            return try self.json(try self.store.auditEvents(limit: limit).map(EventView.init))
        }
        router.get("/metrics") { _, _ in
            do {
                let counts = Dictionary(grouping: try self.store.allEnvironments(), by: \.status.rawValue).mapValues(\.count)
                self.metrics.environments(byStatus: counts)
                self.metrics.storeUp(true)
            } catch {
                self.logger.error("metrics: cannot read the store", metadata: ["error": "\(error)"])
                self.metrics.storeUp(false)
            }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: self.metrics.render())))
        }
        router.get("/") { request, _ in
            let filter = try self.filter(request)
            let degraded = await self.degraded()
            let views = try EnvironmentView.current(in: self.store, config: self.config, degraded: degraded)
            let context = DashboardPages.dashboard(all: views, filter: filter, degraded: degraded, css: self.templates.css, now: Date(),
                                                   sharedHosts: DashboardPages.sharedHosts(self.config))
            return Self.html(self.templates.dashboard.render(emptyAsMissing: context))
        }
        router.get("/environments/:owner/:name/:number") { request, context in
            guard let key = Self.key(context), let env = try self.store.environment(key) else {
                throw HTTPError(.notFound, message: "no such environment")
            }
            let view = EnvironmentView(env, config: self.config, degraded: await self.degraded())
            let events = try self.store.auditEvents(for: key, limit: 500).map(EventView.init)
            let (log, problem) = await self.logTail(env)
            var context = DashboardPages.environment(view, events: events, log: log, logProblem: problem, css: self.templates.css, now: Date())
            context["build_log"] = ImageBuilder.tail(ImageBuilder.logFile(dataDir: self.config.dataDir, key: key), lines: Self.logLines,
                                                     secrets: [self.config.github.token].compactMap { $0 })
            let (forms, setCookie) = try self.actions?.formContext(env, request: request) ?? ([:], nil)
            context.merge(forms) { $1 }
            var page = Self.html(self.templates.environment.render(emptyAsMissing: context))
            if let setCookie { page.headers[.setCookie] = setCookie }
            return page
        }
        actions?.addRoutes(to: router)
    }

    func views() async throws -> [EnvironmentView] {
        try EnvironmentView.current(in: store, config: config, degraded: await degraded())
    }

    func degraded() async -> String? {
        await engineHealth.down.map { EngineHealth.describe($0) }
    }

    /// The container's last lines, or why there are none.
    private func logTail(_ env: Environment) async -> (String, String?) {
        guard let container = env.containerID ?? env.containerName else {
            return ("", env.status == .removed ? "the environment was removed" : "no container is running for this environment")
        }
        do {
            return (try await runtime.logTail(container, lines: Self.logLines), nil)
        } catch {
            return ("", "the container log could not be read: \(error)")
        }
    }

    private func filter(_ request: Request) throws -> EnvironmentFilter {
        do {
            return try EnvironmentFilter(repo: request.uri.queryParameters.get("repo"), status: request.uri.queryParameters.get("status"))
        } catch let problem as EnvironmentFilter.Problem {
            throw HTTPError(.badRequest, message: problem.description)
        }
    }

    static func limit(_ request: Request) throws -> Int {
        guard let text = request.uri.queryParameters.get("limit") else { return 100 }
        guard let limit = Int(text), (1...1000).contains(limit) else {
            throw HTTPError(.badRequest, message: "limit must be a number from 1 to 1000, got \"\(text)\"")
        }
        return limit
    }

    static func key(_ context: some RequestContext) -> PullRequestKey? {
        guard let owner = context.parameters.get("owner"), let name = context.parameters.get("name"),
              let number = context.parameters.get("number").flatMap(Int.init), number != 0 else { return nil }
        return PullRequestKey(repo: "\(owner)/\(name)", number: number)
    }

    static func html(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
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
        guard ConstantTime.equal(offered, token) else {
            return Response(status: .unauthorized, headers: [.wwwAuthenticate: "Basic realm=\"stager\", charset=\"UTF-8\"", .contentType: "text/plain; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: "the admin token is required (server.admin_token_env)\n")))
        }
        return try await next(request, context)
    }

}

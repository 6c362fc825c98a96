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
    let runtime: any StackRuntime
    let logger: Logger
    /// Hidden from every page and answer (a failure reason or a log that quotes one).
    var secrets: SecretValues = .none
    /// The environment page's buttons; nil in commands that only read.
    var actions: DashboardActions? = nil

    /// Lines of the container log an environment page shows.
    static let logLines = 200

    public func addRoutes(to router: Router<some RequestContext>) {
        router.get("/healthz") { _, _ in "ok\n" }
        let router = router.group().add(middleware: CrossSiteCheck(publicURL: config.server.publicURL))
            .add(middleware: AdminTokenCheck(token: config.server.adminToken))
        router.get("/api/environments") { request, _ in
            let filter = try self.filter(request)
            return try self.json(filter.apply(try await self.views()))
        }
        router.get("/api/environments/:owner/:name/:number") { _, context in
            guard let key = Self.key(context), let env = try self.store.environment(key) else {
                throw HTTPError(.notFound, message: "no such environment")
            }
            let detail = EnvironmentDetail(
                environment: EnvironmentView(
                    env,
                    config: self.config,
                    degraded: await self.degraded(),
                    routed: EnvironmentView.isRouted(env.slug, config: self.config)
                ),
                events: try self.store.auditEvents(for: key, limit: 500).map(EventView.init)
            )
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
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: self.metrics.render()))
            )
        }
        router.get("/") { request, _ in
            let filter = try self.filter(request)
            let degraded = await self.degraded()
            let views = try await EnvironmentView.current(in: self.store, config: self.config, degraded: degraded)
            let context = DashboardPages.dashboard(
                all: views,
                filter: filter,
                degraded: degraded,
                css: self.templates.css,
                now: Date(),
                sharedHosts: DashboardPages.sharedHosts(self.config)
            )
            return self.html(try self.templates.dashboard.render(encoded: context, emptyAsMissing: true))
        }
        router.get("/environments/:owner/:name/:number") { request, context in
            guard let key = Self.key(context), let env = try self.store.environment(key) else {
                throw HTTPError(.notFound, message: "no such environment")
            }
            let view = EnvironmentView(
                env,
                config: self.config,
                degraded: await self.degraded(),
                routed: EnvironmentView.isRouted(env.slug, config: self.config)
            )
            let events = try self.store.auditEvents(for: key, limit: 500).map(EventView.init)
            let (log, problem) = await self.logTail(env)
            var context = DashboardPages.environment(view, events: events, log: log, logProblem: problem, css: self.templates.css, now: Date())
            context.buildLog = ImageBuilder.tail(ImageBuilder.logFile(dataDir: self.config.dataDir, key: key), lines: Self.logLines)
            let (forms, setCookie) = try self.actions?.formContext(env, request: request) ?? (nil, nil)
            context.forms = forms
            var page = self.html(try self.templates.environment.render(encoded: context, emptyAsMissing: true))
            if let setCookie { page.headers[.setCookie] = setCookie }
            return page
        }
        actions?.addRoutes(to: router)
    }

    func views() async throws -> [EnvironmentView] {
        try await EnvironmentView.current(in: store, config: config, degraded: await degraded())
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
            let number = context.parameters.get("number").flatMap(Int.init), number != 0
        else { return nil }
        return PullRequestKey(repo: "\(owner)/\(name)", number: number)
    }

    func html(_ text: String) -> Response {
        Self.page(secrets.mask(text))
    }

    /// An HTML answer with the headers every page carries (`PageSecurity`).
    static func page(_ html: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers: HTTPFields = [.contentType: "text/html; charset=utf-8"]
        for (name, value) in PageSecurity.headers(for: html) {
            if let name = HTTPFields.Element.Name(name) { headers[name] = value }  // fixed, valid names
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    private func json(_ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let text = secrets.mask(String(decoding: try encoder.encode(value), as: UTF8.self))
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// With `server.admin_token_env` set, the dashboard, the API and /metrics need the token: as a bearer token
/// for scripts, or (where `acceptsBasic`, the pages and reads) as the password of basic auth (any user name)
/// so a browser can ask for it. A browser keeps basic auth and sends it with requests other sites' pages
/// make, so the API's writes take the bearer token only.
struct AdminTokenCheck<Context: RequestContext>: RouterMiddleware {
    let token: String?
    var acceptsBasic = true
    /// Requests through serve's Unix socket need no token.
    var local: LocalTrust? = nil

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token, local?.vouches(for: request) != true else { return try await next(request, context) }
        let header = request.headers[.authorization] ?? ""
        var offered = ""
        if header.hasPrefix("Bearer ") {
            offered = String(header.dropFirst("Bearer ".count))
        } else if acceptsBasic, header.hasPrefix("Basic "), let data = Data(base64Encoded: String(header.dropFirst("Basic ".count))),
            let pair = String(data: data, encoding: .utf8), let colon = pair.firstIndex(of: ":")
        {
            offered = String(pair[pair.index(after: colon)...])
        }
        guard ConstantTime.equal(offered, token) else {
            let challenge = acceptsBasic ? "Basic realm=\"stager\", charset=\"UTF-8\"" : "Bearer realm=\"stager\""
            let message =
                acceptsBasic
                ? "the admin token is required (server.admin_token_env)\n"
                : "the admin token is required as Authorization: Bearer <token> (server.admin_token_env); basic auth is not taken here\n"
            return Response(
                status: .unauthorized,
                headers: [.wwwAuthenticate: challenge, .contentType: "text/plain; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: message))
            )
        }
        return try await next(request, context)
    }
}

/// Every POST to the dashboard or the API must come from serve's own pages or from a script, never from
/// another site's page that an admin happens to visit: `Sec-Fetch-Site: cross-site` or `same-site` (previews
/// are same-site with the dashboard), or an `Origin` other than serve's own, is 403 and changes nothing.
struct CrossSiteCheck<Context: RequestContext>: RouterMiddleware {
    /// `server.public_url`'s origin; the request's own `Host` counts as well.
    let publicOrigin: String?

    init(publicURL: String) {
        publicOrigin = URL(string: publicURL).flatMap(Self.origin)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post else { return try await next(request, context) }
        if let site = request.headers.value(named: "sec-fetch-site")?.lowercased(), ["cross-site", "same-site"].contains(site) {
            return Self.refused("a POST from another site's page (Sec-Fetch-Site: \(site)) is refused")
        }
        if let origin = request.headers.value(named: "origin"), !isOwn(origin, host: request.head.authority) {
            return Self.refused("a POST from another origin (\(origin)) is refused")
        }
        return try await next(request, context)
    }

    func isOwn(_ origin: String, host: String?) -> Bool {
        let origin = origin.lowercased()
        if let publicOrigin, origin == publicOrigin { return true }
        guard let host = host?.lowercased() else { return false }
        return origin == "http://\(host)" || origin == "https://\(host)"
    }

    /// `scheme://host[:port]`, lower case, the port left out when it is the scheme's default.
    static func origin(_ url: URL) -> String? {
        guard let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased() else { return nil }
        let port = url.port.flatMap { (scheme == "http" && $0 == 80) || (scheme == "https" && $0 == 443) ? nil : $0 }
        return "\(scheme)://\(host)\(port.map { ":\($0)" } ?? "")"
    }

    private static func refused(_ message: String) -> Response {
        Response(
            status: .forbidden,
            headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: message + "\n"))
        )
    }
}

import Foundation
import Hummingbird
import NIOCore
import StagerKit

/// An in-process stand-in for GitHub's REST API, on a real socket. It answers and checks the way GitHub
/// does: bearer token, User-Agent, API version header, required body fields, status codes, pagination.
/// Tests script failures (5xx, rate limits) and read back what it holds.
public actor GitHubFake {
    public struct Comment: Sendable, Codable, Equatable {
        public var id: Int64
        public var body: String
        public var repo: String
        public var issue: Int
        /// Who wrote it: the token's own login unless a test seeds a stranger's.
        public var author = GitHubFake.login
    }

    /// The login the token acts as (`GET /user`).
    public static let login = "stager-bot"

    public struct Recorded: Sendable {
        public var method: String
        public var path: String
        public var status: Int
    }

    /// A canned answer served instead of the real one for the next matching requests.
    public struct Fault: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: String
        /// Only requests whose path contains this (and, when set, with this method) get the fault.
        public var pathContains: String
        public var method: String?
        /// The request is carried out (stored) first, and the fault is the answer: GitHub's "stored, then 500".
        public var afterStoring: Bool
        public init(
            status: Int,
            headers: [String: String] = [:],
            body: String = "{\"message\":\"Server Error\"}",
            pathContains: String = "",
            method: String? = nil,
            afterStoring: Bool = false
        ) {
            self.afterStoring = afterStoring
            self.status = status
            self.headers = headers
            self.body = body
            self.pathContains = pathContains
            self.method = method
        }
    }

    /// A pull request as the stand-in holds it.
    public struct Pull: Sendable {
        public var repo: String
        public var number: Int
        public var branch: String
        public var sha: String
        public var state: String
        public var merged: Bool
        public var updatedAt: String
        public var labels: [String] = []
    }

    /// A deployment as the stand-in holds it, with its statuses in the order they were posted.
    public struct Deployment: Sendable {
        public var id: Int64
        public var repo: String
        public var ref: String
        public var environment: String
        public var transient: Bool
        public var production: Bool
        public var autoMerge: Bool
        public var requiredContexts: [String]?
        /// The `payload` object as sent (GitHub stores it and answers it back).
        public var payload: [String: String]
        public var statuses: [DeploymentStatus]
    }

    public struct DeploymentStatus: Sendable, Equatable {
        public var state: String
        public var environmentURL: String
        public var logURL: String
        public var description: String
    }

    public let token: String
    public private(set) var deployments: [Deployment] = []
    public private(set) var comments: [Int64: Comment] = [:]
    public private(set) var requests: [Recorded] = []
    private var nextID: Int64 = 1000
    private var faults: [Fault] = []
    public private(set) var pulls: [String: Pull] = [:]
    /// Collaborators' permissions ("admin", "write", "read"…); anyone else has "none".
    public var permissions: [String: String] = [:]

    public func setPermission(_ user: String, _ permission: String) {
        permissions[user] = permission
    }

    public init(token: String) {
        self.token = token
    }

    public func inject(_ fault: Fault, times: Int = 1) {
        faults += Array(repeating: fault, count: times)
    }

    public func comments(on repo: String, issue: Int) -> [Comment] {
        comments.values.filter { $0.repo == repo && $0.issue == issue }.sorted { $0.id < $1.id }
    }

    public func count(_ method: String, pathSuffix: String = "") -> Int {
        requests.filter { $0.method == method && $0.path.hasSuffix(pathSuffix) }.count
    }

    public func setPull(
        repo: String = "acme/web",
        number: Int,
        branch: String,
        sha: String,
        state: String = "open",
        merged: Bool = false,
        updatedAt: String = "2026-11-24T09:00:00Z",
        labels: [String] = []
    ) {
        pulls["\(repo)#\(number)"] = Pull(
            repo: repo,
            number: number,
            branch: branch,
            sha: sha,
            state: state,
            merged: merged,
            updatedAt: updatedAt,
            labels: labels
        )
    }

    public func removePull(repo: String = "acme/web", number: Int) {
        pulls["\(repo)#\(number)"] = nil
    }

    public func seedComment(repo: String, issue: Int, body: String, author: String = GitHubFake.login) -> Int64 {
        nextID += 1
        comments[nextID] = Comment(id: nextID, body: body, repo: repo, issue: issue, author: author)
        return nextID
    }

    // MARK: Serving

    /// Starts the stand-in on 127.0.0.1 and returns its base URL and what stops it.
    public func start() async throws -> (url: URL, server: ServiceRunner) {
        let router = Router()
        router.add(middleware: GitHubChecks(fake: self))
        router.get("/user") { _, _ in
            try await self.json(["login": Self.login, "type": "User"], status: .ok, headers: [:])
        }
        router.get("/repos/:owner/:repo/issues/:number/comments") { request, context in
            try await self.list(request, context)
        }
        router.get("/repos/:owner/:repo/collaborators/:user/permission") { _, context in
            let user = context.parameters.get("user") ?? ""
            return try await self.json(["permission": self.permissions[user] ?? "none", "user": ["login": user]], status: .ok, headers: [:])
        }
        router.get("/repos/:owner/:repo/pulls") { request, context in
            try await self.listPulls(request, context)
        }
        router.get("/repos/:owner/:repo/pulls/:number") { request, context in
            try await self.getPull(request, context)
        }
        router.post("/repos/:owner/:repo/issues/:number/comments") { request, context in
            try await self.create(request, context)
        }
        router.patch("/repos/:owner/:repo/issues/comments/:id") { request, context in
            try await self.update(request, context)
        }
        router.delete("/repos/:owner/:repo/issues/comments/:id") { request, context in
            try await self.delete(request, context)
        }
        router.post("/repos/:owner/:repo/deployments") { request, context in
            try await self.createDeployment(request, context)
        }
        router.post("/repos/:owner/:repo/deployments/:id/statuses") { request, context in
            try await self.createDeploymentStatus(request, context)
        }
        router.get("/repos/:owner/:repo/deployments") { request, context in
            try await self.listDeployments(request, context)
        }
        router.get("/repos/:owner/:repo/deployments/:id/statuses") { request, context in
            try await self.listDeploymentStatuses(request, context)
        }
        let port = PortBox()
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "github-fake"),
            onServerRunning: { channel in await port.set(channel.localAddress?.port ?? 0) },
            logger: .init(label: "github-fake")
        )
        let server = ServiceRunner(app, logger: .init(label: "github-fake"))
        let bound = try await port.wait()
        guard let url = URL(string: "http://127.0.0.1:\(bound)") else { throw URLError(.badURL) }
        return (url, server)
    }

    func takeFault(method: String, path: String) -> Fault? {
        guard
            let index = faults.firstIndex(where: {
                (path.contains($0.pathContains) || $0.pathContains.isEmpty) && ($0.method == nil || $0.method == method)
            })
        else {
            return nil
        }
        return faults.remove(at: index)
    }

    func record(_ method: String, _ path: String, _ status: Int) {
        requests.append(Recorded(method: method, path: path, status: status))
    }

    private func repo(_ context: some RequestContext) -> String {
        "\(context.parameters.get("owner") ?? "")/\(context.parameters.get("repo") ?? "")"
    }

    private func list(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let repo = repo(context)
        let issue = Int(context.parameters.get("number") ?? "") ?? 0
        let perPage = min(request.uri.queryParameters.get("per_page", as: Int.self) ?? 30, 100)
        let page = max(request.uri.queryParameters.get("page", as: Int.self) ?? 1, 1)
        let all = comments(on: repo, issue: issue)
        let slice = Array(all.dropFirst((page - 1) * perPage).prefix(perPage))
        var headers: HTTPFields = [.contentType: "application/json"]
        if page * perPage < all.count {
            headers[HTTPFields.Element.Name("Link")!] =
                "<http://\(request.head.authority ?? "127.0.0.1")/repos/\(repo)/issues/\(issue)/comments?per_page=\(perPage)&page=\(page + 1)>; rel=\"next\""
        }
        return try json(slice.map(Self.render), status: .ok, headers: headers)
    }

    private func listPulls(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let repo = repo(context)
        let state = request.uri.queryParameters.get("state") ?? "open"
        guard ["open", "closed", "all"].contains(state) else { return Self.message(.unprocessableContent, "Validation Failed") }
        let perPage = min(request.uri.queryParameters.get("per_page", as: Int.self) ?? 30, 100)
        let page = max(request.uri.queryParameters.get("page", as: Int.self) ?? 1, 1)
        let all = pulls.values.filter { $0.repo == repo && (state == "all" || $0.state == state) }.sorted { $0.number > $1.number }
        let slice = Array(all.dropFirst((page - 1) * perPage).prefix(perPage))
        var headers: HTTPFields = [:]
        if page * perPage < all.count {
            headers[HTTPFields.Element.Name("Link")!] =
                "<http://\(request.head.authority ?? "127.0.0.1")/repos/\(repo)/pulls?state=\(state)&per_page=\(perPage)&page=\(page + 1)>; rel=\"next\""
        }
        return try json(slice.map(Self.render), status: .ok, headers: headers)
    }

    private func getPull(_ request: Request, _ context: some RequestContext) async throws -> Response {
        guard let pull = pulls["\(repo(context))#\(context.parameters.get("number") ?? "")"] else { return Self.notFound() }
        return try json(Self.render(pull), status: .ok, headers: [:])
    }

    private static func render(_ pull: Pull) -> [String: Any] {
        [
            "number": pull.number, "state": pull.state, "merged": pull.merged, "title": "PR \(pull.number)",
            "updated_at": pull.updatedAt, "user": ["login": "octocat"], "labels": pull.labels.map { ["name": $0] },
            "head": ["ref": pull.branch, "sha": pull.sha, "repo": ["full_name": pull.repo]],
            "base": ["ref": "main", "repo": ["full_name": pull.repo]],
        ]
    }

    private func create(_ request: Request, _ context: some RequestContext) async throws -> Response {
        guard let body = try await Self.bodyField(request) else { return Self.validationFailed() }
        nextID += 1
        let comment = Comment(id: nextID, body: body, repo: repo(context), issue: Int(context.parameters.get("number") ?? "") ?? 0)
        comments[comment.id] = comment
        return try json(Self.render(comment), status: .created, headers: [.location: "/repos/\(comment.repo)/issues/comments/\(comment.id)"])
    }

    private func update(_ request: Request, _ context: some RequestContext) async throws -> Response {
        guard let id = Int64(context.parameters.get("id") ?? ""), var comment = comments[id], comment.repo == repo(context) else {
            return Self.notFound()
        }
        guard let body = try await Self.bodyField(request) else { return Self.validationFailed() }
        comment.body = body
        comments[id] = comment
        return try json(Self.render(comment), status: .ok, headers: [:])
    }

    private func delete(_ request: Request, _ context: some RequestContext) async throws -> Response {
        guard let id = Int64(context.parameters.get("id") ?? ""), comments[id]?.repo == repo(context) else { return Self.notFound() }
        comments[id] = nil
        return Response(status: .noContent)
    }

    /// Checks the body the way GitHub does: `ref` required, every field of its documented type.
    private func createDeployment(_ request: Request, _ context: some RequestContext) async throws -> Response {
        guard let object = try await Self.bodyObject(request) else { return Self.message(.badRequest, "Problems parsing JSON") }
        guard let ref = object["ref"] as? String, !ref.isEmpty else {
            return Self.message(.unprocessableContent, "Invalid request.\n\n\"ref\" wasn't supplied.")
        }
        for flag in ["auto_merge", "transient_environment", "production_environment"] where object[flag] != nil && !(object[flag] is Bool) {
            return Self.message(.unprocessableContent, "Invalid request.\n\nFor '\(flag)', is not a boolean.")
        }
        if let payload = object["payload"], !(payload is [String: Any]) && !(payload is String) {
            return Self.message(.unprocessableContent, "Invalid request.\n\nFor 'payload', is not an object or a string.")
        }
        if let contexts = object["required_contexts"], !(contexts is [String]) {
            return Self.message(.unprocessableContent, "Invalid request.\n\nFor 'required_contexts', is not an array of strings.")
        }
        let autoMerge = object["auto_merge"] as? Bool ?? true
        let contexts = object["required_contexts"] as? [String]
        // GitHub merges the default branch first unless told not to, and checks every status context unless given [].
        if autoMerge { return Self.message(.conflict, "Conflict merging main into \(ref).") }
        if contexts == nil { return Self.message(.conflict, "Conflict: Commit status checks failed for \(ref).") }
        nextID += 1
        let environment = object["environment"] as? String ?? "production"
        let deployment = Deployment(
            id: nextID,
            repo: repo(context),
            ref: ref,
            environment: environment,
            transient: object["transient_environment"] as? Bool ?? false,
            production: object["production_environment"] as? Bool ?? (environment == "production"),
            autoMerge: autoMerge,
            requiredContexts: contexts,
            payload: (object["payload"] as? [String: Any])?.compactMapValues { $0 as? String } ?? [:],
            statuses: []
        )
        deployments.append(deployment)
        return try json(Self.render(deployment, authority: request.head.authority), status: .created, headers: [:])
    }

    private static func render(_ deployment: Deployment, authority: String?) -> [String: Any] {
        [
            "id": deployment.id, "sha": deployment.ref, "ref": deployment.ref, "environment": deployment.environment,
            "transient_environment": deployment.transient, "payload": deployment.payload,
            "statuses_url": "http://\(authority ?? "127.0.0.1")/repos/\(deployment.repo)/deployments/\(deployment.id)/statuses",
        ]
    }

    /// `GET …/deployments?sha=&environment=`, newest first, as GitHub lists them.
    private func listDeployments(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let sha = request.uri.queryParameters.get("sha")
        let environment = request.uri.queryParameters.get("environment")
        let matching = deployments.filter {
            $0.repo == repo(context) && (sha == nil || $0.ref == sha) && (environment == nil || $0.environment == environment)
        }
        return try json(matching.reversed().map { Self.render($0, authority: request.head.authority) }, status: .ok, headers: [:])
    }

    /// `GET …/deployments/{id}/statuses`, newest first.
    private func listDeploymentStatuses(_ request: Request, _ context: some RequestContext) async throws -> Response {
        guard let id = Int64(context.parameters.get("id") ?? ""),
            let deployment = deployments.first(where: { $0.id == id && $0.repo == repo(context) })
        else { return Self.notFound() }
        return try json(
            deployment.statuses.reversed().map { status -> [String: Any] in
                ["state": status.state, "description": status.description, "environment_url": status.environmentURL, "log_url": status.logURL]
            },
            status: .ok,
            headers: [:]
        )
    }

    private func createDeploymentStatus(_ request: Request, _ context: some RequestContext) async throws -> Response {
        guard let id = Int64(context.parameters.get("id") ?? ""),
            let index = deployments.firstIndex(where: { $0.id == id && $0.repo == repo(context) })
        else { return Self.notFound() }
        guard let object = try await Self.bodyObject(request) else { return Self.message(.badRequest, "Problems parsing JSON") }
        let states = ["error", "failure", "inactive", "in_progress", "queued", "pending", "success"]
        guard let state = object["state"] as? String, states.contains(state) else {
            return Self.message(.unprocessableContent, "Invalid request.\n\n\"state\" wasn't supplied or is not one of \(states).")
        }
        let description = object["description"] as? String ?? ""
        guard description.count <= 140 else {
            return Self.message(.unprocessableContent, "Validation Failed: description is too long (maximum is 140 characters)")
        }
        let status = DeploymentStatus(
            state: state,
            environmentURL: object["environment_url"] as? String ?? "",
            logURL: object["log_url"] as? String ?? "",
            description: description
        )
        deployments[index].statuses.append(status)
        nextID += 1
        return try json(
            ["id": nextID, "state": state, "environment_url": status.environmentURL, "log_url": status.logURL] as [String: Any],
            status: .created,
            headers: [.location: "/repos/\(repo(context))/deployments/\(id)/statuses/\(nextID)"]
        )
    }

    private static func bodyObject(_ request: Request) async throws -> [String: Any]? {
        var request = request
        let buffer = try await request.collectBody(upTo: 1 << 20)
        return try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any]
    }

    private static func bodyField(_ request: Request) async throws -> String? {
        try await bodyObject(request)?["body"] as? String
    }

    private static func render(_ comment: Comment) -> [String: String] {
        [
            "id": String(comment.id), "body": comment.body,
            "html_url": "https://github.com/\(comment.repo)/pull/\(comment.issue)#issuecomment-\(comment.id)",
            "user_login": comment.author,
        ]
    }

    private func json(_ value: Any, status: HTTPResponse.Status, headers: HTTPFields) throws -> Response {
        // ids are numbers in GitHub's JSON: turn the rendered strings back into integers.
        let fixed: Any
        if let list = value as? [[String: String]] {
            fixed = list.map(Self.numbered)
        } else if let one = value as? [String: String] {
            fixed = Self.numbered(one)
        } else {
            fixed = value
        }
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        let data = try JSONSerialization.data(withJSONObject: fixed)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(data: data)))
    }

    private static func numbered(_ rendered: [String: String]) -> [String: Any] {
        var out: [String: Any] = rendered
        if let id = rendered["id"].flatMap(Int64.init) { out["id"] = id }
        if let login = rendered["user_login"] {
            out["user_login"] = nil
            out["user"] = ["login": login, "type": "User"]
        }
        return out
    }

    static func notFound() -> Response {
        message(.notFound, "Not Found")
    }

    static func validationFailed() -> Response {
        message(.unprocessableContent, "Invalid request.\n\n\"body\" wasn't supplied.")
    }

    static func message(_ status: HTTPResponse.Status, _ text: String, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        let data = (try? JSONSerialization.data(withJSONObject: ["message": text])) ?? Data()
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(data: data)))
    }
}

/// GitHub's checks on every request, and the scripted faults.
struct GitHubChecks<Context: RequestContext>: RouterMiddleware {
    let fake: GitHubFake

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response = try await check(request, context: context, next: next)
        await fake.record(request.method.rawValue, request.uri.path, Int(response.status.code))
        return response
    }

    private func check(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let agent = request.headers[.userAgent], !agent.isEmpty else {
            return GitHubFake.message(.forbidden, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header")
        }
        guard request.headers[.authorization] == "Bearer \(fake.token)" else {
            return GitHubFake.message(.unauthorized, "Bad credentials")
        }
        guard request.headers[.accept] == "application/vnd.github+json" else {
            return GitHubFake.message(.badRequest, "Stager must ask for application/vnd.github+json")
        }
        if let version = request.headers[HTTPFields.Element.Name("X-GitHub-Api-Version")!], version != "2022-11-28" {
            return GitHubFake.message(.badRequest, "Unsupported 'X-GitHub-Api-Version' header")
        }
        if let fault = await fake.takeFault(method: request.method.rawValue, path: request.uri.path) {
            if fault.afterStoring { _ = try await next(request, context) }
            var headers = HTTPFields()
            for (name, value) in fault.headers { headers[HTTPFields.Element.Name(name)!] = value }
            headers[.contentType] = "application/json; charset=utf-8"
            return Response(status: .init(code: fault.status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: fault.body)))
        }
        return try await next(request, context)
    }
}

/// Hands the bound port from `onServerRunning` to whoever waits for it.
public actor PortBox {
    private var port: Int?
    private var waiters: [CheckedContinuation<Int, Never>] = []

    public init() {}

    public func set(_ value: Int) {
        port = value
        for waiter in waiters { waiter.resume(returning: value) }
        waiters.removeAll()
    }

    public func wait() async throws -> Int {
        if let port { return port }
        return await withCheckedContinuation { waiters.append($0) }
    }
}

import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1

public enum GitHubError: Error, CustomStringConvertible, Equatable {
    /// GitHub answered with a status Stager does not retry (401, 404, 410, 422…).
    case status(Int, String)
    /// Still rate limited or failing after every attempt.
    case gaveUp(String)
    /// A request that creates something got no clear answer (5xx, or none at all): GitHub may have stored
    /// it. It is not sent again blindly; `GitHubClient.create` looks first.
    case unclear(String)
    case badResponse(String)

    public var statusCode: Int? {
        if case .status(let code, _) = self { return code }
        return nil
    }

    public var description: String {
        switch self {
        case .status(let code, let message): return "GitHub answered \(code): \(message)"
        case .gaveUp(let reason): return "GitHub did not answer after retrying: \(reason)"
        case .unclear(let reason): return "GitHub gave no clear answer to a create: \(reason)"
        case .badResponse(let reason): return "unexpected answer from GitHub: \(reason)"
        }
    }
}

/// Sleeps; injected so retry tests do not wait for real.
public protocol Sleeper: Sendable {
    func sleep(for duration: Duration) async throws
}

public struct TaskSleeper: Sleeper {
    public init() {}
    public func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}

/// The one place that talks to GitHub's REST API: auth headers, pagination, retries with backoff that
/// honour rate-limit headers.
public struct GitHubClient: PermissionLookup, Sendable {
    public struct Comment: Sendable, Decodable, Equatable {
        public var id: Int64
        public var body: String?
        public var user: PullRequestEvent.User?
    }

    static let userAgent = "stager/0.1 (+https://github.com/stager)"
    /// A rate-limit wait longer than this gives up instead, and the caller retries later.
    static let longestWait: Duration = .seconds(60)

    let baseURL: URL
    let token: String
    let transport: Transport
    let timeout: TimeAmount
    let maxAttempts: Int
    let sleeper: any Sleeper
    let logger: Logger
    let metrics: StagerMetrics?
    /// Hidden from every body sent: a comment or a deployment status never carries a configured secret.
    let secrets: SecretValues
    /// GitHub asks integrations to make requests serially (secondary rate limits); a few at a time keeps a
    /// burst of comments from piling up, here and there.
    let inFlight = Slots(limit: 4)

    /// The client the configuration describes; nil when no token is configured.
    /// `client`: serve's outbound client, which serve shuts down; nil for a command that runs alone: it
    /// gets one of its own.
    public init?(
        config: StagerConfig.GitHub,
        client: HTTPClient? = nil,
        maxAttempts: Int? = nil,
        metrics: StagerMetrics? = nil,
        secrets: SecretValues = .none,
        logger: Logger
    ) {
        guard let token = config.token else { return nil }
        self.init(
            client: client,
            baseURL: config.apiURL,
            token: token,
            timeout: config.requestTimeout,
            maxAttempts: maxAttempts ?? config.maxAttempts,
            metrics: metrics,
            secrets: secrets,
            logger: logger
        )
    }

    public init(
        client: HTTPClient? = nil,
        baseURL: URL,
        token: String,
        timeout: Duration,
        maxAttempts: Int,
        sleeper: any Sleeper = TaskSleeper(),
        metrics: StagerMetrics? = nil,
        secrets: SecretValues = .none,
        logger: Logger
    ) {
        self.secrets = secrets
        self.baseURL = baseURL
        self.token = token
        self.transport = Transport(client: client)
        self.timeout = .nanoseconds(Int64(timeout.seconds * 1_000_000_000))
        self.maxAttempts = maxAttempts
        self.sleeper = sleeper
        self.metrics = metrics
        self.logger = logger
    }

    // MARK: Issue comments

    /// All comments of an issue or PR, following `Link: rel="next"`.
    public func listComments(_ key: PullRequestKey) async throws -> [Comment] {
        try await paginate(url(key.repoPath + ["issues", String(key.number), "comments"], query: "per_page=100"))
    }

    /// Posts a comment; after an unclear answer, `lookUp` tells whether it was stored before posting again.
    public func createComment(_ key: PullRequestKey, body: String, lookUp: @Sendable () async throws -> Comment?) async throws -> Comment {
        try await create(lookUp: lookUp) {
            let (data, _) = try await send(
                "POST",
                url(key.repoPath + ["issues", String(key.number), "comments"]),
                body: ["body": body],
                expecting: [201]
            )
            return try decode(Comment.self, data)
        }
    }

    public func updateComment(_ key: PullRequestKey, id: Int64, body: String) async throws -> Comment {
        let (data, _) = try await send(
            "PATCH",
            url(key.repoPath + ["issues", "comments", String(id)]),
            body: ["body": body],
            expecting: [200]
        )
        return try decode(Comment.self, data)
    }

    /// Deleting a comment that is already gone counts as done.
    public func deleteComment(_ key: PullRequestKey, id: Int64) async throws {
        do {
            _ = try await send("DELETE", url(key.repoPath + ["issues", "comments", String(id)]), body: nil, expecting: [204])
        } catch GitHubError.status(404, _) {
            return
        }
    }

    // MARK: Pull requests

    /// A pull request as `pulls/get` and `pulls/list` answer it.
    public struct PullRequest: Sendable, Decodable, Equatable {
        public var number: Int
        public var state: String
        public var merged: Bool?
        public var title: String?
        public var updated_at: String?
        public var head: PullRequestEvent.Ref
        public var user: PullRequestEvent.User?
        public var labels: [Label]?

        public struct Label: Sendable, Decodable, Equatable {
            public var name: String
        }

        public var isOpen: Bool { state == "open" }
    }

    /// The login the token acts as (`users/get-authenticated`): the sticky comment is the one this login wrote.
    public func authenticatedLogin() async throws -> String {
        struct User: Decodable { var login: String }
        let (data, _) = try await send("GET", url(["user"]), body: nil, expecting: [200])
        return try decode(User.self, data).login
    }

    public func confirmsLabel(_ label: String, sha: String, on key: PullRequestKey) async throws -> Bool {
        let pull: PullRequest
        do {
            pull = try await pullRequest(key)
        } catch GitHubError.status(404, _) {
            return false
        }
        return pull.isOpen && pull.head.sha == sha && (pull.labels ?? []).contains { $0.name == label }
    }

    public func pullRequest(_ key: PullRequestKey) async throws -> PullRequest {
        let (data, _) = try await send("GET", url(key.repoPath + ["pulls", String(key.number)]), body: nil, expecting: [200])
        return try decode(PullRequest.self, data)
    }

    /// Every open pull request of `repo`, following `Link: rel="next"`.
    public func openPullRequests(_ repo: String) async throws -> [PullRequest] {
        try await paginate(url(Self.repoPath(repo) + ["pulls"], query: "state=open&per_page=100"))
    }

    /// Whether the token can read `repo`'s pull requests (one small request, for `stager check`).
    public func canReadPullRequests(_ repo: String) async throws {
        _ = try await send(
            "GET",
            url(Self.repoPath(repo) + ["pulls"], query: "state=open&per_page=1"),
            body: nil,
            expecting: [200]
        )
    }

    // MARK: Collaborators

    /// `admin`, `maintain`, `write`, `triage`, `read` or `none`; a user GitHub does not know has `none`.
    public func permission(of user: String, in repo: String) async throws -> String {
        struct Answer: Decodable { var permission: String }
        do {
            let (data, _) = try await send("GET", url(Self.repoPath(repo) + ["collaborators", user, "permission"]), body: nil, expecting: [200])
            return try decode(Answer.self, data).permission
        } catch GitHubError.status(404, _) {
            return "none"
        }
    }

    // MARK: Creating

    /// Runs a create (a POST) at most once per unclear answer: after a 5xx or no answer, GitHub may have
    /// stored it, so `lookUp` asks first and only what is not there is created again, with backoff.
    func create<T: Sendable>(lookUp: @Sendable () async throws -> T?, post: @Sendable () async throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await post()
            } catch GitHubError.unclear(let problem) {
                guard attempt < maxAttempts else { throw GitHubError.gaveUp(problem) }
                logger.warning(
                    "GitHub create got no clear answer; looking before trying again",
                    metadata: ["attempt": "\(attempt)", "problem": "\(problem)"]
                )
                try await sleeper.sleep(for: Backoff.github.delay(after: attempt))
                attempt += 1
                if let stored = try await lookUp() { return stored }
            }
        }
    }

    static func queryValue(_ value: String) -> String {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+#")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }

}

/// When to retry a GitHub answer, and after how long (GitHub's documented rate-limit rules).
public enum RetryPolicy {
    public enum Decision: Equatable {
        case retry(after: Duration)
        case fail
    }

    public static func decide(status: Int, headers: (String) -> String?, attempt: Int, now: Date = Date()) -> Decision {
        switch status {
        case 403, 429:
            if let retryAfter = headers("retry-after").flatMap(Int.init) {
                return .retry(after: .seconds(max(retryAfter, 0)))
            }
            if headers("x-ratelimit-remaining") == "0", let reset = headers("x-ratelimit-reset").flatMap(Double.init) {
                return .retry(after: .milliseconds(max(Int64((reset - now.timeIntervalSince1970) * 1000), 0) + 1000))
            }
            // A 403 without rate-limit headers is a permission problem, not a limit.
            return status == 429 ? .retry(after: Backoff.github.delay(after: attempt)) : .fail
        case 500...599:
            return .retry(after: Backoff.github.delay(after: attempt))
        default:
            return .fail
        }
    }
}

extension GitHubClient {
    /// Owns the HTTP client: AsyncHTTPClient cancels a request cleanly with its task (URLSession on Linux
    /// crashed on cancellation), and it reads no proxy from the environment.
    final class Transport: Sendable {
        /// GitHub's answers are small JSON; a page of 100 comments stays far below this.
        static let largestBody = 16 * 1024 * 1024
        private let client: HTTPClient
        /// A command that runs alone owns its client; serve's client is serve's (`HTTPClients`).
        private let ownsClient: Bool

        init(client: HTTPClient?) {
            self.client = client ?? HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
            ownsClient = client == nil
        }

        deinit {
            // Finishes in the background: the client keeps itself alive until it is shut down.
            if ownsClient { client.shutdown { _ in } }
        }

        func execute(_ request: HTTPClientRequest, timeout: TimeAmount) async throws -> (status: Int, headers: HTTPHeaders, body: Data) {
            let response = try await client.execute(request, timeout: timeout)
            let body = try await response.body.collect(upTo: Self.largestBody)
            return (Int(response.status.code), response.headers, Data(buffer: body))
        }
    }
}

extension GitHubClient {
    static func repoPath(_ repo: String) -> [String] {
        ["repos"] + repo.split(separator: "/", maxSplits: 1).map(String.init)
    }
}

extension PullRequestKey {
    var repoPath: [String] { GitHubClient.repoPath(repo) }
}

extension CharacterSet {
    static let urlPathSegmentAllowed: CharacterSet = {
        var set = CharacterSet.urlPathAllowed
        set.remove("/")
        return set
    }()
}

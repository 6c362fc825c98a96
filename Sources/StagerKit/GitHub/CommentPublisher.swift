import Logging

/// Where the sticky PR comment goes: GitHub when a token is configured, else only the log (the dashboard
/// shows the body from the store either way).
public protocol CommentPublisher: Sendable {
    /// Creates or edits the one comment carrying the marker; returns its id when it has one.
    func publish(_ body: String, on key: PullRequestKey, knownID: Int64?) async throws -> Int64?
    func remove(on key: PullRequestKey, knownID: Int64?) async throws
}

public enum CommentMarker {
    public static let marker = "<!-- stager -->"
}

public struct GitHubCommentPublisher: CommentPublisher {
    private let client: GitHubClient
    /// The login Stager comments as, asked once: anyone can write the marker into a comment of their own,
    /// and such a comment is neither edited nor deleted.
    private let ownLogin: OwnLogin

    public init(client: GitHubClient) {
        self.client = client
        self.ownLogin = OwnLogin(client: client)
    }

    public func publish(_ body: String, on key: PullRequestKey, knownID: Int64?) async throws -> Int64? {
        if let knownID {
            do {
                return try await ownLogin.learn(from: client.updateComment(key, id: knownID, body: body)).id
            } catch GitHubError.status(404, _) {
                // Deleted by someone: fall through and find or create it again.
            }
        }
        // Look for the marker first, so a retry that raced a success never posts a second comment.
        if let existing = try await findSticky(key) {
            return try await ownLogin.learn(from: client.updateComment(key, id: existing.id, body: body)).id
        }
        // After an unclear answer the comment may be there already: the client looks again before posting.
        return try await ownLogin.learn(from: client.createComment(key, body: body, lookUp: { [self] in try await findSticky(key) })).id
    }

    public func remove(on key: PullRequestKey, knownID: Int64?) async throws {
        if let knownID {
            try await client.deleteComment(key, id: knownID)
        }
        // Bounded: a comment that keeps reappearing is someone else's problem, not a reason to spin.
        for _ in 0..<5 {
            guard let stray = try await findSticky(key) else { return }
            try await client.deleteComment(key, id: stray.id)
        }
    }

    /// The comment with the marker that Stager's own login wrote. Only while GitHub has not told Stager its
    /// login (a token `GET /user` refuses, before Stager's first comment of this run) does the marker alone
    /// decide.
    private func findSticky(_ key: PullRequestKey) async throws -> GitHubClient.Comment? {
        let login = await ownLogin.value()
        return try await client.listComments(key).first {
            $0.body?.contains(CommentMarker.marker) == true && (login == nil || $0.user?.login == login)
        }
    }
}

/// The token's login: asked of GitHub (`GET /user`), or learnt from a comment GitHub says Stager wrote.
actor OwnLogin {
    private let client: GitHubClient
    private var known: String?
    /// GitHub refused `GET /user` (an app's installation token does): not asked again.
    private var refused = false

    init(client: GitHubClient) {
        self.client = client
    }

    func value() async -> String? {
        guard known == nil, !refused else { return known }
        do {
            known = try await client.authenticatedLogin()
        } catch GitHubError.status {
            refused = true
        } catch {
            return nil  // unreachable or rate limited now: asked again next time
        }
        return known
    }

    /// The author of a comment Stager just created or edited is Stager's login.
    func learn(from comment: GitHubClient.Comment) -> GitHubClient.Comment {
        if known == nil { known = comment.user?.login }
        return comment
    }
}

public struct LogCommentPublisher: CommentPublisher {
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    public func publish(_ body: String, on key: PullRequestKey, knownID: Int64?) async throws -> Int64? {
        logger.info("PR comment (no GitHub token configured)", metadata: ["pr": "\(key)", "comment": "\(body)"])
        return nil
    }

    public func remove(on key: PullRequestKey, knownID: Int64?) async throws {
        logger.info("PR comment removed (no GitHub token configured)", metadata: ["pr": "\(key)"])
    }
}

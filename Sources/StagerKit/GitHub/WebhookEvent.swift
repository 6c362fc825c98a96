import Foundation
import Hummingbird

/// The parts of a `pull_request` delivery Stager uses. Decoding fails, naming the field, when a required
/// one is missing.
public struct PullRequestEvent: Sendable, Decodable, Equatable {
    public struct Repository: Sendable, Decodable, Equatable {
        public var full_name: String
        public var clone_url: String?
    }
    public struct Ref: Sendable, Decodable, Equatable {
        public var ref: String
        public var sha: String
        /// null when the fork was deleted.
        public var repo: Repository?
    }
    public struct User: Sendable, Decodable, Equatable {
        public var login: String
    }
    public struct PullRequest: Sendable, Decodable, Equatable {
        public var head: Ref
        public var title: String?
        public var user: User?
        public var updated_at: String?
        public var state: String?
        public var merged: Bool?
    }

    public struct Label: Sendable, Decodable, Equatable {
        public var name: String
    }

    /// The pull request's actions Stager acts on, decoded once; any other is kept by name.
    public enum Action: Sendable, Equatable, Decodable, CustomStringConvertible {
        case opened, reopened, synchronize, closed, labeled
        case other(String)

        public init(name: String) {
            switch name {
            case "opened": self = .opened
            case "reopened": self = .reopened
            case "synchronize": self = .synchronize
            case "closed": self = .closed
            case "labeled": self = .labeled
            default: self = .other(name)
            }
        }

        public init(from decoder: any Decoder) throws {
            self.init(name: try decoder.singleValueContainer().decode(String.self))
        }

        /// GitHub's name for it.
        public var description: String {
            switch self {
            case .opened: return "opened"
            case .reopened: return "reopened"
            case .synchronize: return "synchronize"
            case .closed: return "closed"
            case .labeled: return "labeled"
            case .other(let name): return name
            }
        }
    }

    public var action: Action
    public var number: Int
    public var pull_request: PullRequest
    public var repository: Repository
    public var sender: User?
    /// The label added or removed, in `labeled` and `unlabeled` events.
    public var label: Label? = nil

    public var key: PullRequestKey { PullRequestKey(repo: repository.full_name, number: number) }
}

/// The parts of a `push` delivery Stager uses: which branch moved, to which sha, or that it was deleted.
public struct PushEvent: Sendable, Decodable, Equatable {
    public var ref: String
    public var before: String?
    public var after: String
    public var deleted: Bool?
    public var repository: PullRequestEvent.Repository
    public var sender: PullRequestEvent.User?

    /// The branch of `refs/heads/<branch>`; nil for a tag.
    public var branch: String? {
        ref.hasPrefix("refs/heads/") ? String(ref.dropFirst("refs/heads/".count)) : nil
    }

    public var intent: Intent { deleted == true ? .teardown : .deploy(sha: after) }
}

/// What a delivery asks of an environment.
public enum Intent: Sendable, Equatable {
    case deploy(sha: String)
    case teardown
    /// Stop it until a request wakes it (idle, or `stager sleep`).
    case sleep
    /// Start what sleeps (a request to its URL, or `stager wake`).
    case wake

    /// opened/reopened/synchronize deploy, closed tears down; nil for every other action.
    public init?(action: PullRequestEvent.Action, sha: String) {
        switch action {
        case .opened, .reopened, .synchronize: self = .deploy(sha: sha)
        case .closed: self = .teardown
        case .labeled, .other: return nil
        }
    }
}

public enum WebhookPayload {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case notJSON
        case missingField(String)
        case notForm

        public var description: String {
            switch self {
            case .notJSON: return "the body is not a JSON object"
            case .missingField(let field): return "the payload has no valid \(field)"
            case .notForm: return "the form body has no payload parameter"
            }
        }
    }

    /// The JSON document of a delivery: the body itself, or the `payload` form field when GitHub is set to
    /// send `application/x-www-form-urlencoded`.
    public static func json(body: Data, contentType: String?) throws -> Data {
        let isForm = contentType?.lowercased().hasPrefix("application/x-www-form-urlencoded") ?? false
        guard isForm else { return body }
        struct Form: Decodable { var payload: String }
        // Whatever is wrong with the form (not UTF-8, bad escapes, no payload field), it carries no payload.
        guard let text = String(data: body, encoding: .utf8),
            let form = try? URLEncodedFormDecoder().decode(Form.self, from: text)
        else { throw Failure.notForm }  // the throw says it is not a form
        return Data(form.payload.utf8)
    }

    public static func decodePush(_ json: Data) throws -> PushEvent {
        try decode(PushEvent.self, json) { event in
            guard event.ref.hasPrefix("refs/"), isRef(event.ref) else { throw Failure.missingField("ref") }
            // A deleted branch's `after` is all zeros; any other push names a commit.
            guard isSha(event.after), event.deleted == true || event.after.contains(where: { $0 != "0" }) else { throw Failure.missingField("after") }
            try checkRepository(event.repository)
        }
    }

    public static func decodePullRequest(_ json: Data) throws -> PullRequestEvent {
        try decode(PullRequestEvent.self, json) { event in
            guard event.action != .other("") else { throw Failure.missingField("action") }
            guard event.number > 0 else { throw Failure.missingField("number") }
            guard isRef(event.pull_request.head.ref) else { throw Failure.missingField("pull_request.head.ref") }
            guard isSha(event.pull_request.head.sha) else { throw Failure.missingField("pull_request.head.sha") }
            try checkRepository(event.repository)
        }
    }

    /// The payload as `T` once `check` accepts it; a JSON document that lacks a field GitHub always sends
    /// names that field.
    private static func decode<T: Decodable>(_ type: T.Type, _ json: Data, check: (T) throws -> Void) throws -> T {
        guard (try? JSONSerialization.jsonObject(with: json)) is [String: Any] else { throw Failure.notJSON }  // the throw says it is not JSON
        do {
            let event = try JSONDecoder().decode(type, from: json)
            try check(event)
            return event
        } catch let error as DecodingError {
            throw Failure.missingField(error.keyPath)
        }
    }

    /// Git refuses control characters in a ref: a payload carrying one is not from GitHub.
    private static func isRef(_ ref: String) -> Bool {
        !ref.isEmpty && ref.utf8.count <= 1024 && !ref.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }

    private static func isSha(_ sha: String) -> Bool { sha.count >= 7 && sha.allSatisfy(\.isHexDigit) }

    private static func checkRepository(_ repository: PullRequestEvent.Repository) throws {
        guard repository.full_name.split(separator: "/").count == 2 else { throw Failure.missingField("repository.full_name") }
    }
}

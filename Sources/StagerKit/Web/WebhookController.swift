import Foundation
import Hummingbird
import Logging

/// `POST /webhook`: signature over the raw body first, then the event header, then decoding, then one
/// store transaction, and only then the answer.
public struct WebhookController: Sendable {
    let secrets: WebhookSecrets
    let maxBodyBytes: Int
    let config: StagerConfig
    let store: Store
    let controller: Controller
    let metrics: StagerMetrics
    let logger: Logger

    public func addRoutes(to router: Router<some RequestContext>) {
        router.post("/webhook") { request, context in
            let arrived = ContinuousClock.now
            defer { self.metrics.acknowledged(in: ContinuousClock.now - arrived) }
            return try await self.handle(request)
        }
    }

    func handle(_ request: Request) async throws -> Response {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: maxBodyBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            return reply(.contentTooLarge, "body is larger than \(maxBodyBytes) bytes", event: "unknown", outcome: "too_large")
        }
        let bytes = Data(body.readableBytesView)
        let eventName = request.headers.value(named: "x-github-event") ?? ""

        guard let scope = secrets.scope(header: request.headers.value(named: "x-hub-signature-256"), body: bytes) else {
            return reply(.unauthorized, "missing or invalid X-Hub-Signature-256", event: eventName, outcome: "bad_signature")
        }

        switch eventName {
        case "ping":
            return reply(.ok, "pong", event: eventName, outcome: "ping")
        case "pull_request":
            break
        case "push" where config.repos.values.contains(where: { !$0.branches.isEmpty }):
            // Without `branches` anywhere, a push is what it always was: an event Stager does not handle.
            return try await handlePush(request, bytes: bytes, scope: scope)
        case "":
            return reply(.badRequest, "missing X-GitHub-Event header", event: "unknown", outcome: "bad_request")
        default:
            return reply(.ok, "ignored: event \(eventName) is not handled", event: eventName, outcome: "ignored")
        }

        let event: PullRequestEvent
        do {
            event = try WebhookPayload.decodePullRequest(try WebhookPayload.json(body: bytes, contentType: request.headers[.contentType]))
        } catch let failure as WebhookPayload.Failure {
            return reply(.badRequest, failure.description, event: eventName, outcome: "bad_request")
        }
        if let refused = refusal(repo: event.repository.full_name, scope: scope, event: eventName) { return refused }
        // The deploy label on an open PR is a deploy intent; whether its sender may give it is checked later.
        let labeled = event.action == .labeled && event.label?.name == config.forks.label && event.pull_request.state != "closed"
        guard let intent = labeled ? .deploy(sha: event.pull_request.head.sha) : Intent(action: event.action, sha: event.pull_request.head.sha) else {
            // Not a change of desired state, but a sign of use: it keeps the environment from sleeping.
            try await store.recordActivity(event.key, at: Date())
            return reply(.ok, "ignored: action \(event.action) needs nothing", event: eventName, outcome: "ignored")
        }
        guard let deliveryID = deliveryID(request) else {
            return reply(.badRequest, "missing X-GitHub-Delivery header", event: eventName, outcome: "bad_request")
        }
        var change = DesiredStateChange(delivery: deliveryID, event: event, intent: intent)
        if labeled { change.labeledBy = event.sender?.login ?? "" } else { change.waitingLimit = waitingLimit(event) }
        return try await record(change, name: event.key.description, event: eventName, metadata: ["pr": "\(event.key.number)"])
    }

    /// Anyone can open fork PRs by the thousand, and each waiting one is a row and a comment: a PR that
    /// will wait for the label carries `forks.max_blocked`, and the store does not record a new one past it
    /// (in the delivery's own transaction: no read of its own on the webhook's path). Nothing is lost: the
    /// deploy label, when a writer adds it, records it then.
    private func waitingLimit(_ event: PullRequestEvent) -> Int? {
        guard let repo = config.repo(event.repository.full_name) else { return nil }
        let fork = event.pull_request.head.repo?.full_name != event.repository.full_name
        return repo.requireLabel || (fork && !repo.allowForks) ? config.forks.maxBlocked : nil
    }

    /// A push to a branch of `repos.X.branches` deploys its environment at `after`; a deleted branch removes it.
    /// Verified like every delivery, and deduplicated by its delivery id in the same store transaction.
    private func handlePush(_ request: Request, bytes: Data, scope: WebhookSecrets.Scope) async throws -> Response {
        let eventName = "push"
        let event: PushEvent
        do {
            event = try WebhookPayload.decodePush(try WebhookPayload.json(body: bytes, contentType: request.headers[.contentType]))
        } catch let failure as WebhookPayload.Failure {
            return reply(.badRequest, failure.description, event: eventName, outcome: "bad_request")
        }
        let repoName = event.repository.full_name
        if let refused = refusal(repo: repoName, scope: scope, event: eventName) { return refused }
        guard let branch = event.branch, config.repo(repoName)?.branches.contains(branch) == true else {
            return reply(.ok, "ignored: \(event.ref) is not a branch of \(repoName)'s branches", event: eventName, outcome: "ignored")
        }
        guard let deliveryID = deliveryID(request) else {
            return reply(.badRequest, "missing X-GitHub-Delivery header", event: eventName, outcome: "bad_request")
        }
        guard let key = try await store.branchKey(repo: repoName, branch: branch, create: event.deleted != true) else {
            return reply(.ok, "ignored: branch \(branch) of \(repoName) has no environment", event: eventName, outcome: "ignored")
        }
        var change = DesiredStateChange(
            id: deliveryID,
            key: key,
            intent: event.intent,
            pullRequest: PullRequestFacts(
                branch: branch,
                headSha: event.deleted == true ? event.before ?? "" : event.after,
                title: "branch \(branch)",
                author: event.sender?.login,
                headRepo: repoName,
                cloneURL: event.repository.clone_url
            ),
            action: event.deleted == true ? "deleted" : "pushed",
            source: .push
        )
        change.actor = event.sender?.login
        return try await record(change, name: "\(repoName)@\(branch)", event: eventName, metadata: ["branch": "\(branch)"])
    }

    /// `X-GitHub-Delivery`, unless it is missing or longer than any GitHub sends.
    private func deliveryID(_ request: Request) -> String? {
        guard let id = request.headers.value(named: "x-github-delivery"), !id.isEmpty, id.count <= 200 else { return nil }
        return id
    }

    /// The answer to a delivery for `repo` that is not taken: the repository is not configured, or has its own
    /// secret and the delivery was signed with another. Nil: taken.
    private func refusal(repo: String, scope: WebhookSecrets.Scope, event: String) -> Response? {
        guard config.repo(repo) != nil else {
            return reply(.ok, "ignored: repository \(repo) is not configured", event: event, outcome: "ignored")
        }
        guard scope == secrets.expected(for: repo) else {
            return reply(.unauthorized, "missing or invalid X-Hub-Signature-256", event: event, outcome: "bad_signature")
        }
        return nil
    }

    /// Records the change (one transaction) and answers what came of it; an accepted change goes to the controller.
    private func record(_ change: DesiredStateChange, name: String, event: String, metadata: Logger.Metadata) async throws -> Response {
        switch try await store.accept(change) {
        case .duplicate:
            return reply(.ok, "duplicate delivery \(change.id): already recorded", event: event, outcome: "duplicate")
        case .stale:
            return reply(.ok, "ignored: delivery is older than the state already recorded for \(name)", event: event, outcome: "stale")
        case .unchanged:
            return reply(.ok, "ignored: nothing changes for \(name)", event: event, outcome: "ignored")
        case .backlogFull(let waiting):
            return reply(
                .ok,
                "ignored: \(waiting) pull requests of \(change.key.repo) already wait for the \(config.forks.label) label (forks.max_blocked); the label deploys this one",
                event: event,
                outcome: "ignored"
            )
        case .accepted(let version):
            logger.info(
                "accepted",
                metadata: metadata.merging([
                    "repo": "\(change.key.repo)", "action": "\(change.action)", "delivery": "\(change.id)",
                    "version": "\(version)",
                ]) { $1 }
            )
            await controller.enqueue(change.key, firstIntent: version == 1)
            return reply(.accepted, "accepted: \(change.action) for \(name)", event: event, outcome: "accepted")
        }
    }

    /// The header is anyone's to write, signed or not: as a metric label it is one of a few words, so a
    /// stranger's deliveries cannot make new series.
    static func metricEvent(_ event: String) -> String {
        ["pull_request", "push", "ping"].contains(event) ? event : "other"
    }

    private func reply(_ status: HTTPResponse.Status, _ message: String, event: String, outcome: String) -> Response {
        metrics.webhook(event: Self.metricEvent(event), outcome: outcome)
        return Response(
            status: status,
            headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: message + "\n"))
        )
    }
}

extension HTTPFields {
    /// The first value of a header, by its lower-case name (header names are case-insensitive).
    func value(named lowercasedName: String) -> String? {
        first { $0.name.canonicalName == lowercasedName }?.value
    }
}

import Foundation
import StagerKit
import StagerTestSupport
import Testing

@Suite("Webhook payloads")
struct WebhookEventTests {
    static var sharedPayloads: [URL] {
        guard let shared = Fixtures.shared else { return [] }
        return ["webhooks", "webhooks-more"].flatMap { folder -> [URL] in
            let dir = shared.appendingPathComponent(folder)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            return names.filter { $0.hasPrefix("pull_request") || $0.contains(".pull_request.") }.sorted().map { dir.appendingPathComponent($0) }
        }
    }

    /// Every real pull_request payload decodes, and the action in its name maps to the right intent.
    @Test func everySharedPayloadDecodes() throws {
        let payloads = Self.sharedPayloads
        if Fixtures.shared != nil { #expect(payloads.count >= 30) }
        for url in payloads {
            let event = try WebhookPayload.decodePullRequest(Data(contentsOf: url))
            let name = url.lastPathComponent
            #expect(name.contains(".\(event.action).") || name.hasPrefix("pull_request.\(event.action)"), "\(name)")
            #expect(event.pull_request.head.sha.count == 40)
            let intent = Intent(action: event.action, sha: event.pull_request.head.sha)
            switch event.action {
            case .opened, .reopened, .synchronize: #expect(intent == .deploy(sha: event.pull_request.head.sha), "\(name)")
            case .closed: #expect(intent == .teardown, "\(name)")
            case .labeled, .other: #expect(intent == nil, "\(name)")
            }
        }
    }

    @Test func taskclusterDeliveryDecodes() throws {
        guard let shared = Fixtures.shared else { return }
        let body = try Data(contentsOf: shared.appendingPathComponent("deliveries/taskcluster.pull_request.closed.raw-body.json"))
        let event = try WebhookPayload.decodePullRequest(body)
        #expect(event.action == .closed)
        #expect(
            WebhookSignature(secret: "abc123").isValid(header: "sha256=69b1d63403d477559dca236914715878bc810bb4663cff556b3e4c784ea91084", body: body)
        )
    }

    @Test func ownSamplePayloadDecodes() throws {
        let event = try WebhookPayload.decodePullRequest(Fixtures.samplePayload)
        #expect(event.key == PullRequestKey(repo: "stager-demo/hello", number: 1))
        #expect(event.pull_request.head.ref == "feature/greeting")
        #expect(event.pull_request.updated_at == "2026-11-24T09:00:00Z")
    }

    @Test(arguments: [
        ("action", "action"), ("number", "number"), ("head.ref", "pull_request.head.ref"),
        ("head.sha", "pull_request.head.sha"), ("repository.full_name", "repository.full_name"),
    ])
    func missingRequiredFieldIsNamed(field: String, named: String) throws {
        var root = try #require(JSONSerialization.jsonObject(with: Fixtures.samplePayload) as? [String: Any])
        switch field {
        case "action", "number":
            root[field] = nil
        case "repository.full_name":
            var repository = try #require(root["repository"] as? [String: Any])
            repository["full_name"] = nil
            root["repository"] = repository
        default:
            var pr = try #require(root["pull_request"] as? [String: Any])
            var head = try #require(pr["head"] as? [String: Any])
            head[String(field.dropFirst("head.".count))] = nil
            pr["head"] = head
            root["pull_request"] = pr
        }
        let body = try JSONSerialization.data(withJSONObject: root)
        #expect(throws: WebhookPayload.Failure.missingField(named)) { try WebhookPayload.decodePullRequest(body) }
    }

    @Test func notJSONIsRejected() {
        #expect(throws: WebhookPayload.Failure.notJSON) { try WebhookPayload.decodePullRequest(Data("not json".utf8)) }
        #expect(throws: WebhookPayload.Failure.notJSON) { try WebhookPayload.decodePullRequest(Data("[1,2]".utf8)) }
    }

    @Test func formEncodedBodyCarriesThePayload() throws {
        let json = try WebhookPayload.json(body: Data("payload=%7B%22yo%22%3Atrue%7D".utf8), contentType: "application/x-www-form-urlencoded")
        #expect(String(decoding: json, as: UTF8.self) == "{\"yo\":true}")
        let plus = try WebhookPayload.json(body: Data("payload=%7B%22a%22%3A%22b+c%22%7D".utf8), contentType: "application/x-www-form-urlencoded")
        #expect(String(decoding: plus, as: UTF8.self) == "{\"a\":\"b c\"}")
        #expect(throws: WebhookPayload.Failure.notForm) {
            try WebhookPayload.json(body: Data("other=1".utf8), contentType: "application/x-www-form-urlencoded")
        }
    }
}

import Foundation
import Hummingbird

/// `POST /api/environments/OWNER/NAME/N/{deploy,destroy,sleep,wake}` with the admin token: the same
/// changes as the commands, answered 202 with the recorded status once serve has them to apply.
public struct ActionController: Sendable {
    let actions: EnvironmentActions
    let adminTokenSet: Bool

    /// `router`: the group behind the admin token.
    public func addRoutes(to router: RouterGroup<some RequestContext>) {
        router.post("/api/environments/:owner/:name/:number/:action") { request, context in
            guard self.adminTokenSet else {
                throw HTTPError(.forbidden, message: "actions need server.admin_token_env: without a token anyone could change environments")
            }
            guard let owner = context.parameters.get("owner"), let name = context.parameters.get("name"),
                let number = context.parameters.get("number").flatMap(Int.init), number != 0,  // a branch's environment's is negative
                let action = context.parameters.get("action").flatMap(EnvironmentActions.Action.init)
            else {
                throw HTTPError(.notFound, message: "no such action; POST …/deploy, …/destroy, …/sleep or …/wake")
            }
            var request = request
            let sha = try await Self.sha(in: try await request.collectBody(upTo: 4096))
            if sha != nil, action != .deploy { throw HTTPError(.badRequest, message: "only deploy takes a sha") }
            do {
                let env = try await self.actions.perform(
                    action,
                    on: PullRequestKey(repo: "\(owner)/\(name)", number: number),
                    sha: sha,
                    actor: Self.actor
                )
                return try Self.accepted(env)
            } catch let failure as EnvironmentActions.Failure {
                throw failure.httpError
            }
        }
    }

    static let actor = "admin API"

    /// `{"sha": "…"}`, or no body at all.
    static func sha(in body: ByteBuffer) async throws -> String? {
        guard body.readableBytes > 0 else { return nil }
        struct Body: Decodable { var sha: String? }
        do {
            return try JSONDecoder().decode(Body.self, from: Data(body.readableBytesView)).sha
        } catch {
            throw HTTPError(.badRequest, message: "the body must be JSON such as {\"sha\": \"…\"}, or empty")
        }
    }

    static func accepted(_ env: Environment) throws -> Response {
        struct Answer: Encodable {
            var status: String
            var sha: String
        }
        let data = try JSONEncoder().encode(Answer(status: env.status.rawValue, sha: env.desiredSha))
        return Response(status: .accepted, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension EnvironmentActions.Failure {
    /// 404 for an unknown environment, 400 for a sha it never had, 409 for a PR GitHub says is closed.
    var httpError: HTTPError {
        switch self {
        case .unknown: return HTTPError(.notFound, message: description)
        case .badSha: return HTTPError(.badRequest, message: description)
        case .refused: return HTTPError(.conflict, message: description)
        }
    }
}

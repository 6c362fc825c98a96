import Crypto
import Foundation
import Hummingbird

/// The environment page's buttons (with `server.admin_token_env`): Redeploy, Deploy a sha of its history,
/// Destroy, Sleep, Wake. Each form carries a CSRF token bound to the browser's session cookie; a POST
/// without the right one is 403 and changes nothing.
public struct DashboardActions: Sendable {
    let actions: EnvironmentActions
    /// Keys the CSRF tokens: a secret kept in the store, the same for every serve on it.
    private let secret: Data
    let enabled: Bool
    /// The session cookie carries `Secure` when the dashboard is reached over https.
    let secureCookie: Bool

    public init(actions: EnvironmentActions, secret: String, enabled: Bool, secureCookie: Bool = false) {
        self.actions = actions
        self.enabled = enabled
        self.secureCookie = secureCookie
        self.secret = Data(secret.utf8)
    }

    static let secretName = "dashboard.csrf"

    static let cookie = "stager_session"
    static let actor = "dashboard"

    /// `router`: the group behind the admin token.
    public func addRoutes(to router: RouterGroup<some RequestContext>) {
        router.post("/environments/:owner/:name/:number/actions/:action") { request, context in
            guard self.enabled else { throw HTTPError(.forbidden, message: "actions need server.admin_token_env") }
            guard let key = DashboardController.key(context),
                let action = context.parameters.get("action").flatMap(EnvironmentActions.Action.init)
            else {
                throw HTTPError(.notFound, message: "no such action")
            }
            var request = request
            let form = FormBody.fields(String(buffer: try await request.collectBody(upTo: 16 * 1024)))
            guard let session = Self.session(in: request), ConstantTime.equal(form["csrf"] ?? "", self.token(for: session)) else {
                throw HTTPError(.forbidden, message: "missing or wrong CSRF token: reload the environment's page and try again")
            }
            let sha = form["sha"].flatMap { $0.isEmpty ? nil : $0 }
            do {
                try await self.actions.perform(action, on: key, sha: action == .deploy ? sha : nil, actor: Self.actor)
            } catch let failure as EnvironmentActions.Failure {
                throw failure.httpError
            }
            return Response(status: .seeOther, headers: [.location: "/environments/\(key.repo)/\(key.number)#history"])
        }
    }

    /// What the environment page's forms name.
    struct Forms: Encodable {
        struct HistorySha: Encodable {
            var sha: String
            var short: String
            var serving: Bool
        }

        var actions = true
        var csrf: String
        var actionPath: String
        var historyShas: [HistorySha]
        var canSleep: Bool
        var canWake: Bool
        var live: Bool
        var inProgress: Bool
    }

    /// What the environment page needs for its forms, and the cookie to set when the browser had none.
    func formContext(_ env: Environment, request: Request) throws -> (forms: Forms?, setCookie: String?) {
        guard enabled else { return (nil, nil) }
        let existing = Self.session(in: request)
        let session = existing ?? RandomToken.hex()
        let shas = try actions.deployedShas(of: env.key)
        let forms = Forms(
            csrf: token(for: session),
            actionPath: "/environments/\(env.key.repo)/\(env.key.number)/actions",
            historyShas: shas.map { Forms.HistorySha(sha: $0, short: String($0.prefix(12)), serving: $0 == env.deployedSha) },
            canSleep: env.status == .ready,
            canWake: env.status == .sleeping,
            live: env.isLive,
            inProgress: [.queued, .building, .deploying, .removing].contains(env.status)
        )
        return (forms, existing == nil ? "\(Self.cookie)=\(session); Path=/; HttpOnly; SameSite=Strict\(secureCookie ? "; Secure" : "")" : nil)
    }

    func token(for session: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Data("csrf:\(session)".utf8), using: SymmetricKey(data: secret)).map { String(format: "%02x", $0) }
            .joined()
    }

    static func session(in request: Request) -> String? {
        for part in (request.headers[.cookie] ?? "").split(separator: ";") {
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if pair.count == 2, pair[0] == cookie, pair[1].allSatisfy(\.isHexDigit), !pair[1].isEmpty { return String(pair[1]) }
        }
        return nil
    }
}

/// `application/x-www-form-urlencoded`: `+` is a space, then percent-decoding; the first of a repeated name wins.
enum FormBody {
    static func fields(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            }
            if parts.count == 2, fields[parts[0]] == nil { fields[parts[0]] = parts[1] }
        }
        return fields
    }
}

import AsyncHTTPClient
import Foundation

extension GitHubClient {
    // MARK: Deployments

    struct NewDeployment: Encodable {
        var ref: String
        /// Names this request, so a deployment GitHub stored before answering 500 is found, not made twice.
        var payload: Payload
        var environment: String
        var description: String
        var transient_environment = true
        var production_environment = false
        // GitHub's default (true) would merge the base branch into the PR's branch first.
        var auto_merge = false
        // Omitted, GitHub would refuse to deploy until every status check passed; a preview does not wait.
        var required_contexts: [String] = []
    }

    struct NewDeploymentStatus: Encodable {
        var state: String
        var environment_url: String?
        var log_url: String?
        var description: String
    }

    struct Payload: Codable {
        var stager_request: String?
    }

    struct Deployment: Decodable {
        var id: Int64
        var payload: Payload?
    }

    /// Creates a deployment of `sha` to `environment` and returns its id: transient for a PR's preview, not
    /// for a branch's long-lived environment.
    public func createDeployment(_ repo: String, sha: String, environment: String, description: String, transient: Bool = true) async throws -> Int64
    {
        let request = UUID().uuidString.lowercased()
        let body = NewDeployment(
            ref: sha,
            payload: Payload(stager_request: request),
            environment: environment,
            description: String(description.prefix(140)),
            transient_environment: transient
        )
        let query = "sha=\(Self.queryValue(sha))&environment=\(Self.queryValue(environment))&per_page=100"
        return try await create(
            lookUp: {
                let listed: [Deployment] = try await paginate(url(Self.repoPath(repo) + ["deployments"], query: query))
                return listed.first { $0.payload?.stager_request == request }?.id
            },
            post: {
                let (data, _) = try await send("POST", url(Self.repoPath(repo) + ["deployments"]), body: body, expecting: [201])
                return try decode(Deployment.self, data).id
            }
        )
    }

    struct Status: Decodable {
        var state: String
        var description: String?
    }

    /// `state`: in_progress, success, failure, error or inactive (GitHub shows an inactive transient one as destroyed).
    public func createDeploymentStatus(
        _ repo: String,
        deployment id: Int64,
        state: String,
        environmentURL: String? = nil,
        logURL: String? = nil,
        description: String
    ) async throws {
        let body = NewDeploymentStatus(state: state, environment_url: environmentURL, log_url: logURL, description: String(description.prefix(140)))
        let path = Self.repoPath(repo) + ["deployments", String(id), "statuses"]
        // A deployment takes each state once in Stager's use, so the same state and description is the same status.
        try await create(
            lookUp: {
                let listed: [Status] = try await paginate(url(path, query: "per_page=100"))
                return listed.contains { $0.state == body.state && ($0.description ?? "") == body.description } ? () : nil
            },
            post: {
                _ = try await send("POST", url(path), body: body, expecting: [201])
            }
        )
    }
}

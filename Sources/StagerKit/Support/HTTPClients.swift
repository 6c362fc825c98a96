import AsyncHTTPClient
import Foundation
import ServiceLifecycle

/// The HTTP clients serve owns, shut down when it stops (a `Service` of its group): one for GitHub and
/// Slack, one for this machine's servers (health checks and nginx confirmation, never following
/// redirects). Commands that run alone give each part a client of its own instead.
public final class HTTPClients: Service, Sendable {
    public let outbound: HTTPClient
    public let local: HTTPClient

    public init(localTimeout: Duration = HTTPProbe.defaultTimeout) {
        outbound = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        local = .forThisMachine(timeout: localTimeout)
    }

    deinit {
        // An app that was built and never run (a route test): its clients go with it. After `run` this
        // finds them shut down already and does nothing.
        outbound.shutdown { _ in }
        local.shutdown { _ in }
    }

    public func run() async throws {
        try? await gracefulShutdown()  // throws only when cancelled: the clients are shut down all the same
        try await outbound.shutdown()
        try await local.shutdown()
    }
}

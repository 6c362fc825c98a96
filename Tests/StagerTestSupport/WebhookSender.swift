import AsyncHTTPClient
import Foundation
import NIOCore

/// POSTs to Stager's HTTP server the way GitHub delivers a webhook: a new connection per delivery. On
/// AsyncHTTPClient, because URLSession on Linux serializes requests through one curl handle and adds its
/// own milliseconds to every acknowledgement the bench measures.
public final class WebhookSender: Sendable {
    private let client: HTTPClient

    public init(timeout: Duration = .seconds(10)) {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        let limit = TimeAmount.nanoseconds(Int64(timeout.seconds * 1_000_000_000))
        configuration.timeout = .init(connect: limit, read: limit)
        configuration.connectionPool = .init(idleTimeout: .seconds(1), concurrentHTTP1ConnectionsPerHostSoftLimit: 1024)
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    deinit {
        // Finishes in the background: the client keeps itself alive until it is shut down.
        client.shutdown { _ in }
    }

    /// The status and body of the answer.
    public func post(_ url: String, headers: [(String, String)], body: Data) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Connection", value: "close")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(data: body))
        let response = try await client.execute(request, timeout: .seconds(30))
        let answer = try await response.body.collect(upTo: 1024 * 1024)
        return (Int(response.status.code), String(buffer: answer))
    }
}

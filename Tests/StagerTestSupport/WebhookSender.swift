import AsyncHTTPClient
import Foundation
import NIOCore
import StagerKit

/// POSTs to Stager's HTTP server the way GitHub delivers a webhook: a new connection per delivery. On
/// AsyncHTTPClient: through URLSession (one libcurl handle on one queue on Linux) the bench's storm measured
/// an ack p99 of 117–280 ms while the server's own share was ≤ 50–100 ms; through this client, 51 ms.
public final class WebhookSender: Sendable {
    private let client: HTTPClient
    /// How long one request may take in all.
    private let deadline: Duration

    /// `timeout`: to connect, and between reads.
    public init(timeout: Duration = .seconds(10)) {
        client = .forThisMachine(timeout: timeout)
        deadline = max(timeout, .seconds(30))
    }

    deinit {
        // Finishes in the background: the client keeps itself alive until it is shut down.
        client.shutdown { _ in }
    }

    /// The status and body of the answer.
    public func post(_ url: String, headers: [(String, String)], body: Data) async throws -> (Int, String) {
        let answer = try await request("POST", url, headers: headers, body: body)
        return (answer.status, answer.body)
    }

    /// Any method, on a new connection; the answer's status, headers (lower-case names) and body.
    public func request(_ method: String, _ url: String, headers: [(String, String)], body: Data = Data()) async throws -> ProbeAnswer {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        request.headers.add(name: "Connection", value: "close")
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        if !body.isEmpty || method == "POST" { request.body = .bytes(ByteBuffer(data: body)) }
        let response = try await client.execute(request, timeout: .nanoseconds(Int64(deadline.seconds * 1_000_000_000)))
        let answer = try await response.body.collect(upTo: 1024 * 1024)
        var fields: [String: String] = [:]
        for header in response.headers where fields[header.name.lowercased()] == nil { fields[header.name.lowercased()] = header.value }
        return ProbeAnswer(status: Int(response.status.code), headers: fields, body: String(buffer: answer))
    }
}

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix

/// One HTTP answer, as far as health checks and nginx confirmation need it.
public struct ProbeAnswer: Sendable, Equatable {
    public var status: Int
    public var headers: [String: String]
    public var body: String

    public init(status: Int, headers: [String: String], body: String) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// GETs a URL on this machine without following redirects or reusing connections: a health check's
/// redirect is an answer, and a kept-alive connection to an old nginx worker would show an old routing.
/// AsyncHTTPClient: a request is cancelled cleanly with its task, so a probe needs no deadline workaround.
public final class HTTPProbe: Prober, Sendable {
    private let client: HTTPClient
    private let timeout: Duration
    /// A probe of a command that runs alone owns its client; serve's probe uses serve's (`HTTPClients`).
    private let ownsClient: Bool

    public static let defaultTimeout: Duration = .seconds(2)

    /// `timeout`: how long a request may go without an answer.
    public init(timeout: Duration = HTTPProbe.defaultTimeout) {
        client = .forThisMachine(timeout: timeout)
        self.timeout = timeout + .seconds(1)
        ownsClient = true
    }

    /// A probe on `client` (made by `HTTPClient.forThisMachine(timeout:)` with this `timeout`), which its owner shuts down.
    public init(client: HTTPClient, timeout: Duration = HTTPProbe.defaultTimeout) {
        self.client = client
        self.timeout = timeout + .seconds(1)
        ownsClient = false
    }

    deinit {
        // Finishes in the background: the client keeps itself alive until it is shut down.
        if ownsClient { client.shutdown { _ in } }
    }

    public func get(
        host: String,
        port: Int,
        path: String,
        hostHeader: String? = nil,
        headers extra: [String: String] = [:]
    ) async throws -> ProbeAnswer {
        let authority = host.contains(":") ? "[\(host)]" : host
        var request = HTTPClientRequest(url: "http://\(authority):\(port)\(path)")
        request.headers.add(name: "Connection", value: "close")
        request.headers.add(name: "User-Agent", value: "stager-probe")
        if let hostHeader { request.headers.replaceOrAdd(name: "Host", value: hostHeader) }
        for (name, value) in extra { request.headers.replaceOrAdd(name: name, value: value) }
        let response = try await client.execute(request, timeout: TimeAmount.nanoseconds(Int64(timeout.seconds * 1_000_000_000)))
        var headers: [String: String] = [:]
        for header in response.headers where headers[header.name.lowercased()] == nil {
            headers[header.name.lowercased()] = header.value
        }
        // The start of the body (the first 64 KiB and the chunk that crosses it): enough for a page's sha.
        var body = ByteBuffer()
        for try await var chunk in response.body where body.readableBytes < 64 * 1024 {
            body.writeBuffer(&chunk)
        }
        return ProbeAnswer(status: Int(response.status.code), headers: headers, body: String(buffer: body))
    }
}

extension HTTPClient {
    /// A client for servers on this machine: redirects are answers, not followed; `timeout` to connect and
    /// between reads; and since everything goes to one or two hosts, no request waits for a pooled connection.
    public static func forThisMachine(timeout: Duration) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        let limit = TimeAmount.nanoseconds(Int64(timeout.seconds * 1_000_000_000))
        configuration.timeout = .init(connect: limit, read: limit)
        configuration.connectionPool = .init(idleTimeout: .seconds(1), concurrentHTTP1ConnectionsPerHostSoftLimit: 1024)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }
}

extension HTTPProbe {
    public func accepts(host: String, port: Int) async -> Bool {
        let bootstrap = ClientBootstrap(group: HTTPClient.defaultEventLoopGroup).connectTimeout(.seconds(1))
        do {
            let channel = try await bootstrap.connect(host: host, port: port).get()
            try await channel.close()
            return true
        } catch {
            // Refused or timed out: not listening yet, which the caller's loop waits out.
            return false
        }
    }
}

extension Result where Failure == any Error {
    /// `Result(catching:)` for async bodies.
    public init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// Polls until a condition holds: fast at first, then backing off, up to a deadline.
public struct Poller: Sendable {
    public var first: Duration = .milliseconds(20)
    public var longest: Duration = .milliseconds(500)

    public init(first: Duration = .milliseconds(20), longest: Duration = .milliseconds(500)) {
        self.first = first
        self.longest = longest
    }

    /// Returns true once `check` does, false when `timeout` passes first.
    public func until(timeout: Duration, _ check: @Sendable () async -> Bool) async throws -> Bool {
        try await first(timeout: timeout) { await check() ? true : nil } ?? false
    }

    /// The first answer `check` gives (not nil); nil when `timeout` passes first. What `check` throws ends the wait.
    public func first<T>(timeout: Duration, _ check: () async throws -> T?) async throws -> T? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        let backoff = Backoff(first: first, longest: longest)
        var attempt = 1
        while true {
            if let answer = try await check() { return answer }
            guard clock.now < deadline else { return nil }
            try await Task.sleep(for: min(backoff.delay(after: attempt), deadline - clock.now))
            attempt += 1
        }
    }
}

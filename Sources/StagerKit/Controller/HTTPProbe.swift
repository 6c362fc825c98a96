import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP answer, as far as health checks and nginx confirmation need it.
public struct ProbeAnswer: Sendable, Equatable {
    public var status: Int
    public var headers: [String: String]
    public var body: String
}

/// GETs a URL on this machine without following redirects or reusing connections: a health check's
/// redirect is an answer, and a kept-alive connection to an old nginx worker would show an old routing.
public final class HTTPProbe: NSObject, URLSessionTaskDelegate, Sendable {
    private let session: URLSession

    public override init() {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 2
        configuration.connectionProxyDictionary = [:]
        configuration.httpMaximumConnectionsPerHost = 8
        session = URLSession(configuration: configuration)
        super.init()
    }

    public func get(host: String, port: Int, path: String, hostHeader: String? = nil) async throws -> ProbeAnswer {
        let authority = host.contains(":") ? "[\(host)]" : host
        guard let url = URL(string: "http://\(authority):\(port)\(path)") else { throw URLError(.badURL) }
        var request = URLRequest(url: url)
        request.setValue("close", forHTTPHeaderField: "Connection")
        request.setValue("stager-probe", forHTTPHeaderField: "User-Agent")
        if let hostHeader { request.setValue(hostHeader, forHTTPHeaderField: "Host") }
        let (data, response) = try await session.data(for: request, delegate: self)
        guard let http = response as? HTTPURLResponse else { throw URLError(.badServerResponse) }
        var headers: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { headers[name.lowercased()] = value }
        }
        return ProbeAnswer(status: http.statusCode, headers: headers, body: String(decoding: data.prefix(64 * 1024), as: UTF8.self))
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                           newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        completionHandler(nil)
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
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var delay = first
        while true {
            if await check() { return true }
            guard clock.now < deadline else { return false }
            try await Task.sleep(for: min(delay, deadline - clock.now))
            delay = min(delay * 2, longest)
        }
    }
}

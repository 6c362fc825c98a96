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
public final class HTTPProbe: NSObject, URLSessionTaskDelegate, Prober, Sendable {
    private let session: URLSession
    private let deadline: Duration

    /// `timeout`: how long a request may go without an answer.
    public init(timeout: Duration = .seconds(2)) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout.seconds
        configuration.connectionProxyDictionary = [:]
        // Requests over the per-host limit wait in the session's queue *with their timeout running*: every
        // confirmation through nginx goes to one host, and with a small limit a burst of deploys (or a load)
        // timed out requests nginx never received. High enough that nothing Stager sends ever waits there.
        configuration.httpMaximumConnectionsPerHost = 1024
        session = URLSession(configuration: configuration)
        deadline = timeout + .seconds(1)
        super.init()
    }

    public func get(host: String, port: Int, path: String, hostHeader: String? = nil, headers extra: [String: String] = [:]) async throws -> ProbeAnswer {
        let authority = host.contains(":") ? "[\(host)]" : host
        guard let url = URL(string: "http://\(authority):\(port)\(path)") else { throw URLError(.badURL) }
        var request = URLRequest(url: url)
        request.setValue("close", forHTTPHeaderField: "Connection")
        request.setValue("stager-probe", forHTTPHeaderField: "User-Agent")
        if let hostHeader { request.setValue(hostHeader, forHTTPHeaderField: "Host") }
        for (name, value) in extra { request.setValue(value, forHTTPHeaderField: name) }
        let prepared = request
        let (data, response) = try await withDeadline(deadline) { try await self.session.data(for: prepared, delegate: self) }
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

/// Runs `body`, or throws `URLError(.timedOut)` once `limit` passes: Foundation's URLSession on Linux has
/// been seen never to call back, and a probe must not hang a deploy.
/// Unstructured on purpose: a task group would wait for the stuck call. The call is abandoned, never
/// cancelled: cancelling a URLSession task races its completion in FoundationNetworking and crashes
/// ("Trying to access a behaviour for a task that in not in the registry").
func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let once = ResumeOnce<T>()
    return try await withCheckedThrowingContinuation { continuation in
        once.set(continuation)
        let timer = Task {
            // Cancelled when the body answers first: then the sleep ends early and nothing is resumed.
            guard (try? await Task.sleep(for: limit)) != nil else { return }  // cancelled: the body finished first
            once.resume(with: .failure(URLError(.timedOut)))
        }
        Task {
            once.resume(with: await Result(catching: body))
            timer.cancel()
        }
    }
}

/// Resumes a continuation with the first result only.
final class ResumeOnce<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        lock.withLock { self.continuation = continuation }
    }

    func resume(with result: Result<T, any Error>) {
        let taken: CheckedContinuation<T, any Error>? = lock.withLock {
            defer { continuation = nil }
            return continuation
        }
        taken?.resume(with: result)
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
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        let backoff = Backoff(first: first, longest: longest)
        var attempt = 1
        while true {
            if await check() { return true }
            guard clock.now < deadline else { return false }
            try await Task.sleep(for: min(backoff.delay(after: attempt), deadline - clock.now))
            attempt += 1
        }
    }
}

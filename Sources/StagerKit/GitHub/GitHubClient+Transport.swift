import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1

extension GitHubClient {
    // MARK: Transport

    /// Every page of a list, following `Link: rel="next"` rather than building page URLs.
    func paginate<Item: Decodable>(_ first: URL) async throws -> [Item] {
        var items: [Item] = []
        var next: URL? = first
        while let page = next {
            let (data, response) = try await send("GET", page, body: nil, expecting: [200])
            items += try decode([Item].self, data)
            next = Self.nextLink(response.first(name: "Link"))
            // The token goes to the configured API and nowhere else, whatever a Link header says.
            if let next, !isOwnAPI(next) {
                throw GitHubError.badResponse("a pagination link points away from \(baseURL.absoluteString): \(next.absoluteString)")
            }
        }
        return items
    }

    /// Same scheme, host and port as the configured API, under its path.
    func isOwnAPI(_ url: URL) -> Bool {
        url.scheme?.lowercased() == baseURL.scheme?.lowercased() && url.host?.lowercased() == baseURL.host?.lowercased()
            && url.port == baseURL.port && url.path.hasPrefix(baseURL.path)
    }

    func url(_ segments: [String], query: String? = nil) -> URL {
        var path = baseURL.absoluteString
        for segment in segments {
            path += "/" + (segment.addingPercentEncoding(withAllowedCharacters: .urlPathSegmentAllowed) ?? segment)
        }
        if let query { path += "?" + query }
        // Every segment was percent-encoded above, so this cannot fail for a valid base URL.
        return URL(string: path) ?? baseURL
    }

    func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw GitHubError.badResponse("cannot decode \(type): \(error)")
        }
    }

    func send(_ method: String, _ url: URL, body: (any Encodable)?, expecting: Set<Int>) async throws -> (Data, HTTPHeaders) {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = HTTPMethod(rawValue: method)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Accept", value: "application/vnd.github+json")
        request.headers.add(name: "X-GitHub-Api-Version", value: "2022-11-28")
        request.headers.add(name: "User-Agent", value: Self.userAgent)
        if let body {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes]
            let json = String(decoding: try encoder.encode(body), as: UTF8.self)
            request.body = .bytes(ByteBuffer(string: secrets.mask(json)))
            request.headers.add(name: "Content-Type", value: "application/json")
        }

        var lastProblem = ""
        for attempt in 1...maxAttempts {
            let wait: Duration
            do {
                let (status, headers, data) = try await inFlight.withSlot { try await transport.execute(request, timeout: timeout) }
                if expecting.contains(status) {
                    metrics?.githubRequest(outcome: "ok")
                    return (data, headers)
                }
                let message = Self.message(data)
                switch RetryPolicy.decide(status: status, headers: { headers.first(name: $0) }, attempt: attempt) {
                case .fail:
                    metrics?.githubRequest(outcome: "error_\(status)")
                    throw GitHubError.status(status, message)
                case .retry(after: let delay):
                    let rateLimited = [403, 429].contains(status)
                    metrics?.githubRequest(outcome: rateLimited ? "rate_limited" : "server_error")
                    lastProblem = "\(status) \(message)"
                    // A rate limit refused the request before doing anything; a 5xx may have come after storing it.
                    if method == "POST", !rateLimited { throw GitHubError.unclear(lastProblem) }
                    wait = delay
                }
            } catch let error as GitHubError {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                metrics?.githubRequest(outcome: "unreachable")
                lastProblem = "\(error)"
                if method == "POST" { throw GitHubError.unclear(lastProblem) }
                wait = Backoff.github.delay(after: attempt)
            }
            guard attempt < maxAttempts else { break }
            guard wait <= Self.longestWait else {
                throw GitHubError.gaveUp("rate limited for \(wait) (\(lastProblem))")
            }
            logger.warning(
                "GitHub \(method) \(url.path) failed, retrying",
                metadata: ["attempt": "\(attempt)", "problem": "\(lastProblem)", "wait": "\(wait)"]
            )
            try await sleeper.sleep(for: wait)
        }
        throw GitHubError.gaveUp(lastProblem)
    }

    static func message(_ data: Data) -> String {
        struct Body: Decodable { var message: String? }
        // not GitHub's error shape: the raw start is shown
        return (try? JSONDecoder().decode(Body.self, from: data))?.message ?? String(decoding: data.prefix(200), as: UTF8.self)
    }

    static func nextLink(_ header: String?) -> URL? {
        guard let header else { return nil }
        for part in header.split(separator: ",") {
            let pieces = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard pieces.count >= 2, pieces.dropFirst().contains("rel=\"next\""),
                pieces[0].hasPrefix("<"), pieces[0].hasSuffix(">")
            else { continue }
            return URL(string: String(pieces[0].dropFirst().dropLast()))
        }
        return nil
    }
}

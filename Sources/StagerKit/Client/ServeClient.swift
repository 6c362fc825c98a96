import AsyncHTTPClient
import Foundation
import NIOCore

/// Where the CLI finds serve: its Unix socket on this machine, or its URL elsewhere with the admin token.
public enum ServeAddress: Sendable, Equatable, CustomStringConvertible {
    case socket(URL)
    case remote(URL, token: String?)

    public var description: String {
        switch self {
        case .socket(let path): return path.path
        case .remote(let url, _): return url.absoluteString
        }
    }
}

/// Why a command could not be asked of serve: said in one line, exit status 1.
public struct ServeUnreachable: Error, CustomStringConvertible, Equatable {
    public var description: String
}

/// The CLI's one connection to serve: sends a command's arguments, hands each piece of the answer over as
/// it comes, and returns the exit status serve gave.
public struct ServeClient: Sendable {
    let address: ServeAddress

    public init(address: ServeAddress) {
        self.address = address
    }

    public func run(_ verb: ServeCommands.Verb, _ arguments: CommandArguments, output: (CommandEvent) -> Void) async throws -> Int32 {
        // A serve that is not there is said at once, not after the pool's retries.
        var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(10)))
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let status = try await run(verb, arguments, on: client, output: output)
            try await client.shutdown()
            return status
        } catch {
            try? await client.shutdown()  // the command's own error is the one to tell
            throw error
        }
    }

    private func run(
        _ verb: ServeCommands.Verb,
        _ arguments: CommandArguments,
        on client: HTTPClient,
        output: (CommandEvent) -> Void
    ) async throws -> Int32 {
        var request = HTTPClientRequest(url: try url("/api/commands/\(verb.rawValue)"))
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if case .remote(_, let token?) = address { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(arguments)))
        let response: HTTPClientResponse
        do {
            // The deadline is the answer's head's (serve sends it at once); a `logs --follow` then lasts as long
            // as the person wants.
            response = try await client.execute(request, timeout: .seconds(30))
        } catch {
            throw ServeUnreachable(description: notRunning(error))
        }
        guard response.status == .ok else {
            let body = try await response.body.collect(upTo: 64 * 1024)
            throw ServeUnreachable(description: refusal(Int(response.status.code), body: String(buffer: body)))
        }
        var pending = Data()
        for try await buffer in response.body {
            pending.append(contentsOf: buffer.readableBytesView)
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending[pending.startIndex..<newline]
                pending = Data(pending[(newline + 1)...])
                let event = try JSONDecoder().decode(CommandEvent.self, from: line)
                if let status = event.exit { return status }
                output(event)
            }
        }
        throw ServeUnreachable(description: "stager serve at \(address) stopped before the command finished")
    }

    private func url(_ path: String) throws -> String {
        switch address {
        case .socket(let socket):
            guard let url = URL(httpURLWithSocketPath: socket.path, uri: path) else {
                throw ServeUnreachable(description: "cannot address the socket \(socket.path)")
            }
            return url.absoluteString
        case .remote(let base, _):
            return base.absoluteString.trimmingSuffix("/") + path
        }
    }

    private func notRunning(_ error: any Error) -> String {
        switch address {
        case .socket(let socket): return "stager serve is not running (nothing answers at \(socket.path))"
        case .remote(let url, _): return "stager serve at \(url.absoluteString) does not answer: \(error)"
        }
    }

    private func refusal(_ status: Int, body: String) -> String {
        let message = Self.message(in: body)
        switch (status, address) {
        case (401, .remote(_, nil)):
            return "stager serve at \(address) needs the admin token: set STAGER_TOKEN or --token-file"
        case (401, .remote):
            return "stager serve at \(address) refused the admin token (STAGER_TOKEN or --token-file)"
        default:
            return "stager serve answered \(status): \(message)"
        }
    }

    /// Hummingbird's error body is `{"error":{"message":"…"}}`; anything else is shown as it is.
    static func message(in body: String) -> String {
        struct ErrorBody: Decodable {
            struct Inner: Decodable { var message: String }
            var error: Inner
        }
        if let decoded = try? JSONDecoder().decode(ErrorBody.self, from: Data(body.utf8)) { return decoded.error.message }  // not JSON: shown as is
        return body.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}

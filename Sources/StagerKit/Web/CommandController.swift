import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// `POST /api/commands/<verb>`: what the CLI asks serve. Over the Unix socket (root only) no token is
/// needed; over TCP the admin token is (the group's `AdminTokenCheck`), and without one configured the
/// commands are refused there. The answer streams `CommandEvent`s, a JSON object a line, the exit status last.
struct CommandController: Sendable {
    let commands: ServeCommands
    let adminTokenSet: Bool
    let local: LocalTrust

    func addRoutes(to router: RouterGroup<some RequestContext>) {
        router.post("/api/commands/:verb") { request, context in
            guard let verb = context.parameters.get("verb").flatMap(ServeCommands.Verb.init) else {
                throw HTTPError(.notFound, message: "no such command; one of \(ServeCommands.Verb.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard self.adminTokenSet || self.local.vouches(for: request) else {
                throw HTTPError(.forbidden, message: "commands from elsewhere need server.admin_token_env; on serve's machine use the socket")
            }
            var request = request
            let body = try await request.collectBody(upTo: 64 * 1024)
            let arguments: CommandArguments
            do {
                arguments =
                    body.readableBytes == 0 ? CommandArguments() : try JSONDecoder().decode(CommandArguments.self, from: Data(body.readableBytesView))
            } catch {
                throw HTTPError(.badRequest, message: "the body must be the command's arguments as JSON")
            }
            return Self.streamed { emit in await self.commands.run(verb, arguments, emit: emit) }
        }
    }

    /// An answer written as `produce` emits; serve's graceful stop cancels `produce` (a `logs --follow`
    /// must not hold serve open), and so does a client that goes away.
    static func streamed(_ produce: @escaping @Sendable (@escaping ServeCommands.Emit) async -> Int32) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/x-ndjson"],
            body: ResponseBody { writer in
                let (events, continuation) = AsyncStream<CommandEvent>.makeStream()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        // A command cancelled by serve's stop says so itself (`ServeCommands.run`).
                        let status = await cancelWhenGracefulShutdown { await produce { continuation.yield($0) } }
                        continuation.yield(.exit(status))
                        continuation.finish()
                    }
                    let encoder = JSONEncoder()
                    for await event in events {
                        var line = try encoder.encode(event)
                        line.append(UInt8(ascii: "\n"))
                        try await writer.write(ByteBuffer(bytes: line))
                    }
                    try await group.waitForAll()
                }
                try await writer.finish(nil)
            }
        )
    }
}

/// Marks requests that came through serve's own Unix socket: a header carrying a key only this process
/// knows, added by the socket's responder. A TCP client cannot guess it.
public struct LocalTrust: Sendable {
    /// A valid, fixed name: never nil (were it, nothing would be vouched for).
    static let header = HTTPFields.Element.Name("X-Stager-Local")
    let key = RandomToken.hex()

    func vouches(for request: Request) -> Bool {
        guard let name = Self.header, let offered = request.headers[name] else { return false }
        return ConstantTime.equal(offered, key)
    }
}

/// The socket's responder: every request through it is serve's own machine's root, vouched for.
struct LocalSocketResponder<Inner: HTTPResponder>: HTTPResponder {
    let inner: Inner
    let trust: LocalTrust

    func respond(to request: Request, context: Inner.Context) async throws -> Response {
        var head = request.head
        if let name = LocalTrust.header { head.headerFields[name] = trust.key }
        return try await inner.respond(to: Request(head: head, body: request.body), context: context)
    }
}

/// `<data_dir>/stager.sock`, mode 0600: bound in a private folder and moved into place, so no one but root
/// can ever connect, and a socket a killed serve left behind is replaced.
public struct ServeSocket: Sendable {
    public let path: URL

    public init(dataDir: URL) {
        path = dataDir.appendingPathComponent("stager.sock").standardizedFileURL
    }

    /// The private folder the socket is bound in before it is moved to `path`.
    func stagingFolder() throws -> URL {
        let folder = path.deletingLastPathComponent().appendingPathComponent(".sock-\(getpid())")
        try? FileManager.default.removeItem(at: folder)  // one a killed serve of the same pid left; created anew next
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return folder
    }

    /// Makes the bound socket root's only and moves it to `path`.
    func publish(from staged: URL) throws {
        guard chmod(staged.path, 0o600) == 0 else { throw SocketError("cannot make \(staged.path) 0600: \(String(cString: strerror(errno)))") }
        guard rename(staged.path, path.path) == 0 else {
            throw SocketError("cannot move the socket to \(path.path): \(String(cString: strerror(errno)))")
        }
        try FileManager.default.removeItem(at: staged.deletingLastPathComponent())
    }

    /// Removes the socket when serve stops, so that commands say at once that it is not running.
    struct Removal: Service {
        let socket: ServeSocket

        func run() async throws {
            try? await gracefulShutdown()  // throws only when cancelled: removed then all the same
            try? FileManager.default.removeItem(at: socket.path)  // gone already is as good
        }
    }

    struct SocketError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}

extension ServeSocket {
    /// Whether a serve listens on the socket now (a second serve on the same data folder must not take it).
    func answers() -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
    }
}

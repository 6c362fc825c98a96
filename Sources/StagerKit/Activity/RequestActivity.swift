import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// One datagram nginx sends for a request (`_stager-activity.conf`): `<PRI>TIMESTAMP stager: HOST`.
public enum ActivityLine {
    /// The request's host name; nil for anything that is not such a line.
    public static func host(inDatagram text: String) -> String? {
        guard text.hasPrefix("<"), let tag = text.range(of: " stager: ") else { return nil }
        let host = text[tag.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }) else { return nil }
        return host
    }
}

/// Learns of every request nginx passes to an environment, within a second, without reading a log file:
/// nginx sends each request's host name as a syslog datagram to `nginx.activity_listen` (loopback), and
/// this records the time as that environment's `last_request_at`. Anything else is ignored.
public final class RequestActivity: Service, Sendable {
    private let host: String
    private let port: Int
    /// A preview's host name is `<slug>.<domain>`.
    private let domain: String
    private let store: Store
    private let logger: Logger
    private let seen = SeenSlugs()
    /// How often what arrived is written: one transaction for all of it.
    static let flushEvery: Duration = .milliseconds(250)

    public init(config: StagerConfig, store: Store, logger: Logger) {
        host = config.nginx.activityHost
        port = config.nginx.activityPort
        domain = config.preview.domain.lowercased()
        self.store = store
        self.logger = logger
    }

    public func run() async throws {
        let channel: NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>
        do {
            channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            // serve keeps working; only last_request_at stays empty. Said loudly: it is a configuration problem.
            logger.error(
                "cannot listen for nginx's request lines; last_request_at will not move",
                metadata: [
                    "activity_listen": "\(host):\(port)", "error": "\(error)",
                ]
            )
            try await gracefulShutdown()
            return
        }
        do {
            try await listen(channel)
        } catch is CancellationError {
            // serve stops: a service that throws here would cancel the others instead of letting them stop.
        }
    }

    private func listen(_ channel: NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>) async throws {
        try await cancelWhenGracefulShutdown {
            try await channel.executeThenClose { inbound, _ in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await self.flushForever() }
                    for try await envelope in inbound {
                        if let host = ActivityLine.host(inDatagram: String(buffer: envelope.data)), host.hasSuffix("." + self.domain) {
                            await self.seen.add(String(host.dropLast(self.domain.count + 1)), at: Date())
                        }
                    }
                    group.cancelAll()
                }
            }
        }
    }

    private func flushForever() async throws {
        while true {
            try await Task.sleep(for: Self.flushEvery)
            do {
                try await store.recordRequests(await seen.take())
            } catch {
                logger.warning("could not record requests' activity; the next ones will be", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Slugs requested since the last flush, with the newest time of each.
private actor SeenSlugs {
    private var slugs: [String: Date] = [:]

    func add(_ slug: String, at date: Date) { slugs[slug] = date }

    func take() -> [String: Date] {
        defer { slugs = [:] }
        return slugs
    }
}

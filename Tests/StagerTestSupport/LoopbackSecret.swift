import Foundation
import Hummingbird

/// A server on 127.0.0.1 that answers every request with a secret: what a hostile preview would love to
/// read through nginx (another preview's port, serve's API, a metadata service).
public enum LoopbackSecret {
    /// Starts it and returns its port, the secret it answers with, and what stops it.
    public static func start() async throws -> (port: Int, secret: String, server: ServiceRunner) {
        let secret = "loopback-secret-\(UUID().uuidString.prefix(8).lowercased())"
        let router = Router()
        router.get("/") { _, _ in secret }
        router.get("**") { _, _ in secret }
        let port = PortBox()
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "loopback-secret"),
            onServerRunning: { channel in await port.set(channel.localAddress?.port ?? 0) },
            logger: .init(label: "loopback-secret")
        )
        let server = ServiceRunner(app, logger: .init(label: "loopback-secret"))
        return (try await port.wait(), secret, server)
    }
}

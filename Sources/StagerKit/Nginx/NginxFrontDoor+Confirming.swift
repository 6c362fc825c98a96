import Foundation
import Logging

extension NginxFrontDoor {
    // MARK: Confirming through nginx

    /// nginx's reload returns before its new workers serve: ask nginx itself, with the environment's
    /// Host header, until the answer comes from the new container.
    public nonisolated func confirmRouted(hostName: String, to container: String, asleep: Bool) async throws {
        // The header alone is not proof when the container keeps its name (re-routed to a new port, woken):
        // nginx adds it to its own 502 and to the sleeping vhost's answer too, so the answer must come from
        // the container, or say that it sleeps.
        guard
            try await poll(
                hostName,
                until: {
                    $0.headers["x-stager-upstream"] == container && ($0.headers["x-stager-asleep"] != nil) == asleep
                        && ![502, 504].contains($0.status)
                }
            )
        else {
            throw NginxError.reloadFailed("nginx did not route \(hostName) to \(asleep ? "the wake path of " : "")\(container) in time")
        }
    }

    /// A teardown is removed only once nginx stopped routing its URL.
    public nonisolated func confirmUnrouted(hostName: String) async throws {
        guard try await poll(hostName, until: { $0.headers["x-stager-upstream"] == nil }) else {
            throw NginxError.reloadFailed("nginx still routes \(hostName) after its vhost was removed")
        }
    }

    /// nginx's old workers keep accepting for a moment after a reload, so good answers are proof only when
    /// they last past that moment: its master starts the new workers, sleeps 100 ms, and only then tells the
    /// old ones to stop (`ngx_master_process_cycle`). Until then a run of answers can all come from a new
    /// worker while the next visitor's connection goes to an old one (nginx's default 404 right after
    /// "ready" was seen). So the answers must be good, each on a fresh connection, from the first for
    /// `oldWorkersWindow`; any bad one starts the count again.
    private nonisolated func poll(_ hostName: String, until accept: @escaping @Sendable (ProbeAnswer) -> Bool) async throws -> Bool {
        let host = ["0.0.0.0", "*", "::"].contains(config.listenHost) ? "127.0.0.1" : config.listenHost
        let clock = ContinuousClock()
        let deadline = clock.now + config.confirmTimeout
        var goodSince: ContinuousClock.Instant?
        var streak = 0
        while clock.now < deadline {
            let answer: ProbeAnswer?
            do {
                answer = try await probe.get(
                    host: host,
                    port: config.listenPort,
                    path: "/.stager-probe",
                    hostHeader: hostName,
                    headers: [VhostKeys.probeHeader: wakePath.keys.probe]
                )
            } catch {
                answer = nil  // nginx between workers, or not up: the next try tells
            }
            if answer.map(accept) == true {
                streak += 1
                goodSince = goodSince ?? clock.now
            } else {
                streak = 0
                goodSince = nil
            }
            if streak >= Self.confirmations, let goodSince, clock.now - goodSince >= Self.oldWorkersWindow { return true }
            // Quick while a streak builds; at a walk while nginx is not there yet or the window runs out.
            try await Task.sleep(for: .milliseconds((1..<Self.confirmations).contains(streak) ? 2 : 10))
        }
        return false
    }

    static let confirmations = 5
    /// nginx's 100 ms, and time for an old worker on a busy machine to act on its signal.
    static let oldWorkersWindow: Duration = .milliseconds(200)

    /// The vhost's shape: version 2 binds its keys to its slug and ignores the app's X-Accel headers.
    static let version = "2"

    static func marker(in text: String) -> [String: String]? {
        guard let firstLine = text.split(separator: "\n", maxSplits: 1).first, firstLine.hasPrefix(markerPrefix) else { return nil }
        var fields: [String: String] = [:]
        for pair in firstLine.dropFirst(markerPrefix.count).split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        return fields
    }
}

import Foundation
import StagerKit
import StagerTestSupport

/// What the shared host costs: GETs through `<shared_host>.<domain>` (its maps, then the hop back into
/// nginx) against GETs to the same environment's own URL, alternated so the machine's noise falls on both.
extension Bench {
    static let sharedRepo = "acme/shared"

    static var sharedRepoConfig: String {
        E2EHarness.servingRepo(sharedRepo, "shared_host: bench-shared\ndefault_env: pr-1")
    }

    struct SharedHostCost: Encodable {
        var own: Samples
        var shared: Samples
        /// The difference of the medians, in milliseconds.
        var addedMilliseconds: Double
    }

    func sharedHostCost() async throws -> SharedHostCost {
        let branch = "bench-own-url"
        _ = try await stagerOpen(number: 1, branch: branch, repo: Self.sharedRepo)
        // nginx's old workers answer for a moment after a reload with the configuration as it was, and the
        // teardowns of the scale step before reload nginx meanwhile: measured only once ten rounds in a row
        // answered 200 on both hosts.
        let shared = "bench-shared.\(config.preview.domain)"
        let own = "\(branch).\(config.preview.domain)"
        _ = try await waitUntil(timeout: .seconds(60)) { [probe, config] in
            for _ in 0..<10 {
                for host in [own, shared] {
                    guard (try? await probe.get(host: "127.0.0.1", port: config.nginx.listenPort, path: "/", hostHeader: host))?.status == 200 else {
                        return false
                    }
                }
            }
            return true
        }
        var ownTimes = Samples()
        var sharedTimes = Samples()
        for _ in 0..<sizes.sharedRequests {
            ownTimes.add(try await timedGet(host: own))
            sharedTimes.add(try await timedGet(host: shared))
        }
        return SharedHostCost(own: ownTimes, shared: sharedTimes, addedMilliseconds: (sharedTimes.median - ownTimes.median) * 1000)
    }

    /// One GET of `/` through nginx with this Host, on a new connection as the probe makes them; its seconds.
    private func timedGet(host: String) async throws -> Double {
        let start = clock.now
        let answer = try await probe.get(host: "127.0.0.1", port: config.nginx.listenPort, path: "/", hostHeader: host)
        guard answer.status == 200 else { throw BenchFailure("GET / with Host \(host) answered \(answer.status): \(answer.body.prefix(200))") }
        return (clock.now - start).seconds
    }
}

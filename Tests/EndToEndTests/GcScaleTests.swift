import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// `stager gc` with 50 live environments and 20 leaks, then with none: checks the result and prints the
/// wall times. Starting 60 containers takes a minute on a small machine, so it runs when asked:
/// `STAGER_GC_SCALE=1 swift test --filter GcScaleTests` (scripts/bench does).
@Suite("gc at scale", .serialized, .enabled(if: E2EHarness.available && ProcessInfo.processInfo.environment["STAGER_GC_SCALE"] == "1"))
struct GcScaleTests {
    @Test func fiftyLiveAndTwentyLeaks() async throws {
        try await E2EHarness.run(name: "gc-scale", extraLimits: "  concurrent_deploys: 8") { harness in
            let live = 50
            let closed = 10
            for number in 1...(live + closed) {
                try await harness.open(number, branch: "scale-\(number)")
            }
            for number in 1...(live + closed) {
                #expect(try await harness.waitSettled(number, status: .ready, timeout: .seconds(180)))
            }
            // 20 leaks: 10 PRs closed on GitHub without a webhook, 5 orphan containers, 5 orphan vhosts.
            for number in (live + 1)...(live + closed) {
                await harness.github.setPull(
                    number: number,
                    branch: "scale-\(number)",
                    sha: Fixtures.sha("scale-\(number)"),
                    state: "closed",
                    updatedAt: "2026-11-24T11:00:00Z"
                )
            }
            for number in 900..<905 { _ = try await harness.startOrphanContainer(number: number) }
            for index in 0..<5 { try harness.writeOrphanVhost(slug: "orphan-\(index)") }

            let clock = ContinuousClock()
            var result: CommandResult?
            let withLeaks = try await clock.measure { result = try await harness.stager(["gc"]) }
            #expect(result?.exitCode == 0)
            #expect(
                result?.standardOutput.contains("gc: removed 10 environments, 5 containers, 5 vhosts; kept 50") == true,
                "\(result?.standardOutput ?? "")"
            )
            #expect(try await harness.containers().count == live)
            #expect(harness.vhosts().count == live)

            let clean = try await clock.measure { result = try await harness.stager(["gc"]) }
            #expect(result?.standardOutput.contains("gc: removed 0 environments, 0 containers, 0 vhosts; kept 50") == true)
            for number in [1, 25, 50] {
                #expect(await harness.throughNginx(slug: "scale-\(number)")?.status == 200)
            }
            print("gc-scale: 50 live + 20 leaks: \(withLeaks); 50 live, no leaks: \(clean)")
        }
    }
}

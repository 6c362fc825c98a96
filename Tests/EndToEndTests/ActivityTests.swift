import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// nginx tells serve of every request to an environment: `last_request_at` moves within a second, for that
/// environment only, and Stager's own confirmations through nginx do not count.
@Suite("End to end: requests through nginx", .enabled(if: E2EHarness.available))
struct ActivityTests {
    func lastRequest(_ harness: E2EHarness, _ number: Int) async throws -> String? {
        let body = try await harness.get("/api/environments/acme/web/\(number)").body
        return try JSONDecoder().decode(EnvironmentDetail.self, from: Data(body.utf8)).environment.last_request_at
    }

    @Test func aRequestThroughNginxIsTheEnvironmentsLastRequest() async throws {
        try await E2EHarness.run(name: "activity") { harness in
            try await harness.send("opened", number: 80, branch: "visited", sha: Fixtures.sha("visited"))
            try await harness.send("opened", number: 81, branch: "unvisited", sha: Fixtures.sha("unvisited"))
            #expect(try await harness.waitSettled(80, status: .ready))
            #expect(try await harness.waitSettled(81, status: .ready))
            #expect(try await lastRequest(harness, 80) == nil, "Stager's own confirmations are not requests")

            let before = Date()
            #expect(await harness.throughNginx(slug: "visited")?.status == 200)
            #expect(try await harness.waitUntil(timeout: .seconds(3)) { try await lastRequest(harness, 80) != nil })
            let stamp = try #require(try await lastRequest(harness, 80)).flatMap { ISO8601DateFormatter().date(from: $0) }
            #expect(stamp.map { $0 >= before.addingTimeInterval(-1) } == true)
            #expect(try await lastRequest(harness, 81) == nil)
            let table = try await harness.stager(["ls"]).standardOutput
            #expect(table.contains("REQUEST"), "\(table)")
        }
    }
}

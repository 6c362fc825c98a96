import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// open→live for a repository that builds from the branch, with a cold and a warm build cache. Opt-in
/// (`STAGER_BUILD_TIMING=1 swift test --filter BuildTimingTests`): it times, so it is no test of CI's.
@Suite(
    "Build timing (opt-in)",
    .serialized,
    .enabled(if: E2EHarness.available && ProcessInfo.processInfo.environment["STAGER_BUILD_TIMING"] == "1")
)
struct BuildTimingTests {
    /// A dependency step that takes a second and does not depend on the commit: the cache's to keep.
    static let dockerfile = """
        FROM stager/busybox:local
        RUN echo "installing dependencies" && /bin/busybox sleep 1 && echo done > /deps
        ARG SHA
        RUN echo "sha=$SHA" > /www/index.html
        CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]

        """

    @Test func openToLiveWithAColdAndAWarmCache() async throws {
        let dir = try TestConfig.temporaryDirectory("e2e-git-timing")
        defer { try? FileManager.default.removeItem(at: dir) }
        let git = try await GitFixture(in: dir)
        let runner = SubprocessRunner()
        func removeImages() async throws {
            let tags = try await runner.check(Command("docker", ["image", "ls", "stager/acme-built", "--format", "{{.Repository}}:{{.Tag}}"]))
                .standardOutput
            for tag in tags.split(separator: "\n") { _ = try await runner.run(Command("docker", ["image", "rm", "-f", String(tag)])) }
        }
        try await removeImages()
        try await E2EHarness.run(name: "build-timing", extraRepos: BuildTests.repo(origin: git.origin), extraConfig: BuildTests.allowFiles) {
            harness throws in
            var cold: [Double] = []
            var warm: [Double] = []
            for run in 0..<10 {
                let isCold = run < 5
                if isCold { try await removeImages() }
                let sha = try await git.commit(Self.dockerfile, note: "timing \(run)")
                let number = 100 + run
                let slug = "timing-\(run)"
                let start = ContinuousClock.now
                try await harness.send("opened", number: number, branch: slug, sha: sha, repo: "acme/built")
                let live = try await harness.waitUntil(timeout: .seconds(120)) {
                    await harness.throughNginx(slug: slug)?.body.contains("sha=\(sha)") == true
                }
                #expect(live)
                let seconds = (ContinuousClock.now - start).seconds
                if isCold { cold.append(seconds) } else { warm.append(seconds) }
                try await harness.send("closed", number: number, branch: slug, sha: sha, updatedAt: "2026-11-24T10:00:00Z", repo: "acme/built")
                _ = try await harness.waitUntil(timeout: .seconds(60)) { try harness.environment(number, repo: "acme/built")?.status == .removed }
            }
            let median = { (values: [Double]) in values.sorted()[values.count / 2] }
            print(
                String(
                    format: "build timing: open→live cold cache median %.2f s %@; warm cache median %.2f s %@",
                    median(cold),
                    cold.map { String(format: "%.2f", $0) }.description,
                    median(warm),
                    warm.map { String(format: "%.2f", $0) }.description
                )
            )
            #expect(median(warm) < median(cold))
        }
        try await removeImages()
    }
}

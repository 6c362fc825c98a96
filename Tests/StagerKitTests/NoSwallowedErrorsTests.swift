import Foundation
import Logging
import StagerTestSupport
import Testing

@testable import StagerKit

/// What used to be swallowed now says what went wrong (issue 13), and the controller's queue and retries
/// end with the controller.
@Suite("Errors said, waits that end")
struct NoSwallowedErrorsTests {
    @Test func aVhostThatCannotBeWrittenFailsNamingTheFile() async throws {
        let dir = try TestConfig.temporaryDirectory("unwritable")
        let config = try TestConfig.load("nginx:\n  sites_dir: sites\n  test_command: [\"true\"]\n  reload_command: [\"true\"]\n", in: dir)
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: try Templates.load().vhost,
            runner: SubprocessRunner(),
            logger: Logger(label: "t")
        )
        // A folder where the vhost file should go: writing the file over it fails.
        try FileManager.default.createDirectory(
            at: config.nginx.sitesDir.appendingPathComponent("blocked.conf/inside"),
            withIntermediateDirectories: true
        )
        let route = Route(
            key: PullRequestKey(repo: "acme/web", number: 1),
            slug: "blocked",
            hostName: "blocked.preview.localhost",
            upstreamPort: 40000,
            containerName: "c",
            sha: "abc"
        )
        do {
            try await door.apply(route)
            Issue.record("writing over a folder must fail")
        } catch let error as NginxError {
            guard case .cannotWrite(let path, _) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(path.hasSuffix("blocked.conf"))
            #expect(error.isPermanent)
        }
    }

    @Test func aReloadThatCannotReachNginxIsWorthRetryingAndRollsBack() async throws {
        let dir = try TestConfig.temporaryDirectory("noreload")
        let config = try TestConfig.load("nginx:\n  sites_dir: sites\n  test_command: [\"true\"]\n  reload_command: [\"false\"]\n", in: dir)
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: try Templates.load().vhost,
            runner: SubprocessRunner(),
            logger: Logger(label: "t")
        )
        let route = Route(
            key: PullRequestKey(repo: "acme/web", number: 1),
            slug: "later",
            hostName: "later.preview.localhost",
            upstreamPort: 40000,
            containerName: "c",
            sha: "abc"
        )
        await #expect(throws: NginxError.self) { try await door.apply(route) }
        #expect(await door.routed(slug: "later") == nil)
        // The change is still owed to nginx until a reload goes through.
        #expect(FileManager.default.fileExists(atPath: config.nginx.sitesDir.appendingPathComponent(".stager-reload-owed").path))
    }

    @Test func anUnreadableTemplateOverrideIsAConfigurationError() throws {
        let dir = try TestConfig.temporaryDirectory("tpl-bad")
        #expect(throws: Templates.Failure.self) { try Templates.load(overrideDir: dir.appendingPathComponent("missing")) }
        // A folder where comment.md.mustache should be: it exists but cannot be read as text.
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("comment.md.mustache"), withIntermediateDirectories: true)
        do {
            _ = try Templates.load(overrideDir: dir)
            Issue.record("an unreadable override must not fall back silently")
        } catch let failure as Templates.Failure {
            #expect(failure.description.contains("comment.md.mustache"))
        }
    }

    @Test func anInvalidVariableNameIsRefusedNamingIt() async throws {
        let command = Command("true", [], environment: ["GOOD": "1", "BAD=NAME": "2", "ALSO=BAD": "3"])
        do {
            _ = try await SubprocessRunner().run(command)
            Issue.record("an invalid variable name must be refused")
        } catch let error as CommandError {
            // Named, whichever of the two is met first (two bad names used to crash the process).
            #expect(error.description.contains("BAD=NAME") || error.description.contains("ALSO=BAD"))
        }
    }

    @Test func aCancelledWorkerStopsWaiting() async throws {
        let queue = WorkQueue()
        let worker = Task { await queue.next() }
        try await Task.sleep(for: .milliseconds(20))
        worker.cancel()
        #expect(await worker.value == nil)
        // The queue still hands keys to the workers that wait.
        let other = Task { await queue.next() }
        try await Task.sleep(for: .milliseconds(20))
        await queue.enqueue(PullRequestKey(repo: "acme/web", number: 1))
        #expect(await other.value == PullRequestKey(repo: "acme/web", number: 1))
    }

    @Test func retriesBackOffAndStartOverAfterASuccess() async throws {
        let retries = Retries()
        let key = PullRequestKey(repo: "acme/web", number: 1)
        #expect(await retries.schedule(key) == .seconds(1))
        #expect(await retries.schedule(key) == .seconds(2))
        #expect(await retries.takeDue().isEmpty)
        await retries.clear(key)
        #expect(await retries.schedule(key) == .seconds(1))
    }

    @Test func oneBackoffDoublesUpToItsLongest() {
        let backoff = Backoff(first: .milliseconds(5), longest: .milliseconds(500))
        #expect((1...9).map { backoff.delay(after: $0) } == [5, 10, 20, 40, 80, 160, 320, 500, 500].map { Duration.milliseconds($0) })
        #expect(Backoff.convergence.delay(after: 1) == .seconds(1) && Backoff.convergence.delay(after: 40) == .seconds(60))
        let jittered = (1...50).map { _ in Backoff.github.delay(after: 2) }
        #expect(jittered.allSatisfy { $0 >= .milliseconds(500) && $0 <= .seconds(1) })
    }
}

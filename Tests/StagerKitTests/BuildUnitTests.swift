import Foundation
import StagerTestSupport
import Testing

@testable import StagerKit

/// Building from the branch, without running anything: the clone URL policy, the commands (argv and
/// environment), masking, the build slots and the configuration.
@Suite("Building from the branch: pieces")
struct BuildUnitTests {
    static func config(_ extra: String = "", allowFiles: Bool = false) throws -> StagerConfig {
        let dir = try TestConfig.temporaryDirectory("build-unit")
        return try TestConfig.load(
            """
            data_dir: data
            nginx:
              sites_dir: sites
            build:
              allowed_hosts: ["github.com"]
              allow_file_urls: \(allowFiles)
            repos:
              acme/api:
                build:
                  context: "app"
                  dockerfile: "deploy/Dockerfile"
                  args: {SHA: "{{sha}}", PR: "{{number}}"}
                  target: "runtime"
                port: 8080
            \(extra)
            """,
            in: dir
        )
    }

    static func env(cloneURL: String?) -> StagerKit.Environment {
        StagerKit.Environment(
            repo: "acme/api",
            number: 12,
            slug: "feature-x",
            branch: "feature/x",
            title: "t",
            author: "a",
            headRepo: "acme/api",
            desired: .present,
            desiredSha: Fixtures.sha("b"),
            desiredVersion: 1,
            appliedVersion: 0,
            sourceUpdatedAt: "",
            status: .queued,
            commentPending: false,
            createdAt: Date(),
            updatedAt: Date(),
            admitted: true,
            cloneURL: cloneURL
        )
    }

    @Test func cloneURLsComeOnlyFromAllowedPlaces() throws {
        let config = try Self.config()
        let builder = ImageBuilder(config: config, runner: RecordingRunner(), slots: Slots(limit: 1))
        let repo = try #require(config.repo("acme/api"))
        #expect(try builder.cloneURL(for: Self.env(cloneURL: "https://github.com/acme/api.git"), repo: repo).host == "github.com")
        for refused in [
            "https://evil.example.com/acme/api.git", "http://github.com/acme/api.git", "file:///srv/git/api.git",
            "https://user:pw@github.com/acme/api.git", "ssh://git@github.com/acme/api.git", "-upload-pack=x",
        ] {
            #expect(throws: BuildError.self, "\(refused)") { try builder.cloneURL(for: Self.env(cloneURL: refused), repo: repo) }
        }
        #expect(throws: BuildError.self) { try builder.cloneURL(for: Self.env(cloneURL: nil), repo: repo) }
        let files = ImageBuilder(config: try Self.config(allowFiles: true), runner: RecordingRunner(), slots: Slots(limit: 1))
        #expect(try files.cloneURL(for: Self.env(cloneURL: "file:///srv/git/api.git"), repo: repo).path == "/srv/git/api.git")
    }

    @Test func theTokenReachesGitThroughTheEnvironmentOnly() throws {
        let builder = ImageBuilder(config: try Self.config(), runner: RecordingRunner(), slots: Slots(limit: 1))
        let token = "ghp_secretvalue1234567890"
        let folder = URL(fileURLWithPath: "/tmp/work")
        let sha = Fixtures.sha("b")
        let commands = builder.fetchCommands(url: try #require(URL(string: "https://github.com/acme/api.git")), sha: sha, into: folder, token: token)
        #expect(
            commands.map(\.arguments) == [
                ["init", "--quiet", "/tmp/work"],
                ["-C", "/tmp/work", "fetch", "--depth", "1", "--no-tags", "--", "https://github.com/acme/api.git", sha],
                ["-C", "/tmp/work", "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", "FETCH_HEAD"],
            ]
        )
        for command in commands {
            #expect(!command.arguments.joined(separator: " ").contains(token))
        }
        let fetch = commands[1].environment
        let header = Data("x-access-token:\(token)".utf8).base64EncodedString()
        #expect(fetch["GIT_CONFIG_COUNT"] == "1" && fetch["GIT_CONFIG_KEY_0"] == "http.extraHeader")
        #expect(fetch["GIT_CONFIG_VALUE_0"] == "Authorization: Basic \(header)")
        #expect(fetch["GIT_TERMINAL_PROMPT"] == "0")
        // No token for a local mirror.
        let local = builder.fetchCommands(url: URL(fileURLWithPath: "/srv/git/api.git"), sha: sha, into: folder, token: token)
        #expect(local[1].environment["GIT_CONFIG_VALUE_0"] == nil)
    }

    @Test func theBuildCommandCarriesLabelsArgsAndTarget() throws {
        let config = try Self.config()
        let builder = ImageBuilder(config: config, runner: RecordingRunner(), slots: Slots(limit: 1))
        let spec = try #require(config.repo("acme/api")?.build)
        let sha = Fixtures.sha("b")
        let command = try builder.buildCommand(
            tag: "stager/acme-api:\(sha)",
            spec: spec,
            env: Self.env(cloneURL: nil),
            sha: sha,
            folder: URL(fileURLWithPath: "/tmp/work")
        )
        #expect(command.executable == "docker" && command.environment["DOCKER_BUILDKIT"] == "0")
        let args = command.arguments
        #expect(
            args.starts(with: [
                "build", "--tag", "stager/acme-api:\(sha)", "--force-rm", "--memory", "2g", "--memory-swap", "2g",
                "--file", "/tmp/work/deploy/Dockerfile",
            ])
        )
        // A build runs the PR's code: it has a time limit (build.timeout, 20 minutes unless set).
        #expect(command.timeout == .seconds(1200))
        #expect(args.contains("stager.managed=true") && args.contains("stager.pr=12") && args.contains("stager.sha=\(sha)"))
        #expect(args.contains("SHA=\(sha)") && args.contains("PR=12"))
        #expect(args.suffix(4) == ["--target", "runtime", "--", "/tmp/work/app"])
    }

    @Test func configurationOfABuildingRepository() throws {
        let config = try Self.config()
        let repo = try #require(config.repo("acme/api"))
        #expect(repo.image == "stager/acme-api:{{sha}}")
        #expect(repo.build?.context == "app" && repo.build?.target == "runtime")
        #expect(config.limits.concurrentBuilds == 1)
        let dir = try TestConfig.temporaryDirectory("build-config")
        #expect(throws: ConfigError.self) { try TestConfig.load("repos:\n  acme/api:\n    build: {context: \"../outside\"}\n", in: dir) }
        #expect(throws: ConfigError.self) { try TestConfig.load("repos:\n  acme/api:\n    image: \"acme/api:latest\"\n    build: {}\n", in: dir) }
        #expect(throws: ConfigError.self) { try TestConfig.load("limits:\n  concurrent_builds: 0\n", in: dir) }
        let defaults = try TestConfig.load("repos:\n  acme/api:\n    build: {}\n", in: dir)
        #expect(defaults.build.allowedHosts == ["github.com"] && !defaults.build.allowFileURLs)
        #expect(defaults.repo("acme/api")?.build == StagerConfig.RepoBuild(context: ".", dockerfile: "Dockerfile", args: [:], target: nil))
    }

    @Test func tokensAreMaskedInLogTails() {
        let text = "remote: auth ghp_secretvalue1234567890 failed\nAuthorization: github_pat_11ABCDEFG0123456789_xyz\nmine: s3cr3t-token"
        let masked = SecretMask.mask(text, secrets: ["s3cr3t-token"])
        #expect(!masked.contains("ghp_secret") && !masked.contains("github_pat_11") && !masked.contains("s3cr3t-token"))
        #expect(masked.contains("remote: auth *** failed"))
    }

    @Test func slotsServeInOrderAndLetCancelledWaitersGo() async throws {
        let slots = Slots(limit: 1)
        try await slots.acquire()
        let order = OrderBook()
        let first = Task {
            try await slots.acquire()
            await order.add(1)
            await slots.release()
        }
        try await Task.sleep(for: .milliseconds(50))
        let cancelled = Task {
            try await slots.acquire()
            await order.add(2)
            await slots.release()
        }
        try await Task.sleep(for: .milliseconds(50))
        let third = Task {
            try await slots.acquire()
            await order.add(3)
            await slots.release()
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(await slots.queued == 3)
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        await slots.release()
        try await first.value
        try await third.value
        #expect(await order.items == [1, 3])
        #expect(await slots.queued == 0)
    }
}

actor OrderBook {
    var items: [Int] = []
    func add(_ item: Int) { items.append(item) }
}

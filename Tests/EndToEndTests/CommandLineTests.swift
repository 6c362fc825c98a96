import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// The built executable: exit statuses and messages from the contract.
@Suite("stager executable")
struct CommandLineTests {
    func stager(_ arguments: [String], environment: [String: String] = ["STAGER_WEBHOOK_SECRET": "s"]) async throws -> CommandResult {
        try await SubprocessRunner().run(Command(StagerProcess.binary, arguments, environment: environment))
    }

    @Test func badConfigurationExits2NamingKeyAndFile() async throws {
        let dir = try TestConfig.temporaryDirectory("cli")
        let file = dir.appendingPathComponent("bad.yml")
        try "server:\n  listen: \"nowhere\"\n".write(to: file, atomically: true, encoding: .utf8)
        let result = try await stager(["ls", "--config", file.path])
        #expect(result.exitCode == 2)
        #expect(result.standardError.contains("bad.yml") && result.standardError.contains("server.listen"))
    }

    @Test func badUsageExits2() async throws {
        #expect(try await stager(["ls", "--no-such-flag"]).exitCode == 2)
        #expect(try await stager(["no-such-command"]).exitCode == 2)
    }

    @Test func lsListsAsJSON() async throws {
        let dir = try TestConfig.temporaryDirectory("cli-ls")
        let file = dir.appendingPathComponent("stager.yml")
        try "data_dir: data\n".write(to: file, atomically: true, encoding: .utf8)
        let result = try await stager(["ls", "--config", file.path, "--json"])
        #expect(result.exitCode == 0)
        #expect(try JSONDecoder().decode([EnvironmentView].self, from: Data(result.standardOutput.utf8)).isEmpty)
        #expect(try await stager(["ls", "--config", file.path]).standardOutput.contains("no environments"))
    }
}

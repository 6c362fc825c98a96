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

    /// Every command but serve and check asks serve: without one, each says so in one line, exit 1.
    @Test func withoutServeACommandSaysSoInOneLine() async throws {
        let dir = try TestConfig.temporaryDirectory("cli-ls")
        let file = dir.appendingPathComponent("stager.yml")
        try "data_dir: data\n".write(to: file, atomically: true, encoding: .utf8)
        for arguments in [["ls", "--json"], ["gc"], ["sync"], ["deploy", "acme/web#1"], ["logs", "acme/web#1"]] {
            let result = try await stager(arguments + ["--config", file.path])
            #expect(result.exitCode == 1, "\(arguments)")
            #expect(result.standardOutput.isEmpty)
            let socket = dir.appendingPathComponent("data/stager.sock").path
            #expect(result.standardError == "stager: stager serve is not running (nothing answers at \(socket))\n", "\(result.standardError)")
        }
    }
}

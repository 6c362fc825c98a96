import ArgumentParser
import Foundation
import StagerKit

/// How a command reaches serve: this machine's through its socket, or another's with `--server` and the
/// admin token. serve carries the command out; this prints what it sends back.
struct ClientOptions: ParsableArguments {
    @OptionGroup var options: ConfigOptions

    @Option(
        name: .long,
        help: "Ask the stager serve at this URL (default: $STAGER_SERVER; without either, this machine's serve through <data_dir>/stager.sock)."
    )
    var server: String?

    @Option(name: .long, help: "A file holding the admin token for --server (default: $STAGER_TOKEN).")
    var tokenFile: String?

    func address(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ServeAddress {
        guard let server = server ?? environment["STAGER_SERVER"].flatMap({ $0.isEmpty ? nil : $0 }) else {
            return .socket(ServeSocket(dataDir: try options.load().dataDir).path)
        }
        guard let url = URL(string: server), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
            throw ValidationError("--server: expected a URL such as https://stager.example.com, got \"\(server)\"")
        }
        guard let tokenFile else {
            return .remote(url, token: environment["STAGER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
        }
        let token: String
        do {
            token = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw CommandFailure("--token-file \(tokenFile): cannot read it (\(error.localizedDescription))")
        }
        guard !token.isEmpty else { throw CommandFailure("--token-file \(tokenFile) is empty") }
        return .remote(url, token: token)
    }

    /// Asks serve to run `verb`, printing its output as it comes; exits with serve's status.
    func run(_ verb: ServeCommands.Verb, _ arguments: CommandArguments = CommandArguments()) async throws {
        let status = try await ServeClient(address: try address()).run(verb, arguments) { event in
            if let text = event.out { FileHandle.standardOutput.write(Data(text.utf8)) }
            if let text = event.err { FileHandle.standardError.write(Data(text.utf8)) }
        }
        if status != 0 { throw ExitCode(status) }
    }
}

import Foundation

/// `stager check`: one line per check, each saying what is wrong and how to fix it.
public struct Preflight: Sendable {
    public struct Result: Sendable {
        public var name: String
        public var passed: Bool
        public var detail: String

        public var line: String { "\(passed ? "ok  " : "FAIL") \(name): \(detail)" }
    }

    let config: StagerConfig
    let runner: any CommandRunner

    public init(config: StagerConfig, runner: any CommandRunner) {
        self.config = config
        self.runner = runner
    }

    public func run() async -> [Result] {
        var results = [Result(name: "config", passed: true, detail: "\(config.configFile?.path ?? "(embedded)") is valid, \(config.repos.count) repositories")]
        do {
            try await DockerCLI(command: config.dockerCommand, instance: config.instance, runner: runner).ping()
            results.append(Result(name: "engine", passed: true, detail: "the Docker engine answers"))
        } catch {
            results.append(Result(name: "engine", passed: false, detail: "\(error); start dockerd or fix docker.command"))
        }
        results.append(sitesDirWritable())
        let test = try? await runner.run(Command(argv: config.nginx.testCommand))
        if let test, test.succeeded {
            results.append(Result(name: "nginx", passed: true, detail: "`\(config.nginx.testCommand.joined(separator: " "))` passes"))
        } else {
            let message = test?.message ?? "could not run it"
            results.append(Result(name: "nginx", passed: false, detail: "`\(config.nginx.testCommand.joined(separator: " "))` fails: \(message); fix nginx.test_command or nginx's configuration"))
        }
        results.append(Result(
            name: "github", passed: true,
            detail: config.github.token == nil ? "no token: PR comments go to the log and dashboard only" : "token set for \(config.github.apiURL.absoluteString)"
        ))
        return results
    }

    private func sitesDirWritable() -> Result {
        let dir = config.nginx.sitesDir
        let probe = dir.appendingPathComponent(".stager-check-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try Data().write(to: probe)
            try FileManager.default.removeItem(at: probe)
            return Result(name: "sites_dir", passed: true, detail: "\(dir.path) is writable")
        } catch {
            return Result(name: "sites_dir", passed: false, detail: "\(dir.path) is not writable (\(error.localizedDescription)); fix nginx.sites_dir")
        }
    }
}

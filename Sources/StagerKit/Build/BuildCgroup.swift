import Foundation

/// The cgroup every build's RUN steps run under (`docker build --cgroup-parent`), whose `pids.max` bounds
/// them all together (`build.pids`): a fork bomb in a PR's Dockerfile stops there instead of taking the
/// host. RUN steps run as root, which `--ulimit nproc` does not limit, so a cgroup is the bound that holds.
/// Made once per serve, for an engine on this host with the cgroupfs driver (cgroup v1 or v2); with another
/// driver, builds run without it and `stager check` says so.
public actor BuildCgroup {
    private let runner: any CommandRunner
    private let dockerCommand: [String]
    private let name: String
    private let pids: Int
    private let root: URL
    /// nil until asked; then the parent's name, or why there is none.
    private var decided: Result<String, Unavailable>?

    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    public init(config: StagerConfig, runner: any CommandRunner, root: URL = URL(fileURLWithPath: "/sys/fs/cgroup")) {
        self.runner = runner
        self.dockerCommand = config.dockerCommand
        self.name = "stager-\(config.instance)-builds"
        self.pids = config.build.pids
        self.root = root
    }

    /// The `--cgroup-parent` for builds, or why there is none (said once in the log by the caller).
    public func parent() async -> Result<String, Unavailable> {
        if let decided { return decided }
        let outcome = await prepare()
        // A docker that did not answer is asked again next time; anything else is decided for good.
        if case .failure(let problem) = outcome, problem.description.hasPrefix("docker info") { return outcome }
        decided = outcome
        return outcome
    }

    private func prepare() async -> Result<String, Unavailable> {
        let info: CommandResult
        do {
            info = try await runner.run(Command(argv: dockerCommand, appending: ["info", "--format", "{{.CgroupDriver}} {{.CgroupVersion}}"]))
        } catch {
            return .failure(Unavailable(description: "docker info could not run: \(error)"))
        }
        guard info.succeeded else { return .failure(Unavailable(description: "docker info failed: \(info.message)")) }
        let fields = info.standardOutput.split(whereSeparator: \.isWhitespace).map(String.init)
        guard fields.first == "cgroupfs" else {
            return .failure(Unavailable(description: "the engine's cgroup driver is \(fields.first ?? "unknown"), not cgroupfs"))
        }
        let folder = fields.dropFirst().first == "2" ? root.appendingPathComponent(name) : root.appendingPathComponent("pids/\(name)")
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let limit = folder.appendingPathComponent("pids.max")
            guard FileManager.default.fileExists(atPath: limit.path) else {
                return .failure(Unavailable(description: "\(folder.path) has no pids controller"))
            }
            try Data("\(pids)\n".utf8).write(to: limit)
        } catch {
            return .failure(Unavailable(description: "cannot set \(folder.path)/pids.max: \(error)"))
        }
        return .success(name)
    }
}

import Crypto
import Foundation

/// Everything needed to start one environment's container.
public struct ContainerSpec: Sendable, Equatable {
    public var name: String
    public var image: String
    public var command: [String]
    public var containerPort: Int
    public var labels: [String: String]
    public var environment: [String: String]
    public var memory: String
    public var cpus: String
    public var pids: Int
    /// Capabilities given back after `--cap-drop ALL` (`repos.X.cap_add`).
    public var capAdd: [String] = []
    /// A read-only root filesystem with a tmpfs `/tmp` (`repos.X.read_only`).
    public var readOnly = false
    /// The environment's network (when it has services), and this container's host name on it.
    public var network: String? = nil
    public var alias: String? = nil
    /// Docker volume name → mount path.
    public var mounts: [String: String] = [:]
    /// false: a service, never published on the host; `containerPort` only says where it listens.
    public var publish = true
}

/// What the docker CLI prints with a `--format` of tab-separated fields.
enum DockerOutput {
    /// Each line's fields; a line with another count of fields is not one docker printed for that format.
    static func rows(_ output: String, fields count: Int) -> [[String]] {
        output.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            return fields.count == count ? fields : nil
        }
    }
}

extension ContainerSpec {
    /// Names stay valid DNS labels (at most 63 characters), as swarm's service names must be: a longer one
    /// keeps its head and ends in a digest of the whole, so it is the same every time and still unique.
    static func fitName(_ name: String) -> String {
        guard name.count > 63 else { return name }
        let digest = SHA256.hash(data: Data(name.utf8)).prefix(5).map { String(format: "%02x", $0) }.joined()
        let head = name.prefix(52).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return "\(head)-\(digest)"
    }
}

extension String {
    /// A line break or NUL: what ends a line in an env file (and what git never allows in a ref).
    var hasLineBreak: Bool { contains { $0 == "\n" || $0 == "\r" || $0 == "\0" } }
}

public enum ContainerSpecError: Error, CustomStringConvertible, Equatable {
    case lineBreakInVariable(String)
    case cannotWrite(String)

    public var description: String {
        switch self {
        case .lineBreakInVariable(let key): return "the value of \(key) contains a line break"
        case .cannotWrite(let path): return "cannot write \(path)"
        }
    }
}

/// One container engine, container by container: the docker CLI, or swarm through it. `EngineStacks` makes
/// environments of it; nothing above `StackRuntime` sees it.
public protocol ContainerEngine: Sendable {
    /// Starts the container detached and returns its id and where it answers: the loopback port it was
    /// published on (docker), or its node's address and published port (swarm).
    func start(_ spec: ContainerSpec) async throws -> (id: String, upstream: Upstream)
    /// Containers of this instance, optionally only those of one PR.
    func list(for key: PullRequestKey?) async throws -> [ContainerInfo]
    /// The ids of one PR's containers without their state: all a teardown needs, in one docker call.
    func ids(for key: PullRequestKey) async throws -> [String]
    func remove(_ idOrName: String) async throws
    func logTail(_ idOrName: String, lines: Int) async throws -> String
    /// Removes an image unless a container still uses it; false when one does.
    func removeImage(_ reference: String) async throws -> Bool
    /// Whether an image with this reference exists locally.
    func imageExists(_ reference: String) async throws -> Bool
    /// Images Stager built for this instance (labelled like its containers), as `repository:tag` with their PR.
    func builtImages() async throws -> [(image: String, key: PullRequestKey)]
    /// Whether the engine answers at all.
    func ping() async throws
    /// Makes an image built here pullable wherever containers run: nothing on one engine; on swarm, a push.
    func distribute(_ image: String) async throws

    // Sleep stops an environment's containers and keeps them; wake starts them again.

    /// Stops a container and keeps it; one already stopped counts as stopped.
    func stop(_ idOrName: String) async throws
    /// Starts a stopped container again; where its `containerPort` answers now (docker picks a new loopback
    /// port), nil for a container that publishes none.
    func restart(_ idOrName: String, containerPort: Int?) async throws -> Upstream?
    /// Sends the container's log to `sink` as it comes (`stager logs`); docker's exit status.
    func streamLogs(_ idOrName: String, tail: Int?, follow: Bool, to sink: OutputSink) async throws -> Int32
    /// Whether a service is ready: on `network` and, where its address there is reachable from this machine
    /// (a bridge network), `answers` it; on a swarm overlay, which is not, a running task counts.
    func serviceReady(_ container: String, on network: String, answers: @Sendable (String) async -> Bool) async throws -> Bool
    /// Whether the engine moves containers on its own (swarm reschedules a task off a drained or lost node).
    var placesTasks: Bool { get }

    // An environment with services is a set of containers on a network of its own, with volumes.

    /// Starts a container that is not published on the host (a service); returns its id.
    func startService(_ spec: ContainerSpec) async throws -> String
    /// Runs a container to its end (`release`), at most `timeout`; its exit status and output.
    func runToEnd(_ spec: ContainerSpec, timeout: Duration) async throws -> (exitCode: Int32, output: String)
    /// Creates the network unless it exists.
    func ensureNetwork(_ name: String, labels: [String: String]) async throws
    /// Creates the volume unless it exists.
    func ensureVolume(_ name: String, labels: [String: String]) async throws
    /// Whether a volume of this name exists (a seed must, before it is copied).
    func volumeExists(_ name: String) async throws -> Bool
    /// Copies every file of `seed` into `volume` with a short-lived container of `image` (which holds busybox).
    func copyVolume(from seed: String, to volume: String, with copier: SeedCopier, labels: [String: String]) async throws
    /// Networks and volumes of this instance, optionally only those of one PR.
    func stackResources(for key: PullRequestKey?) async throws -> [StackResource]
    /// Removes a network or volume; one already gone counts as removed.
    func remove(_ resource: StackResource) async throws
}

extension ContainerEngine {
    public func distribute(_ image: String) async throws {}
}

/// What copies a seed volume: an image the host has already, never one pulled from a registry.
public enum SeedCopier: Sendable, Equatable {
    /// `docker.seed_image`: an image that holds busybox.
    case busybox(image: String)
    /// The service's own image, which the deploy runs anyway: its own `cp -a`, or busybox's.
    case serviceImage(String)

    /// The image, and what runs in it, for `docker run`.
    var arguments: [String] {
        switch self {
        case .busybox(let image):
            return ["--", image, "busybox", "cp", "-a", "/from/.", "/to/"]
        case .serviceImage(let image):
            // A fixed script, nothing of anyone's input: the image's cp where it has one, else busybox's.
            return ["--entrypoint", "/bin/sh", "--", image, "-c", "cp -a /from/. /to/ 2>/dev/null || busybox cp -a /from/. /to/"]
        }
    }

    /// What copies seeds with `docker.seed_image` set, or without it: for `stager check`.
    public static func describe(seedImage: String?) -> String {
        guard let seedImage else { return "cp -a in each service's own image (set docker.seed_image for images without a shell)" }
        return "busybox cp -a in \(seedImage) (docker.seed_image)"
    }
}

/// A network or volume of an environment.
public struct StackResource: Sendable, Equatable, Hashable {
    public enum Kind: String, Sendable { case network, volume }
    public var kind: Kind
    public var name: String
    public var repo: String
    public var number: Int

    public var key: PullRequestKey { PullRequestKey(repo: repo, number: number) }

    public init(kind: Kind, name: String, repo: String, number: Int) {
        self.kind = kind
        self.name = name
        self.repo = repo
        self.number = number
    }
}

/// Labels every Stager container carries (see CONTRACT.md).
public enum ContainerLabels {
    public static let managed = "stager.managed"
    public static let instance = "stager.instance"
    public static let repo = "stager.repo"
    public static let pr = "stager.pr"
    /// A branch environment's (negative) number, in place of `stager.pr`, which it does not have.
    public static let branchEnvironment = "stager.branch-env"
    public static let branch = "stager.branch"
    public static let sha = "stager.sha"
    public static let slug = "stager.slug"
    /// `app`, `service` or `release`.
    public static let role = "stager.role"
    public static let service = "stager.service"
    /// A fingerprint of a service's definition: a changed one recreates the service.
    public static let definition = "stager.definition"

    /// The label that says whose an object is: `stager.pr=N`, or `stager.branch-env=-N` for a branch's environment.
    public static func owner(_ key: PullRequestKey) -> [String: String] {
        [key.isBranch ? branchEnvironment : pr: String(key.number)]
    }

    /// A Go template printing an object's number: only one of the two labels is set, so the two side by side
    /// print it (`labels` reads the label map, such as `.Config.Labels`; nil: docker's `.Label`).
    static func numberTemplate(labels: String? = nil) -> String {
        guard let labels else { return "{{.Label \"\(pr)\"}}{{.Label \"\(branchEnvironment)\"}}" }
        return "{{index \(labels) \"\(pr)\"}}{{index \(labels) \"\(branchEnvironment)\"}}"
    }
}

import Crypto
import Foundation

/// What the services beside an environment's app should be (see CONTRACT.md, "Services and data beside
/// the app"): each service's definition fingerprint, and whether a `release` command runs before the app.
public struct StackDesire: Sendable, Equatable {
    /// Service name → fingerprint of its definition.
    public var services: [String: String]
    public var release: Bool

    public init(services: [String: String] = [:], release: Bool = false) {
        self.services = services
        self.release = release
    }

    public static let none = StackDesire()

    /// Whether the service containers observed differ from the wanted ones: one missing, stopped, of an
    /// older definition, doubled, or of a service no longer configured.
    func needsPreparing(_ observed: [ContainerInfo]) -> Bool {
        for (name, definition) in services {
            let mine = observed.filter { $0.service == name }
            guard mine.count == 1, let only = mine.first, only.running, only.definition == definition else { return true }
        }
        return observed.contains { services[$0.service ?? ""] == nil }
    }
}

/// The names, labels and container specs of one environment's stack: its network
/// `stager-<instance>-<slug>`, its volumes `…-<service>-<volume>` and its service containers `…-<service>`.
struct StackLayout {
    let env: Environment
    let repo: StagerConfig.Repo
    let config: StagerConfig

    /// The layout of `env`, nil when its repository has neither services nor a release command.
    static func of(_ env: Environment, config: StagerConfig) -> StackLayout? {
        guard let repo = config.repo(env.repo), !repo.services.isEmpty || repo.release != nil else { return nil }
        return StackLayout(env: env, repo: repo, config: config)
    }

    /// What the planner is told of `env`'s stack.
    static func desire(for env: Environment, config: StagerConfig) -> StackDesire {
        of(env, config: config)?.desire(sha: env.desiredSha) ?? .none
    }

    var network: String { "stager-\(config.instance)-\(env.slug)" }

    func volume(_ service: String, _ name: String) -> String { "\(network)-\(service)-\(name)" }

    /// The store's mark that a volume's seed copy finished (empty once the volume is removed).
    static func seededFact(_ volume: String) -> String { "volume.seeded:\(volume)" }

    /// What networks, volumes and helper containers carry: enough for gc to tell whose they are.
    var labels: [String: String] {
        [
            ContainerLabels.managed: "true", ContainerLabels.instance: config.instance,
            ContainerLabels.repo: env.repo, ContainerLabels.slug: env.slug,
        ].merging(ContainerLabels.owner(env.key)) { $1 }
    }

    func desire(sha: String) -> StackDesire {
        var services: [String: String] = [:]
        for service in repo.services {
            // A service whose image cannot be rendered is recreated until it can: its start fails and says why.
            // the start names the problem
            services[service.name] = (try? spec(for: service, sha: sha))?.labels[ContainerLabels.definition] ?? "unrenderable"
        }
        return StackDesire(services: services, release: repo.release != nil)
    }

    /// The service's container: on the network under its name, never published, hardened like the app.
    func spec(for service: StagerConfig.Service, sha: String) throws -> ContainerSpec {
        let image = try ImageReference.render(service.image, names: PullRequestNames(env, sha: sha))
        let limits = config.limits
        var spec = ContainerSpec(
            name: ContainerSpec.fitName("\(network)-\(service.name)"),
            image: image,
            command: service.command,
            containerPort: service.port ?? 0,
            // The usual labels; `stager.sha` is the commit whose deploy created it.
            labels: labels.merging([
                ContainerLabels.role: "service", ContainerLabels.service: service.name,
                ContainerLabels.branch: env.branch, ContainerLabels.sha: sha,
            ]) { $1 },
            environment: service.env,
            memory: service.memory ?? limits.memory,
            cpus: service.cpus ?? limits.cpus,
            pids: service.pids ?? limits.pids,
            capAdd: service.capAdd
        )
        spec.network = network
        spec.alias = service.name
        spec.publish = false
        spec.mounts = Dictionary(uniqueKeysWithValues: service.volumes.map { (volume(service.name, $0.key), $0.value) })
        spec.labels[ContainerLabels.definition] = Self.fingerprint(spec)
        return spec
    }

    /// The release command's container: the new app image with the app's variables, on the network.
    func releaseSpec(app: ContainerSpec, command: [String], sha: String) -> ContainerSpec {
        var spec = app
        spec.name = "\(network)-release-\(sha.prefix(7))-\(UUID().uuidString.prefix(4).lowercased())"
        spec.command = command
        spec.publish = false
        spec.labels[ContainerLabels.role] = "release"
        return spec
    }

    /// What the runtime prepares at `sha`; `seeded`: the volumes the store marks as seeded. A service whose
    /// image cannot be rendered fails the deploy, naming it.
    func stackSpec(sha: String, seeded: Set<String>) throws -> StackSpec {
        let groups = try startGroups.map { group in
            try group.map { service in
                let container: ContainerSpec
                do {
                    container = try spec(for: service, sha: sha)
                } catch {
                    throw StackFailure(reason: "service \(service.name): \(error)")
                }
                return StackSpec.Service(
                    name: service.name,
                    container: container,
                    volumes: service.volumes.keys.sorted().map { (volume(service.name, $0), service.seed[$0]) },
                    check: ServiceCheck(port: service.port, healthPath: service.healthPath, timeout: service.healthTimeout),
                    secrets: Array(service.env.values)
                )
            }
        }
        return StackSpec(key: env.key, network: network, labels: labels, groups: groups, seedImage: config.seedImage, seeded: seeded)
    }

    /// Volumes that start as a copy of a seed.
    var seededVolumes: [String] {
        repo.services.flatMap { service in service.seed.keys.sorted().map { volume(service.name, $0) } }
    }

    /// Services grouped by start: each group starts together once every group before it is healthy.
    private var startGroups: [[StagerConfig.Service]] {
        var depth: [String: Int] = [:]
        // `repo.services` is ordered so that each comes after what it depends on.
        for service in repo.services {
            depth[service.name] = (service.dependsOn.compactMap { depth[$0] }.max() ?? -1) + 1
        }
        let deepest = depth.values.max() ?? -1
        return (0...max(deepest, 0)).map { level in repo.services.filter { depth[$0.name] == level } }.filter { !$0.isEmpty }
    }

    /// A digest of everything that makes the container what it is; a change recreates it.
    static func fingerprint(_ spec: ContainerSpec) -> String {
        var parts = [spec.image] + spec.command + ["port=\(spec.containerPort)", spec.memory, spec.cpus, String(spec.pids)]
        parts += spec.capAdd + spec.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        parts += spec.mounts.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }
        let digest = SHA256.hash(data: Data(parts.joined(separator: "\u{0}").utf8))
        return digest.prefix(8).map { String(format: "%02x", $0) }.joined()
    }
}

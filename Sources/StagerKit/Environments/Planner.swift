/// A container of one PR as the engine reports it.
public struct ContainerInfo: Sendable, Equatable, Hashable {
    public var id: String
    public var name: String
    public var repo: String
    public var number: Int
    public var sha: String
    public var slug: String
    public var running: Bool
    /// The port the app answers on: published on loopback (docker), or on its node (swarm).
    public var hostPort: Int?
    /// The swarm node's address the port is published on; nil: this machine's loopback.
    public var address: String?
    /// Swarm is placing it (a task pending or starting after a drain or a lost node): left to the engine.
    public var moving = false
    /// The service this container runs; nil for the app.
    public var service: String?
    /// A service's definition fingerprint (`stager.definition`).
    public var definition: String?

    public init(
        id: String,
        name: String,
        repo: String,
        number: Int,
        sha: String,
        slug: String,
        running: Bool,
        hostPort: Int?,
        service: String? = nil,
        definition: String? = nil,
        address: String? = nil,
        moving: Bool = false
    ) {
        self.address = address
        self.moving = moving
        self.service = service
        self.definition = definition
        self.id = id
        self.name = name
        self.repo = repo
        self.number = number
        self.sha = sha
        self.slug = slug
        self.running = running
        self.hostPort = hostPort
    }

    /// Whether a vhost routing to `port` on `host` (nil: loopback) reaches it.
    public func answers(atPort port: Int?, host: String?) -> Bool {
        port == hostPort && (host ?? Upstream.loopback) == (address ?? Upstream.loopback)
    }

    public var key: PullRequestKey { PullRequestKey(repo: repo, number: number) }

    /// Where requests for it go; nil for one that publishes nothing.
    public var upstream: Upstream? { hostPort.map { Upstream(host: address ?? Upstream.loopback, port: $0) } }
}

/// Where an app answers: a loopback port docker published, or a port a swarm node publishes in host mode.
public struct Upstream: Sendable, Equatable, Hashable, CustomStringConvertible {
    public static let loopback = "127.0.0.1"
    public var host: String
    public var port: Int

    public init(host: String = Upstream.loopback, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { "\(host):\(port)" }

    /// The swarm node's address; nil for loopback (what `ContainerInfo.address` holds).
    public var nodeAddress: String? { host == Self.loopback ? nil : host }
}

/// What the world looks like for one PR right now.
public struct Observation: Sendable, Equatable {
    /// App containers labelled with this PR, running or not.
    public var containers: [ContainerInfo]
    /// Its service containers (`stager.role=service`).
    public var services: [ContainerInfo] = []
    /// The container the vhost file routes to, nil when there is no vhost file.
    public var routedContainer: String?
    /// The port the vhost file routes to.
    public var routedPort: Int?
    /// The address it routes to (a swarm node's); nil: loopback.
    public var routedHost: String?
    /// The vhost routes to the wake path: the environment sleeps.
    public var routedAsleep = false
    public var status: EnvironmentStatus
    public var failedSha: String?
    public var hasComment: Bool
    public var commentPending: Bool

    public init(
        containers: [ContainerInfo],
        routedContainer: String?,
        routedPort: Int? = nil,
        status: EnvironmentStatus,
        failedSha: String? = nil,
        hasComment: Bool = false,
        commentPending: Bool = false
    ) {
        self.containers = containers
        self.routedContainer = routedContainer
        self.routedPort = routedPort
        self.status = status
        self.failedSha = failedSha
        self.hasComment = hasComment
        self.commentPending = commentPending
    }
}

extension Observation {
    /// What is known of an environment, with what the engine and the sites folder say.
    public init(of env: Environment, containers: [ContainerInfo], routed: RoutedUpstream?) {
        self.init(
            containers: containers.filter { $0.service == nil },
            routedContainer: routed?.container,
            routedPort: routed?.port,
            status: env.status,
            failedSha: env.failedSha,
            hasComment: env.commentID != nil,
            commentPending: env.commentPending
        )
        services = containers.filter { $0.service != nil }
        routedAsleep = routed?.asleep ?? false
        routedHost = routed?.host
    }

    /// The vhost routes elsewhere than where `container` answers now: the engine restarted it on a new
    /// loopback port, or swarm moved it to another node.
    func routesAway(from container: ContainerInfo) -> Bool {
        guard routedPort != nil else { return false }
        return !container.answers(atPort: routedPort, host: routedHost)
    }
}

/// One thing the controller does. Steps after `startContainer` or `adoptContainer` act on that container,
/// the candidate.
public enum Step: Sendable, Equatable {
    /// The network, volumes (seeded) and service containers as configured, each service healthy.
    case prepareStack
    /// The repository's `release` command in the new image, before its container starts.
    case runRelease(sha: String)
    case startContainer(sha: String)
    case adoptContainer(ContainerInfo)
    /// Wait for the health path, then the smoke paths: nothing switches to a container that fails them.
    case awaitHealthy
    /// Write the vhost for the candidate, test, reload, and confirm through nginx.
    case routeToCandidate
    /// Let the container that served before finish the requests it has (the repo's `drain`).
    case drain
    case removeContainer(ContainerInfo)
    /// Mark ready and create or edit the sticky comment.
    case announceReady
    case removeVhost
    /// Service containers, the network and the volumes.
    case removeStack
    /// Write the vhost that sends requests to the wake path, reload, and confirm through nginx.
    case routeToWake(ContainerInfo)
    /// Stop a container and keep it (sleep): the app first, then its services.
    case stopContainer(ContainerInfo)
    /// Status `sleeping`: said in the audit trail, not on the PR.
    case markAsleep
    /// Start the stopped app again; it becomes the candidate, on the port the engine gives it now.
    case wakeContainer(ContainerInfo)
    /// Ready again after a wake: recorded, not said on the PR (no noise for sleep and wake).
    case markAwake
    case deleteComment
    case markRemoved
}

/// Desired state + observation in, steps out. Pure: no process, no clock, no I/O.
public enum Planner {
    /// `stack`: the services the repository configures now (none: a plain app).
    public static func plan(desired: DesiredState, observed: Observation, stack: StackDesire = .none) -> [Step] {
        switch desired {
        case .absent:
            return planAbsent(observed, stack: stack)
        case .asleep(let sha):
            if let steps = planAsleep(sha: sha, observed) { return steps }
            // Nothing of that sha was deployed to put to sleep: it is deployed first, and sleeps at the next pass.
            return plan(desired: .present(sha: sha), observed: observed, stack: stack)
        case .present(let sha):
            let steps = planPresent(sha: sha, observed, stack: stack)
            // Services come first, for a new deploy and beside an app that keeps serving alike (one removed by
            // hand, a changed definition); not for a sha that failed, which waits for a newer one.
            guard stack.needsPreparing(observed.services), observed.failedSha != sha else { return steps }
            return [.prepareStack] + steps
        }
    }

    /// The URL goes to the wake path before anything stops, so no request meets a stopped container; then
    /// the app stops, then its services. Nil when no container of `sha` serves the URL.
    private static func planAsleep(sha: String, _ observed: Observation) -> [Step]? {
        guard let app = observed.containers.first(where: { $0.name == observed.routedContainer && $0.sha == sha }) else { return nil }
        var steps: [Step] = observed.routedAsleep ? [] : [.routeToWake(app)]
        steps += observed.containers.filter { $0 != app }.map(Step.removeContainer)
        if app.running { steps.append(.stopContainer(app)) }
        steps += observed.services.filter(\.running).map(Step.stopContainer)
        // Said once all of it sleeps.
        if observed.status != .sleeping { steps.append(.markAsleep) }
        return steps
    }

    /// How the end of a plan that left the same sha serving is recorded: a wake is not said on the PR.
    private static func ready(_ observed: Observation) -> Step {
        isAsleep(observed) ? .markAwake : .announceReady
    }

    /// Asleep, or falling asleep (the URL already goes to the wake path): a wake starts what stopped.
    private static func isAsleep(_ observed: Observation) -> Bool {
        observed.status == .sleeping || observed.routedAsleep
    }

    private static func planAbsent(_ observed: Observation, stack: StackDesire) -> [Step] {
        var steps: [Step] = []
        if observed.routedContainer != nil { steps.append(.removeVhost) }
        steps += observed.containers.map(Step.removeContainer)
        if !observed.services.isEmpty || (!stack.services.isEmpty && observed.status != .removed) { steps.append(.removeStack) }
        if observed.hasComment || observed.commentPending { steps.append(.deleteComment) }
        if observed.status != .removed { steps.append(.markRemoved) }
        return steps
    }

    private static func planPresent(sha: String, _ observed: Observation, stack: StackDesire) -> [Step] {
        let serving = observed.containers.first { $0.running && $0.name == observed.routedContainer }

        if let serving, serving.sha == sha {
            let others = observed.containers.filter { $0 != serving }.map(Step.removeContainer)
            // The engine restarted the container (its own restart or dockerd's) on a new loopback port, swarm
            // moved it to another node, or a wake was cut short after its start: the vhost must follow it
            // before the URL works again.
            if observed.routedAsleep || observed.routesAway(from: serving) {
                return [.adoptContainer(serving), .awaitHealthy, .routeToCandidate] + others + [ready(observed)]
            }
            var steps = others
            if observed.status != .ready || observed.commentPending { steps.append(ready(observed)) }
            return steps
        }

        // Swarm is moving the app that serves to another node: the plan resumes once its task runs there.
        if serving == nil, observed.containers.contains(where: { $0.moving && $0.sha == sha && $0.name == observed.routedContainer }) {
            return []
        }

        // This sha already failed: keep whatever still serves, and wait for a newer intent.
        if observed.failedSha == sha {
            return observed.containers.filter { $0 != serving && !$0.running }.map(Step.removeContainer)
        }

        // A sleeping environment wakes: what was stopped starts again (its services first, by `.prepareStack`).
        if serving == nil, isAsleep(observed),
            let stopped = observed.containers.first(where: { !$0.running && $0.sha == sha && $0.name == observed.routedContainer })
        {
            return [.wakeContainer(stopped), .awaitHealthy, .routeToCandidate]
                + observed.containers.filter { $0 != stopped }.map(Step.removeContainer) + [ready(observed)]
        }

        var steps: [Step] = []
        let candidate = observed.containers.first { $0.running && $0.sha == sha && $0 != serving }
        if let candidate {
            steps.append(.adoptContainer(candidate))
        } else {
            // The release runs once per deploy, before the new app starts; an adopted one ran it already.
            if stack.release { steps.append(.runRelease(sha: sha)) }
            steps.append(.startContainer(sha: sha))
        }
        steps += [.awaitHealthy, .routeToCandidate]
        // Nothing goes before the new container serves; leftovers that never served go then, and the one
        // that served only after the announcement and a drain, so a redeploy never drops a request.
        steps += observed.containers.filter { $0 != candidate && $0 != serving }.map(Step.removeContainer)
        steps.append(.announceReady)
        if let serving { steps += [.drain, .removeContainer(serving)] }
        return steps
    }
}

import Foundation
import Logging

/// The seams the controller works through, each a protocol with an in-memory twin for the unit tests.
public struct ControllerSeams: Sendable {
    public var environments: any EnvironmentRepository
    public var runtime: any StackRuntime
    public var frontDoor: any FrontDoor
    public var announcer: Announcer
    public var probe: any Prober
    public var builder: any ImageBuilding
    /// nil without a GitHub token: then no label can be verified, and PRs that need approval stay blocked.
    public var permissions: (any PermissionLookup)?

    public init(
        environments: any EnvironmentRepository,
        runtime: any StackRuntime,
        frontDoor: any FrontDoor,
        announcer: Announcer,
        probe: any Prober,
        builder: any ImageBuilding,
        permissions: (any PermissionLookup)?
    ) {
        self.environments = environments
        self.runtime = runtime
        self.frontDoor = frontDoor
        self.announcer = announcer
        self.probe = probe
        self.builder = builder
        self.permissions = permissions
    }
}

/// How one convergence ended, for the metrics and the logs.
public enum ConvergenceOutcome: String, Sendable {
    case noop, deployed, failed, removed, blocked, waiting, error
}

/// Carries out the plan for one PR once: passes the gate, observes, plans, and interprets the steps over
/// the seams, checking before each one that no newer intent has arrived.
struct Execution {
    let seams: ControllerSeams
    let config: StagerConfig
    let env: Environment
    let deploySlots: Slots
    let metrics: StagerMetrics
    /// Requests held while the environment wakes wait here for the candidate's port.
    let wakes: WakeSignals
    var logger: Logger
    /// The container the plan started or adopted.
    var candidate: ContainerInfo?
    var outcome = ConvergenceOutcome.noop
    /// The environment is brand new in this process: no container of it can exist, so the engine is not asked.
    var nothingRunsYet = false
    let startedAt = ContinuousClock.now
    /// How long a wake took until its app answered its health path.
    var wokeAfter: Duration?

    init(
        seams: ControllerSeams,
        config: StagerConfig,
        env: Environment,
        deploySlots: Slots,
        metrics: StagerMetrics,
        wakes: WakeSignals,
        logger: Logger
    ) {
        self.seams = seams
        self.config = config
        self.env = env
        self.deploySlots = deploySlots
        self.metrics = metrics
        self.wakes = wakes
        self.logger = logger
    }

    var key: PullRequestKey { env.key }
    var environments: any EnvironmentRepository { seams.environments }
    var announcer: Announcer { seams.announcer }
    var repo: StagerConfig.Repo? { config.repo(env.repo) }

    enum Ending: Equatable {
        /// The plan ran to its end, or ended in a recorded failure.
        case finished
        /// A newer intent arrived mid-way.
        case superseded
        /// Blocked for approval, or waiting for room under `max_environments`.
        case waiting
    }

    mutating func run() async throws -> Ending {
        if env.desired == .present {
            guard try await approved(), try await admitted() else { return .waiting }
        }
        let steps = Planner.plan(desired: env.desiredState, observed: try await observe(), stack: StackLayout.desire(for: env, config: config))
        if !steps.isEmpty {
            logger.info("converging", metadata: ["desired": "\(env.desiredState)", "steps": "\(steps.count)"])
        }
        for step in steps {
            guard try await environments.desiredVersion(key) == env.desiredVersion else {
                logger.info("superseded by a newer intent")
                return .superseded
            }
            do {
                try await perform(step)
            } catch is Superseded {
                logger.info("superseded by a newer intent while building")
                return .superseded
            } catch {
                // A terminal error ends the plan, recorded; any other is the controller's to retry with backoff.
                guard let terminal = TerminalError.of(error) else { throw error }
                try await recordFailure(terminal)
                return .finished
            }
        }
        return .finished
    }

    /// What the plan is made from. A teardown whose URL still routes asks only the front door: its first step
    /// lists and removes the containers while nginx reloads (see `takeURLDown`), so closes that come together
    /// share a reload and the URL goes at once. A brand-new environment has no container to ask the engine for.
    func observe() async throws -> Observation {
        let routed = await seams.frontDoor.routed(slug: env.slug)
        if nothingRunsYet || (env.desired == .absent && routed != nil) {
            return Observation(of: env, containers: [], routed: routed)
        }
        return Observation(of: env, containers: try await seams.runtime.observe(key).containers, routed: routed)
    }

    /// Runs one step's handler. A handler throws `TerminalError` (or an error that reads as one) when the
    /// deploy failed; the interpreter records it and the rest of the plan does not run.
    private mutating func perform(_ step: Step) async throws {
        switch step {
        case .prepareStack: try await prepareStack()
        case .runRelease(let sha): try await runRelease(sha: sha)
        case .removeStack: try await removeStack()
        case .startContainer(let sha): try await startCandidate(sha: sha)
        case .adoptContainer(let container): try await adopt(container)
        case .awaitHealthy: try await awaitHealthy()
        case .drain: try await drain()
        case .routeToCandidate: try await routeToCandidate()
        case .removeContainer(let container): try await remove(container)
        case .announceReady: try await announceReady()
        case .markAsleep: try await markAsleep()
        case .routeToWake(let app): try await routeToWake(app)
        case .stopContainer(let container): try await stop(container)
        case .wakeContainer(let container): try await wake(container)
        case .markAwake: try await markAwake()
        case .removeVhost: try await takeURLDown()
        case .deleteComment: try await announcer.removeComment(of: env)
        case .markRemoved: try await markRemoved()
        }
    }

    var hostName: String { "\(env.slug).\(config.preview.domain)" }

    func setStatus(_ status: EnvironmentStatus) async throws {
        try await environments.update(key) { $0.status = status }
    }
}

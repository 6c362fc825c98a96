import Foundation
import Logging

/// `stager gc`: gathers the facts (engine, sites folder, store, GitHub), plans, and removes what leaked,
/// reporting each item as it goes. nginx is reloaded once, and only files of removed environments and
/// orphans change, so every live environment keeps serving.
public struct GarbageCollector: Sendable {
    public struct Summary: Sendable, Codable, Equatable {
        public var environments = 0
        public var containers = 0
        public var vhosts = 0
        public var kept = 0
        public var unknown = 0
        public var missing = 0
        public var images = 0
        /// Networks and volumes.
        public var resources = 0
        public var failed = 0
        public var dryRun = false
        /// Who removed the containers and vhosts: the running serve, or gc itself when none runs.
        public var doneBy: String? = nil

        public var line: String {
            let verb = dryRun ? "would remove" : "removed"
            var text =
                "gc: \(verb) \(Self.count(environments, "environment")), \(Self.count(containers, "container")), \(Self.count(vhosts, "vhost"))"
            if images > 0 { text += ", \(Self.count(images, "image"))" }
            if resources > 0 { text += ", \(Self.count(resources, "network or volume", plural: "networks and volumes"))" }
            text += "; kept \(kept)"
            if unknown > 0 { text += " (\(unknown) unknown)" }
            if missing > 0 { text += "; \(Self.count(missing, "open PR")) without an environment (stager sync)" }
            if failed > 0 { text += "; \(failed) failed" }
            if let doneBy { text += "; done by \(doneBy)" }
            return text
        }

        static func count(_ number: Int, _ noun: String, plural: String? = nil) -> String {
            "\(number) \(number == 1 ? noun : plural ?? noun + "s")"
        }
    }

    let config: StagerConfig
    let store: Store
    let runtime: any StackRuntime
    let frontDoor: any FrontDoor
    /// Converges the teardowns gc records, when no serve runs to do it.
    let controller: Controller
    let github: GitHubClient?
    let logger: Logger

    public init(app: StagerApp) {
        config = app.config
        store = app.store
        runtime = app.deps.runtime
        frontDoor = app.deps.frontDoor
        controller = app.controller
        github = app.github
        logger = app.deps.logger
    }

    /// Reads the world. Containers, networks, volumes and vhosts are listed before the store, so anything created meanwhile
    /// already has its environment and is never mistaken for a leak.
    public func plan(now: Date = Date()) async throws -> GcPlan {
        let engine = try await runtime.observeAll()
        let (containers, resources) = (engine.containers, engine.resources)
        let inventory = await frontDoor.inventory()
        let environments = try await store.environments.allEnvironments()
        let repos = config.repos.keys.sorted()
        let lookup = PullRequestStates(client: github)
        let open = await lookup.openPullRequests(repos)
        let live = environments.filter { $0.isLive }
        let states = await lookup.states(of: live.filter { $0.desired == .present }.map(\.key), open: open)
        var missing: [PullRequestKey] = []
        for repo in repos {
            guard case .success(let pulls) = open[repo] else { continue }
            missing += PullRequestStates.missing(open: pulls, repo: repo, environments: environments).map {
                PullRequestKey(repo: repo, number: $0.number)
            }
        }
        var images: [PullRequestKey: String] = [:]
        if config.gcRemovesImages {
            for env in live {
                if let repo = config.repo(env.repo) { images[env.key] = ImageReference.perPullRequest(env, repo: repo) }
            }
        }
        let workRoot = ImageBuilder.workRoot(dataDir: config.dataDir)
        return GcPlan(
            .init(
                environments: environments,
                containers: containers,
                managedVhosts: inventory.managed,
                foreignFiles: inventory.foreign,
                states: states,
                missing: missing,
                configuredRepos: Set(repos),
                images: images,
                builtImages: try await runtime.builtImages(),
                // no work folder yet: nothing interrupted
                workFolders: ((try? FileManager.default.contentsOfDirectory(atPath: workRoot.path)) ?? []).sorted(),
                stackResources: resources,
                idleTTL: config.limits.idleTTL,
                now: now
            )
        )
    }

    /// Carries out `plan` (or only reports it when `dryRun`), calling `report` for each item as it is done.
    public func run(_ plan: GcPlan, dryRun: Bool, report: (GcItem) -> Void) async -> Summary {
        var summary = Summary(
            kept: plan.kept.count,
            unknown: plan.kept.filter { $0.unknown != nil }.count,
            missing: plan.missing.count,
            dryRun: dryRun
        )
        let removing: GcItem.Action = dryRun ? .wouldRemove : .removed
        for kept in plan.kept {
            if let unknown = kept.unknown { report(GcItem(action: .kept, kind: .environment, item: kept.env.key.description, reason: unknown)) }
        }
        for key in plan.missing {
            report(
                GcItem(
                    action: .reported,
                    kind: .pullRequest,
                    item: key.description,
                    reason: "open on GitHub without an environment; `stager sync` creates it"
                )
            )
        }
        for file in plan.foreignFiles {
            report(GcItem(action: .reported, kind: .file, item: file, reason: "in the sites folder but not written by Stager; left alone"))
        }

        if dryRun {
            for removal in plan.environments {
                report(GcItem(action: removing, kind: .environment, item: "\(removal.env.key) (\(removal.env.slug))", reason: removal.reason))
            }
            for slug in plan.vhosts { report(GcItem(action: removing, kind: .vhost, item: "\(slug).conf", reason: "belongs to no environment")) }
            for container in plan.containers { report(Self.orphanItem(container, action: removing)) }
            for image in plan.images { report(GcItem(action: removing, kind: .image, item: image, reason: Self.imageReason)) }
            for image in plan.builtImages { report(GcItem(action: removing, kind: .image, item: image, reason: Self.builtImageReason)) }
            for folder in plan.workFolders { report(GcItem(action: removing, kind: .workFolder, item: folder, reason: Self.workFolderReason)) }
            for resource in plan.resources { report(Self.orphanItem(resource, action: removing)) }
            summary.resources = plan.resources.count
            summary.images = plan.images.count + plan.builtImages.count
            summary.environments = plan.environments.count
            summary.vhosts = plan.vhosts.count
            summary.containers = plan.containers.count
            return summary
        }

        // 1. Record the teardowns first, so a running `stager serve` does not bring them back meanwhile.
        var teardowns: [(removal: GcPlan.Removal, env: Environment)] = []
        for removal in plan.environments {
            do {
                let outcome = try await store.accept(Intents.teardown(removal.env, updatedAt: removal.closedAt, source: .gc))
                guard case .accepted = outcome else { throw GcFailure.notRecorded(outcome) }
                if let env = try await store.environments.environment(removal.env.key) { teardowns.append((removal, env)) }
            } catch {
                summary.failed += 1
                report(GcItem(action: .failed, kind: .environment, item: removal.env.key.description, reason: "\(error)"))
            }
        }

        // 2. Containers, vhosts and comments change only in `stager serve`, when it runs: it is asked to
        //    reconcile now, and each item is reported once it is gone.
        let work = teardowns.count + plan.vhosts.count + plan.containers.count + plan.resources.count
        if work > 0 {
            let items = await awaitServe(
                teardowns: teardowns,
                vhosts: plan.vhosts,
                containers: plan.containers,
                resources: plan.resources,
                report: report
            )
            summary.doneBy = "stager serve"
            for item in items {
                switch (item.action, item.kind) {
                case (.failed, _): summary.failed += 1
                case (_, .environment): summary.environments += 1
                case (_, .vhost): summary.vhosts += 1
                case (_, .network), (_, .volume): summary.resources += 1
                default: summary.containers += 1
                }
            }
        }

        // 3. Images of the removed environments, once their containers are gone, and work folders of builds
        //    a crash interrupted.
        for folder in plan.workFolders {
            do {
                try FileManager.default.removeItem(at: ImageBuilder.workRoot(dataDir: config.dataDir).appendingPathComponent(folder))
                report(GcItem(action: .removed, kind: .workFolder, item: folder, reason: Self.workFolderReason))
            } catch {
                summary.failed += 1
                report(GcItem(action: .failed, kind: .workFolder, item: folder, reason: "\(error)"))
            }
        }
        for (image, reason) in plan.images.map({ ($0, Self.imageReason) }) + plan.builtImages.map({ ($0, Self.builtImageReason) }) {
            do {
                if try await runtime.removeImage(image) {
                    summary.images += 1
                    report(GcItem(action: .removed, kind: .image, item: image, reason: reason))
                } else {
                    report(GcItem(action: .kept, kind: .image, item: image, reason: "a container still uses it"))
                }
            } catch {
                summary.failed += 1
                report(GcItem(action: .failed, kind: .image, item: image, reason: "\(error)"))
            }
        }
        return summary
    }

    /// Asks serve's controller to apply the teardowns and its reconciler to remove the orphans now, and
    /// waits until each is done, reporting each as it goes. What is not done in `serveTimeout` is reported
    /// failed (the controller keeps trying).
    private func awaitServe(
        teardowns: [(removal: GcPlan.Removal, env: Environment)],
        vhosts: [String],
        containers: [ContainerInfo],
        resources: [StackResource],
        report: (GcItem) -> Void
    ) async -> [GcItem] {
        var items: [GcItem] = []
        var pendingTeardowns = teardowns
        var pendingVhosts = vhosts
        var pendingContainers = containers
        var pendingResources = resources
        let clock = ContinuousClock()
        let deadline = clock.now + Self.serveTimeout
        do {
            try await store.setFact(Controller.reconcileRequestFact, UUID().uuidString)
        } catch {
            logger.warning("could not ask stager serve to reconcile now; it does at its next interval", metadata: ["error": "\(error)"])
        }
        for (_, env) in teardowns { await controller.enqueue(env.key) }
        let environments = store.environments
        func done(_ item: GcItem) {
            items.append(item)
            report(item)
        }
        while !(pendingTeardowns.isEmpty && pendingVhosts.isEmpty && pendingContainers.isEmpty && pendingResources.isEmpty), clock.now < deadline {
            do {
                var stillPending: [(removal: GcPlan.Removal, env: Environment)] = []
                for (removal, env) in pendingTeardowns {
                    let item = "\(env.key) (\(env.slug))"
                    guard let now = try await environments.environment(env.key) else {
                        stillPending.append((removal, env))
                        continue
                    }
                    if now.desired == .present {
                        done(GcItem(action: .failed, kind: .environment, item: item, reason: GcFailure.superseded.description))
                    } else if now.status == .removed, now.appliedVersion >= env.desiredVersion {
                        done(GcItem(action: .removed, kind: .environment, item: item, reason: removal.reason))
                    } else {
                        stillPending.append((removal, env))
                    }
                }
                pendingTeardowns = stillPending
                let managed = Set(await frontDoor.inventory().managed)
                pendingVhosts = pendingVhosts.filter { slug in
                    guard !managed.contains(slug) else { return true }
                    done(GcItem(action: .removed, kind: .vhost, item: "\(slug).conf", reason: "belongs to no environment"))
                    return false
                }
                let engine = pendingContainers.isEmpty && pendingResources.isEmpty ? nil : try await runtime.observeAll()
                if let engine, !pendingContainers.isEmpty {
                    let present = Set(engine.containers.map(\.id))
                    pendingContainers = pendingContainers.filter { container in
                        guard !present.contains(container.id) else { return true }
                        done(Self.orphanItem(container, action: .removed))
                        return false
                    }
                }
                if let engine, !pendingResources.isEmpty {
                    let present = Set(engine.resources)
                    pendingResources = pendingResources.filter { resource in
                        guard !present.contains(resource) else { return true }
                        done(Self.orphanItem(resource, action: .removed))
                        return false
                    }
                }
                // Each look lists the engine (one docker process): a few a second is plenty.
                try await Task.sleep(for: .milliseconds(250))
            } catch {
                logger.warning("gc could not read what serve did; trying again", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(500))  // cancelled only with the process
            }
        }
        let late = "stager serve did not remove it within \(Self.serveTimeout); it keeps trying (see its log)"
        for (_, env) in pendingTeardowns { done(GcItem(action: .failed, kind: .environment, item: "\(env.key) (\(env.slug))", reason: late)) }
        for slug in pendingVhosts { done(GcItem(action: .failed, kind: .vhost, item: "\(slug).conf", reason: late)) }
        for container in pendingContainers { done(GcItem(action: .failed, kind: Self.kind(of: container), item: container.name, reason: late)) }
        for resource in pendingResources { done(GcItem(action: .failed, kind: Self.kind(of: resource), item: resource.name, reason: late)) }
        return items
    }

    /// How long gc waits for a running serve to carry out what it recorded.
    static let serveTimeout: Duration = .seconds(120)

    static let imageReason = "the image of a removed environment (gc.remove_images)"
    static let builtImageReason = "built by Stager for a PR that has no environment any more"
    static let workFolderReason = "a build's work folder that no running build uses (left by an interruption)"

    private static func orphanItem(_ container: ContainerInfo, action: GcItem.Action) -> GcItem {
        GcItem(
            action: action,
            kind: kind(of: container),
            item: container.name,
            reason: "\(container.running ? "running" : "exited"), labelled \(container.repo)#\(container.number), no environment"
        )
    }

    private static func orphanItem(_ resource: StackResource, action: GcItem.Action) -> GcItem {
        GcItem(action: action, kind: kind(of: resource), item: resource.name, reason: "labelled \(resource.repo)#\(resource.number), no environment")
    }

    private static func kind(of container: ContainerInfo) -> GcItem.Kind { container.service == nil ? .container : .service }

    private static func kind(of resource: StackResource) -> GcItem.Kind { resource.kind == .network ? .network : .volume }
}

import Foundation
import Logging

/// What one reconcile pass found and did.
public struct ReconcileReport: Sendable, Equatable {
    public var enqueued: [PullRequestKey] = []
    public var orphanContainers: [String] = []
    public var orphanVhosts: [String] = []
    /// Networks and volumes, as "network NAME" / "volume NAME".
    public var orphanResources: [String] = []
    public var foreignFiles: [String] = []
}

/// Compares the store with what the engine and the sites folder hold: PRs whose plan is not empty go back
/// to the controller, and containers and vhosts of this instance that belong to no environment are removed.
struct Reconciler {
    let controller: Controller

    func reconcile() async throws -> ReconcileReport {
        var report = ReconcileReport()
        await controller.reloadNginxIfOwed()
        let seams = controller.seams
        // What the engine holds is listed before the store is read: anything created meanwhile already has its
        // environment, and is never taken for an orphan.
        let engine = try await seams.runtime.observeAll()
        let (containers, resources) = (engine.containers, engine.resources)
        let inventory = await seams.frontDoor.inventory()
        let environments = try await seams.environments.allEnvironments()
        var known = Set<PullRequestKey>()
        var liveSlugs = Set<String>()

        for env in environments {
            known.insert(env.key)
            if env.isLive { liveSlugs.insert(env.slug) }
            let observed = Observation(
                of: env,
                containers: containers.filter { $0.repo == env.repo && $0.number == env.number },
                routed: inventory.managed.contains(env.slug) ? await seams.frontDoor.routed(slug: env.slug) : nil
            )
            let behind = env.desiredVersion > env.appliedVersion
            let stack = StackLayout.desire(for: env, config: controller.config)
            if behind || !Planner.plan(desired: env.desiredState, observed: observed, stack: stack).isEmpty {
                report.enqueued.append(env.key)
                await controller.enqueue(env.key)
            }
        }

        // Only containers of configured repositories: another tool's containers are not ours to judge.
        for container in containers where controller.config.repo(container.repo) != nil {
            let key = PullRequestKey(repo: container.repo, number: container.number)
            guard !known.contains(key) else { continue }
            try await seams.runtime.remove(container.id)
            report.orphanContainers.append(container.name)
        }

        // Networks and volumes of PRs with no environment, or one that was removed: a teardown cut short.
        let removed = Set(environments.filter { $0.desired == .absent && $0.status == .removed }.map(\.key))
        for resource in resources
        where controller.config.repo(resource.repo) != nil && (!known.contains(resource.key) || removed.contains(resource.key)) {
            // A network still holds a container being removed: the next pass takes it.
            do {
                try await seams.runtime.remove(resource)
                report.orphanResources.append("\(resource.kind.rawValue) \(resource.name)")
            } catch let error as CommandError {
                controller.logger.warning(
                    "an orphan was not removed; the next pass tries again",
                    metadata: ["resource": "\(resource.name)", "error": "\(error)"]
                )
            }
        }

        let orphanSlugs = inventory.managed.filter { !liveSlugs.contains($0) }
        if !orphanSlugs.isEmpty {
            try await seams.frontDoor.remove(slugs: orphanSlugs)
            report.orphanVhosts = orphanSlugs.map { "\($0).conf" }
        }
        report.foreignFiles = inventory.foreign

        if !report.enqueued.isEmpty || !report.orphanContainers.isEmpty || !report.orphanVhosts.isEmpty || !report.orphanResources.isEmpty {
            controller.logger.info(
                "reconciled",
                metadata: [
                    "enqueued": "\(report.enqueued.map(\.description))",
                    "orphan_containers": "\(report.orphanContainers)",
                    "orphan_vhosts": "\(report.orphanVhosts)",
                    "orphan_resources": "\(report.orphanResources)",
                ]
            )
        }
        return report
    }
}

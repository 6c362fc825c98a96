import Foundation
import Logging

/// What one reconcile pass found and did.
public struct ReconcileReport: Sendable, Equatable {
    public var enqueued: [PullRequestKey] = []
    public var orphanContainers: [String] = []
    public var orphanVhosts: [String] = []
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
        let containers = try await seams.runtime.list(for: nil)
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
            if behind || !Planner.plan(desired: env.desiredState, observed: observed).isEmpty {
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

        let orphanSlugs = inventory.managed.filter { !liveSlugs.contains($0) }
        if !orphanSlugs.isEmpty {
            try await seams.frontDoor.remove(slugs: orphanSlugs)
            report.orphanVhosts = orphanSlugs.map { "\($0).conf" }
        }
        report.foreignFiles = inventory.foreign

        if !report.enqueued.isEmpty || !report.orphanContainers.isEmpty || !report.orphanVhosts.isEmpty {
            controller.logger.info("reconciled", metadata: [
                "enqueued": "\(report.enqueued.map(\.description))",
                "orphan_containers": "\(report.orphanContainers)",
                "orphan_vhosts": "\(report.orphanVhosts)",
            ])
        }
        return report
    }
}

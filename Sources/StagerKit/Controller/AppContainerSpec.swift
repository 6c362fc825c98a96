import Foundation

extension ContainerSpec {
    /// The app container of `env` at `sha`: its name, labels, variables and limits (see CONTRACT.md).
    static func app(of env: Environment, repo: StagerConfig.Repo, sha: String, image: String, config: StagerConfig) -> ContainerSpec {
        let limits = config.limits
        // A random tail keeps names unique even when an exited container of the same sha lingers.
        let name = "stager-\(config.instance)-\(env.slug.prefix(40))-\(sha.prefix(7))-\(UUID().uuidString.prefix(4).lowercased())"
        var spec = ContainerSpec(
            name: fitName(name),
            image: image,
            command: repo.command,
            containerPort: repo.port,
            labels: [
                ContainerLabels.managed: "true", ContainerLabels.instance: config.instance,
                ContainerLabels.repo: env.repo, ContainerLabels.branch: env.branch, ContainerLabels.sha: sha, ContainerLabels.slug: env.slug,
            ].merging(ContainerLabels.owner(env.key)) { $1 },
            // A branch's environment has no PR number to give.
            environment: repo.env.merging(
                [
                    "STAGER_REPO": env.repo, "STAGER_BRANCH": env.branch,
                    "STAGER_SHA": sha, "STAGER_URL": config.preview.url(forSlug: env.slug),
                ].merging(env.key.isBranch ? [:] : ["STAGER_PR": String(env.number)]) { $1 }
            ) { _, stager in stager },
            memory: repo.memory ?? limits.memory,
            cpus: repo.cpus ?? limits.cpus,
            pids: repo.pids ?? limits.pids,
            capAdd: repo.capAdd,
            readOnly: repo.readOnly
        )
        spec.labels[ContainerLabels.role] = "app"
        // Beside services, the app is on the environment's network and reaches each by its name.
        if !repo.services.isEmpty { spec.network = StackLayout(env: env, repo: repo, config: config).network }
        return spec
    }
}

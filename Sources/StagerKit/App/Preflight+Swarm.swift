import Foundation

extension Preflight {
    /// With `runtime: swarm`: the nodes (address, state, availability), whether an overlay network can be
    /// made (services of one environment share one), the registry, and a vhost template that routes to a node.
    func swarmChecks(_ swarm: SwarmRuntime) async -> [Result] {
        var results: [Result] = []
        do {
            let nodes = try await swarm.nodes().values.sorted { ($0.address, $0.id) < ($1.address, $1.id) }
            let usable = nodes.filter { $0.ready && $0.availability == "active" }
            let listed = nodes.map { "\($0.hostname) \($0.address) \($0.state) \($0.availability) \($0.role)" }.joined(separator: "; ")
            results.append(
                usable.isEmpty
                    ? Result(
                        name: "swarm nodes",
                        passed: false,
                        detail: "no node is ready and active (\(listed.isEmpty ? "none" : listed)); nginx must reach a node's address"
                    )
                    : Result(name: "swarm nodes", passed: true, detail: "\(usable.count) of \(nodes.count) ready and active: \(listed)")
            )
        } catch {
            results.append(Result(name: "swarm nodes", passed: false, detail: "\(error)"))
        }
        results.append(await overlayNetwork(swarm))
        if let registry = config.swarm.registry { results.append(await registryAnswers(registry)) }
        results.append(await templateRoutesToNodes())
        return results
    }

    /// Creates and removes an attachable overlay network, as an environment with services needs.
    private func overlayNetwork(_ swarm: SwarmRuntime) async -> Result {
        let name = "stager-\(config.instance)-check-\(UUID().uuidString.prefix(6).lowercased())"
        let needed = config.repos.values.contains { !$0.services.isEmpty }
        do {
            try await swarm.ensureNetwork(name, labels: [ContainerLabels.managed: "true", ContainerLabels.instance: config.instance])
            try await swarm.remove(StackResource(kind: .network, name: name, repo: "", number: 0))
            return Result(
                name: "overlay network",
                passed: true,
                detail: "an attachable overlay network can be made: an environment's services share one"
            )
        } catch {
            return Result(
                name: "overlay network",
                passed: !needed,
                detail: "no overlay network can be made (\(error)): services beside an app cannot reach each other on this swarm"
                    + (needed ? "; open the swarm's ports between nodes (TCP 7946, UDP 7946 and 4789)" : " (no repository has services)")
            )
        }
    }

    /// The registry answers its API (`/v2/`) over plain HTTP or with a refusal that shows it is there.
    private func registryAnswers(_ registry: String) async -> Result {
        let parts = registry.split(separator: ":")
        let host = String(parts.first ?? "")
        let port = parts.count > 1 ? Int(parts[1]) ?? 443 : 443
        do {
            let answer = try await HTTPProbe().get(host: host, port: port, path: "/v2/")
            return Result(name: "swarm registry", passed: true, detail: "\(registry) answers (\(answer.status)); built images are pushed there")
        } catch {
            return Result(
                name: "swarm registry",
                passed: false,
                detail: "\(registry) does not answer (\(error)); built images cannot reach the nodes"
            )
        }
    }

    /// A custom vhost template that routes to 127.0.0.1 would send every request to this machine, not the node.
    private func templateRoutesToNodes() async -> Result {
        let name = "vhost template on swarm"
        do {
            let rendered = try await renderedVhost(
                Route(
                    key: PullRequestKey(repo: "check/check", number: 1),
                    slug: "check",
                    hostName: "check.invalid",
                    upstreamPort: 30999,
                    containerName: "check",
                    sha: "check",
                    upstreamHost: "192.0.2.7"
                )
            )
            guard rendered.contains("192.0.2.7:30999") else {
                return Result(
                    name: name,
                    passed: false,
                    detail:
                        "the vhost template does not route to {{upstream_host}}:{{upstream_port}}; copy proxy_pass from the built-in vhost.conf.mustache"
                )
            }
            return Result(name: name, passed: true, detail: "the vhost routes to the node that runs the task")
        } catch {
            return Result(name: name, passed: false, detail: "\(error)")
        }
    }
}

import Foundation

extension SwarmRuntime {
    // MARK: Reading

    static let serviceFormat = [
        "{{.ID}}", "{{.Spec.Name}}", "{{index .Spec.Labels \"stager.repo\"}}", ContainerLabels.numberTemplate(labels: ".Spec.Labels"),
        "{{index .Spec.Labels \"stager.sha\"}}", "{{index .Spec.Labels \"stager.slug\"}}", "{{index .Spec.Labels \"stager.role\"}}",
        "{{index .Spec.Labels \"stager.service\"}}", "{{index .Spec.Labels \"stager.definition\"}}",
        "{{with .Spec.Mode.Replicated}}{{.Replicas}}{{end}}", publishedPortFormat,
    ].joined(separator: "\t")

    /// A service's published ports (an app has one), each followed by a space.
    static let publishedPortFormat = "{{range .Spec.EndpointSpec.Ports}}{{.PublishedPort}} {{end}}"

    /// A service as `docker service inspect` prints it with `serviceFormat`.
    struct ServiceLine: Equatable {
        var info: ContainerInfo
        var replicas: Int?
        var role: String
    }

    static func parseServices(_ output: String) -> [ServiceLine] {
        DockerOutput.rows(output, fields: 11).compactMap { fields in
            guard let number = Int(fields[3]) else { return nil }
            let info = ContainerInfo(
                id: fields[0],
                name: fields[1],
                repo: fields[2],
                number: number,
                sha: fields[4],
                slug: fields[5],
                running: false,
                hostPort: Int(fields[10].trimmingCharacters(in: .whitespaces)),
                service: fields[6] == "service" && !fields[7].isEmpty ? fields[7] : nil,
                definition: fields[8].isEmpty ? nil : fields[8]
            )
            return ServiceLine(info: info, replicas: Int(fields[9]), role: fields[6])
        }
    }

    public func list(for key: PullRequestKey?) async throws -> [ContainerInfo] {
        let ids = try await serviceIDs(for: key)
        guard !ids.isEmpty else { return [] }
        // A service removed between the two calls is left out of the answer; the others are still printed.
        let inspected = try await run(["service", "inspect", "--format", Self.serviceFormat, "--"] + ids, allowFailure: true)
        let services = Self.parseServices(inspected.standardOutput).filter { $0.role != "release" }
        guard !services.isEmpty else { return [] }
        let tasks = try await self.tasks(of: services.map(\.info.id), onlyRunning: true)
        let nodes = try await self.nodes()
        return services.map { line in
            var info = line.info
            let mine = tasks.filter { $0.serviceID == info.id }
            if let task = mine.first(where: { $0.state == "running" && nodes[$0.nodeID]?.ready == true }), let node = nodes[task.nodeID] {
                info.running = true
                info.address = node.address
            } else {
                // A task on its way to a node (after a drain or a lost node), while the service wants one.
                info.moving = (line.replicas ?? 0) > 0 && !mine.isEmpty
            }
            return info
        }
    }

    public func ids(for key: PullRequestKey) async throws -> [String] {
        try await serviceIDs(for: key)
    }

    /// This instance's services, optionally one PR's.
    func serviceIDs(for key: PullRequestKey?) async throws -> [String] {
        try await run(["service", "ls", "--quiet"] + DockerCLI.filters(instance: instance, key: key)).standardOutput.split(separator: "\n").map(
            String.init
        )
    }

    /// One task as `docker inspect --type task` prints it.
    struct SwarmTask: Equatable {
        var id: String
        var serviceID: String
        var nodeID: String
        var state: String
        var error: String
        var address = ""
    }

    func taskIDs(of services: [String], onlyRunning: Bool) async throws -> [String] {
        let filter = onlyRunning ? ["--filter", "desired-state=running"] : []
        var result = try await run(["service", "ps", "--quiet", "--no-trunc"] + filter + ["--"] + services, allowFailure: true)
        if !result.succeeded, services.count > 1 {
            // One of them went meanwhile: asked one by one.
            var ids: [String] = []
            for service in services {
                result = try await run(["service", "ps", "--quiet", "--no-trunc"] + filter + ["--", service], allowFailure: true)
                ids += result.succeeded ? result.standardOutput.split(separator: "\n").map(String.init) : []
            }
            return ids
        }
        return result.succeeded ? result.standardOutput.split(separator: "\n").map(String.init) : []
    }

    static let taskFormat = "{{.ID}}\t{{.ServiceID}}\t{{.NodeID}}\t{{.Status.State}}\t{{.Status.Err}}"

    /// The services' tasks, newest first.
    func tasks(of services: [String], onlyRunning: Bool) async throws -> [SwarmTask] {
        try await inspectTasks(try await taskIDs(of: services, onlyRunning: onlyRunning))
    }

    func inspectTasks(_ ids: [String]) async throws -> [SwarmTask] {
        guard !ids.isEmpty else { return [] }
        let inspected = try await run(["inspect", "--type", "task", "--format", Self.taskFormat, "--"] + ids, allowFailure: true)
        return Self.parseTasks(inspected.standardOutput)
    }

    /// One service's tasks as `docker service ps` says them, newest first: id, state ("Running 2 seconds
    /// ago", "Rejected …"), error.
    func taskStates(of service: String) async throws -> [(id: String, state: String, error: String)] {
        let result = try await run(
            ["service", "ps", "--no-trunc", "--format", "{{.ID}}\t{{.CurrentState}}\t{{.Error}}", "--", service],
            allowFailure: true
        )
        return DockerOutput.rows(result.standardOutput, fields: 3).map { ($0[0], $0[1], $0[2]) }
    }

    static func parseTasks(_ output: String) -> [SwarmTask] {
        DockerOutput.rows(output, fields: 5).map { fields in
            SwarmTask(id: fields[0], serviceID: fields[1], nodeID: fields[2], state: fields[3], error: fields[4])
        }
    }

    /// A node of the swarm, as `stager check` reports it and routing needs it.
    public struct Node: Sendable, Equatable {
        public var id: String
        public var hostname: String
        public var address: String
        public var state: String
        public var availability: String
        public var role: String
        public var ready: Bool { state == "ready" }
    }

    static let nodeFormat = "{{.ID}}\t{{.Description.Hostname}}\t{{.Status.Addr}}\t{{.Status.State}}\t{{.Spec.Availability}}\t{{.Spec.Role}}"

    /// The swarm's nodes by id, as read at most `maxAge` ago. An address that is not plain IPv4 is left
    /// out: it goes into nginx's configuration.
    public func nodes(maxAge: Duration = .seconds(1)) async throws -> [String: Node] {
        if let known = await nodeCache.table(within: maxAge) { return known }
        let ids = try await run(["node", "ls", "--quiet"]).standardOutput.split(separator: "\n").map(String.init)
        guard !ids.isEmpty else { return [:] }
        let inspected = try await run(["node", "inspect", "--format", Self.nodeFormat, "--"] + ids)
        let table = Dictionary(Self.parseNodes(inspected.standardOutput).map { ($0.id, $0) }) { first, _ in first }
        await nodeCache.remember(table)
        return table
    }

    /// One node: from what was read lately, else read again (a node that joined since).
    func node(_ id: String) async throws -> Node? {
        if let known = try await nodes(maxAge: .seconds(30))[id] { return known }
        return try await nodes(maxAge: .zero)[id]
    }

    static func parseNodes(_ output: String) -> [Node] {
        DockerOutput.rows(output, fields: 6).compactMap { fields in
            guard isIPv4(fields[2]) else { return nil }
            return Node(id: fields[0], hostname: fields[1], address: fields[2], state: fields[3], availability: fields[4], role: fields[5])
        }
    }

    static func isIPv4(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { $0.count <= 3 && Int($0).map { (0...255).contains($0) } == true }
    }
}

import Foundation

/// `repos.X.services` and `repos.X.release`, validated once at start-up.
extension Validator {
    func services(_ services: [String: ConfigFile.Service]?, key: String) throws -> [StagerConfig.Service] {
        var built: [String: StagerConfig.Service] = [:]
        for (name, service) in services ?? [:] {
            built[name] = try self.service(name, service, key: "\(key).\(name)")
        }
        for service in built.values {
            for other in service.dependsOn where built[other] == nil || other == service.name {
                throw fail(
                    "\(key).\(service.name).depends_on",
                    other == service.name
                        ? "a service cannot depend on itself"
                        : "names \"\(other)\", which is not a service of this repository (known: \(built.keys.sorted().joined(separator: ", ")))"
                )
            }
        }
        return try Self.startOrder(built, key: key, fail: fail)
    }

    /// Each service after those it depends on, by name among equals; a cycle is an error naming it.
    static func startOrder(
        _ services: [String: StagerConfig.Service],
        key: String,
        fail: (String, String) -> ConfigError
    ) throws -> [StagerConfig.Service] {
        var ordered: [StagerConfig.Service] = []
        var placed = Set<String>()
        var remaining = services.keys.sorted()
        while !remaining.isEmpty {
            guard let next = remaining.first(where: { name in services[name]?.dependsOn.allSatisfy(placed.contains) == true }),
                let service = services[next]
            else {
                throw fail(key, "depends_on forms a cycle among \(remaining.joined(separator: ", "))")
            }
            ordered.append(service)
            placed.insert(next)
            remaining.removeAll { $0 == next }
        }
        return ordered
    }

    private func service(_ name: String, _ service: ConfigFile.Service, key: String) throws -> StagerConfig.Service {
        guard Self.isLabel(name, maxLength: 30) else {
            throw fail(key, "service names are host names inside the environment: lowercase letters, digits and '-', at most 30, got \"\(name)\"")
        }
        guard let image = service.image, !image.isEmpty else {
            throw fail("\(key).image", "is required: the image of the service, e.g. \"postgres:16\"")
        }
        do { _ = try ImageReference.template(image) } catch {
            throw fail("\(key).image", "is not a valid Mustache template: \(error)")
        }
        if let port = service.port, !(1...65535).contains(port) { throw fail("\(key).port", "must be a port number, got \(port)") }
        let healthPath = service.health_path.flatMap { $0.isEmpty ? nil : $0 }
        if let healthPath {
            guard service.port != nil else { throw fail("\(key).health_path", "needs a port to ask on") }
            guard healthPath.hasPrefix("/"), !healthPath.contains(where: { $0.isWhitespace }) else {
                throw fail("\(key).health_path", "must be a path starting with '/', got \"\(healthPath)\"")
            }
        }
        let volumes = service.volumes ?? [:]
        for (volume, path) in volumes {
            guard Self.isLabel(volume, maxLength: 30) else {
                throw fail("\(key).volumes.\(volume)", "volume names are lowercase letters, digits and '-', at most 30")
            }
            // Mounted with --mount, whose fields are separated by commas.
            guard path.hasPrefix("/"), !path.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) else {
                throw fail("\(key).volumes.\(volume)", "must be an absolute path without commas or quotes, got \"\(path)\"")
            }
        }
        for (volume, source) in service.seed ?? [:] {
            guard volumes[volume] != nil else {
                throw fail(
                    "\(key).seed.\(volume)",
                    "seeds a volume the service does not have (its volumes: \(volumes.keys.sorted().joined(separator: ", ")))"
                )
            }
            guard let first = source.first, first.isLetter || first.isNumber,
                source.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) })
            else {
                throw fail("\(key).seed.\(volume)", "must name a docker volume, got \"\(source)\"")
            }
        }
        if let memory = service.memory { try checkMemory(memory, key: "\(key).memory") }
        if let cpus = service.cpus { try checkCPUs(cpus, key: "\(key).cpus") }
        if let pids = service.pids, pids <= 0 { throw fail("\(key).pids", "must be positive") }
        return StagerConfig.Service(
            name: name,
            image: image,
            command: service.command ?? [],
            env: try variables(service.env, key: "\(key).env"),
            port: service.port,
            healthPath: healthPath,
            healthTimeout: try duration(service.health_timeout, key: "\(key).health_timeout", default: .seconds(60)),
            volumes: volumes,
            seed: service.seed ?? [:],
            memory: service.memory,
            cpus: service.cpus,
            pids: service.pids,
            capAdd: try capabilities(service.cap_add, key: "\(key).cap_add"),
            dependsOn: service.depends_on ?? []
        )
    }

    func release(_ argv: [String]?, key: String) throws -> [String]? {
        guard let argv else { return nil }
        guard let first = argv.first, !first.isEmpty else {
            throw fail(key, "is an argv such as [\"bin/migrate\"]; an empty one runs nothing: leave it out")
        }
        return argv
    }

    /// Variables for a container: valid names, not STAGER_*, no line breaks (they go through an env file).
    func variables(_ env: [String: String]?, key: String) throws -> [String: String] {
        for (name, value) in env ?? [:] {
            guard let first = name.first, first.isLetter || first == "_",
                name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })
            else {
                throw fail("\(key).\(name)", "is not a valid environment variable name")
            }
            guard !name.hasPrefix("STAGER_") else { throw fail("\(key).\(name)", "STAGER_* variables are set by Stager itself") }
            guard !value.hasLineBreak else { throw fail("\(key).\(name)", "values may not contain line breaks") }
        }
        return env ?? [:]
    }

    /// Capabilities a preview may get back after `--cap-drop ALL`: docker's own default set and the few
    /// that common services ask for. Anything else (SYS_ADMIN, SYS_PTRACE, NET_ADMIN, SYS_MODULE…) lets
    /// untrusted code reach past its container.
    static let grantableCapabilities: Set<String> = [
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "NET_RAW",
        "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT", "IPC_LOCK", "SYS_NICE",
    ]

    /// Capabilities added back after `--cap-drop ALL`, in one spelling, from the allow-list.
    func capabilities(_ list: [String]?, key: String) throws -> [String] {
        try (list ?? []).map { capability in
            // Docker takes both NET_ADMIN and CAP_NET_ADMIN; one spelling is kept.
            let upper = capability.uppercased()
            let name = upper.hasPrefix("CAP_") ? String(upper.dropFirst(4)) : upper
            guard Self.grantableCapabilities.contains(name) else {
                throw fail(
                    key,
                    "\"\(capability)\" is not a capability Stager grants; it grants \(Self.grantableCapabilities.sorted().joined(separator: ", "))"
                )
            }
            return name
        }
    }

    static func isLabel(_ value: String, maxLength: Int) -> Bool {
        guard let first = value.first, let last = value.last, value.count <= maxLength else { return false }
        return first.isASCII && (first.isLowercase || first.isNumber) && (last.isLowercase || last.isNumber)
            && value.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }
    }
}

extension Validator {
    func seedImage(_ value: String?) throws -> String? {
        guard let value else { return nil }
        guard !value.isEmpty, !value.hasPrefix("-"), !value.contains(where: { $0.isWhitespace }) else {
            throw fail("docker.seed_image", "must be an image reference that holds busybox, got \"\(value)\"")
        }
        return value
    }
}

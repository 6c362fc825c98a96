import Yams

/// Rejects keys the configuration does not know, so a typo is an error rather than a silently ignored setting.
enum KnownKeys {
    indirect enum Shape: Sendable {
        case leaf
        case mapping([String: Shape])
        /// A mapping whose keys are chosen by the user (repository names, variable names).
        case anyKeys(Shape)
    }

    static let repo: Shape = .mapping([
        "image": .leaf, "command": .leaf, "port": .leaf, "health_path": .leaf, "health_timeout": .leaf, "smoke": .leaf, "drain": .leaf,
        "env": .anyKeys(.leaf), "allow_forks": .leaf, "memory": .leaf, "cpus": .leaf, "pids": .leaf,
        "max_environments": .leaf, "cap_add": .leaf, "read_only": .leaf, "privileged": .leaf,
        "require_label": .leaf, "webhook_secret_env": .leaf, "webhook_secret_file": .leaf,
        "access": .mapping(["htpasswd_file": .leaf, "users_env": .leaf, "allow_ips": .leaf]), "build": .mapping(["context": .leaf, "dockerfile": .leaf, "args": .anyKeys(.leaf), "target": .leaf]),
        "clone_url": .leaf,
    ])

    static let root: Shape = .mapping([
        "server": .mapping(["listen": .leaf, "max_body_bytes": .leaf, "admin_token_env": .leaf, "admin_token_file": .leaf, "public_url": .leaf]),
        "data_dir": .leaf,
        "instance": .leaf,
        "reconcile_interval": .leaf,
        "templates_dir": .leaf,
        "webhook": .mapping(["secret_env": .leaf, "secret_file": .leaf]),
        "github": .mapping([
            "api_url": .leaf, "token_env": .leaf, "token_file": .leaf, "deployments": .leaf, "deployment_environment": .leaf,
            "request_timeout": .leaf, "max_attempts": .leaf,
        ]),
        "preview": .mapping(["domain": .leaf, "scheme": .leaf, "public_port": .leaf]),
        "nginx": .mapping([
            "sites_dir": .leaf, "listen": .leaf, "test_command": .leaf, "reload_command": .leaf, "confirm_timeout": .leaf, "batch_delay": .leaf,
        ]),
        "docker": .mapping(["command": .leaf]),
        "repos": .anyKeys(repo),
        "limits": .mapping([
            "max_environments": .leaf, "memory": .leaf, "cpus": .leaf, "pids": .leaf, "concurrent_deploys": .leaf,
            "idle_ttl": .leaf, "concurrent_builds": .leaf,
        ]),
        "forks": .mapping(["label": .leaf]),
        "build": .mapping(["allowed_hosts": .leaf, "allow_file_urls": .leaf]),
        "gc": .mapping(["remove_images": .leaf]),
    ])

    static func check(_ node: Node, file: String) throws {
        try check(node, shape: root, path: "", file: file)
    }

    private static func check(_ node: Node, shape: Shape, path: String, file: String) throws {
        guard let mapping = node.mapping else { return }
        for (keyNode, value) in mapping {
            let key = keyNode.string ?? "\(keyNode)"
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            switch shape {
            case .leaf:
                return
            case .anyKeys(let inner):
                try check(value, shape: inner, path: keyPath, file: file)
            case .mapping(let known):
                guard let inner = known[key] else {
                    let choices = known.keys.sorted().joined(separator: ", ")
                    throw ConfigError(file: file, key: keyPath, message: "unknown key; known keys here: \(choices)")
                }
                try check(value, shape: inner, path: keyPath, file: file)
            }
        }
    }
}

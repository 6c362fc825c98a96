import Foundation

/// The YAML document as written by users: every key optional, snake_case as in the contract.
/// `ConfigLoader` turns it into a validated `StagerConfig`.
struct ConfigFile: Decodable {
    struct Server: Decodable {
        var listen: String?
        var max_body_bytes: Int?
        var admin_token_env: String?
        var admin_token_file: String?
        var public_url: String?
        var public_read: Bool?
        var idle_timeout: String?
    }
    struct Webhook: Decodable {
        var secret_env: String?
        var secret_file: String?
    }
    struct GitHub: Decodable {
        var api_url: String?
        var token_env: String?
        var token_file: String?
        var deployments: Bool?
        var deployment_environment: String?
        var request_timeout: String?
        var max_attempts: Int?
    }
    struct Preview: Decodable {
        var domain: String?
        var scheme: String?
        var public_port: Int?
    }
    struct Nginx: Decodable {
        var sites_dir: String?
        var listen: String?
        var test_command: [String]?
        var reload_command: [String]?
        var confirm_timeout: String?
        var batch_delay: String?
        var activity_listen: String?
        var activity_file: String?
    }
    struct Docker: Decodable {
        var command: [String]?
        var seed_image: String?
    }
    struct Repo: Decodable {
        var image: String?
        var command: [String]?
        var port: Int?
        var health_path: String?
        var health_timeout: String?
        var smoke: [String]?
        var drain: String?
        var env: [String: String]?
        var allow_forks: Bool?
        var memory: String?
        var cpus: String?
        var pids: Int?
        var max_environments: Int?
        var cap_add: [String]?
        var read_only: Bool?
        var privileged: Bool?
        var require_label: Bool?
        var webhook_secret_env: String?
        var webhook_secret_file: String?
        var access: Access?
        var build: RepoBuild?
        var clone_url: String?
        var release: [String]?
        var services: [String: Service]?
        var sleep_after: String?
        var slack_webhook_url_env: String?
        var branches: [String]?
        var shared_host: String?
        var default_env: String?
        var canary: Canary?
    }
    struct Canary: Decodable {
        var env: String?
        var percent: Double?
    }
    struct Service: Decodable {
        var image: String?
        var command: [String]?
        var env: [String: String]?
        var port: Int?
        var health_path: String?
        var health_timeout: String?
        var volumes: [String: String]?
        var seed: [String: String]?
        var memory: String?
        var cpus: String?
        var pids: Int?
        var cap_add: [String]?
        var depends_on: [String]?
    }
    struct RepoBuild: Decodable {
        var context: String?
        var dockerfile: String?
        var args: [String: String]?
        var target: String?
    }
    struct Build: Decodable {
        var allowed_hosts: [String]?
        var allow_file_urls: Bool?
        var timeout: String?
        var memory: String?
        var log_limit_bytes: Int?
        var pids: Int?
    }
    struct Limits: Decodable {
        var max_environments: Int?
        var memory: String?
        var cpus: String?
        var pids: Int?
        var concurrent_deploys: Int?
        var idle_ttl: String?
        var concurrent_builds: Int?
        var max_awake: Int?
    }
    struct Sleep: Decodable {
        var wake_timeout: String?
        var max_held_requests: Int?
        var wakes_per_minute: Int?
    }
    struct Slack: Decodable {
        var signing_secret_env: String?
        var signing_secret_file: String?
        var allowed_users: [String]?
        var webhook_url_env: String?
        var response_hosts: [String]?
        var team_id: String?
    }

    struct Swarm: Decodable {
        var registry: String?
        var constraints: [String]?
        var published_ports: String?
    }

    var server: Server?
    var runtime: String?
    var swarm: Swarm?
    var data_dir: String?
    var instance: String?
    var reconcile_interval: String?
    var templates_dir: String?
    var webhook: Webhook?
    var github: GitHub?
    var preview: Preview?
    var nginx: Nginx?
    var docker: Docker?
    var repos: [String: Repo]?
    var limits: Limits?
    var gc: GC?
    var build: Build?
    var sleep: Sleep?
    var slack: Slack?

    struct Access: Decodable {
        var htpasswd_file: String?
        var users_env: String?
        var allow_ips: [String]?
    }
    struct Forks: Decodable {
        var label: String?
        var max_blocked: Int?
    }
    var forks: Forks?

    struct GC: Decodable {
        var remove_images: Bool?
    }
}

import Foundation

/// The shared host of each repository with `shared_host`: one nginx vhost, `<shared_host>.<domain>`, that
/// serves any routed environment of the repository by the visitor's choice. nginx does the choosing itself
/// (`map` over the `X-Stager-Env` header and the `stager_env` cookie, `split_clients` for the canary) and
/// sends the request back into nginx with the chosen environment's host name, so that environment's own
/// vhost answers as it would: its access rules, its wake path, its activity. `?stager-env=NAME` answers 302
/// to the same URL without it and sets the cookie. No choice, or a name with no routed environment, gets
/// `default_env`.
public struct SharedHostVhost: Sendable {
    /// First line of a shared host's file; `inventory` does not count it as an environment's vhost.
    static let markerPrefix = "# stager-shared "

    public struct Site: Sendable, Equatable {
        public var repo: String
        public var host: StagerConfig.SharedHost
        public var access: StagerConfig.Access
    }

    public let sites: [Site]
    let domain: String
    let listen: String
    /// Where nginx itself answers on this machine: the hop to the environment's vhost.
    let nginxAddress: String
    /// Sent on the hop once this host checked the visitor's address: the environment's vhost, which sees
    /// the hop come from this machine, takes it instead of the address (`VhostKeys.hop`).
    var hopKey = ""
    /// The cookie carries `Secure` when previews are reached over https.
    var secureCookie = false

    public init(sites: [Site], domain: String, listen: String, nginxAddress: String) {
        self.sites = sites
        self.domain = domain
        self.listen = listen
        self.nginxAddress = nginxAddress
    }

    public init(config: StagerConfig, keys: VhostKeys) {
        let sites = config.repos.values.sorted { $0.name < $1.name }.compactMap { repo in
            repo.sharedHost.map { Site(repo: repo.name, host: $0, access: repo.access) }
        }
        let nginx = config.nginx
        let host = ["0.0.0.0", "*", "::"].contains(nginx.listenHost) ? "127.0.0.1" : nginx.listenHost
        self.init(sites: sites, domain: config.preview.domain, listen: nginx.listen, nginxAddress: "\(host):\(nginx.listenPort)")
        hopKey = keys.hop
        secureCookie = config.preview.scheme == "https"
    }

    public static let none = SharedHostVhost(sites: [], domain: "", listen: "", nginxAddress: "")

    /// Shared hosts' files are named `stager-shared-<shared_host>.conf`; that name is reserved from slugs
    /// (`StagerConfig.reservedSlugs`), so no environment's vhost takes it.
    static let filePrefix = "stager-shared-"

    func fileName(_ site: Site) -> String { "\(Self.filePrefix)\(site.host.name).conf" }

    /// An environment of the repository that has a vhost: its name (`pr-N`) and its slug.
    public struct Routed: Sendable, Equatable {
        public var name: String
        public var slug: String
    }

    /// The vhost text for `site`, given the environments of its repository that have a vhost.
    public func render(_ site: Site, environments: [Routed]) -> String {
        // Every name and slug here is `pr-<N>` or a DNS label; the repository name only appears in comments
        // and the marker, and it was checked when the configuration was read.
        let id = site.host.name.replacingOccurrences(of: "-", with: "_")
        let envs = environments.sorted { $0.name < $1.name }
        let known = Set(envs.map(\.name))
        let choices = envs.map { "    \"\($0.name)\" \"\($0.name)\";" }.joined(separator: "\n")
        let fallback: String
        var lines = [
            "\(Self.markerPrefix)repo=\(site.repo) host=\(site.host.name)",
            "# The shared host of \(site.repo): every environment by choice. Written by Stager; edits are overwritten.",
        ]
        if let canary = site.host.canary, known.contains(canary.env), canary.env != site.host.defaultEnv {
            // A visitor with no choice is given the canary with this probability, and keeps it (the cookie).
            lines += [
                "split_clients \"${request_id}\" $stager_canary_\(id) {",
                "    \(Self.percent(canary.percent))% \"\(canary.env)\";",
                "    * \"\(known.contains(site.host.defaultEnv) ? site.host.defaultEnv : "")\";",
                "}",
                "map $stager_cookie_\(id) $stager_pin_\(id) {",
                "    \"\" \"stager_env=$stager_env_\(id); Path=/; SameSite=Lax\(cookieFlags)\";",
                "    default \"\";",
                "}",
            ]
            fallback = "$stager_canary_\(id)"
        } else {
            fallback = known.contains(site.host.defaultEnv) ? "\"\(site.host.defaultEnv)\"" : "\"\""
        }
        lines += [
            "map $http_x_stager_env $stager_header_\(id) {",
            "    default \"\";",
            choices,
            "}",
            "map $cookie_stager_env $stager_cookie_\(id) {",
            "    default \"\";",
            choices,
            "}",
            // The header first, then the cookie, then the canary's draw or the default.
            "map \"$stager_header_\(id) $stager_cookie_\(id)\" $stager_env_\(id) {",
            "    \"~^(?<stager_chosen_\(id)>[^ ]+) \" $stager_chosen_\(id);",
            "    \"~^ (?<stager_chosen_\(id)>[^ ]+)$\" $stager_chosen_\(id);",
            "    default \(fallback);",
            "}",
            "map $stager_env_\(id) $stager_host_\(id) {",
            "    default \"\";",
            envs.map { "    \"\($0.name)\" \"\($0.slug).\(domain)\";" }.joined(separator: "\n"),
            "}",
            // The query without `stager-env=…`, for the redirect.
            "map \"$stager_before $stager_after\" $stager_rest_\(id) {",
            "    \" \" \"\";",
            "    \"~^ (?<stager_a_\(id)>.+)$\" \"?$stager_a_\(id)\";",
            "    \"~^(?<stager_b_\(id)>[^ ]+) $\" \"?$stager_b_\(id)\";",
            "    \"~^(?<stager_b_\(id)>[^ ]+) (?<stager_a_\(id)>.+)$\" \"?$stager_b_\(id)&$stager_a_\(id)\";",
            "}",
            "server {",
            "    listen \(listen);",
            "    server_name \(site.host.name).\(domain);",
            "",
            // Stager's probe is for each environment's own host, from this machine, with its key: never here.
            "    location = /.stager-probe {",
            "        return 404;",
            "    }",
            "",
            "    location / {",
        ]
        // The same protection as the environments' own hosts: this host sees the visitor's address.
        for address in site.access.allowIPs { lines.append("        allow \(address);") }
        if !site.access.allowIPs.isEmpty { lines.append("        deny all;") }
        if let htpasswd = site.access.htpasswdFile {
            lines += ["        auth_basic \"Previews of \(site.repo)\";", "        auth_basic_user_file \(htpasswd.path);"]
        }
        lines += [
            // The redirect stays on this host: the path loses its leading slashes and backslashes (`//evil/`
            // would be another host to a browser) and gets one slash back.
            "        if ($request_uri ~ \"^[/\\\\\\\\]*(?<stager_path>[^?]*)\\?(?:(?<stager_before>.*?)&)?stager-env=(?<stager_choice>[A-Za-z0-9._-]*)(?:&(?<stager_after>.*))?$\") {",
            "            add_header Set-Cookie \"stager_env=$stager_choice; Path=/; SameSite=Lax\(cookieFlags)\";",
            // An `if` with headers of its own does not take the location's: the choice is said here too.
            "            add_header X-Stager-Env $stager_choice;",
            "            return 302 /$stager_path$stager_rest_\(id);",
            "        }",
            "        if ($stager_host_\(id) = \"\") {",
            "            return 503 \"no environment of \(site.repo) is ready at this address yet\\n\";",
            "        }",
            "        proxy_pass http://\(nginxAddress);",
            "        proxy_http_version 1.1;",
            "        proxy_set_header Host $stager_host_\(id);",
            "        proxy_set_header X-Forwarded-Host $host;",
            "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "        proxy_set_header X-Forwarded-Proto $scheme;",
            "        proxy_set_header X-Stager-Hop \"\(hopKey)\";",
            "        proxy_set_header X-Stager-Probe \"\";",
            "        proxy_read_timeout 300s;",
            "        proxy_ignore_headers X-Accel-Redirect X-Accel-Expires X-Accel-Limit-Rate X-Accel-Buffering X-Accel-Charset;",
            "        add_header X-Stager-Env $stager_env_\(id) always;",
        ]
        if fallback.hasPrefix("$stager_canary") { lines.append("        add_header Set-Cookie $stager_pin_\(id);") }
        lines += ["    }", "}", ""]
        return lines.joined(separator: "\n")
    }

    private var cookieFlags: String { secureCookie ? "; Secure" : "" }

    /// nginx's `split_clients` takes a percentage with at most two decimals.
    static func percent(_ value: Double) -> String {
        let rounded = (value * 100).rounded() / 100
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(format: "%.2f", rounded)
    }
}

import Foundation

/// Which environments a dashboard or API request asks for: `?repo=OWNER/NAME&status=ready`.
public struct EnvironmentFilter: Sendable, Equatable {
    public var repo: String?
    public var status: String?

    public enum Problem: Error, CustomStringConvertible {
        case unknownStatus(String)
        public var description: String {
            switch self {
            case .unknownStatus(let value):
                let known = EnvironmentStatus.allCases.filter { $0 != .removed }.map(\.rawValue).joined(separator: ", ")
                return "unknown status \"\(value)\"; one of: \(known)"
            }
        }
    }

    /// Empty parameters mean "any"; an unknown status is an error rather than an empty page.
    public init(repo: String?, status: String?) throws {
        self.repo = repo.flatMap { $0.isEmpty ? nil : $0 }
        self.status = status.flatMap { $0.isEmpty ? nil : $0 }
        if let status = self.status, EnvironmentStatus(rawValue: status) == nil || status == EnvironmentStatus.removed.rawValue {
            throw Problem.unknownStatus(status)
        }
    }

    public func apply(_ views: [EnvironmentView]) -> [EnvironmentView] {
        views.filter { view in (repo == nil || view.repo == repo) && (status == nil || view.status == status) }
    }

    /// What the page's script compares with each poll of /api/environments: a change reloads the page.
    public static func signature(_ views: [EnvironmentView]) -> String {
        views.map { "\($0.repo)#\($0.number):\($0.status):\($0.sha)" }.joined(separator: "|")
    }
}

/// Turns views into the Mustache contexts of the dashboard and environment pages (all text is escaped
/// by the templates, which are HTML-typed). Each encodes with the snake_case keys the templates name.
enum DashboardPages {
    struct Option: Encodable {
        var name: String
        var selected: Bool
    }

    struct StatusCount: Encodable {
        var status: String
        var count: Int
    }

    /// Per repository with `shared_host`: its URL, the default environment and the canary.
    struct SharedHostLine: Encodable {
        var url: String
        var defaultEnv: String
        var canary: String?
    }

    struct RepoGroup: Encodable {
        var repo: String
        var count: Int
        var environments: [Row]
        var shared: SharedHostLine?
    }

    struct Dashboard: Encodable {
        var css: String
        var groups: [RepoGroup]
        var hasEnvironments: Bool
        var filtered: Bool
        var total: String
        var summary: [StatusCount]
        var repoOptions: [Option]
        var statusOptions: [Option]
        var signature: String
        var query: String
        var degraded: String
    }

    /// One environment as a dashboard row, and the start of its page.
    struct Row: Encodable {
        var lastVisit: String
        var lastRequestAt: String
        var repo: String
        var number: Int
        var title: String
        var prUrl: String
        var refLabel: String
        var pagePath: String
        var branch: String
        var author: String
        var status: String
        var url: String
        var sha: String
        var shortSha: String
        var createdAt: String
        var updatedAt: String
        var age: String
        var deployTime: String
        var failed: Bool
        var failureReason: String
    }

    struct EventLine: Encodable {
        var at: String
        var kind: String
        var message: String
        var shortSha: String
        var trigger: String
        var actor: String
        var deliveryId: String
        var problem: Bool
    }

    struct ServiceLine: Encodable {
        var name: String
        var status: String
        var healthy: Bool
        var containerId: String
    }

    /// The environment page: its row, its history, logs and services, and the action forms.
    struct EnvironmentPage: Encodable {
        var row: Row
        var css: String
        var events: [EventLine]
        var hasEvents: Bool
        var log: String
        var hasLog: Bool
        var logProblem: String
        var commentBody: String
        var deployedSha: String
        var containerName: String
        var services: [ServiceLine]
        var hasServices: Bool
        var degraded: String
        var buildLog: String = ""
        var forms: DashboardActions.Forms? = nil

        private enum CodingKeys: String, CodingKey {
            case css, events, hasEvents, log, hasLog, logProblem, commentBody, deployedSha, containerName, services, hasServices,
                degraded, buildLog
        }

        /// The row's values, the page's and the forms' side by side, as the template names them.
        func encode(to encoder: any Encoder) throws {
            try row.encode(to: encoder)
            try forms?.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(css, forKey: .css)
            try container.encode(events, forKey: .events)
            try container.encode(hasEvents, forKey: .hasEvents)
            try container.encode(log, forKey: .log)
            try container.encode(hasLog, forKey: .hasLog)
            try container.encode(logProblem, forKey: .logProblem)
            try container.encode(commentBody, forKey: .commentBody)
            try container.encode(deployedSha, forKey: .deployedSha)
            try container.encode(containerName, forKey: .containerName)
            try container.encode(services, forKey: .services)
            try container.encode(hasServices, forKey: .hasServices)
            try container.encode(degraded, forKey: .degraded)
            try container.encode(buildLog, forKey: .buildLog)
        }
    }

    static func dashboard(
        all: [EnvironmentView],
        filter: EnvironmentFilter,
        degraded: String?,
        css: String,
        now: Date,
        sharedHosts: [String: SharedHostLine] = [:]
    ) -> Dashboard {
        let shown = filter.apply(all)
        let repos = Array(Set(all.map(\.repo))).sorted()
        let groups = Dictionary(grouping: shown, by: \.repo).sorted { $0.key < $1.key }.map { repo, views in
            RepoGroup(
                repo: repo,
                count: views.count,
                environments: views.sorted { $0.number < $1.number }.map { row($0, now: now) },
                shared: sharedHosts[repo]
            )
        }
        let counts = Dictionary(grouping: all, by: \.status).mapValues(\.count)
        return Dashboard(
            css: css,
            groups: groups,
            hasEnvironments: !shown.isEmpty,
            filtered: filter.repo != nil || filter.status != nil,
            total: all.count == 1 ? "1 environment" : "\(all.count) environments",
            summary: EnvironmentStatus.allCases.compactMap { status in
                guard let count = counts[status.rawValue], count > 0 else { return nil }
                return StatusCount(status: status.rawValue, count: count)
            },
            repoOptions: repos.map { Option(name: $0, selected: $0 == filter.repo) },
            statusOptions: EnvironmentStatus.allCases.filter { $0 != .removed }.map {
                Option(name: $0.rawValue, selected: $0.rawValue == filter.status)
            },
            signature: EnvironmentFilter.signature(shown),
            query: query(filter),
            degraded: degraded ?? ""
        )
    }

    static func environment(_ view: EnvironmentView, events: [EventView], log: String, logProblem: String?, css: String, now: Date) -> EnvironmentPage
    {
        EnvironmentPage(
            row: row(view, now: now),
            css: css,
            events: events.map { event in
                EventLine(
                    at: event.at,
                    kind: event.kind,
                    message: event.message,
                    shortSha: event.sha.map { String($0.prefix(12)) } ?? "",
                    trigger: event.trigger,
                    actor: event.actor ?? "",
                    deliveryId: event.delivery_id ?? "",
                    problem: ["failure", "error", "github"].contains(event.kind)
                )
            },
            hasEvents: !events.isEmpty,
            log: log,
            hasLog: !log.isEmpty,
            logProblem: logProblem ?? "",
            commentBody: view.comment_body ?? "",
            deployedSha: view.deployed_sha ?? "",
            containerName: view.container_name ?? "",
            services: view.services.map {
                ServiceLine(
                    name: $0.name,
                    status: $0.status,
                    healthy: $0.status == "healthy",
                    containerId: String(($0.container_id ?? "").prefix(12))
                )
            },
            hasServices: !view.services.isEmpty,
            degraded: view.degraded ?? ""
        )
    }

    static func row(_ view: EnvironmentView, now: Date) -> Row {
        let formatter = ISO8601DateFormatter()
        let age = formatter.date(from: view.created_at).map { EnvironmentTable.age(now.timeIntervalSince($0)) } ?? "-"
        let visited = view.last_request_at.flatMap { formatter.date(from: $0) }.map { EnvironmentTable.age(now.timeIntervalSince($0)) + " ago" }
        return Row(
            lastVisit: visited ?? "",
            lastRequestAt: view.last_request_at ?? "",
            repo: view.repo,
            number: view.number,
            title: view.title.isEmpty ? "(no title)" : view.title,
            prUrl: view.pr_url,
            refLabel: view.isBranch ? "branch \(view.branch)" : "#\(view.number)",
            pagePath: "/environments/\(view.repo)/\(view.number)",
            branch: view.branch,
            author: view.author,
            status: view.status,
            url: view.url ?? "",
            sha: view.sha,
            shortSha: String(view.sha.prefix(12)),
            createdAt: view.created_at,
            updatedAt: view.updated_at,
            age: age,
            deployTime: view.last_deploy_seconds.map(duration) ?? "",
            failed: view.status == EnvironmentStatus.failed.rawValue,
            failureReason: view.failure_reason ?? ""
        )
    }

    /// Per repository with `shared_host`: its URL, the default environment and the canary.
    static func sharedHosts(_ config: StagerConfig) -> [String: SharedHostLine] {
        var hosts: [String: SharedHostLine] = [:]
        for repo in config.repos.values {
            guard let shared = repo.sharedHost else { continue }
            hosts[repo.name] = SharedHostLine(
                url: config.preview.url(forSlug: shared.name),
                defaultEnv: shared.defaultEnv,
                canary: shared.canary.map { "\($0.env) for \(SharedHostVhost.percent($0.percent))% of new visitors" }
            )
        }
        return hosts
    }

    static func duration(_ seconds: Double) -> String {
        seconds < 10
            ? String(format: "%.2fs", seconds) : seconds < 120 ? String(format: "%.0fs", seconds) : "\(Int(seconds / 60))m\(Int(seconds) % 60)s"
    }

    static func query(_ filter: EnvironmentFilter) -> String {
        var items = URLComponents()
        items.queryItems = [filter.repo.map { URLQueryItem(name: "repo", value: $0) }, filter.status.map { URLQueryItem(name: "status", value: $0) }]
            .compactMap { $0 }
        return items.queryItems?.isEmpty == false ? "?" + (items.percentEncodedQuery ?? "") : ""
    }
}

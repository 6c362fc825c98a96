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
/// by the templates, which are HTML-typed).
enum DashboardPages {
    static func dashboard(
        all: [EnvironmentView],
        filter: EnvironmentFilter,
        degraded: String?,
        css: String,
        now: Date,
        sharedHosts: [String: [String: Any]] = [:]
    ) -> [String: Any] {
        let shown = filter.apply(all)
        let repos = Array(Set(all.map(\.repo))).sorted()
        let groups = Dictionary(grouping: shown, by: \.repo).sorted { $0.key < $1.key }.map { repo, views -> [String: Any] in
            [
                "repo": repo, "count": views.count, "environments": views.sorted { $0.number < $1.number }.map { row($0, now: now) },
                "shared": sharedHosts[repo] ?? false,
            ]
        }
        let counts = Dictionary(grouping: all, by: \.status).mapValues(\.count)
        return [
            "css": css,
            "groups": groups,
            "has_environments": !shown.isEmpty,
            "filtered": filter.repo != nil || filter.status != nil,
            "total": all.count == 1 ? "1 environment" : "\(all.count) environments",
            "summary": EnvironmentStatus.allCases.compactMap { status -> [String: Any]? in
                guard let count = counts[status.rawValue], count > 0 else { return nil }
                return ["status": status.rawValue, "count": count]
            },
            "repo_options": repos.map { ["name": $0, "selected": $0 == filter.repo] },
            "status_options": EnvironmentStatus.allCases.filter { $0 != .removed }.map {
                ["name": $0.rawValue, "selected": $0.rawValue == filter.status]
            },
            "signature": EnvironmentFilter.signature(shown),
            "query": query(filter),
            "degraded": degraded ?? "",
        ]
    }

    static func environment(_ view: EnvironmentView, events: [EventView], log: String, logProblem: String?, css: String, now: Date) -> [String: Any] {
        var context = row(view, now: now)
        context["css"] = css
        context["events"] = events.map { event -> [String: Any] in
            [
                "at": event.at, "kind": event.kind, "message": event.message, "short_sha": event.sha.map { String($0.prefix(12)) } ?? "",
                "trigger": event.trigger, "actor": event.actor ?? "", "delivery_id": event.delivery_id ?? "",
                "problem": ["failure", "error", "github"].contains(event.kind),
            ]
        }
        context["has_events"] = !events.isEmpty
        context["log"] = log
        context["has_log"] = !log.isEmpty
        context["log_problem"] = logProblem ?? ""
        context["comment_body"] = view.comment_body ?? ""
        context["deployed_sha"] = view.deployed_sha ?? ""
        context["created_at"] = view.created_at
        context["container_name"] = view.container_name ?? ""
        context["services"] = view.services.map {
            [
                "name": $0.name, "status": $0.status, "healthy": $0.status == "healthy",
                "container_id": String(($0.container_id ?? "").prefix(12)),
            ]
        }
        context["has_services"] = !view.services.isEmpty
        context["last_request_at"] = view.last_request_at ?? ""
        context["degraded"] = view.degraded ?? ""
        return context
    }

    static func row(_ view: EnvironmentView, now: Date) -> [String: Any] {
        let formatter = ISO8601DateFormatter()
        let age = formatter.date(from: view.created_at).map { EnvironmentTable.age(now.timeIntervalSince($0)) } ?? "-"
        let visited = view.last_request_at.flatMap { formatter.date(from: $0) }.map { EnvironmentTable.age(now.timeIntervalSince($0)) + " ago" }
        return [
            "last_visit": visited ?? "", "last_request_at": view.last_request_at ?? "",
            "repo": view.repo, "number": view.number, "title": view.title.isEmpty ? "(no title)" : view.title, "pr_url": view.pr_url,
            "ref_label": view.isBranch ? "branch \(view.branch)" : "#\(view.number)",
            "page_path": "/environments/\(view.repo)/\(view.number)", "branch": view.branch, "author": view.author,
            "status": view.status, "url": view.url ?? "", "sha": view.sha, "short_sha": String(view.sha.prefix(12)),
            "created_at": view.created_at, "updated_at": view.updated_at, "age": age,
            "deploy_time": view.last_deploy_seconds.map(duration) ?? "",
            "failed": view.status == EnvironmentStatus.failed.rawValue, "failure_reason": view.failure_reason ?? "",
        ]
    }

    /// Per repository with `shared_host`: its URL, the default environment and the canary.
    static func sharedHosts(_ config: StagerConfig) -> [String: [String: Any]] {
        var hosts: [String: [String: Any]] = [:]
        for repo in config.repos.values {
            guard let shared = repo.sharedHost else { continue }
            var line: [String: Any] = ["url": config.preview.url(forSlug: shared.name), "default_env": shared.defaultEnv]
            if let canary = shared.canary { line["canary"] = "\(canary.env) for \(SharedHostVhost.percent(canary.percent))% of new visitors" }
            hosts[repo.name] = line
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

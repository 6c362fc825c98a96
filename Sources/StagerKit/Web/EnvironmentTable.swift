import Foundation

/// `stager ls` output: aligned columns for people, JSON for scripts.
public enum EnvironmentTable {
    public static func json(_ views: [EnvironmentView]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return String(decoding: try encoder.encode(views), as: UTF8.self)
    }

    public static func text(_ views: [EnvironmentView], now: Date, degraded: String? = nil) -> String {
        let header = ["REPO", "PR", "BRANCH", "URL", "STATUS", "SHA", "AGE", "IDLE", "REQUEST", "SERVICES", "CONTAINER"]
        let formatter = ISO8601DateFormatter()
        let since = { (stamp: String) in formatter.date(from: stamp).map { Self.age(now.timeIntervalSince($0)) } ?? "-" }
        let rows = views.map { view -> [String] in
            [
                view.repo, view.isBranch ? "branch" : "#\(view.number)", view.branch, view.url ?? "-", view.status, String(view.sha.prefix(12)),
                since(view.created_at), since(view.last_activity_at), view.last_request_at.map(since) ?? "-", services(view),
                view.container_id.map { String($0.prefix(12)) } ?? "-",
            ]
        }
        // The engine's state comes first: without it the statuses below are only the last ones known.
        let warning = degraded.map { "WARNING: \($0); statuses are the last known\n" } ?? ""
        guard !rows.isEmpty else { return warning + "no environments" }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        return warning
            + ([header] + rows).map { row in
                row.enumerated().map { index, cell in
                    index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
                }.joined(separator: "  ")
            }.joined(separator: "\n")
    }

    /// `db,cache` when all are healthy; a service that is not says so: `db(unhealthy),cache`.
    static func services(_ view: EnvironmentView) -> String {
        guard !view.services.isEmpty else { return "-" }
        return view.services.map { $0.status == "healthy" ? $0.name : "\($0.name)(\($0.status))" }.joined(separator: ",")
    }

    static func age(_ seconds: TimeInterval) -> String {
        switch seconds {
        case ..<60: return "\(Int(max(seconds, 0)))s"
        case ..<3600: return "\(Int(seconds / 60))m"
        case ..<86400: return "\(Int(seconds / 3600))h"
        default: return "\(Int(seconds / 86400))d"
        }
    }
}

import Foundation

/// `stager ls` output: aligned columns for people, JSON for scripts.
public enum EnvironmentTable {
    public static func json(_ views: [EnvironmentView]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return String(decoding: try encoder.encode(views), as: UTF8.self)
    }

    public static func text(_ views: [EnvironmentView], now: Date) -> String {
        let header = ["REPO", "PR", "BRANCH", "URL", "STATUS", "SHA", "AGE"]
        let formatter = ISO8601DateFormatter()
        let rows = views.map { view -> [String] in
            let age = formatter.date(from: view.created_at).map { Self.age(now.timeIntervalSince($0)) } ?? "-"
            return [view.repo, "#\(view.number)", view.branch, view.url ?? "-", view.status, String(view.sha.prefix(12)), age]
        }
        guard !rows.isEmpty else { return "no environments" }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        return ([header] + rows).map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
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

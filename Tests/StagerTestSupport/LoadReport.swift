import Foundation

/// The failed requests of a load, each beside what nginx's access log says of it: whether the request was
/// lost on the server side (nginx answered non-2xx, or took long) or on the client's (nginx answered at
/// once and the client never read it, or nginx never saw it).
public struct LoadReport: Sendable, CustomStringConvertible {
    public struct Line: Sendable {
        public var outcome: Load.Outcome
        public var server: NginxAccessEntry?
    }

    public var lines: [Line]

    public init(_ outcomes: [Load.Outcome], server entries: [NginxAccessEntry]) {
        let byID = Dictionary(entries.compactMap { entry in entry.loadID.map { ($0, entry) } }) { first, _ in first }
        lines = outcomes.filter { !$0.ok }.map { Line(outcome: $0, server: byID[$0.id]) }
    }

    /// Failed requests nginx answered with 200 within a second: the answer was there, the client did not take it.
    public var servedButNotTaken: Int { lines.filter { $0.server.map { $0.status == 200 && $0.requestTime < 1 } ?? false }.count }
    /// Failed requests nginx has no line for: it never read them (or they were still open when the log was read).
    public var neverSeen: Int { lines.filter { $0.server == nil }.count }

    /// The client's and nginx's view of the same load: request count and the slowest answers on each side.
    public static func timing(_ outcomes: [Load.Outcome], server: [NginxAccessEntry]) -> String {
        let client = outcomes.map(\.latency.seconds).sorted()
        let nginx = server.map(\.requestTime).sorted()
        let upstream = server.compactMap(\.upstreamTime).sorted()
        func p99(_ values: [Double]) -> Double { values.isEmpty ? 0 : values[min(values.count - 1, values.count * 99 / 100)] }
        return String(
            format:
                "%d sent, %d logged by nginx; client p99 %.3f s max %.3f s; nginx p99 %.3f s max %.3f s, of it upstream p99 %.3f s (%d answers took 1 s or more)",
            outcomes.count,
            server.count,
            p99(client),
            client.last ?? 0,
            p99(nginx),
            nginx.last ?? 0,
            p99(upstream),
            upstream.filter { $0 >= 1 }.count
        )
    }

    public var description: String {
        guard !lines.isEmpty else { return "none failed" }
        let first = lines.prefix(8).map { line in
            let client =
                "#\(line.outcome.id) sent at \(line.outcome.sentAt), \(line.outcome.status.map { "status \($0)" } ?? "no answer (\(line.outcome.error ?? "?"))") after \(line.outcome.latency)"
            guard let server = line.server else { return client + "; nginx: no line" }
            return client
                + "; nginx: \(server.status) in \(server.requestTime) s, upstream \(server.upstream ?? "-") in \(server.upstreamTime.map { "\($0) s" } ?? "-")"
        }
        return "\(servedButNotTaken) answered 200 by nginx within 1 s, \(neverSeen) never logged by nginx; first: " + first.joined(separator: " | ")
    }
}

import Foundation

/// One line of the private nginx's access log (`scripts/private-nginx start … --access-log`): the server's
/// view of a request, to hold against what a load client saw.
public struct NginxAccessEntry: Sendable, Equatable {
    /// When nginx finished the request, in seconds since 1970.
    public var loggedAt: Double
    public var status: Int
    /// From nginx reading the first byte to writing the last, in seconds.
    public var requestTime: Double
    /// The upstream's answer time as nginx measured it; nil when nginx answered itself.
    public var upstreamTime: Double?
    public var upstream: String?
    /// The `X-Load-Id` header a load client set, to match the line with its request.
    public var loadID: Int?

    init?(_ line: Substring) {
        let fields = line.split(separator: " ").map(String.init)
        guard fields.count >= 6, let at = Double(fields[0]), let status = Int(fields[1]), let time = Double(fields[2]) else { return nil }
        loggedAt = at
        self.status = status
        requestTime = time
        upstreamTime = Double(fields[3])
        upstream = fields[4] == "-" ? nil : fields[4]
        loadID = Int(fields[5])
    }
}

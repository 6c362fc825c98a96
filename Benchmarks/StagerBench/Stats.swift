import Foundation

/// Seconds measured over repeated runs; the machine is noisy, so medians are what the table quotes.
struct Samples: Encodable {
    var seconds: [Double] = []

    mutating func add(_ value: Double) { seconds.append(value) }

    func percentile(_ p: Double) -> Double {
        guard !seconds.isEmpty else { return .nan }
        let sorted = seconds.sorted()
        let rank = Int((p / 100 * Double(sorted.count - 1)).rounded())
        return sorted[Swift.min(Swift.max(rank, 0), sorted.count - 1)]
    }

    var median: Double { percentile(50) }
    var p90: Double { percentile(90) }
    var p99: Double { percentile(99) }
    var max: Double { seconds.max() ?? .nan }

    enum CodingKeys: String, CodingKey { case median, p90, samples }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Self.round(median), forKey: .median)
        try container.encode(Self.round(p90), forKey: .p90)
        try container.encode(seconds.map(Self.round), forKey: .samples)
    }

    static func round(_ value: Double) -> Double { (value * 10_000).rounded() / 10_000 }
}

func formatSeconds(_ value: Double) -> String {
    value.isNaN ? "-" : value < 1 ? String(format: "%.0f ms", value * 1000) : String(format: "%.2f s", value)
}

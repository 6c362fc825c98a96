import Foundation

/// A strict reader of Prometheus' text exposition format (0.0.4), so tests check that /metrics parses,
/// not merely that it contains a line.
public struct PrometheusText: Sendable {
    public struct Sample: Sendable, Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    public struct Problem: Error, CustomStringConvertible {
        public var line: Int
        public var text: String
        public var why: String
        public var description: String { "line \(line) \"\(text)\": \(why)" }
    }

    public private(set) var samples: [Sample] = []
    /// Metric family name to its TYPE.
    public private(set) var types: [String: String] = [:]

    public init(_ text: String) throws {
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            let problem = { (why: String) in Problem(line: index + 1, text: line, why: why) }
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
                guard parts.count >= 3, ["HELP", "TYPE"].contains(parts[1]), Self.isName(parts[2]) else { throw problem("bad comment line") }
                if parts[1] == "TYPE" {
                    guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        throw problem("bad TYPE")
                    }
                    guard types[parts[2]] == nil else { throw problem("TYPE given twice") }
                    types[parts[2]] = parts[3]
                }
                continue
            }
            samples.append(try Self.sample(line, problem: problem))
            let name = samples[samples.count - 1].name
            let family = ["_bucket", "_sum", "_count"].reduce(name) { name, suffix in
                name.hasSuffix(suffix) && types[String(name.dropLast(suffix.count))] == "histogram" ? String(name.dropLast(suffix.count)) : name
            }
            guard types[family] != nil else { throw problem("sample before its TYPE line") }
        }
    }

    /// The value of the sample with this name and exactly these labels; nil when there is none.
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    private static func sample(_ line: String, problem: (String) -> Problem) throws -> Sample {
        var rest = Substring(line)
        let name = String(rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" })
        guard isName(name) else { throw problem("bad metric name") }
        rest = rest.dropFirst(name.count)
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                let label = String(rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" })
                guard !label.isEmpty else { throw problem("bad label name") }
                rest = rest.dropFirst(label.count)
                guard rest.hasPrefix("=\"") else { throw problem("expected =\" after \(label)") }
                rest = rest.dropFirst(2)
                var value = ""
                while let character = rest.first, character != "\"" {
                    if character == "\\" {
                        rest = rest.dropFirst()
                        guard let escaped = rest.first else { throw problem("bad escape") }
                        value.append(escaped == "n" ? "\n" : escaped)
                    } else {
                        value.append(character)
                    }
                    rest = rest.dropFirst()
                }
                guard rest.first == "\"" else { throw problem("unterminated label value") }
                rest = rest.dropFirst()
                labels[label] = value
                if rest.first == "," { rest = rest.dropFirst() }
            }
            rest = rest.dropFirst()
        }
        guard rest.first == " " else { throw problem("expected a space before the value") }
        let fields = rest.dropFirst().split(separator: " ")
        guard let text = fields.first, fields.count <= 2 else { throw problem("expected a value and at most a timestamp") }
        let value: Double? =
            switch text {
            case "+Inf": .infinity
            case "-Inf": -.infinity
            case "NaN": .nan
            default: Double(text)
            }
        guard let value else { throw problem("value is not a number") }
        return Sample(name: name, labels: labels, value: value)
    }

    private static func isName(_ text: String) -> Bool {
        guard let first = text.first, first.isLetter || first == "_" || first == ":" else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }
    }
}

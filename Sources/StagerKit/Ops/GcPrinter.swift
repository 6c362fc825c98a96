import Foundation

/// gc's output: aligned rows, one as each item is done, or JSON lines; each ends with a newline.
public struct GcPrinter: Sendable {
    let json: Bool
    private static let widths = [13, 13, 44]

    public init(json: Bool) {
        self.json = json
    }

    /// The table's header; none for JSON.
    public var header: String? {
        json ? nil : Self.row(["ACTION", "KIND", "ITEM", "REASON"]) + "\n"
    }

    public func line(_ item: GcItem) -> String {
        (json ? Self.encode(item) : Self.row([item.action.rawValue, item.kind.rawValue, item.item, item.reason])) + "\n"
    }

    public func line(_ summary: GarbageCollector.Summary) -> String {
        struct Line: Encodable {
            var summary: GarbageCollector.Summary
            var line: String
        }
        return (json ? Self.encode(Line(summary: summary, line: summary.line)) : summary.line) + "\n"
    }

    private static func row(_ cells: [String]) -> String {
        cells.enumerated().map { index, cell in
            index < widths.count ? cell.padding(toLength: max(widths[index], cell.count), withPad: " ", startingAt: 0) : cell
        }.joined(separator: " ")
    }

    private static func encode(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "{}"  // GcItem and the summary always encode
    }
}

/// Escaping made for the PR comment's Markdown: branch names, log lines and error messages are chosen by
/// whoever opens the PR, and must not end a code span or block, open a link or image, or mention anyone.
public enum MarkdownEscaping {
    /// A code span that shows `text` literally, also inside a table cell.
    public static func codeSpan(_ text: String) -> String {
        let flat = text.map { $0.isNewline ? " " : String($0) }.joined().replacingOccurrences(of: "|", with: "\\|")
        let fence = String(repeating: "`", count: longestRun(of: "`", in: flat) + 1)
        // A space pads a span that starts or ends with a backtick, as CommonMark asks.
        let pad = flat.hasPrefix("`") || flat.hasSuffix("`") ? " " : ""
        return fence + pad + flat + pad + fence
    }

    /// A fence for a code block that `text` cannot close: more backticks than any run inside it.
    public static func fence(for text: String) -> String {
        String(repeating: "`", count: max(3, longestRun(of: "`", in: text) + 1))
    }

    private static func longestRun(of character: Character, in text: String) -> Int {
        var longest = 0
        var current = 0
        for char in text {
            current = char == character ? current + 1 : 0
            longest = max(longest, current)
        }
        return longest
    }
}

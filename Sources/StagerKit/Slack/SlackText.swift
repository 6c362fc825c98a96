/// Slack's message formatting: `&`, `<` and `>` are escaped in anything a user or a branch wrote, so no
/// `<!channel>`, mention or link can be slipped in; links are `<url|text>`, code spans `` `text` ``.
public enum SlackText {
    public static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// A link whose text is escaped; `|` would end the URL part, so it cannot stand in the text.
    public static func link(_ url: String, _ text: String) -> String {
        "<\(escaped(url))|\(escaped(text).replacingOccurrences(of: "|", with: "¦"))>"
    }

    /// A code span; a backquote would end it.
    public static func code(_ text: String) -> String {
        "`\(escaped(text).replacingOccurrences(of: "`", with: "'"))`"
    }
}

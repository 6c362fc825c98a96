import Crypto
import Foundation
import Mustache

/// HTML escaping one Unicode scalar at a time. swift-mustache's own escapes one `Character` at a time, and a
/// `<` or `"` glued to a prepended or combining mark (`\u{0600}<img …>`, `"\u{0301}`) is one Character
/// that is not `<` or `"`, so it went through unescaped (the class of leaf-kit's CVE-2026-27120). By scalar,
/// every `<`, `>`, `&`, `"` and `'` is replaced whatever surrounds it.
public enum HTMLEscaping {
    public static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "<": escaped.unicodeScalars.append(contentsOf: "&lt;".unicodeScalars)
            case ">": escaped.unicodeScalars.append(contentsOf: "&gt;".unicodeScalars)
            case "&": escaped.unicodeScalars.append(contentsOf: "&amp;".unicodeScalars)
            case "\"": escaped.unicodeScalars.append(contentsOf: "&quot;".unicodeScalars)
            case "'": escaped.unicodeScalars.append(contentsOf: "&#39;".unicodeScalars)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// The Mustache content type of Stager's HTML templates (`{{% CONTENT_TYPE: STAGER_HTML}}`, which
    /// `Templates` puts first in every page template, built-in or not).
    struct ContentType: MustacheContentType {
        func escapeText(_ text: String) -> String { HTMLEscaping.escape(text) }
    }

    static let contentTypeName = "STAGER_HTML"
    static let pragma = "{{% CONTENT_TYPE: \(contentTypeName)}}"

    /// swift-mustache looks content types up by name when it parses a template: its own name, and `HTML` too,
    /// so a template that says `{{% CONTENT_TYPE: HTML}}` (as the built-in pages do) gets it as well.
    static let registered: Void = {
        MustacheContentTypes.register(ContentType(), named: contentTypeName)
        MustacheContentTypes.register(ContentType(), named: "HTML")
    }()
}

/// The headers every HTML page of serve carries: a Content-Security-Policy that lets through only the
/// page's own inline `<script>` and `<style>` blocks (by their SHA-256; everything in them comes from the
/// template, since every value is escaped), no framing, no sniffing.
public enum PageSecurity {
    public static func headers(for html: String) -> [(String, String)] {
        let scripts = blocks("script", in: html).map(hash)
        let styles = blocks("style", in: html).map(hash)
        let policy = [
            "default-src 'none'",
            "script-src " + (scripts.isEmpty ? "'none'" : scripts.joined(separator: " ")),
            "style-src " + (styles.isEmpty ? "'none'" : styles.joined(separator: " ")),
            "img-src 'self' data:", "connect-src 'self'", "form-action 'self'", "base-uri 'none'", "frame-ancestors 'none'",
        ].joined(separator: "; ")
        return [
            ("Content-Security-Policy", policy), ("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "same-origin"),
        ]
    }

    /// The text inside each `<tag>…</tag>` (a tag without attributes, as Stager's templates write them).
    static func blocks(_ tag: String, in html: String) -> [String] {
        var found: [String] = []
        var rest = html[...]
        while let open = rest.range(of: "<\(tag)>"), let close = rest.range(of: "</\(tag)>", range: open.upperBound..<rest.endIndex) {
            found.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return found
    }

    static func hash(_ text: String) -> String {
        "'sha256-\(Data(SHA256.hash(data: Data(text.utf8))).base64EncodedString())'"
    }
}

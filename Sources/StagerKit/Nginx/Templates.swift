import Foundation
import Mustache

/// The vhost, comment and dashboard templates: built into the binary from the repository's `templates/`,
/// each overridable by a file of the same name in `templates_dir`.
public struct Templates: Sendable {
    public var vhost: MustacheTemplate
    public var comment: MustacheTemplate
    public var dashboard: MustacheTemplate

    public enum Failure: Error, CustomStringConvertible {
        case invalid(name: String, reason: String)
        public var description: String {
            switch self {
            case .invalid(let name, let reason): return "template \(name) is not valid Mustache: \(reason)"
            }
        }
    }

    public static func load(overrideDir: URL? = nil) throws -> Templates {
        func template(_ name: String, embedded: [UInt8]) throws -> MustacheTemplate {
            var text = String(decoding: embedded, as: UTF8.self)
            if let overrideDir, let custom = try? String(contentsOf: overrideDir.appendingPathComponent(name), encoding: .utf8) {
                text = custom
            }
            do {
                return try MustacheTemplate(string: text)
            } catch {
                throw Failure.invalid(name: name, reason: "\(error)")
            }
        }
        return Templates(
            vhost: try template("vhost.conf.mustache", embedded: PackageResources.vhost_conf_mustache),
            comment: try template("comment.md.mustache", embedded: PackageResources.comment_md_mustache),
            dashboard: try template("dashboard.html.mustache", embedded: PackageResources.dashboard_html_mustache)
        )
    }
}

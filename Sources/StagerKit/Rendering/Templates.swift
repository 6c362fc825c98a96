import Foundation
import Mustache

/// The vhost, comment, dashboard and environment-page templates (and the pages' style sheet): built into the binary from the repository's `templates/`,
/// each overridable by a file of the same name in `templates_dir`.
public struct Templates: Sendable {
    public var vhost: MustacheTemplate
    public var comment: MustacheTemplate
    public var dashboard: MustacheTemplate
    public var environment: MustacheTemplate
    /// The dashboard's style sheet, inlined into its pages so they need nothing else (they work offline).
    public var css: String

    public enum Failure: Error, CustomStringConvertible {
        case invalid(name: String, reason: String)
        /// `templates_dir` or a file in it exists but cannot be read: a configuration error, never a silent fallback.
        case unreadable(path: String, reason: String)
        public var description: String {
            switch self {
            case .invalid(let name, let reason): return "template \(name) is not valid Mustache: \(reason)"
            case .unreadable(let path, let reason): return "templates_dir: cannot read \(path): \(reason)"
            }
        }
    }

    public static func load(overrideDir: URL? = nil) throws -> Templates {
        if let overrideDir {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: overrideDir.path, isDirectory: &isFolder), isFolder.boolValue else {
                throw Failure.unreadable(path: overrideDir.path, reason: "no such folder")
            }
        }
        /// The override when the folder has a file of that name, else the built-in one.
        func text(_ name: String, embedded: [UInt8]) throws -> String {
            guard let file = overrideDir?.appendingPathComponent(name), FileManager.default.fileExists(atPath: file.path) else {
                return String(decoding: embedded, as: UTF8.self)
            }
            do {
                return try String(contentsOf: file, encoding: .utf8)
            } catch {
                throw Failure.unreadable(path: file.path, reason: "\(error)")
            }
        }
        _ = HTMLEscaping.registered
        func template(_ name: String, embedded: [UInt8]) throws -> MustacheTemplate {
            // Every page escapes by Unicode scalar, a custom template as much as the built-in one.
            let pragma = name.hasSuffix(".html.mustache") ? HTMLEscaping.pragma : ""
            do {
                return try MustacheTemplate(string: pragma + (try text(name, embedded: embedded)))
            } catch let failure as Failure {
                throw failure
            } catch {
                throw Failure.invalid(name: name, reason: "\(error)")
            }
        }
        return Templates(
            vhost: try template("vhost.conf.mustache", embedded: PackageResources.vhost_conf_mustache),
            comment: try template("comment.md.mustache", embedded: PackageResources.comment_md_mustache),
            dashboard: try template("dashboard.html.mustache", embedded: PackageResources.dashboard_html_mustache),
            environment: try template("environment.html.mustache", embedded: PackageResources.environment_html_mustache),
            css: try text("dashboard.css", embedded: PackageResources.dashboard_css)
        )
    }
}

extension MustacheTemplate {
    /// Renders a typed context as the templates name its values: its JSON form with snake_case keys
    /// (`upstreamPort` is `{{upstream_port}}`); with `emptyAsMissing`, empty strings count as missing.
    public func render(encoded context: some Encodable, emptyAsMissing: Bool = false) throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        guard let values = try JSONSerialization.jsonObject(with: encoder.encode(context)) as? [String: Any] else {
            throw TemplateContextError.notAnObject(String(describing: type(of: context)))
        }
        return emptyAsMissing ? render(emptyAsMissing: values) : render(values)
    }

    /// Renders with empty strings read as missing: swift-mustache counts "" as present, so without this
    /// `{{#reason}}…{{/reason}}` would show its text around an empty reason.
    public func render(emptyAsMissing context: [String: Any]) -> String {
        render(Self.emptyAsMissing(context))
    }

    static func emptyAsMissing(_ value: Any) -> Any {
        switch value {
        case let text as String: return text.isEmpty ? NSNull() : text
        case let object as [String: Any]: return object.mapValues(emptyAsMissing)
        case let list as [[String: Any]]: return list.map { $0.mapValues(emptyAsMissing) }
        case let list as [Any]: return list.map(emptyAsMissing)
        default: return value
        }
    }
}

/// A template context that does not encode as a JSON object: a programming error, said by its type.
public enum TemplateContextError: Error, CustomStringConvertible {
    case notAnObject(String)

    public var description: String {
        switch self {
        case .notAnObject(let type): return "\(type) does not encode as an object of named values"
        }
    }
}

/// What a repository's own templates (`image`, `build.args`, `github.deployment_environment`) may name:
/// the environment's PR.
public struct PullRequestNames: Encodable, Sendable, Equatable {
    public var repo: String
    public var number: Int
    public var branch: String
    public var sha: String
    public var slug: String

    public init(repo: String, number: Int, branch: String, sha: String, slug: String) {
        self.repo = repo
        self.number = number
        self.branch = branch
        self.sha = sha
        self.slug = slug
    }

    public init(_ env: Environment, sha: String) {
        self.init(repo: env.repo, number: env.number, branch: env.branch, sha: sha, slug: env.slug)
    }
}

import Mustache

/// Renders a repository's `image:` template for one PR and checks the result is an image reference
/// docker accepts, so a branch name cannot smuggle an option or a space into `docker run`.
public enum ImageReference {
    public enum Failure: Error, CustomStringConvertible, Equatable {
        case invalid(String)
        public var description: String {
            switch self {
            case .invalid(let image): return "the image template rendered \"\(image)\", which is not a valid image reference"
            }
        }
    }

    static func template(_ text: String) throws -> MustacheTemplate {
        try MustacheTemplate(string: "{{% CONTENT_TYPE: TEXT}}" + text)
    }

    public static func render(_ template: String, names: PullRequestNames) throws -> String {
        let image = try self.template(template).render(encoded: names)
        guard isValid(image) else { throw Failure.invalid(image) }
        return image
    }

    /// The image an environment ran, when the repository's template names one per PR (a shared image such as
    /// `acme/web:latest` is never garbage).
    public static func perPullRequest(_ env: Environment, repo: StagerConfig.Repo) -> String? {
        guard repo.image.contains("{{") else { return nil }
        // nil: the template cannot name a per-PR image
        return try? render(repo.image, names: PullRequestNames(env, sha: env.deployedSha ?? env.desiredSha))
    }

    static func isValid(_ image: String) -> Bool {
        guard let first = image.first, first.isLetter || first.isNumber, image.count <= 255 else { return false }
        return image.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-/:@".contains($0)) }
    }
}

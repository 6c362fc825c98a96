/// A slash command's `text`, parsed: what hubot-deploy and branch-deploy users expect (`deploy`,
/// `rollback`, `help`…), each naming its environment as `OWNER/NAME#N`.
public enum SlackCommand: Sendable, Equatable {
    case help
    case list(repo: String?)
    case status(PullRequestKey)
    case change(EnvironmentActions.Action, PullRequestKey, sha: String?)
    case rollback(PullRequestKey)
    /// Not understood: the message says what was expected.
    case unknown(String)

    public init(text: String) {
        let words = text.split(whereSeparator: \.isWhitespace).map(String.init)
        let verb = words.first?.lowercased() ?? "help"
        let key = words.count > 1 ? PullRequestKey(parsing: words[1]) : nil
        func needsKey(_ make: (PullRequestKey) -> SlackCommand, extra: Int = 0) -> SlackCommand {
            guard let key, words.count <= 2 + extra else { return .unknown("`\(verb)` needs one environment, as `OWNER/NAME#N`") }
            return make(key)
        }
        switch verb {
        case "help": self = .help
        case "ls":
            guard words.count <= 2, words.dropFirst().allSatisfy({ $0.split(separator: "/").count == 2 && !$0.contains("#") }) else {
                self = .unknown("`ls` takes at most a repository, as `OWNER/NAME`")
                return
            }
            self = .list(repo: words.count == 2 ? words[1] : nil)
        case "status": self = needsKey { .status($0) }
        case "deploy": self = needsKey({ .change(.deploy, $0, sha: words.count == 3 ? words[2] : nil) }, extra: 1)
        case "rollback": self = needsKey { .rollback($0) }
        case "destroy": self = needsKey { .change(.destroy, $0, sha: nil) }
        case "sleep": self = needsKey { .change(.sleep, $0, sha: nil) }
        case "wake": self = needsKey { .change(.wake, $0, sha: nil) }
        default: self = .unknown("unknown command `\(verb.prefix(40))`")
        }
    }

    /// Whether it changes an environment: only `slack.allowed_users` may.
    public var changes: Bool {
        switch self {
        case .change, .rollback: return true
        case .help, .list, .status, .unknown: return false
        }
    }

    public static let usage = """
        `help` — this list
        `ls [OWNER/NAME]` — the environments, with their URL and status
        `status OWNER/NAME#N` — one environment
        `deploy OWNER/NAME#N [SHA]` — deploy the PR's head, or a sha of its history
        `rollback OWNER/NAME#N` — deploy the sha that served before the current one
        `destroy OWNER/NAME#N` — remove the environment (a push brings it back)
        `sleep OWNER/NAME#N`, `wake OWNER/NAME#N`
        """
}

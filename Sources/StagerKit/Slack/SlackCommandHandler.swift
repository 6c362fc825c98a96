import Foundation
import Logging

/// Answers a verified slash command: reads for everyone, changes for `slack.allowed_users` only, each
/// answered within Slack's 3 s; a change's outcome (ready with its URL, or failed with the reason) follows
/// to the command's `response_url` once serve has applied it.
public struct SlackCommandHandler: Sendable {
    let config: StagerConfig
    let store: Store
    let actions: EnvironmentActions
    let poster: SlackPoster
    let logger: Logger

    public init(config: StagerConfig, store: Store, actions: EnvironmentActions, poster: SlackPoster, logger: Logger) {
        self.config = config
        self.store = store
        self.actions = actions
        self.poster = poster
        self.logger = logger
    }

    /// Who asked, as the slash command's payload says.
    public struct Caller: Sendable {
        public var userID: String
        public var userName: String
        /// Where the outcome of a change is reported; nil when the payload had none usable.
        public var responseURL: URL?

        public init(userID: String, userName: String, responseURL: URL?) {
            self.userID = userID
            self.userName = userName
            self.responseURL = responseURL
        }
    }

    /// Slack shows a failure if the answer takes longer than 3 s: a change not recorded by then is answered
    /// as under way and reported to `response_url`.
    static let answerWithin: Duration = .milliseconds(2200)
    /// How long a change's outcome is waited for before the report says it is still under way.
    static let followUpFor: Duration = .seconds(900)

    public func answer(_ command: SlackCommand, from caller: Caller) async -> SlackMessage {
        switch command {
        case .help:
            return SlackMessage(text: "Stager's commands:\n" + SlackCommand.usage, inChannel: false)
        case .unknown(let problem):
            return SlackMessage(text: "\(problem). Try:\n" + SlackCommand.usage, inChannel: false)
        case .list(let repo):
            return SlackMessage(text: list(repo: repo), inChannel: false)
        case .status(let key):
            guard let env = try? store.environment(key), env.isLive else {  // an unreadable store reads as unknown here; serve logs it
                return SlackMessage(text: "\(key) has no environment", inChannel: false)
            }
            return SlackMessage(text: line(env), inChannel: false)
        case .change, .rollback:
            guard config.slack.allowedUsers.contains(caller.userID) else {
                return SlackMessage(
                    text:
                        "You may not change environments: your user id \(SlackText.code(caller.userID)) is not in `slack.allowed_users`. `ls` and `status` work for everyone.",
                    inChannel: false
                )
            }
            return await change(command, from: caller)
        }
    }

    private func change(_ command: SlackCommand, from caller: Caller) async -> SlackMessage {
        let actor = "slack:\(caller.userID) (\(caller.userName))"
        let (actions, poster, logger) = (actions, poster, logger)
        let work = Task { () throws -> (PullRequestKey, EnvironmentActions.Action, Environment) in
            switch command {
            case .change(let action, let key, let sha):
                return (key, action, try await actions.perform(action, on: key, sha: sha, actor: actor))
            case .rollback(let key):
                let sha = try actions.previousSha(of: key)
                return (key, .deploy, try await actions.perform(.deploy, on: key, sha: sha, actor: actor))
            default:
                throw EnvironmentActions.Failure.refused("not a change")
            }
        }
        let mention = "<@\(caller.userID)>"
        let recorded = await withTaskGroup(of: Result<(PullRequestKey, EnvironmentActions.Action, Environment), any Error>?.self) { group in
            group.addTask { await Result { try await work.value } }
            group.addTask {
                try? await Task.sleep(for: Self.answerWithin)
                return nil
            }  // cancelled when the work answers first
            defer { group.cancelAll() }
            return await group.next() ?? nil
        }
        if case .failure(let error) = recorded {
            return SlackMessage(text: "Nothing changed: \(SlackText.escaped("\(error)"))", inChannel: false)
        }
        // Recorded, or still recording (GitHub slow): how it ends follows to response_url either way.
        Task {
            let text: String
            switch await Result(catching: { try await work.value }) {
            case .success(let (key, _, env)): text = await self.outcome(of: key, version: env.desiredVersion)
            case .failure(let error): text = "Nothing changed: \(SlackText.escaped("\(error)"))"
            }
            guard let url = caller.responseURL else { return }
            do {
                _ = try await poster.post(SlackMessage(text: text, inChannel: true), to: url)
            } catch {
                logger.warning("could not report to Slack's response_url", metadata: ["error": "\(error)"])
            }
        }
        guard case .success(let (key, action, env)) = recorded else {
            return SlackMessage(text: "\(mention)'s request is under way; I will say here how it ends.", inChannel: true)
        }
        let at = action == .deploy ? " at \(SlackText.code(String(env.desiredSha.prefix(12))))" : ""
        return SlackMessage(text: "\(mention) asked to \(action.rawValue) \(key)\(at): recorded; I will say here when it is done.", inChannel: true)
    }

    /// Waits until serve applied `version`, then says how it ended.
    func outcome(of key: PullRequestKey, version: Int) async -> String {
        let store = store
        let applied =
            (try? await Poller(first: .milliseconds(100), longest: .seconds(2)).until(timeout: Self.followUpFor) {
                guard let env = try? store.environment(key) else { return false }  // read again next round
                return env.appliedVersion >= version
            }) ?? false
        guard applied, let env = try? store.environment(key) else {  // unreadable: said as not finished
            return "\(key): not finished after \(Int(Self.followUpFor.seconds / 60)) minutes; see \(config.server.environmentPage(key))"
        }
        return line(env)
    }

    /// One environment, as a Slack line.
    func line(_ env: Environment) -> String {
        let view = EnvironmentView(env, config: config)
        let name = view.url.map { SlackText.link($0, env.key.description) } ?? SlackText.escaped(env.key.description)
        var text = "\(name) \(SlackText.code(env.branch)): *\(env.status.rawValue)*"
        if let sha = env.deployedSha { text += " at \(SlackText.code(String(sha.prefix(12))))" }
        if env.status == .failed, let reason = env.failureReason { text += " — \(SlackText.escaped(reason))" }
        return text + " (\(SlackText.link(view.page_url, "history and logs")))"
    }

    private func list(repo: String?) -> String {
        // said to the user, logged by serve's other readers
        guard let environments = try? store.allEnvironments() else { return "The store cannot be read now; try again." }
        let shown = environments.filter { $0.status != .removed && (repo == nil || $0.repo == repo) }
        guard !shown.isEmpty else { return repo.map { "No environments of \(SlackText.escaped($0))." } ?? "No environments." }
        let lines = shown.prefix(50).map { "• " + line($0) }
        return lines.joined(separator: "\n") + (shown.count > 50 ? "\n… and \(shown.count - 50) more on the dashboard." : "")
    }
}

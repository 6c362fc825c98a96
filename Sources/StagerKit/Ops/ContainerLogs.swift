import Foundation

/// `stager logs OWNER/NAME#N`: finds the PR's container — the one serving, else the newest this instance
/// has for the PR — and prints its log.
public struct ContainerLogs: Sendable {
    let store: Store
    let runtime: any StackRuntime

    public init(store: Store, runtime: any StackRuntime) {
        self.store = store
        self.runtime = runtime
    }

    /// The container to read (the app's, or with `service` that service's); a clear error when there is none.
    public func container(for key: PullRequestKey, service: String? = nil) async throws -> String {
        guard let env = try await store.environments.environment(key) else {
            throw ManualControlError(message: "\(key) has no environment")
        }
        let all = try await runtime.observe(key).containers
        if let service {
            if let container = all.first(where: { $0.service == service && $0.running }) ?? all.first(where: { $0.service == service }) {
                return container.id
            }
            let known = Set(all.compactMap(\.service)).sorted()
            throw ManualControlError(
                message: "\(key) has no container of service \(service)"
                    + (known.isEmpty ? " (it has no services now)" : " (its services: \(known.joined(separator: ", ")))")
            )
        }
        let containers = all.filter { $0.service == nil }
        if let serving = env.containerID, containers.contains(where: { $0.id.hasPrefix(serving) || serving.hasPrefix($0.id) }) {
            return serving
        }
        if let newest = containers.first(where: { $0.running }) ?? containers.first {
            return newest.id
        }
        let why =
            env.status == .failed
            ? " (its last deploy failed: \(env.failureReason ?? "no reason recorded"); the dashboard page keeps the log tail)" : ""
        throw ManualControlError(message: "\(key) has no container now; status \(env.status.rawValue)\(why)")
    }

    /// The container's log to `sink` as docker writes it; docker's exit status.
    public func stream(_ key: PullRequestKey, service: String? = nil, tail: Int?, follow: Bool, to sink: OutputSink) async throws -> Int32 {
        try await runtime.streamLogs(try await container(for: key, service: service), tail: tail, follow: follow, to: sink)
    }

    /// The PR's last build log (repositories with a `build:` block); with `follow`, what is written next too,
    /// until the build ends.
    public func printBuildLog(
        _ key: PullRequestKey,
        dataDir: URL,
        tail: Int?,
        follow: Bool,
        write: @Sendable (String) -> Void
    ) async throws {
        guard try await store.environments.environment(key) != nil else { throw ManualControlError(message: "\(key) has no environment") }
        let file = ImageBuilder.logFile(dataDir: dataDir, key: key)
        guard let text = try? String(contentsOf: file, encoding: .utf8) else {  // the else branch says the log is unreadable
            throw ManualControlError(message: "\(key) has no build log (its repository builds nothing, or no build has run yet)")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        write(tail.map { lines.suffix($0 + (text.hasSuffix("\n") ? 1 : 0)).joined(separator: "\n") } ?? text)
        guard follow else { return }
        var offset = text.utf8.count
        while true {
            try await Task.sleep(for: .milliseconds(250))
            if let data = try? Data(contentsOf: file), data.count > offset {  // a log rotated away is read again next tick
                write(String(decoding: data.dropFirst(offset), as: UTF8.self))
                offset = data.count
            }
            if try await store.environments.environment(key)?.status != .building { return }
        }
    }
}

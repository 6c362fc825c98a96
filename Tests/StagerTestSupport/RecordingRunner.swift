import Foundation
import StagerKit

/// A `CommandRunner` that records every command and answers from a script instead of running anything.
public final class RecordingRunner: CommandRunner, @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [Command] = []
    private let answer: @Sendable (Command) -> CommandResult

    public init(answer: @escaping @Sendable (Command) -> CommandResult = { _ in CommandResult(exitCode: 0) }) {
        self.answer = answer
    }

    public var commands: [Command] { lock.withLock { recorded } }

    public func run(_ command: Command) async throws -> CommandResult {
        lock.withLock { recorded.append(command) }
        return answer(command)
    }
}

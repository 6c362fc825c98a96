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

    public func stream(_ command: Command, to sink: OutputSink) async throws -> Int32 {
        lock.withLock { recorded.append(command) }
        let result = answer(command)
        if case .file(let url, _) = sink {
            if !FileManager.default.fileExists(atPath: url.path) { FileManager.default.createFile(atPath: url.path, contents: nil) }
            let handle = try FileHandle(forWritingTo: url)
            handle.seekToEndOfFile()
            handle.write(Data((result.standardOutput + result.standardError).utf8))
            try handle.close()
        }
        return result.exitCode
    }
}

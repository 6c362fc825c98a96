import Foundation
import Subprocess

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Runs a command while sampling /proc: which processes it started, and how many docker processes this
/// test process (where the harness's serve runs) started meanwhile.
public enum ProcessTable {
    public struct Watched: Sendable {
        public var exitCode: Int32
        public var standardOutput: String
        public var standardError: String
        /// The names of processes whose parent was the command.
        public var childrenOfCommand: Set<String>
        /// docker processes (seen by pid) whose parent was this test process.
        public var dockerOfServe: Int
    }

    public static func watch(_ binary: String, _ arguments: [String], environment: [String: String], in dir: URL) async throws -> Watched {
        let out = dir.appendingPathComponent("watched.out")
        let err = dir.appendingPathComponent("watched.err")
        let outFD = try FileDescriptor.open(FilePath(out.path), .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite])
        let errFD = try FileDescriptor.open(FilePath(err.path), .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite])
        var variables: [Subprocess.Environment.Key: String?] = [:]
        for (key, value) in environment { if let name = Subprocess.Environment.Key(rawValue: key) { variables[name] = value } }
        let me = getpid()
        let result = try await Subprocess.run(
            .path(FilePath(binary)),
            arguments: Arguments(arguments),
            environment: .inherit.updating(variables),
            input: .none,
            output: .fileDescriptor(outFD, closeAfterSpawningProcess: true),
            error: .fileDescriptor(errFD, closeAfterSpawningProcess: true)
        ) { execution in
            let command = execution.processIdentifier.value
            var children = Set<String>()
            var dockers = Set<Int32>()
            while let table = snapshot(), table[command].map({ $0.state != "Z" }) ?? false {
                for (pid, entry) in table {
                    if entry.parent == command { children.insert(entry.name) }
                    if entry.parent == me, entry.name == "docker" { dockers.insert(pid) }
                }
                try? await Task.sleep(for: .milliseconds(2))
            }
            return (children, dockers.count)
        }
        let code: Int32
        switch result.terminationStatus {
        case .exited(let value): code = value
        case .signaled(let signal): code = 128 + signal
        }
        return Watched(
            exitCode: code,
            standardOutput: try String(contentsOf: out, encoding: .utf8),
            standardError: try String(contentsOf: err, encoding: .utf8),
            childrenOfCommand: result.closureResult.0,
            dockerOfServe: result.closureResult.1
        )
    }

    struct Entry {
        var name: String
        var state: String
        var parent: Int32
    }

    /// Every process's name, state and parent, from /proc/<pid>/stat.
    static func snapshot() -> [Int32: Entry]? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        var table: [Int32: Entry] = [:]
        for name in names {
            guard let pid = Int32(name), let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
                let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
            else { continue }  // gone meanwhile
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, let parent = Int32(fields[1]) else { continue }
            table[pid] = Entry(name: String(stat[stat.index(after: open)..<close]), state: String(fields[0]), parent: parent)
        }
        return table
    }
}

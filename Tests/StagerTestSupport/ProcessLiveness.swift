import Foundation

/// Whether a process still runs, by /proc. Not `kill(pid, 0)`: a process that exited stays a zombie until its
/// parent reaps it, and this machine's init, which inherits daemons, can take seconds to.
public enum ProcessLiveness {
    public static func isRunning(_ pid: pid_t) -> Bool {
        // /proc/<pid>/stat: "pid (comm) state …"; comm may hold spaces, so the state follows the last ')'.
        guard pid > 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first != "Z"
    }
}

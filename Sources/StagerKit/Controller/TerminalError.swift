import Foundation

/// The one error taxonomy of a deploy (controller-runtime's `TerminalError`): a terminal error is what the
/// PR asked for being refused — a bad image, a failing health check, a release that exits 1, a vhost nginx
/// rejects. It is recorded as the deploy's failure, said on the PR, and not retried until a newer intent.
/// Every other error (an engine that does not answer, nginx that cannot reload, GitHub or the store failing)
/// is retried with backoff, the accepted intent kept meanwhile.
struct TerminalError: Error, Equatable {
    var reason: String
    var log: FailureLog?

    init(_ reason: String, log: FailureLog? = nil) {
        self.reason = reason
        self.log = log
    }

    /// The terminal reading of `error`, with `context` before a refusal that does not say what was refused;
    /// nil for an error that is retried.
    static func of(_ error: any Error, context: String? = nil) -> TerminalError? {
        let named = { (text: String) in context.map { "\($0): \(text)" } ?? text }
        switch error {
        case let terminal as TerminalError: return terminal
        case let failure as StackFailure: return TerminalError(failure.reason, log: failure.log)
        case let error as CommandError:
            // `.failed`: the engine answered and refused. Anything else (it could not be run) is retried.
            guard case .failed = error else { return nil }
            return TerminalError(named("\(error)"))
        case let error as PlacementFailure: return TerminalError(named(error.description))
        case let error as ImageReference.Failure: return TerminalError(error.description)
        case let error as ContainerSpecError: return TerminalError(error.description)
        case let error as NginxError where error.isPermanent: return TerminalError(error.description)
        default: return nil
        }
    }

    /// Runs `body`, naming what it did in a refusal the engine gives (`context`: "docker could not start …").
    static func naming<T>(_ context: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw of(error, context: context) ?? error
        }
    }
}

/// A newer intent arrived while this one's image was being built; the build was stopped.
struct Superseded: Error {}

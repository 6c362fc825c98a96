import Foundation
import Logging

/// The step handlers of the services beside the app, over the stack runtime; what it does is recorded in
/// the store as it happens.
extension Execution {
    var layout: StackLayout? { StackLayout.of(env, config: config) }

    /// The network, volumes (seeded) and services as configured, each healthy; the API shows their states.
    func prepareStack() async throws {
        guard let layout else { return }
        // A wake keeps saying `sleeping` until its app answers.
        if env.status != .deploying && env.status != .sleeping { try await setStatus(.deploying) }
        var seeded = Set<String>()
        for volume in layout.seededVolumes where try await environments.fact(StackLayout.seededFact(volume)) ?? "" != "" {
            seeded.insert(volume)
        }
        let (environments, announcer, env, logger) = (environments, announcer, env, logger)
        let states: [ServiceState]
        do {
            states = try await seams.runtime.prepare(try layout.stackSpec(sha: env.desiredSha, seeded: seeded)) { event in
                switch event {
                case .startedAgain(let service):
                    logger.info("started service again", metadata: ["service": "\(service)"])
                case .started(let service, let image):
                    logger.info("started service", metadata: ["service": "\(service)", "image": "\(image)"])
                    try await announcer.audit(env, .deploy, "started service \(service) from \(image)", sha: env.desiredSha)
                case .seeded(let volume, let seed, let took):
                    try await environments.setFact(StackLayout.seededFact(volume), seed, at: Date())
                    logger.info("seeded volume", metadata: ["volume": "\(volume)", "from": "\(seed)", "seconds": "\(took.seconds)"])
                    try await announcer.audit(env, .deploy, "seeded \(volume) from \(seed) in \(Int(took.seconds * 1000)) ms")
                }
            }
        } catch let failure as StackFailure {
            try await environments.update(key) { $0.services = failure.services }
            throw failure
        }
        try await environments.update(key) { $0.services = states }
    }

    /// The release command in the new image with the app's variables, on the network; exit 0 or the deploy
    /// fails. Its output (secrets masked) stays in the history.
    func runRelease(sha: String) async throws {
        guard let layout, let command = layout.repo.release else { return }
        if env.status != .deploying { try await setStatus(.deploying) }
        let spec = layout.releaseSpec(app: try appSpec(sha: sha), command: command, sha: sha)
        let clock = ContinuousClock()
        let began = clock.now
        let (exitCode, output) = try await seams.runtime.runToEnd(spec, timeout: Self.releaseTimeout)
        let masked = SecretMask.mask(output, secrets: Array(layout.repo.env.values))
        let argv = command.joined(separator: " ")
        try await announcer.audit(
            env,
            .release,
            "release `\(argv)` exited \(exitCode) after \(Int((clock.now - began).seconds * 1000)) ms:\n\(masked.suffix(4000))",
            sha: sha
        )
        logger.info("ran release", metadata: ["exit": "\(exitCode)"])
        guard exitCode == 0 else { throw TerminalError("the release command `\(argv)` exited \(exitCode)", log: FailureLog(.release, masked)) }
    }

    /// A release that runs longer is stopped and fails the deploy.
    static let releaseTimeout: Duration = .seconds(600)

    /// Service containers, the network, the volumes, and their seed marks: the store keeps none per volume
    /// that ever was, and a volume made again starts from its seed.
    func removeStack() async throws {
        guard layout != nil else { return }
        let removed = try await seams.runtime.removeStack(of: key)
        for volume in removed where volume.kind == .volume {
            try await environments.setFact(StackLayout.seededFact(volume.name), "", at: Date())
        }
        try await environments.update(key) { $0.services = [] }
        logger.info("removed the services, network and volumes", metadata: ["resources": "\(removed.count)"])
    }
}

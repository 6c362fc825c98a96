import Foundation
import StagerKit
import StagerTestSupport

/// `--swarm`: the swarm lab up, the scenario, a table and its JSON, the lab down whatever happened.
func runSwarm(_ options: Options, sizes: Bench.Sizes) async throws {
    let lab = SwarmLab.shared
    let manager = try await lab.up()
    let outcome = await Result {
        let bench = try await Bench(sizes: sizes, stagerBinary: options.stager, swarm: manager)
        FileHandle.standardError.write(
            Data("bench: swarm open→live and close→gone, \(sizes.openRuns) PRs each against the floor, then a lost node\n".utf8)
        )
        let result = await Result { try await bench.swarm(lab: lab) }
        await bench.finish()
        return try result.get()
    }
    _ = try await lab.down()
    let swarm = try outcome.get()
    let targets = ["swarm open→live ratio ≤ 1.3": swarm.open.ratio <= 1.3]
    print(swarmReport(swarm, build: options.build, targets: targets))
    struct Output: Encodable {
        var date: String
        var build: String
        var swarm: Bench.Swarm
        var targets: [String: Bool]
    }
    try writeJSON(Output(date: ISO8601DateFormatter().string(from: Date()), build: options.build, swarm: swarm, targets: targets), to: options.output)
}

/// The results as JSON (snake_case keys, infinities as strings), written where `--out` says.
func writeJSON(_ value: some Encodable, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    let output = URL(fileURLWithPath: path)
    try FileManager.default.createDirectory(at: output.deletingLastPathComponent(), withIntermediateDirectories: true)
    try encoder.encode(value).write(to: output)
    FileHandle.standardError.write(Data("bench: wrote \(output.path)\n".utf8))
}

func swarmReport(_ swarm: Bench.Swarm, build: String, targets: [String: Bool]) -> String {
    func cell(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
    func pair(_ samples: Samples) -> String { "\(formatSeconds(samples.median)) / \(formatSeconds(samples.p90))" }
    return [
        "stager bench --swarm (\(build) build, a three-node swarm of dockerds in network namespaces, \(ProcessInfo.processInfo.activeProcessorCount) cores)",
        "",
        cell("scenario", 14) + " " + cell("stager median / p90", 25) + " " + cell("floor median / p90", 22) + " " + cell("ratio", 8) + " target",
        cell("open→live", 14) + " " + cell(pair(swarm.open.stager), 25) + " " + cell(pair(swarm.open.floor), 22) + " "
            + cell(String(format: "%.2f", swarm.open.ratio), 8)
            + " ratio ≤ 1.3 (\(swarm.open.stager.seconds.count) PRs; floor: service create + task polled + node port polled + vhost + reload)",
        cell("close→gone", 14) + " " + cell(pair(swarm.close.stager), 25) + " " + cell(pair(swarm.close.floor), 22) + " "
            + String(format: "%.2f", swarm.close.ratio),
        cell("node lost", 14)
            + " served again from another node \(formatSeconds(swarm.nodeLossSeconds)) after the dockerd of \(swarm.lostNode) was killed",
        "",
        "targets: " + targets.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value ? "met" : "MISSED")" }.joined(separator: ", "),
        "",
    ].joined(separator: "\n")
}

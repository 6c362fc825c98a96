import Foundation
import StagerKit

/// `scripts/bench [--quick]`: Stager against the floor, on this machine's real engine and nginx.
/// Prints a table and writes bench/results.json.
struct Options {
    var quick = false
    /// Only the swarm scenario, on the three-node lab (`scripts/bench --swarm`).
    var swarm = false
    var stager = ""
    var output = "bench/results.json"
    var build = "release"

    init(_ arguments: [String]) throws {
        var rest = arguments.dropFirst()
        while let argument = rest.popFirst() {
            switch argument {
            case "--quick": quick = true
            case "--swarm": swarm = true
            case "--stager": stager = rest.popFirst() ?? ""
            case "--out": output = rest.popFirst() ?? output
            case "--build": build = rest.popFirst() ?? build
            default:
                throw BenchFailure("unknown argument \(argument); usage: stager-bench --stager PATH [--quick] [--swarm] [--out FILE] [--build NAME]")
            }
        }
        guard FileManager.default.isExecutableFile(atPath: stager) else { throw BenchFailure("--stager: no executable at \"\(stager)\"") }
    }
}

struct Results: Encodable {
    var date: String
    var quick: Bool
    var build: String
    var cores: Int
    var openToLive: Bench.OpenClose
    var closeToGone: Bench.OpenClose
    var redeploy: Bench.Redeploy
    var ack: Bench.Ack
    var ackUnderPushStorm: Bench.Ack
    var scale: Bench.Scale
    var stack: Bench.Stack
    var sleep: Bench.Sleep
    var sharedHost: Bench.SharedHostCost
    var targets: [String: Bool]
}

func formatMilliseconds(_ value: Double) -> String {
    value.isFinite ? String(format: "%.0f ms", value) : "over 1 s"
}

func report(_ results: Results) -> String {
    func row(_ cells: [String]) -> String {
        zip(cells, [14, 25, 22, 8, 8]).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: " ")
            + (cells.count > 5 ? cells[5] : "")
    }
    func pair(_ samples: Samples) -> String { "\(formatSeconds(samples.median)) / \(formatSeconds(samples.p90))" }
    let open = results.openToLive
    let close = results.closeToGone
    let redeploy = results.redeploy
    let ack = results.ack
    let scale = results.scale
    let storm = results.ackUnderPushStorm
    let stack = results.stack
    let sleep = results.sleep
    var lines = [
        "stager bench (\(results.quick ? "quick" : "full"), \(results.build) build, \(results.cores) cores, \(results.date))",
        "",
        row(["scenario", "stager median / p90", "floor median / p90", "ratio", "reloads", "target"]),
        row([
            "open→live", pair(open.stager), pair(open.floor), String(format: "%.2f", open.ratio), "\(open.reloads)",
            "ratio ≤ 1.3 (\(open.stager.seconds.count) PRs)",
        ]),
        row(["close→gone", pair(close.stager), pair(close.floor), String(format: "%.2f", close.ratio), "\(close.reloads)", "ratio ≤ 1.3"]),
        row([
            "redeploy", "\(redeploy.failed) of \(redeploy.requests) failed", "new sha after \(formatSeconds(redeploy.newShaServedAfter))", "",
            "\(redeploy.reloads)",
            "0 failed at \(redeploy.rate) req/s",
        ]),
        row([
            "stack open", pair(stack.open.stager), pair(stack.open.floor), String(format: "%.2f", stack.open.ratio), "",
            "ratio ≤ 1.3 (one seeded service, \(stack.open.stager.seconds.count) PRs)",
        ]),
        row([
            "stack push", pair(stack.pushStack), "plain \(pair(stack.pushPlain))", String(format: "%.2f", stack.pushRatio), "",
            "ratio ≤ 1.3 against a plain app's push",
        ]),
        row([
            "ack", String(format: "p50 %.1f ms p99 %.1f ms", ack.p50Milliseconds, ack.p99Milliseconds),
            String(format: "max %.1f ms", ack.maxMilliseconds), "",
            "",
            "p99 < 20 ms; server p99 ≤ \(formatMilliseconds(ack.serverP99Milliseconds)); \(ack.non2xx) non-2xx; \(ack.stored)/\(ack.sent) stored at \(ack.rate)/s for \(ack.seconds) s (\(ack.load))",
        ]),
        row([
            "ack (storm)", String(format: "p50 %.1f ms p99 %.1f ms", storm.p50Milliseconds, storm.p99Milliseconds),
            String(format: "max %.1f ms", storm.maxMilliseconds), "",
            "",
            "p99 < 100 ms; server p99 ≤ \(formatMilliseconds(storm.serverP99Milliseconds)); \(storm.non2xx) non-2xx; \(storm.stored)/\(storm.sent) stored (\(storm.load))",
        ]),
        row(["scale: open", "\(scale.environments) in \(formatSeconds(scale.openAllSeconds))", "", "", "\(scale.reloadsOpening)", ""]),
        row([
            "scale: next 3", formatSeconds(scale.nextOpenToLive), "first \(formatSeconds(scale.firstOpenToLive))",
            String(format: "%.2f", scale.nextRatio), "",
            "ratio ≤ 1.5",
        ]),
        row(["scale: gc", formatSeconds(scale.gcSeconds), "", "", "", "< 3 s (\(scale.gcOutput))"]),
        row(["scale: memory", String(format: "%.1f MB RSS", scale.rssMegabytes), "", "", "", "< 80 MB"]),
        row(["scale: close", "\(scale.environments + 3) in \(formatSeconds(scale.closeAllSeconds))", "", "", "\(scale.reloadsClosing)", ""]),
        row([
            "wake", pair(sleep.wake), pair(sleep.floor), String(format: "%.2f", sleep.ratio), "",
            "ratio ≤ 1.5 (first byte of the held GET; floor: docker start + port poll + GET through nginx)",
        ]),
        row([
            "density", "\(sleep.density) in \(formatSeconds(sleep.settledSeconds))", "\(sleep.awake) awake, \(sleep.sleeping) asleep", "", "",
            "≤ \(Bench.maxAwake) awake (sleep_after \(Bench.sleepAfter), max_awake \(Bench.maxAwake))",
        ]),
        row([
            "density: mem", String(format: "%.1f MB RSS", sleep.rssMegabytes),
            String(format: "engine %.1f MB", sleep.runningMegabytes), "", "",
            "< 120 MB; \(sleep.runningContainers) running containers' cgroups; \(sleep.stoppedWithMemory) of \(sleep.stoppedContainers) stopped have one",
        ]),
        row([
            "wake among", pair(sleep.wakeAmong), pair(sleep.floorAmong), String(format: "%.2f", sleep.ratioAmong), "",
            "ratio ≤ 1.5 among \(sleep.density) environments",
        ]),
        row([
            "shared host", String(format: "median %.2f ms", results.sharedHost.shared.median * 1000),
            String(format: "own URL %.2f ms", results.sharedHost.own.median * 1000), String(format: "+%.2f", results.sharedHost.addedMilliseconds),
            "",
            "adds < 1 ms a request (\(results.sharedHost.shared.seconds.count) GETs each, alternated)",
        ]),
        "",
        "targets: " + results.targets.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value ? "met" : "MISSED")" }.joined(separator: ", "),
    ]
    lines.append("")
    return lines.joined(separator: "\n")
}

let options: Options
do {
    options = try Options(CommandLine.arguments)
} catch {
    FileHandle.standardError.write(Data("stager-bench: \(error)\n".utf8))
    exit(2)
}
let sizes =
    options.quick
    ? Bench.Sizes(openRuns: 3, redeployRate: 20, ackRate: 50, ackSeconds: 2, scale: 10, stackRuns: 2, wakeRuns: 3, density: 20, sharedRequests: 200)
    : Bench.Sizes(
        openRuns: 10,
        redeployRate: 50,
        ackRate: 200,
        ackSeconds: 10,
        scale: 100,
        stackRuns: 5,
        wakeRuns: 7,
        density: 300,
        sharedRequests: 1000
    )

if options.swarm {
    do {
        try await runSwarm(options, sizes: sizes)
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("stager-bench: \(error)\n".utf8))
        exit(1)
    }
}

do {
    let bench = try await Bench(sizes: sizes, stagerBinary: options.stager)
    do {
        FileHandle.standardError.write(Data("bench: open→live and close→gone, \(sizes.openRuns) PRs each against the floor\n".utf8))
        let (open, close) = try await bench.openAndClose()
        FileHandle.standardError.write(Data("bench: redeploy under \(sizes.redeployRate) req/s\n".utf8))
        let redeploy = try await bench.redeploy()
        FileHandle.standardError.write(Data("bench: a repository with a seeded service, \(sizes.stackRuns) PRs against the floor\n".utf8))
        let stack = try await bench.stack()
        FileHandle.standardError.write(Data("bench: ack at \(sizes.ackRate)/s for \(sizes.ackSeconds) s, then again under a push storm\n".utf8))
        let ack = try await bench.ack(storm: false)
        let ackStorm = try await bench.ack(storm: true)
        FileHandle.standardError.write(Data("bench: scale to \(sizes.scale) environments\n".utf8))
        let scale = try await bench.scale(firstOpenToLive: open.stager.median)
        FileHandle.standardError.write(Data("bench: the shared host's cost per request, \(sizes.sharedRequests) requests each way\n".utf8))
        let sharedHost = try await bench.sharedHostCost()
        await bench.finish()
        FileHandle.standardError.write(Data("bench: sleep and wake, then \(sizes.density) environments under max_awake \(Bench.maxAwake)\n".utf8))
        let sleepy = try await Bench(sizes: sizes, stagerBinary: options.stager, sleepy: true)
        let sleep: Bench.Sleep
        do {
            sleep = try await sleepy.sleepAndWake()
        } catch {
            await sleepy.finish()
            throw error
        }
        await sleepy.finish()
        let results = Results(
            date: ISO8601DateFormatter().string(from: Date()),
            quick: options.quick,
            build: options.build,
            cores: ProcessInfo.processInfo.activeProcessorCount,
            openToLive: open,
            closeToGone: close,
            redeploy: redeploy,
            ack: ack,
            ackUnderPushStorm: ackStorm,
            scale: scale,
            stack: stack,
            sleep: sleep,
            sharedHost: sharedHost,
            targets: [
                "open→live ratio ≤ 1.3": open.ratio <= 1.3,
                "redeploy 0 failed": redeploy.failed == 0,
                "stack open→live ratio ≤ 1.3": stack.open.ratio <= 1.3,
                "stack push ≤ 1.3× plain push": stack.pushRatio <= 1.3,
                "ack p99 < 20 ms, all 2xx and stored": ack.p99Milliseconds < 20 && ack.non2xx == 0 && ack.stored == ack.sent,
                "close→gone ratio ≤ 1.3": close.ratio <= 1.3,
                "storm ack p99 < 100 ms, all 2xx and stored": ackStorm.p99Milliseconds < 100 && ackStorm.non2xx == 0
                    && ackStorm.stored == ackStorm.sent,
                "next open→live ≤ 1.5× first": scale.nextRatio <= 1.5,
                "gc < 3 s": scale.gcSeconds < 3,
                "RSS < 80 MB": scale.rssMegabytes < 80,
                "wake ≤ 1.5× floor": sleep.ratio <= 1.5,
                "shared host adds < 1 ms a request": sharedHost.addedMilliseconds < 1,
                "wake among the many ≤ 1.5× floor": sleep.ratioAmong <= 1.5,
                "density: ≤ max_awake awake, RSS < 120 MB, no stopped container holds memory":
                    sleep.awake <= Bench.maxAwake && sleep.rssMegabytes < 120 && sleep.stoppedWithMemory == 0,
            ]
        )
        print(report(results))
        for failure in redeploy.failures { print("redeploy failure: \(failure)") }
        try writeJSON(results, to: options.output)
    } catch {
        FileHandle.standardError.write(Data("stager-bench: \(error)\n".utf8))
        await bench.finish()
        exit(1)
    }
} catch {
    FileHandle.standardError.write(Data("stager-bench: \(error)\n".utf8))
    exit(1)
}

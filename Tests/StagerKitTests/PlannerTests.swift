import StagerKit
import Testing

@Suite("Planner")
struct PlannerTests {
    static func container(_ name: String, sha: String, running: Bool = true) -> ContainerInfo {
        ContainerInfo(id: "id-\(name)", name: name, repo: "acme/web", number: 1, sha: sha, slug: "feature", running: running, hostPort: 40000)
    }

    let old = container("old", sha: "sha1")
    let new = container("new", sha: "sha2")

    @Test func nothingToPresent() {
        let steps = Planner.plan(desired: .present(sha: "sha1"), observed: Observation(containers: [], routedContainer: nil, status: .queued))
        #expect(steps == [.startContainer(sha: "sha1"), .awaitHealthy, .routeToCandidate, .announceReady])
    }

    @Test func alreadyServingTheDesiredSha() {
        let observed = Observation(containers: [old], routedContainer: "old", status: .ready)
        #expect(Planner.plan(desired: .present(sha: "sha1"), observed: observed) == [])
    }

    @Test func aContainerRestartedOnANewPortIsRoutedAgain() {
        // dockerd (or the restart policy) brought the container back on another loopback port.
        let moved = Observation(containers: [old], routedContainer: "old", routedPort: 39999, status: .ready)
        #expect(
            Planner.plan(desired: .present(sha: "sha1"), observed: moved) == [.adoptContainer(old), .awaitHealthy, .routeToCandidate, .announceReady]
        )
        let same = Observation(containers: [old], routedContainer: "old", routedPort: 40000, status: .ready)
        #expect(Planner.plan(desired: .present(sha: "sha1"), observed: same) == [])
    }

    @Test func servingButNotAnnouncedYet() {
        let observed = Observation(containers: [old], routedContainer: "old", status: .deploying)
        #expect(Planner.plan(desired: .present(sha: "sha1"), observed: observed) == [.announceReady])
        let pending = Observation(containers: [old], routedContainer: "old", status: .ready, commentPending: true)
        #expect(Planner.plan(desired: .present(sha: "sha1"), observed: pending) == [.announceReady])
    }

    @Test func redeployStartsBesideTheOldAndRemovesItAfterTheSwitchAndADrain() {
        let observed = Observation(containers: [old], routedContainer: "old", status: .ready)
        #expect(
            Planner.plan(desired: .present(sha: "sha2"), observed: observed) == [
                .startContainer(sha: "sha2"), .awaitHealthy, .routeToCandidate, .announceReady, .drain, .removeContainer(old),
            ]
        )
    }

    @Test func aRunningContainerOfTheDesiredShaIsAdopted() {
        // After a crash between `docker run` and the vhost switch.
        let observed = Observation(containers: [old, new], routedContainer: "old", status: .deploying)
        #expect(
            Planner.plan(desired: .present(sha: "sha2"), observed: observed) == [
                .adoptContainer(new), .awaitHealthy, .routeToCandidate, .announceReady, .drain, .removeContainer(old),
            ]
        )
    }

    @Test func anExitedContainerIsReplacedNotAdopted() {
        let dead = Self.container("dead", sha: "sha2", running: false)
        let observed = Observation(containers: [dead], routedContainer: nil, status: .deploying)
        #expect(
            Planner.plan(desired: .present(sha: "sha2"), observed: observed) == [
                .startContainer(sha: "sha2"), .awaitHealthy, .routeToCandidate, .removeContainer(dead), .announceReady,
            ]
        )
    }

    @Test func routedContainerGoneIsRedeployed() {
        let observed = Observation(containers: [], routedContainer: "old", status: .ready)
        #expect(
            Planner.plan(desired: .present(sha: "sha1"), observed: observed) == [
                .startContainer(sha: "sha1"), .awaitHealthy, .routeToCandidate, .announceReady,
            ]
        )
    }

    @Test func extraContainersBesideTheServingOneAreRemoved() {
        let stray = Self.container("stray", sha: "sha0")
        let observed = Observation(containers: [old, stray], routedContainer: "old", status: .ready)
        #expect(Planner.plan(desired: .present(sha: "sha1"), observed: observed) == [.removeContainer(stray)])
    }

    @Test func aFailedShaIsNotRetriedAndTheOldKeepsServing() {
        let deadNew = Self.container("new", sha: "sha2", running: false)
        let observed = Observation(containers: [old, deadNew], routedContainer: "old", status: .failed, failedSha: "sha2")
        #expect(Planner.plan(desired: .present(sha: "sha2"), observed: observed) == [.removeContainer(deadNew)])
        let clean = Observation(containers: [old], routedContainer: "old", status: .failed, failedSha: "sha2")
        #expect(Planner.plan(desired: .present(sha: "sha2"), observed: clean) == [])
    }

    @Test func absentRemovesEverythingInOrder() {
        let observed = Observation(containers: [old, new], routedContainer: "old", status: .ready, hasComment: true)
        #expect(
            Planner.plan(desired: .absent, observed: observed) == [
                .removeVhost, .removeContainer(old), .removeContainer(new), .deleteComment, .markRemoved,
            ]
        )
    }

    @Test func absentAndAlreadyGone() {
        #expect(Planner.plan(desired: .absent, observed: Observation(containers: [], routedContainer: nil, status: .removed)) == [])
        #expect(Planner.plan(desired: .absent, observed: Observation(containers: [], routedContainer: nil, status: .removing)) == [.markRemoved])
    }

    /// Every combination of the observation's parts: the plan is never empty while the world differs from
    /// the desired state, and applying it leaves nothing to do.
    @Test(arguments: [true, false], [true, false])
    func exhaustiveCombinations(oldRunning: Bool, newRunning: Bool) throws {
        let containerSets: [[ContainerInfo]] = [
            [], [Self.container("old", sha: "sha1", running: oldRunning)],
            [Self.container("new", sha: "sha2", running: newRunning)],
            [Self.container("old", sha: "sha1", running: oldRunning), Self.container("new", sha: "sha2", running: newRunning)],
        ]
        for containers in containerSets {
            for routed in [nil, "old", "new"] {
                for status in EnvironmentStatus.allCases {
                    for hasComment in [false, true] {
                        let observed = Observation(containers: containers, routedContainer: routed, status: status, hasComment: hasComment)
                        let absent = Planner.plan(desired: .absent, observed: observed)
                        #expect(absent.isEmpty == (containers.isEmpty && routed == nil && !hasComment && status == .removed))
                        let present = Planner.plan(desired: .present(sha: "sha2"), observed: observed)
                        // Waking what slept is not said on the PR.
                        let ready: Step = status == .sleeping ? .markAwake : .announceReady
                        let serving = containers.contains { $0.name == routed && $0.running && $0.sha == "sha2" }
                        if serving {
                            #expect(!present.contains(.routeToCandidate))
                            #expect(
                                present.allSatisfy { if case .removeContainer(let c) = $0 { return c.name != routed } else { return $0 == ready } },
                                "\(status) \(present)"
                            )
                        } else {
                            let switchIndex = try #require(present.firstIndex(of: .routeToCandidate))
                            let announceIndex = try #require(present.firstIndex(of: .announceReady) ?? present.firstIndex(of: ready))
                            #expect(switchIndex < announceIndex)
                            // Nothing is removed before the switch, and what served is removed only after a drain.
                            let removals = present.indices.filter { if case .removeContainer = present[$0] { return true } else { return false } }
                            #expect(removals.allSatisfy { $0 > switchIndex })
                            let servedBefore = containers.contains { $0.name == routed && $0.running }
                            #expect(present.contains(.drain) == servedBefore)
                            if let drain = present.firstIndex(of: .drain) {
                                #expect(drain > announceIndex)
                                #expect(present.last == .removeContainer(try #require(containers.first { $0.name == routed })))
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: Stacks

    func service(_ name: String, definition: String = "d1", running: Bool = true) -> ContainerInfo {
        ContainerInfo(
            id: "svc-\(name)",
            name: "stager-default-pr-1-\(name)",
            repo: "acme/web",
            number: 1,
            sha: "",
            slug: "pr-1",
            running: running,
            hostPort: nil,
            service: name,
            definition: definition
        )
    }

    @Test func aFirstStackDeployPreparesServicesThenReleasesThenStarts() {
        let stack = StackDesire(services: ["db": "d1"], release: true)
        let steps = Planner.plan(
            desired: .present(sha: "sha1"),
            observed: Observation(containers: [], routedContainer: nil, status: .queued),
            stack: stack
        )
        #expect(steps == [.prepareStack, .runRelease(sha: "sha1"), .startContainer(sha: "sha1"), .awaitHealthy, .routeToCandidate, .announceReady])
    }

    @Test func aPushToAStackLeavesHealthyServicesAlone() {
        let old = ContainerInfo(id: "old", name: "old", repo: "acme/web", number: 1, sha: "sha1", slug: "pr-1", running: true, hostPort: 40000)
        var observed = Observation(containers: [old], routedContainer: "old", status: .ready)
        observed.services = [service("db")]
        let steps = Planner.plan(desired: .present(sha: "sha2"), observed: observed, stack: StackDesire(services: ["db": "d1"], release: true))
        #expect(steps.first == .runRelease(sha: "sha2") && !steps.contains(.prepareStack))
    }

    @Test func aChangedStoppedOrMissingServiceIsPreparedBesideTheServingApp() {
        let old = ContainerInfo(id: "old", name: "old", repo: "acme/web", number: 1, sha: "sha1", slug: "pr-1", running: true, hostPort: 40000)
        let stack = StackDesire(services: ["db": "d1", "cache": "c1"])
        for services in [
            [service("db")], [service("db"), service("cache", definition: "c0")], [service("db"), service("cache", running: false)],
            [service("db"), service("cache", definition: "c1"), service("gone")],
        ] {
            var observed = Observation(containers: [old], routedContainer: "old", status: .ready)
            observed.services = services
            #expect(Planner.plan(desired: .present(sha: "sha1"), observed: observed, stack: stack) == [.prepareStack], "\(services.map(\.name))")
        }
        var healthy = Observation(containers: [old], routedContainer: "old", status: .ready)
        healthy.services = [service("db"), service("cache", definition: "c1")]
        #expect(Planner.plan(desired: .present(sha: "sha1"), observed: healthy, stack: stack) == [])
    }

    @Test func aTeardownRemovesTheStackAfterTheApp() {
        let old = ContainerInfo(id: "old", name: "old", repo: "acme/web", number: 1, sha: "sha1", slug: "pr-1", running: true, hostPort: 40000)
        var observed = Observation(containers: [old], routedContainer: "old", status: .ready, hasComment: true)
        observed.services = [service("db")]
        #expect(
            Planner.plan(desired: .absent, observed: observed, stack: StackDesire(services: ["db": "d1"])) == [
                .removeVhost, .removeContainer(old), .removeStack, .deleteComment, .markRemoved,
            ]
        )
        // Removed already and nothing left: nothing to do.
        let removed = Observation(containers: [], routedContainer: nil, status: .removed)
        #expect(Planner.plan(desired: .absent, observed: removed, stack: StackDesire(services: ["db": "d1"])) == [])
    }
}

@Suite("Planner: sleep and wake")
struct SleepPlannerTests {
    static func app(running: Bool, sha: String = "sha1") -> ContainerInfo {
        ContainerInfo(id: "id-app", name: "app", repo: "acme/web", number: 1, sha: sha, slug: "feature", running: running, hostPort: 40001)
    }
    static func db(running: Bool) -> ContainerInfo {
        ContainerInfo(
            id: "id-db",
            name: "app-db",
            repo: "acme/web",
            number: 1,
            sha: "sha1",
            slug: "feature",
            running: running,
            hostPort: nil,
            service: "db",
            definition: "d1"
        )
    }
    static let stack = StackDesire(services: ["db": "d1"])

    func observed(app: ContainerInfo?, db: Bool, asleepRoute: Bool, status: EnvironmentStatus) -> Observation {
        var observed = Observation(containers: app.map { [$0] } ?? [], routedContainer: "app", routedPort: 40001, status: status)
        observed.services = [Self.db(running: db)]
        observed.routedAsleep = asleepRoute
        return observed
    }

    @Test func sleepRecordsItThenRoutesToTheWakePathThenStopsTheAppThenTheServices() {
        let app = Self.app(running: true)
        #expect(
            Planner.plan(desired: .asleep(sha: "sha1"), observed: observed(app: app, db: true, asleepRoute: false, status: .ready), stack: Self.stack)
                == [.routeToWake(app), .stopContainer(app), .stopContainer(Self.db(running: true)), .markAsleep]
        )
    }

    @Test func aSleepCutShortGoesOnWhereItStopped() {
        let stopped = Self.app(running: false)
        #expect(
            Planner.plan(
                desired: .asleep(sha: "sha1"),
                observed: observed(app: stopped, db: true, asleepRoute: true, status: .ready),
                stack: Self.stack
            )
                == [.stopContainer(Self.db(running: true)), .markAsleep]
        )
        #expect(
            Planner.plan(
                desired: .asleep(sha: "sha1"),
                observed: observed(app: stopped, db: true, asleepRoute: true, status: .sleeping),
                stack: Self.stack
            )
                == [.stopContainer(Self.db(running: true))]
        )
        #expect(
            Planner.plan(
                desired: .asleep(sha: "sha1"),
                observed: observed(app: stopped, db: false, asleepRoute: true, status: .sleeping),
                stack: Self.stack
            )
                == []
        )
    }

    @Test func aWakeStartsTheServicesThenTheAppAndSaysNothingOnThePR() {
        let stopped = Self.app(running: false)
        #expect(
            Planner.plan(
                desired: .present(sha: "sha1"),
                observed: observed(app: stopped, db: false, asleepRoute: true, status: .sleeping),
                stack: Self.stack
            )
                == [.prepareStack, .wakeContainer(stopped), .awaitHealthy, .routeToCandidate, .markAwake]
        )
    }

    @Test func aWakeWhileFallingAsleepStartsWhatStoppedQuietly() {
        let stopped = Self.app(running: false)
        #expect(
            Planner.plan(
                desired: .present(sha: "sha1"),
                observed: observed(app: stopped, db: true, asleepRoute: true, status: .ready),
                stack: Self.stack
            )
                == [.wakeContainer(stopped), .awaitHealthy, .routeToCandidate, .markAwake]
        )
    }

    @Test func aWakeCutShortAfterTheStartRoutesTheRunningApp() {
        let running = Self.app(running: true)
        #expect(
            Planner.plan(
                desired: .present(sha: "sha1"),
                observed: observed(app: running, db: true, asleepRoute: true, status: .sleeping),
                stack: Self.stack
            )
                == [.adoptContainer(running), .awaitHealthy, .routeToCandidate, .markAwake]
        )
    }

    @Test func aPushWhileAsleepDeploysTheNewShaAndSaysSo() {
        let stopped = Self.app(running: false)
        let steps = Planner.plan(
            desired: .present(sha: "sha2"),
            observed: observed(app: stopped, db: true, asleepRoute: true, status: .queued),
            stack: Self.stack
        )
        #expect(steps == [.startContainer(sha: "sha2"), .awaitHealthy, .routeToCandidate, .removeContainer(stopped), .announceReady])
    }

    @Test func nothingDeployedToSleepIsDeployedFirst() {
        let steps = Planner.plan(desired: .asleep(sha: "sha1"), observed: Observation(containers: [], routedContainer: nil, status: .queued))
        #expect(steps == [.startContainer(sha: "sha1"), .awaitHealthy, .routeToCandidate, .announceReady])
    }
}

import StagerKit
import Testing

@Suite("Slugs")
struct SlugTests {
    @Test(arguments: [
        ("feature/Login-Page", "feature-login-page"),
        ("main", "main"),
        ("fix_bug#12", "fix-bug-12"),
        ("--weird--", "weird"),
        ("a;rm -rf /;{}$()`|&", "a-rm-rf"),
        ("Ünïcødé/brånch", "n-c-d-br-nch"),
        ("UPPER", "upper"),
    ])
    func readable(branch: String, slug: String) {
        #expect(Slug.readable(branch: branch) == slug)
        #expect(Slug.isValidLabel(slug))
    }

    @Test func emptyReadablePartFallsBackToThePRNumber() {
        let slug = Slug.make(branch: "日本語", repo: "acme/web", number: 42) { _ in false }
        #expect(slug.hasPrefix("pr-42-"))
        #expect(Slug.isValidLabel(slug))
    }

    @Test func longBranchesAreCutWithAStableSuffix() {
        let long = String(repeating: "very-long-branch-name-", count: 20)
        let first = Slug.readable(branch: long + "a")
        let second = Slug.readable(branch: long + "b")
        #expect(first.count <= 63 && second.count <= 63)
        #expect(first != second)
        #expect(Slug.isValidLabel(first) && Slug.isValidLabel(second))
        #expect(first == Slug.readable(branch: long + "a"))
    }

    @Test func takenSlugsGetADeterministicSuffix() {
        let taken: Set<String> = ["main"]
        let one = Slug.make(branch: "main", repo: "fork-a/web", number: 1) { taken.contains($0) }
        let two = Slug.make(branch: "main", repo: "fork-b/web", number: 2) { taken.contains($0) }
        #expect(one != "main" && two != "main" && one != two)
        #expect(one.hasPrefix("main-") && Slug.isValidLabel(one))
        #expect(one == Slug.make(branch: "main", repo: "fork-a/web", number: 1) { taken.contains($0) })
    }

    @Test(arguments: ["", "-a", "a-", "A", "a.b", "a_b", String(repeating: "a", count: 64)])
    func invalidLabels(label: String) {
        #expect(!Slug.isValidLabel(label))
    }
}

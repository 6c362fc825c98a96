import Foundation
import StagerTestSupport
import Testing

@testable import StagerKit

/// Many generated inputs against the slugger, the escapers and the webhook decoder, for a bounded time:
/// every input must end in a valid answer or a precise error, never a crash or an unsafe string.
@Suite("Generated inputs")
struct PropertyTests {
    /// Deterministic, so a failure can be replayed.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let alphabet: [Character] = Array("aZ09-_./;{}$()'\"|&#<>`@%+= \t\n\\~^:?*[]é🚀日\u{202E}\u{200B}\u{0}")
    static let budget: Duration = .seconds(3)

    static func randomString(_ generator: inout Generator, maxLength: Int) -> String {
        String((0..<Int.random(in: 0...maxLength, using: &generator)).map { _ in alphabet.randomElement(using: &generator) ?? "a" })
    }

    /// Runs `body` with fresh inputs until the time budget is spent; returns how many ran.
    static func forAWhile(_ body: (inout Generator) throws -> Void) rethrows -> Int {
        var generator = Generator(state: 0x5EED)
        let clock = ContinuousClock()
        let end = clock.now + budget
        var count = 0
        while clock.now < end {
            for _ in 0..<500 { try body(&generator) }
            count += 500
        }
        return count
    }

    @Test func slugsAreAlwaysValidDeterministicAndUnique() {
        var taken = Set<String>()
        let count = Self.forAWhile { generator in
            let branch = Self.randomString(&generator, maxLength: 300)
            let number = Int.random(in: 1...100_000, using: &generator)
            let slug = Slug.make(branch: branch, repo: "acme/web", number: number) { taken.contains($0) }
            #expect(Slug.isValidLabel(slug), "\(branch.debugDescription) → \(slug)")
            #expect(
                Slug.make(branch: branch, repo: "acme/web", number: number) { _ in false }
                    == Slug.make(branch: branch, repo: "acme/web", number: number) { _ in false }
            )
            #expect(!taken.contains(slug))
            if taken.count < 5000 { taken.insert(slug) }
        }
        print("property: slugger ran \(count) generated branch names")
        #expect(count > 1000)
    }

    @Test func escapedValuesCannotBreakOut() {
        let count = Self.forAWhile { generator in
            let text = Self.randomString(&generator, maxLength: 120)
            let nginx = NginxEscaping.quoted(text)
            #expect(!nginx.contains(where: { "\"';{}$#\\ \n".contains($0) || !$0.isASCII }))
            let span = MarkdownEscaping.codeSpan(text)
            let fenceLength = span.prefix { $0 == "`" }.count
            let inner = span.dropFirst(fenceLength).dropLast(fenceLength)
            // Nothing inside is a backtick run as long as the fence, so the span cannot end early.
            #expect(!inner.contains(String(repeating: "`", count: fenceLength)) && !span.contains("\n"))
            let fence = MarkdownEscaping.fence(for: text)
            #expect(!text.contains(fence))
        }
        print("property: escapers ran \(count) generated strings")
    }

    @Test func theWebhookDecoderAnswersEveryMutation() throws {
        let sample = try Fixtures.pullRequest(action: "opened", repo: "acme/web", number: 1, branch: "b", sha: Fixtures.sha("p"))
        let count = Self.forAWhile { generator in
            var bytes = [UInt8](sample)
            for _ in 0..<Int.random(in: 1...8, using: &generator) {
                let index = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0...3, using: &generator) {
                case 0: bytes[index] = UInt8.random(in: 0...255, using: &generator)
                case 1: bytes.remove(at: index)
                case 2: bytes.insert(UInt8.random(in: 0...255, using: &generator), at: index)
                default: bytes = Array(bytes.prefix(index))
                }
                if bytes.isEmpty { bytes = [UInt8(ascii: "{")] }
            }
            do {
                let event = try WebhookPayload.decodePullRequest(Data(bytes))
                #expect(event.number > 0 && !event.pull_request.head.ref.isEmpty)
                #expect(!event.pull_request.head.ref.unicodeScalars.contains { $0.value < 0x20 })
                #expect(event.pull_request.head.sha.allSatisfy { $0.isHexDigit })
            } catch is WebhookPayload.Failure {
                // A precise 400.
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
        print("property: webhook decoder ran \(count) mutated payloads")
    }
}

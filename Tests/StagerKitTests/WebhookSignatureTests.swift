import Foundation
import StagerKit
import StagerTestSupport
import Testing

@Suite("Webhook signatures")
struct WebhookSignatureTests {
    struct Vector: Decodable {
        var secret: String
        var payload: String?
        var payload_file: String?
        var mutate: String?
        var header_name: String
        var header: String
        var valid: Bool
        var source: String
    }

    /// Every vector in ../shared/fixtures/github/signatures.json. Stager honours only X-Hub-Signature-256, so a
    /// legacy SHA-1 value must never pass, whatever its own validity.
    @Test func sharedVectors() throws {
        guard let shared = Fixtures.shared else { return }
        let vectors = try JSONDecoder().decode([Vector].self, from: Data(contentsOf: shared.appendingPathComponent("signatures.json")))
        #expect(vectors.count >= 30)
        for vector in vectors {
            var body: Data
            if let file = vector.payload_file {
                body = try Data(contentsOf: shared.appendingPathComponent(file))
            } else {
                body = Data((vector.payload ?? "").utf8)
            }
            if let mutate = vector.mutate { body = try Self.mutate(body, mutate) }
            let expected = vector.header_name == "X-Hub-Signature-256" ? vector.valid : false
            let verdict = WebhookSignature(secret: vector.secret).isValid(header: vector.header, body: body)
            #expect(verdict == expected, "\(vector.source)")
        }
    }

    static func mutate(_ body: Data, _ how: String) throws -> Data {
        let text = String(decoding: body, as: UTF8.self)
        if how.hasPrefix("replace the first") {
            guard let range = text.range(of: "\"opened\"") else { throw CocoaError(.fileReadCorruptFile) }
            return Data(text.replacingCharacters(in: range, with: "\"closed\"").utf8)
        }
        if how.hasPrefix("re-serialise") {
            return try JSONSerialization.data(withJSONObject: JSONSerialization.jsonObject(with: body))
        }
        throw CocoaError(.featureUnsupported)
    }

    @Test func githubDocsVector() {
        let signature = WebhookSignature(secret: "It's a Secret to Everybody")
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        #expect(signature.isValid(header: header, body: Data("Hello, World!".utf8)))
        #expect(signature.header(for: Data("Hello, World!".utf8)) == header)
        #expect(signature.isValid(header: header.uppercased().replacingOccurrences(of: "SHA256=", with: "sha256="), body: Data("Hello, World!".utf8)))
    }

    @Test(arguments: [
        nil, "", "sha256=", "sha256=zz", "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17 ",
    ])
    func malformedHeadersAreInvalid(header: String?) {
        #expect(!WebhookSignature(secret: "It's a Secret to Everybody").isValid(header: header, body: Data("Hello, World!".utf8)))
    }
}

import Foundation
import StagerKit

/// Builds configurations the way users do: YAML through `ConfigLoader`.
public enum TestConfig {
    public static let secret = "test-webhook-secret"

    public static func temporaryDirectory(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("stager-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    public static func load(_ yaml: String, in directory: URL, environment: [String: String] = [:]) throws -> StagerConfig {
        let file = directory.appendingPathComponent("stager.yml")
        try yaml.write(to: file, atomically: true, encoding: .utf8)
        return try ConfigLoader(environment: ["STAGER_WEBHOOK_SECRET": secret].merging(environment) { $1 }).load(file: file)
    }

    /// The key a configuration is refused for; nil when it loads, and any other error as its text.
    public static func refusedKey(_ yaml: String) -> String? {
        do {
            _ = try load(yaml, in: try temporaryDirectory("refused-config"))
            return nil
        } catch let error as ConfigError {
            return error.key
        } catch {
            return "\(error)"
        }
    }
}

import Foundation
import Logging

/// How Stager writes its own log to standard error: `text` for people, `json` (one object a line) for
/// log shippers. Metadata (repo, pr, delivery…) becomes fields either way.
public enum LogFormat: String, Sendable, CaseIterable {
    case text
    case json

    /// `secrets`: hidden from every message and field.
    public func makeLogger(label: String, level: Logger.Level, secrets: SecretValues = .none) -> Logger {
        var logger: Logger
        switch self {
        case .text: logger = Logger(label: label, factory: { MaskingLogHandler(StreamLogHandler.standardError(label: $0), secrets: secrets) })
        case .json: logger = Logger(label: label, factory: { MaskingLogHandler(JSONLogHandler(label: $0), secrets: secrets) })
        }
        logger.logLevel = level
        return logger
    }
}

/// Hides the configured secrets in a record's message and metadata, then hands it on: an error that quotes a
/// build's output or a URL never puts a secret in the log.
public struct MaskingLogHandler: LogHandler {
    private var inner: any LogHandler
    private let secrets: SecretValues

    public init(_ inner: any LogHandler, secrets: SecretValues) {
        self.inner = inner
        self.secrets = secrets
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    public var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    public func log(event: LogEvent) {
        var event = event
        event.message = "\(secrets.mask("\(event.message)"))"
        event.metadata = event.metadata?.mapValues { .string(secrets.mask("\($0)")) }
        inner.log(event: event)
    }
}

/// Writes each record as one JSON object on standard error:
/// `{"time":"…","level":"info","label":"stager","message":"…","repo":"acme/web","pr":"7","delivery":"…"}`.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private let write: @Sendable (Data) -> Void

    public init(label: String, write: @escaping @Sendable (Data) -> Void = { FileHandle.standardError.write($0) }) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [String: String] = [:]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new }) {
            fields[key] = "\(value)"
        }
        fields["time"] = ISO8601DateFormatter().string(from: Date())
        fields["level"] = event.level.rawValue
        fields["label"] = label
        fields["message"] = "\(event.message)"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard var line = try? encoder.encode(fields) else { return }  // string fields always encode
        line.append(0x0A)
        write(line)
    }
}

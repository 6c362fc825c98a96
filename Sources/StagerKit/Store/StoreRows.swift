import Foundation
import GRDB

/// How the store's types are kept in SQLite rows.
struct DeliveryRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "delivery"
    var id: String
    var event: String
    var action: String
    var repo: String
    var number: Int
    var outcome: String
    var receivedAt: Date
    var actor: String?
}

struct EnvironmentRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "environment"
    var environment: Environment

    init(_ environment: Environment) { self.environment = environment }
    init(from decoder: any Decoder) throws { environment = try Environment(from: decoder) }
    func encode(to encoder: any Encoder) throws { try environment.encode(to: encoder) }
}

struct AuditRow: Codable, FetchableRecord, MutablePersistableRecord {
    static let databaseTableName = "auditEvent"
    var event: AuditEvent

    init(_ event: AuditEvent) { self.event = event }
    init(from decoder: any Decoder) throws { event = try AuditEvent(from: decoder) }
    func encode(to encoder: any Encoder) throws { try event.encode(to: encoder) }
}

/// The store as the controller's repository of environments. Its reads suspend while SQLite answers (the
/// store's own reads, for the commands, block), so a slow read never holds one of the few threads the
/// webhook's answers need.

import Foundation
import GRDB

/// Small facts shared between processes and restarts: the engine's state, gc's request to reconcile, secrets.
extension Store {
    // MARK: Facts

    public func setFact(_ name: String, _ value: String, at date: Date = Date()) async throws {
        try await db.write { db in
            try db.execute(
                sql: "INSERT INTO fact (name, value, at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value, at = excluded.at",
                arguments: [name, value, date]
            )
        }
    }

    public func fact(_ name: String) throws -> (value: String, at: Date)? {
        try db.read { db in try Self.fact(db, name) }
    }

    /// A random secret kept under `name`, made the first time it is asked for; every process sharing this
    /// store gets the same one.
    public func secret(named name: String) throws -> String {
        let fresh = RandomToken.hex()
        return try db.write { db in
            try db.execute(sql: "INSERT INTO fact (name, value, at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING", arguments: [name, fresh, Date()])
            return try Self.fact(db, name)?.value ?? fresh
        }
    }

    /// The live environment that owns `slug`: the one whose URL it is.
    public func liveEnvironment(slug: String) async throws -> Environment? {
        try await db.read { db in
            try EnvironmentRow.filter(Column("slug") == slug).filter(Self.isLive).fetchOne(db)?.environment
        }
    }

    static func fact(_ db: Database, _ name: String) throws -> (value: String, at: Date)? {
        guard let row = try Row.fetchOne(db, sql: "SELECT value, at FROM fact WHERE name = ?", arguments: [name]) else { return nil }
        return (row["value"], row["at"])
    }
}

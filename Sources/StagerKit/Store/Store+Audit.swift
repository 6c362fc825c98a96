import Foundation
import GRDB

/// The audit trail: who asked for what, and what happened.
extension Store {
    // MARK: Audit

    /// Records what happened; the trigger and who caused it come from `deliveryID`'s delivery (the intent
    /// being carried out), unless `actor` names someone else (a writer approving, say).
    public func audit(
        _ key: PullRequestKey,
        kind: AuditKind,
        message: String,
        deliveryID: String? = nil,
        sha: String? = nil,
        actor: String? = nil
    ) async throws {
        try await db.write { db in
            let delivery = try deliveryID.flatMap { try DeliveryRow.fetchOne(db, key: $0) }
            var row = AuditRow(
                AuditEvent(
                    repo: key.repo,
                    number: key.number,
                    kind: kind.rawValue,
                    message: message,
                    deliveryID: deliveryID,
                    at: Date(),
                    sha: sha,
                    trigger: (delivery.map { ChangeSource(rawValue: $0.event)?.trigger ?? .controller } ?? .controller).rawValue,
                    actor: actor ?? delivery?.actor
                )
            )
            try row.insert(db)
        }
    }

    /// The audit trail, newest first: one PR's, or everyone's.
    public func auditEvents(for key: PullRequestKey? = nil, limit: Int = 100) throws -> [AuditEvent] {
        try db.read { db in
            var request = AuditRow.order(Column("id").desc).limit(limit)
            if let key { request = request.filter(Column("repo") == key.repo && Column("number") == key.number) }
            return try request.fetchAll(db).map(\.event)
        }
    }
}

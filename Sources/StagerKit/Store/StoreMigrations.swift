import Foundation
import GRDB

extension Store {
    /// The schema, one migration per release that changed it; a migration once shipped never changes.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "delivery") { t in
                t.primaryKey("id", .text)
                t.column("event", .text).notNull()
                t.column("action", .text).notNull()
                t.column("repo", .text).notNull()
                t.column("number", .integer).notNull()
                t.column("outcome", .text).notNull()
                t.column("receivedAt", .datetime).notNull()
            }
            try db.create(table: "environment") { t in
                t.column("repo", .text).notNull()
                t.column("number", .integer).notNull()
                t.primaryKey(["repo", "number"])
                t.column("slug", .text).notNull()
                t.column("branch", .text).notNull()
                t.column("title", .text).notNull()
                t.column("author", .text).notNull()
                t.column("headRepo", .text).notNull()
                t.column("desired", .text).notNull()
                t.column("desiredSha", .text).notNull()
                t.column("desiredVersion", .integer).notNull()
                t.column("appliedVersion", .integer).notNull()
                t.column("sourceUpdatedAt", .text).notNull()
                t.column("status", .text).notNull()
                t.column("deployedSha", .text)
                t.column("containerID", .text)
                t.column("containerName", .text)
                t.column("hostPort", .integer)
                t.column("failureReason", .text)
                t.column("failedSha", .text)
                t.column("commentID", .integer)
                t.column("commentBody", .text)
                t.column("commentPending", .boolean).notNull()
                t.column("lastDeliveryID", .text)
                t.column("createdAt", .datetime).notNull()
                t.column("updatedAt", .datetime).notNull()
            }
            try db.create(index: "environment_slug", on: "environment", columns: ["slug"])
            try db.create(table: "auditEvent") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("repo", .text).notNull()
                t.column("number", .integer).notNull()
                t.column("kind", .text).notNull()
                t.column("message", .text).notNull()
                t.column("deliveryID", .text)
                t.column("at", .datetime).notNull()
            }
        }
        migrator.registerMigration("v2: activity, admission, facts") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "lastActivityAt", .datetime)
                t.add(column: "admitted", .boolean).notNull().defaults(to: false)
                t.add(column: "waitingSince", .datetime)
            }
            try db.execute(sql: "UPDATE environment SET lastActivityAt = updatedAt, admitted = (desired = 'present')")
            // Small facts shared between processes: serve's heartbeat, the engine's state.
            try db.create(table: "fact") { t in
                t.primaryKey("name", .text)
                t.column("value", .text).notNull()
                t.column("at", .datetime).notNull()
            }
        }
        migrator.registerMigration("v3: approval") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "approvedSha", .text)
                t.add(column: "approvedBy", .text)
                t.add(column: "labelSha", .text)
                t.add(column: "labelSender", .text)
            }
        }
        migrator.registerMigration("v4: visibility") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "deploymentID", .integer)
                t.add(column: "pendingDeploymentID", .integer)
                t.add(column: "lastDeploySeconds", .double)
            }
            try db.alter(table: "delivery") { t in
                t.add(column: "actor", .text)
            }
            try db.alter(table: "auditEvent") { t in
                t.add(column: "sha", .text)
                t.add(column: "trigger", .text)
                t.add(column: "actor", .text)
            }
        }
        migrator.registerMigration("v5: builds") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "cloneURL", .text)
            }
        }
        migrator.registerMigration("v6: services") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "services", .text).notNull().defaults(to: "[]")
            }
        }
        migrator.registerMigration("v7: requests") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "lastRequestAt", .datetime)
            }
        }
        migrator.registerMigration("v8: sleep") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "asleep", .boolean).notNull().defaults(to: false)
            }
        }
        migrator.registerMigration("v9: notifications") { db in
            // Slack notifications to send: one row per event (its key is unique), kept until sent or given up.
            try db.create(table: "notification") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("eventKey", .text).notNull().unique()
                t.column("repo", .text).notNull()
                t.column("text", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("nextAttemptAt", .datetime).notNull()
                t.column("sentAt", .datetime)
                t.column("failure", .text)
            }
        }
        migrator.registerMigration("v10: swarm") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "hostAddress", .text)
            }
        }
        migrator.registerMigration("v11: branch environments") { db in
            // A branch environment's number: negative, per repository, kept for good so that its history stays its own.
            try db.create(table: "branchEnvironment") { t in
                t.column("repo", .text).notNull()
                t.column("branch", .text).notNull()
                t.column("number", .integer).notNull()
                t.primaryKey(["repo", "branch"])
                t.uniqueKey(["repo", "number"])
            }
        }
        migrator.registerMigration("v12: waits for the label") { db in
            // Recorded by a change that waits for the deploy label: counted against forks.max_blocked from the
            // first moment, before the controller has marked it blocked.
            try db.alter(table: "environment") { t in
                t.add(column: "waitsForLabel", .boolean).notNull().defaults(to: false)
            }
        }
        return migrator
    }
}

import DICOM
import Foundation
import GRDB

/// A known application entity: a peer allowed to call us (and, with host and port, a destination).
public struct ApplicationEntity: Codable, Sendable, Equatable {
    public var aeTitle: String
    public var host: String?
    public var port: Int?
    public var description: String

    public init(aeTitle: String, host: String? = nil, port: Int? = nil, description: String = "") {
        self.aeTitle = aeTitle
        self.host = host
        self.port = port
        self.description = description
    }
}

/// Known AEs live in the index database so that a running `serve` sees `ae add` at once.
extension Archive {
    public func addApplicationEntity(_ ae: ApplicationEntity) throws {
        try database.write { db in
            try db.execute(sql: """
                INSERT INTO application_entity (ae_title, host, port, description, added_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (ae_title) DO UPDATE SET host = excluded.host, port = excluded.port, description = excluded.description
                """, arguments: [ae.aeTitle, ae.host, ae.port, ae.description, Index.timestamp(Date())])
        }
    }

    @discardableResult
    public func removeApplicationEntity(_ title: String) throws -> Bool {
        try database.write { db in
            try db.execute(sql: "DELETE FROM application_entity WHERE ae_title = ?", arguments: [title])
            return db.changesCount > 0
        }
    }

    public func applicationEntities() throws -> [ApplicationEntity] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT ae_title, host, port, description FROM application_entity ORDER BY ae_title").map {
                ApplicationEntity(aeTitle: $0["ae_title"], host: $0["host"], port: $0["port"], description: $0["description"])
            }
        }
    }

    public func applicationEntity(_ title: String) throws -> ApplicationEntity? {
        try database.read { db in
            try Row.fetchOne(db, sql: "SELECT ae_title, host, port, description FROM application_entity WHERE ae_title = ?",
                             arguments: [title]).map {
                ApplicationEntity(aeTitle: $0["ae_title"], host: $0["host"], port: $0["port"], description: $0["description"])
            }
        }
    }
}

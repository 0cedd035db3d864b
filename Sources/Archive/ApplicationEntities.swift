import DICOM
import Foundation
import GRDB

/// A known application entity: a peer allowed to call us (and, with host and port, a destination),
/// with what it may do.
public struct ApplicationEntity: Codable, Sendable, Equatable {
    public var aeTitle: String
    public var host: String?
    public var port: Int?
    public var description: String
    public var mayStore: Bool
    public var mayQuery: Bool
    public var mayRetrieve: Bool
    /// AE titles this AE may C-MOVE to; ["*"] for every known destination.
    public var moveDestinations: [String]

    public init(aeTitle: String, host: String? = nil, port: Int? = nil, description: String = "",
                mayStore: Bool = true, mayQuery: Bool = true, mayRetrieve: Bool = true, moveDestinations: [String] = ["*"]) {
        self.aeTitle = aeTitle
        self.host = host
        self.port = port
        self.description = description
        self.mayStore = mayStore
        self.mayQuery = mayQuery
        self.mayRetrieve = mayRetrieve
        self.moveDestinations = moveDestinations
    }

    public func mayMove(to destination: String) -> Bool {
        mayRetrieve && (moveDestinations.contains("*") || moveDestinations.contains(destination))
    }

    init(row: Row) {
        self.init(aeTitle: row["ae_title"], host: row["host"], port: row["port"], description: row["description"],
                  mayStore: row["may_store"], mayQuery: row["may_query"], mayRetrieve: row["may_retrieve"],
                  moveDestinations: (row["move_destinations"] as String).split(separator: ",").map(String.init))
    }
}

/// Known AEs live in the index database so that a running `serve` sees `ae add` at once.
extension Archive {
    static let aeColumns = "ae_title, host, port, description, may_store, may_query, may_retrieve, move_destinations"

    public func addApplicationEntity(_ ae: ApplicationEntity) throws {
        try database.write { db in
            try db.execute(sql: """
                INSERT INTO application_entity (ae_title, host, port, description, may_store, may_query, may_retrieve,
                                                move_destinations, added_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (ae_title) DO UPDATE SET host = excluded.host, port = excluded.port,
                    description = excluded.description, may_store = excluded.may_store, may_query = excluded.may_query,
                    may_retrieve = excluded.may_retrieve, move_destinations = excluded.move_destinations
                """, arguments: [ae.aeTitle, ae.host, ae.port, ae.description, ae.mayStore, ae.mayQuery, ae.mayRetrieve,
                                 ae.moveDestinations.joined(separator: ","), Index.timestamp(Date())])
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
            try Row.fetchAll(db, sql: "SELECT \(Archive.aeColumns) FROM application_entity ORDER BY ae_title").map(ApplicationEntity.init(row:))
        }
    }

    public func applicationEntity(_ title: String) throws -> ApplicationEntity? {
        try database.read { db in
            try Row.fetchOne(db, sql: "SELECT \(Archive.aeColumns) FROM application_entity WHERE ae_title = ?",
                             arguments: [title]).map(ApplicationEntity.init(row:))
        }
    }
}

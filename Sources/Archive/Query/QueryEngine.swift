import DICOM
import Foundation
import GRDB

/// A validated C-FIND request turned into one parameterised SQL statement, run page by page.
struct CompiledQuery: Sendable {
    enum Output: Sendable {
        case column(Int)
        case modalities(Int)
        case constant(String)
    }

    let level: QueryLevel
    /// `<alias>.id` of the entity of the level: the keyset of the pagination.
    let entityID: String
    let sql: String
    let arguments: [DatabaseValue]
    let outputs: [(tag: Tag, output: Output)]
    let usesPersonNameFunction: Bool
    /// Keys with a value the engine did not match on (unknown, return-only, or below the level).
    let unsupportedKeys: [Tag]

    static let joins: [QueryLevel: (from: String, entityID: String, served: String)] = [
        .patient: ("patient p", "p.id", """
            EXISTS (SELECT 1 FROM study xst JOIN series xse ON xse.study_ref = xst.id \
            JOIN instance xi ON xi.series_ref = xse.id AND xi.is_current = 1 WHERE xst.patient_ref = p.id)
            """),
        .study: ("study st JOIN patient p ON p.id = st.patient_ref", "st.id", """
            EXISTS (SELECT 1 FROM series xse JOIN instance xi ON xi.series_ref = xse.id AND xi.is_current = 1 \
            WHERE xse.study_ref = st.id)
            """),
        .series: ("series se JOIN study st ON st.id = se.study_ref JOIN patient p ON p.id = st.patient_ref", "se.id",
                  "EXISTS (SELECT 1 FROM instance xi WHERE xi.series_ref = se.id AND xi.is_current = 1)"),
        .image: ("""
            instance i JOIN series se ON se.id = i.series_ref JOIN study st ON st.id = se.study_ref \
            JOIN patient p ON p.id = st.patient_ref
            """, "i.id", "i.is_current = 1"),
    ]

    init(_ request: QueryRequest) throws {
        let level = request.level
        let model = request.model
        guard model.levels.contains(level) else {
            throw QueryFailure(.identifierDoesNotMatchSOPClass,
                               "Query/Retrieve Level \(level.rawValue) is not a level of the Study Root model",
                               offending: [.queryRetrieveLevel])
        }

        // The identifier, first occurrence of each tag, without what is never matched.
        var keys: [(tag: Tag, value: String)] = []
        var seen = Set<Tag>()
        for key in request.keys where key.tag.group > 0x0002 && key.tag != .queryRetrieveLevel
            && key.tag != .specificCharacterSet && !seen.contains(key.tag) {
            seen.insert(key.tag)
            keys.append((key.tag, key.value))
        }
        let value = { (tag: Tag) in keys.first(where: { $0.tag == tag })?.value }

        // PS3.4 C.4.1.2.1 / C.4.1.3.1 (hierarchical search): each level above the query level is
        // fixed by a single value of its unique key.
        for above in model.levels.prefix(while: { $0 != level }) {
            try Self.requireSingleValue(above.uniqueKey, value(above.uniqueKey), above: level)
        }

        var conditions: [SQLCondition] = []
        var unsupported: [Tag] = []
        var outputs: [Tag: Output] = [:]
        var columns: [String] = []
        func column(_ expression: String) -> Int {
            if let index = columns.firstIndex(of: expression) { return index + 1 }
            columns.append(expression)
            return columns.count  // column 0 is the entity id
        }

        // Combined date-time matching takes both keys when they qualify.
        var matchedTogether = Set<Tag>()
        if request.combinedDateTimeMatching, level.rank >= QueryLevel.study.rank,
           let date = value(.studyDate).map({ QueryText.trim($0, vr: "DA") }), !date.isEmpty,
           let time = value(.studyTime).map({ QueryText.trim($0, vr: "TM") }), !time.isEmpty,
           let condition = try DateTimeMatching.combined(dateColumn: "st.study_date", timeColumn: "st.study_time",
                                                         date: date, time: time,
                                                         dateTag: .studyDate, timeTag: .studyTime) {
            conditions.append(condition)
            matchedTogether = [.studyDate, .studyTime]
        }

        for (tag, rawValue) in keys {
            guard let spec = QueryKeys.spec(tag), spec.entity.rank <= level.rank else {
                // Unknown here: returned zero length; a value we cannot match on is reported.
                outputs[tag] = .constant("")
                if !rawValue.trimmingCharacters(in: QueryText.padding).isEmpty { unsupported.append(tag) }
                continue
            }
            switch spec.source {
            case .constant(let text): outputs[tag] = .constant(text)
            case .computed(.modalitiesInStudy): outputs[tag] = .modalities(column(spec.sqlExpression))
            default: outputs[tag] = .column(column(spec.sqlExpression))
            }
            let trimmed = QueryText.trim(rawValue, vr: spec.vr)
            if trimmed.isEmpty || matchedTogether.contains(tag) { continue }
            guard spec.isMatchable else {
                unsupported.append(tag)
                continue
            }
            if let condition = try Self.condition(spec, trimmed) { conditions.append(condition) }
        }

        // Always answered: the unique keys down to the level, the level, the character set.
        for l in model.levels.prefix(through: model.levels.firstIndex(of: level)!) where outputs[l.uniqueKey] == nil {
            outputs[l.uniqueKey] = .column(column(QueryKeys.byTag[l.uniqueKey]!.sqlExpression))
        }
        outputs[.queryRetrieveLevel] = .constant(level.rawValue)
        outputs[.specificCharacterSet] = .constant("ISO_IR 192")

        let join = Self.joins[level]!
        var whereClause = ["\(join.entityID) > ?", join.served]
        whereClause += conditions.map(\.sql)
        self.level = level
        self.entityID = join.entityID
        self.sql = """
            SELECT \(([join.entityID] + columns).joined(separator: ", ")) FROM \(join.from) \
            WHERE \(whereClause.joined(separator: " AND ")) ORDER BY \(join.entityID) LIMIT ?
            """
        self.arguments = conditions.flatMap(\.arguments)
        self.outputs = outputs.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        self.usesPersonNameFunction = conditions.contains(where: \.usesPersonNameFunction)
        self.unsupportedKeys = unsupported.sorted()
    }

    /// The SQL condition of one key with a non-empty (trimmed) value, nil for universal matching.
    static func condition(_ spec: QueryKeySpec, _ value: String) throws -> SQLCondition? {
        let column = spec.sqlExpression
        if case .computed(.modalitiesInStudy) = spec.source { return Matching.modalitiesInStudy(value) }
        switch spec.vr {
        case "UI":
            return Matching.uids(column, value)
        case "DA":
            return try alternatives(value, vr: "DA") { v in
                try DateTimeMatching.parseDate(v, tag: spec.tag).map { DateTimeMatching.condition(date: column, $0) }
            }
        case "TM":
            return try alternatives(value, vr: "TM") { v in
                try DateTimeMatching.parseTime(v, tag: spec.tag).map { DateTimeMatching.condition(time: column, $0) }
            }
        case "PN":
            return alternatives(value, vr: "PN") { PersonName.condition(column, $0) }
        default:
            let wildcards = QueryText.wildcardVRs.contains(spec.vr)
            return alternatives(value, vr: spec.vr) { v in
                // IS and other non-wildcard VRs: a lone "*" is still read as universal.
                if !wildcards && QueryText.isUniversalWildcard(v) { return nil }
                return Matching.string(column, v, wildcards: wildcards)
            }
        }
    }

    /// Several backslash-separated values match when any of them does; one universal value
    /// makes the whole key universal.
    static func alternatives(_ value: String, vr: String,
                             _ make: (String) throws -> SQLCondition?) rethrows -> SQLCondition? {
        let values = QueryText.values(value, vr: vr)
        var conditions: [SQLCondition] = []
        for v in values {
            guard let condition = try make(v) else { return nil }
            conditions.append(condition)
        }
        return conditions.isEmpty ? nil : SQLCondition.any(conditions)
    }

    /// A unique key of a level above the query (or retrieve) level: present, one value, no
    /// wildcard (PS3.4 C.4.1.2.1, C.4.2.2.1). A900 otherwise, as dcm4che's
    /// QueryRetrieveLevel2.validateQueryIdentifier and DCMTK's dcmqrdb do.
    static func requireSingleValue(_ tag: Tag, _ value: String?, above level: QueryLevel) throws {
        let name = tag == .patientID ? "Patient ID" : tag == .studyInstanceUID ? "Study Instance UID"
            : tag == .seriesInstanceUID ? "Series Instance UID" : "SOP Instance UID"
        let trimmed = value.map { QueryText.trim($0, vr: tag == .patientID ? "LO" : "UI") } ?? ""
        if trimmed.isEmpty {
            throw QueryFailure(.identifierDoesNotMatchSOPClass,
                               "Missing \(name) \(tag): required for a \(level.rawValue) level request",
                               offending: [tag])
        }
        if trimmed.contains("\\") || QueryText.hasWildcard(trimmed) {
            throw QueryFailure(.identifierDoesNotMatchSOPClass,
                               "\(name) \(tag) must be a single value for a \(level.rawValue) level request, not \"\(trimmed)\"",
                               offending: [tag])
        }
    }

    func match(_ row: Row) -> QueryMatch {
        QueryMatch(values: outputs.map { tag, output in
            switch output {
            case .constant(let text): return (tag, text)
            case .column(let index): return (tag, Self.text(row[index] as DatabaseValue))
            case .modalities(let index):
                let joined = Self.text(row[index] as DatabaseValue)
                return (tag, Set(joined.split(separator: "\\")).sorted().joined(separator: "\\"))
            }
        })
    }

    static func text(_ value: DatabaseValue) -> String {
        switch value.storage {
        case .null: ""
        case .int64(let n): String(n)
        case .double(let d): d == d.rounded() ? String(Int64(d)) : String(d)
        case .string(let s): s
        case .blob(let data): String(decoding: data, as: UTF8.self)
        }
    }
}

extension Archive {
    /// Validates a C-FIND request (PS3.4 C.4.1.2.1 / C.4.1.3.1: hierarchical search, the unique
    /// keys of the levels above required as single values, the level one of the model; date and
    /// time values parsed) and returns a cursor over the matches. Nothing is read yet.
    ///
    /// - Parameter maxMatches: the most matches served; nil for no limit. When more exist the
    ///   cursor stops and says so in `limitReached`.
    /// - Throws: `QueryFailure` (A900, C000).
    public func find(_ request: QueryRequest, maxMatches: Int?) throws -> QueryCursor {
        try find(request, maxMatches: maxMatches, pageSize: QueryCursor.defaultPageSize)
    }

    func find(_ request: QueryRequest, maxMatches: Int?, pageSize: Int) throws -> QueryCursor {
        QueryCursor(archive: self, query: try CompiledQuery(request), maxMatches: maxMatches.map { max(0, $0) },
                    pageSize: max(1, pageSize))
    }
}

/// The matches of one C-FIND, read from the index a page at a time (keyset pagination on the
/// entity's rowid: each page is `… WHERE id > last ORDER BY id LIMIT n`, in its own read
/// transaction), so that a large answer is never held in memory nor holds a snapshot open.
///
/// Used by one thread at a time (the association's); the lock only guards against misuse.
public final class QueryCursor: @unchecked Sendable {
    static let defaultPageSize = 200

    private let archive: Archive
    let query: CompiledQuery
    private let maxMatches: Int?
    private let pageSize: Int
    private let lock = NSLock()
    private var lastID: Int64 = 0
    private var page: [QueryMatch] = []
    private var pageIndex = 0
    private var exhausted = false
    private var delivered = 0
    private var limitChecked = false
    private var limitWasReached = false

    init(archive: Archive, query: CompiledQuery, maxMatches: Int?, pageSize: Int) {
        self.archive = archive
        self.query = query
        self.maxMatches = maxMatches
        self.pageSize = pageSize
    }

    /// Keys of the request that had a value but were not used for matching: unknown attributes,
    /// return-only keys (the Number of … Related … counts, Instance Availability) and keys of
    /// levels below the query level. When not empty, pending responses should carry FF01
    /// ("one or more Optional Keys were not supported", PS3.4 C.4.1.1.4).
    public var unsupportedKeys: [Tag] { query.unsupportedKeys }

    /// FF01 when some key was not matched on, else FF00.
    public var pendingStatus: DIMSEStatus {
        unsupportedKeys.isEmpty ? QueryStatus.pending : QueryStatus.pendingUnsupportedOptionalKeys
    }

    /// True once `maxMatches` matches were returned and at least one more existed. The SCP then
    /// ends the C-FIND with `QueryStatus.outOfResources` (A700, "Refused: Out of Resources",
    /// PS3.4 table C.4-1) instead of Success: see docs/query.md for why not Cancel (FE00).
    public var limitReached: Bool { lock.withLock { limitWasReached } }

    /// The number of matches returned so far.
    public var count: Int { lock.withLock { delivered } }

    /// The next match, or nil when there are no more (or the limit is reached).
    /// - Throws: `QueryFailure` with status C001 when the index cannot be read.
    public func next() throws -> QueryMatch? {
        try lock.withLock {
            if let maxMatches, delivered >= maxMatches {
                if !limitChecked {
                    limitChecked = true
                    if pageIndex < page.count {
                        limitWasReached = true
                    } else if !exhausted {
                        limitWasReached = !(try fetch(limit: 1)).isEmpty
                    }
                }
                return nil
            }
            if pageIndex >= page.count {
                if exhausted { return nil }
                // One more than the limit allows, so that the limit is detected in the same page.
                let limit = maxMatches.map { min(pageSize, $0 - delivered + 1) } ?? pageSize
                page = try fetch(limit: limit)
                pageIndex = 0
                if page.count < limit { exhausted = true }
                if page.isEmpty { return nil }
            }
            let match = page[pageIndex]
            pageIndex += 1
            delivered += 1
            return match
        }
    }

    private func fetch(limit: Int) throws -> [QueryMatch] {
        let query = self.query
        let arguments = StatementArguments([lastID.databaseValue] + query.arguments + [limit.databaseValue])
        do {
            let (matches, last) = try archive.database.read { db -> ([QueryMatch], Int64?) in
                if query.usesPersonNameFunction { PersonName.install(on: db) }
                let rows = try Row.fetchAll(db, sql: query.sql, arguments: arguments)
                return (rows.map(query.match), rows.last.map { $0[0] as Int64 })
            }
            if let last { lastID = last }
            return matches
        } catch let error as QueryFailure {
            throw error
        } catch {
            throw QueryFailure(.databaseFailure, "Cannot read the index: \(error)")
        }
    }

    /// EXPLAIN QUERY PLAN of the page statement (for tests and diagnostics).
    func queryPlan() throws -> [String] {
        let query = self.query
        let arguments = StatementArguments([0.databaseValue] + query.arguments + [pageSize.databaseValue])
        return try archive.database.read { db in
            if query.usesPersonNameFunction { PersonName.install(on: db) }
            return try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + query.sql, arguments: arguments)
                .map { $0["detail"] as String }
        }
    }
}

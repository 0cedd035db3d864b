import DICOM
import Foundation
import GRDB

/// A piece of WHERE clause with its arguments. Values only ever travel as arguments.
struct SQLCondition: Sendable {
    var sql: String
    var arguments: [DatabaseValue]
    /// Whether the condition calls dicom_pn_match (which must then be on the connection).
    var usesPersonNameFunction = false

    init(_ sql: String, _ arguments: [any DatabaseValueConvertible] = [], usesPersonNameFunction: Bool = false) {
        self.sql = sql
        self.arguments = arguments.map(\.databaseValue)
        self.usesPersonNameFunction = usesPersonNameFunction
    }

    /// `(a OR b OR …)`; one condition stays as it is.
    static func any(_ conditions: [SQLCondition]) -> SQLCondition {
        if conditions.count == 1 { return conditions[0] }
        var result = SQLCondition("(" + conditions.map(\.sql).joined(separator: " OR ") + ")")
        result.arguments = conditions.flatMap(\.arguments)
        result.usesPersonNameFunction = conditions.contains(where: \.usesPersonNameFunction)
        return result
    }
}

/// Text handling shared by the matchers.
enum QueryText {
    /// Padding that is never significant in a key value: spaces, and the NUL that pads UIs.
    static let padding = CharacterSet(charactersIn: " \0")

    /// The VRs on which `*` and `?` are wildcards (PS3.4 C.2.2.2.4).
    static let wildcardVRs: Set<String> = ["AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"]

    /// Removes the padding that is not significant for the VR (PS3.5 6.2): leading and trailing
    /// spaces (and NULs, which pad UIs) for most VRs, only trailing ones for LT, ST and UT.
    static func trim(_ value: String, vr: String) -> String {
        switch vr {
        case "LT", "ST", "UT":
            var s = Substring(value)
            while let last = s.last, last == " " || last == "\0" { s.removeLast() }
            return String(s)
        default:
            return value.trimmingCharacters(in: padding)
        }
    }

    /// The values of a key: backslash separates values (PS3.5 6.4); each is trimmed, empty ones
    /// are dropped.
    static func values(_ value: String, vr: String) -> [String] {
        value.split(separator: "\\", omittingEmptySubsequences: false)
            .map { trim(String($0), vr: vr) }
            .filter { !$0.isEmpty }
    }

    static func isUniversalWildcard(_ value: String) -> Bool { !value.isEmpty && value.allSatisfy { $0 == "*" } }
    static func hasWildcard(_ value: String) -> Bool { value.contains("*") || value.contains("?") }

    /// The smallest string greater than every string that starts with `prefix` (code point
    /// order, which is the byte order of UTF-8, which is SQLite's BINARY order).
    static func upperBound(ofPrefix prefix: String) -> String? {
        var scalars = Array(prefix.unicodeScalars)
        while let last = scalars.popLast() {
            var next = last.value + 1
            if next == 0xD800 { next = 0xE000 }  // skip the surrogates
            if let scalar = Unicode.Scalar(next) {
                scalars.append(scalar)
                var view = String.UnicodeScalarView()
                view.append(contentsOf: scalars)
                return String(view)
            }
        }
        return nil
    }

    /// A range bound the planner should see as selective. SQLite's planner, without statistics,
    /// estimates a range on an index as keeping a quarter of the rows, and then prefers walking
    /// the entity table in rowid order (which the keyset ORDER BY wants) over the index; with
    /// likelihood() (transparent to index analysis, see SQLite's whereRangeAdjust) it takes the
    /// index and sorts the few rows it yields.
    static func selective(_ comparison: String) -> String { "likelihood(\(comparison), 0.01)" }

    /// The literal text before the first wildcard.
    static func literalPrefix(_ pattern: String) -> String {
        String(pattern.prefix(while: { $0 != "*" && $0 != "?" }))
    }

    /// A DICOM wildcard pattern as a GLOB pattern: `*` and `?` mean the same; `[` is GLOB's only
    /// other special character and is made literal as `[[]`.
    static func globPattern(_ pattern: String) -> String {
        pattern.replacingOccurrences(of: "[", with: "[[]")
    }
}

// MARK: - Single value, wildcard and list of UID matching

enum Matching {
    /// Single value (`col = ?`) or wildcard matching (GLOB, with the literal prefix as a range
    /// so that an index on the column applies), case-sensitive (PS3.4 C.2.2.2.1, C.2.2.2.4).
    static func string(_ column: String, _ value: String, wildcards: Bool) -> SQLCondition? {
        if wildcards && QueryText.isUniversalWildcard(value) { return nil }
        guard wildcards && QueryText.hasWildcard(value) else { return SQLCondition("\(column) = ?", [value]) }
        let prefix = QueryText.literalPrefix(value)
        let glob = QueryText.globPattern(value)
        if !prefix.isEmpty, let upper = QueryText.upperBound(ofPrefix: prefix) {
            let from = QueryText.selective("\(column) >= ?"), below = QueryText.selective("\(column) < ?")
            return SQLCondition("(\(from) AND \(below) AND \(column) GLOB ?)", [prefix, upper, glob])
        }
        return SQLCondition("\(column) GLOB ?", [glob])
    }

    /// List of UID matching (PS3.4 C.2.2.2.2). A lone `*` is taken as universal matching (a
    /// common SCU habit; UIDs have no wildcards).
    static func uids(_ column: String, _ value: String) -> SQLCondition? {
        let uids = QueryText.values(value, vr: "UI")
        if uids.isEmpty || uids.contains(where: QueryText.isUniversalWildcard) { return nil }
        return membership(column, uids)
    }

    /// `col = ?`, `col IN (?, …)`, or for long lists one JSON argument (no limit on the number
    /// of SQL variables).
    static func membership(_ column: String, _ values: [String]) -> SQLCondition {
        if values.count == 1 { return SQLCondition("\(column) = ?", [values[0]]) }
        if values.count <= 200 {
            return SQLCondition("\(column) IN (" + Array(repeating: "?", count: values.count).joined(separator: ", ") + ")",
                                values)
        }
        let json = String(decoding: try! JSONEncoder().encode(values), as: UTF8.self)
        return SQLCondition("\(column) IN (SELECT value FROM json_each(?))", [json])
    }

    /// Modalities in Study (0008,0061): the study matches when one of its served series has one
    /// of the listed modalities (each single value or wildcard).
    static func modalitiesInStudy(_ value: String) -> SQLCondition? {
        let values = QueryText.values(value, vr: "CS")
        if values.isEmpty || values.contains(where: QueryText.isUniversalWildcard) { return nil }
        let exact = values.filter { !QueryText.hasWildcard($0) }
        var alternatives: [SQLCondition] = []
        if !exact.isEmpty { alternatives.append(membership("ms.modality", exact)) }
        for pattern in values where QueryText.hasWildcard(pattern) {
            alternatives.append(string("ms.modality", pattern, wildcards: true)!)
        }
        let inner = SQLCondition.any(alternatives)
        var condition = SQLCondition("""
            st.id IN (SELECT ms.study_ref FROM series ms WHERE \(inner.sql) \
            AND EXISTS (SELECT 1 FROM instance mi WHERE mi.series_ref = ms.id AND mi.is_current = 1))
            """)
        condition.arguments = inner.arguments
        return condition
    }
}

// MARK: - Person names

/// Person Name matching (PS3.4 C.2.2.2.1 lets PN be matched insensitively to case; the choices
/// are documented in docs/query.md):
/// - case-insensitive (Unicode lowercase mapping; a character that only lowercases to ASCII,
///   such as KELVIN SIGN, is kept as it is so that the ASCII index prefilter stays exact),
///   canonically equivalent characters are equal (Swift `Character` comparison);
/// - `*` and `?` are wildcards; `?` matches one character;
/// - spaces around components and trailing empty components / groups are not significant:
///   `Doe ^John^^` is `Doe^John`;
/// - a query without `=` is matched against the whole name and against its first (alphabetic)
///   component group alone, so `Yamada^Taro` finds `Yamada^Taro=山田^太郎=やまだ^たろう`;
/// - a query without `^` and `=` is a family name: `Doe` also matches `Doe^*`.
enum PersonName {
    static let functionName = "dicom_pn_match"

    static let function = DatabaseFunction(functionName, argumentCount: 2, pure: true) { values in
        guard let value = String.fromDatabaseValue(values[0]), let pattern = String.fromDatabaseValue(values[1]) else {
            return false
        }
        return matches(value: value, pattern: pattern)
    }

    /// Puts dicom_pn_match on a connection that does not have it yet. (Redefining a function on a
    /// connection expires its statements, so it is only done once per connection.)
    static func install(on db: Database) {
        do {
            _ = try db.makeStatement(sql: "SELECT \(functionName)('', '')")
        } catch {
            db.add(function: function)
        }
    }

    static func matches(value: String, pattern: String) -> Bool {
        let name = normalize(value)
        let query = normalize(pattern)
        var candidates = [name]
        if !query.contains("="), let firstGroupEnd = name.firstIndex(of: "=") {
            candidates.append(Array(name[..<firstGroupEnd]))
        }
        var patterns = [query]
        if !query.contains("^") && !query.contains("=") { patterns.append(query + ["^", "*"]) }
        return patterns.contains { p in candidates.contains { wildcardMatch($0, p) } }
    }

    /// Folded characters of the name with insignificant spaces and delimiters removed.
    static func normalize(_ value: String) -> [Character] {
        var groups = value.split(separator: "=", omittingEmptySubsequences: false).map { group -> String in
            var components = group.split(separator: "^", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }
            while components.last?.isEmpty == true { components.removeLast() }
            return components.joined(separator: "^")
        }
        while groups.last?.isEmpty == true { groups.removeLast() }
        return fold(groups.joined(separator: "="))
    }

    static func fold(_ value: String) -> [Character] {
        var folded: [Character] = []
        folded.reserveCapacity(value.count)
        for c in value {
            if c.isASCII {
                folded.append(contentsOf: c.lowercased())
                continue
            }
            let lower = c.lowercased()
            if lower.unicodeScalars.allSatisfy(\.isASCII) {
                folded.append(c)
            } else {
                folded.append(contentsOf: lower)
            }
        }
        return folded
    }

    /// `*` matches any run of characters (also none), `?` exactly one.
    static func wildcardMatch(_ s: [Character], _ p: [Character]) -> Bool {
        var si = 0, pi = 0
        var star = -1, mark = 0
        while si < s.count {
            if pi < p.count && (p[pi] == "?" || (p[pi] != "*" && p[pi] == s[si])) {
                si += 1
                pi += 1
            } else if pi < p.count && p[pi] == "*" {
                star = pi
                mark = si
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                si = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }

    /// The lowercased ASCII text every match starts with, for a range on the NOCASE index: the
    /// characters before the first wildcard, delimiter, space or non-ASCII character. Every
    /// name the Swift matcher accepts starts (ASCII case-insensitively) with it.
    static func indexPrefix(_ pattern: String) -> String {
        var prefix = ""
        for c in pattern {
            guard c.isASCII, c.unicodeScalars.count == 1, let v = c.asciiValue, v > 0x20, v < 0x7F,
                  !"*?^=\\".contains(c) else { break }
            prefix.append(Character(Unicode.Scalar(v >= 0x41 && v <= 0x5A ? v + 0x20 : v)))
        }
        return prefix
    }

    static func condition(_ column: String, _ value: String) -> SQLCondition? {
        if QueryText.isUniversalWildcard(value) { return nil }
        let prefix = indexPrefix(value)
        if !prefix.isEmpty, let upper = QueryText.upperBound(ofPrefix: prefix) {
            let from = QueryText.selective("\(column) COLLATE NOCASE >= ?")
            let below = QueryText.selective("\(column) COLLATE NOCASE < ?")
            return SQLCondition("(\(from) AND \(below) AND \(functionName)(\(column), ?))", [prefix, upper, value],
                                usesPersonNameFunction: true)
        }
        return SQLCondition("\(functionName)(\(column), ?)", [value], usesPersonNameFunction: true)
    }
}

// MARK: - Dates and times

/// Range matching of DA and TM (PS3.4 C.2.2.2.5). Values are compared as text, which orders
/// YYYYMMDD dates and HHMMSS.FFFFFF times correctly.
enum DateTimeMatching {
    /// A parsed DA or TM key value. Times are held without colons; `upper` of a time is the last
    /// instant its precision covers (`1800` → `180059.999999`).
    enum Value {
        case single(lower: String, upper: String)
        case range(lower: String?, upper: String?)

        var isRange: Bool { if case .range = self { true } else { false } }
    }

    static func invalid(_ what: String, _ value: String, _ tag: Tag) -> QueryFailure {
        QueryFailure(.unableToProcess, "Invalid \(what) \"\(value)\" in \(tag)", offending: [tag])
    }

    /// YYYYMMDD (PS3.5 table 6.2-1); the retired YYYY.MM.DD is refused.
    static func date(_ s: Substring) -> String? {
        let s = s.trimmingCharacters(in: .whitespaces)
        let digits = s.compactMap(\.wholeNumberValue)
        guard s.count == 8, digits.count == 8, s.allSatisfy(\.isASCII) else { return nil }
        let month = digits[4] * 10 + digits[5]
        let day = digits[6] * 10 + digits[7]
        guard (1...12).contains(month), (1...31).contains(day) else { return nil }
        return s
    }

    /// HH, HHMM, HHMMSS or HHMMSS.F{1,6} (PS3.5 table 6.2-1); the retired HH:MM:SS form is
    /// accepted and its colons dropped.
    static func time(_ s: Substring) -> String? {
        let s = s.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: ":", with: "")
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, s.allSatisfy(\.isASCII) else { return nil }
        let main = parts[0]
        let digits = main.compactMap(\.wholeNumberValue)
        guard [2, 4, 6].contains(main.count), digits.count == main.count else { return nil }
        guard digits[0] * 10 + digits[1] <= 23 else { return nil }
        if digits.count >= 4 && digits[2] * 10 + digits[3] > 59 { return nil }
        if digits.count == 6 && digits[4] * 10 + digits[5] > 60 { return nil }
        if parts.count == 2 {
            let fraction = parts[1]
            guard main.count == 6, (1...6).contains(fraction.count), fraction.allSatisfy({ $0.isASCII && $0.isNumber })
            else { return nil }
        }
        return s
    }

    /// The last instant a partial time covers: `18` → `185959.999999`, `1830` → `183059.999999`.
    static func timeUpperBound(_ t: String) -> String {
        let parts = t.split(separator: ".", omittingEmptySubsequences: false)
        var main = String(parts[0])
        if main.count == 2 { main += "5959" } else if main.count == 4 { main += "59" }
        let fraction = parts.count == 2 ? String(parts[1]) : ""
        return main + "." + fraction + String(repeating: "9", count: 6 - fraction.count)
    }

    /// Parses a DA key value: single date, or `A-B`, `-B`, `A-`. nil: universal (`-` alone).
    static func parseDate(_ value: String, tag: Tag) throws -> Value? {
        guard value.contains("-") else {
            guard let d = date(Substring(value)) else { throw invalid("date", value, tag) }
            return .single(lower: d, upper: d)
        }
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw invalid("date range", value, tag) }
        let lowerText = parts[0].trimmingCharacters(in: .whitespaces)
        let upperText = parts[1].trimmingCharacters(in: .whitespaces)
        var lower: String?
        var upper: String?
        if !lowerText.isEmpty {
            guard let d = date(parts[0]) else { throw invalid("date range", value, tag) }
            lower = d
        }
        if !upperText.isEmpty {
            guard let d = date(parts[1]) else { throw invalid("date range", value, tag) }
            upper = d
        }
        if lower == nil && upper == nil { return nil }
        if let lower, let upper, lower > upper { throw invalid("date range (start after end)", value, tag) }
        return .range(lower: lower, upper: upper)
    }

    /// Parses a TM key value. A single time is matched as the period its precision covers
    /// (`1030` is 10:30:00 to 10:30:59.999999); a range end likewise covers its whole period.
    static func parseTime(_ value: String, tag: Tag, allowCrossingMidnight: Bool = false) throws -> Value? {
        guard value.contains("-") else {
            guard let t = time(Substring(value)) else { throw invalid("time", value, tag) }
            return .single(lower: t, upper: timeUpperBound(t))
        }
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw invalid("time range", value, tag) }
        var lower: String?
        var upper: String?
        if !parts[0].trimmingCharacters(in: .whitespaces).isEmpty {
            guard let t = time(parts[0]) else { throw invalid("time range", value, tag) }
            lower = t
        }
        if !parts[1].trimmingCharacters(in: .whitespaces).isEmpty {
            guard let t = time(parts[1]) else { throw invalid("time range", value, tag) }
            upper = timeUpperBound(t)
        }
        if lower == nil && upper == nil { return nil }
        // PS3.4 C.2.2.2.5.2: range matching crossing midnight is not supported.
        if !allowCrossingMidnight, let lower, let upper, lower > upper {
            throw invalid("time range (start after end)", value, tag)
        }
        return .range(lower: lower, upper: upper)
    }

    /// A date column: empty values never match a range.
    static func condition(date column: String, _ value: Value) -> SQLCondition {
        switch value {
        case .single(let d, _):
            return SQLCondition("\(column) = ?", [d])
        case .range(let lower, let upper):
            var sql = "\(column) <> ''"
            var arguments: [String] = []
            if let lower { sql += " AND " + QueryText.selective("\(column) >= ?"); arguments.append(lower) }
            if let upper { sql += " AND " + QueryText.selective("\(column) <= ?"); arguments.append(upper) }
            return SQLCondition("(" + sql + ")", arguments)
        }
    }

    /// A time column, compared without the colons of the retired HH:MM:SS form.
    static func condition(time column: String, _ value: Value) -> SQLCondition {
        let t = "replace(\(column), ':', '')"
        let (lower, upper): (String?, String?) = switch value {
        case .single(let l, let u): (l, u)
        case .range(let l, let u): (l, u)
        }
        var sql = "\(t) <> ''"
        var arguments: [String] = []
        if let lower { sql += " AND \(t) >= ?"; arguments.append(lower) }
        if let upper { sql += " AND \(t) <= ?"; arguments.append(upper) }
        return SQLCondition("(" + sql + ")", arguments)
    }

    /// Combined date-time range matching (PS3.4 C.2.2.2.5.4): the date and time ranges, of the
    /// same form, are matched as the one date-time range from (date1, time1) to (date2, time2).
    /// nil when the two keys do not qualify (then they are matched independently).
    static func combined(dateColumn: String, timeColumn: String, date: String, time: String,
                         dateTag: Tag, timeTag: Tag) throws -> SQLCondition? {
        guard !date.contains("\\"), !time.contains("\\"),
              case .range(let d1, let d2)? = try parseDate(date, tag: dateTag),
              case .range(let t1, let t2)? = try parseTime(time, tag: timeTag, allowCrossingMidnight: true),
              (d1 == nil) == (t1 == nil), (d2 == nil) == (t2 == nil)
        else { return nil }
        if let d1, let t1, let d2, let t2, (d1, t1) > (d2, t2) {
            throw QueryFailure(.unableToProcess, "Invalid date-time range \"\(date)\" \"\(time)\" (start after end)",
                               offending: [dateTag, timeTag])
        }
        let t = "replace(\(timeColumn), ':', '')"
        var sql = "\(dateColumn) <> ''"
        var arguments: [String] = []
        if let d1, let t1 {
            sql += " AND \(QueryText.selective("\(dateColumn) >= ?")) AND (\(dateColumn) > ? OR \(t) >= ?)"
            arguments += [d1, d1, t1]
        }
        if let d2, let t2 {
            sql += " AND \(QueryText.selective("\(dateColumn) <= ?")) AND (\(dateColumn) < ? OR \(t) <= ?)"
            arguments += [d2, d2, t2]
        }
        return SQLCondition("(" + sql + ")", arguments)
    }
}

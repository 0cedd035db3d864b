import Foundation

/// The times of consent documents.
///
/// In documents (`issued`, `expires`) a time is exactly RFC 3339 in UTC to the second:
/// `YYYY-MM-DDTHH:MM:SSZ` (20 characters, uppercase `T` and `Z`, no fraction, no offset), so that
/// a time has one spelling and the canonical form is unambiguous. On command lines a time is ISO 8601
/// / RFC 3339 with a time zone (`Z` or `±hh:mm`); a fraction of a second is dropped.
public enum ConsentTime {
    /// `date` rounded down to a whole second: what documents can state.
    public static func wholeSeconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` (UTC; a fraction of a second is dropped).
    public static func format(_ date: Date) -> String {
        let t = Int64(date.timeIntervalSince1970.rounded(.down))
        let days = floorDiv(t, 86_400)
        let secs = t - days * 86_400
        let (y, m, d) = civil(fromDays: days)
        return String(format: "%04lld-%02lld-%02lldT%02lld:%02lld:%02lldZ", y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
    }

    /// Reads a document time: exactly `YYYY-MM-DDTHH:MM:SSZ`.
    public static func parseDocumentTime(_ s: String) throws -> Date {
        let b = Array(s.utf8)
        guard b.count == 20, b[19] == UInt8(ascii: "Z"), let date = try? parse(s), format(date) == s else {
            throw ConsentError.invalidTime(s, "expected RFC 3339 UTC to the second, YYYY-MM-DDTHH:MM:SSZ")
        }
        return date
    }

    /// Reads ISO 8601 / RFC 3339 date-time with a time zone: `2027-01-31T12:00:00Z`,
    /// `2027-01-31T13:00:00+01:00`, `2027-01-31T12:00Z`, `2027-01-31T12:00:00.250-05:00` (a fraction of
    /// a second is dropped). `t`/`z` may be lowercase. A time without a zone is refused
    /// (`ConsentError.timeWithoutZone`).
    public static func parse(_ s: String) throws -> Date {
        let b = Array(s.utf8)
        var i = 0
        func fail(_ why: String) -> ConsentError { .invalidTime(s, why) }
        func digits(_ n: Int) throws -> Int64 {
            guard b.count - i >= n else { throw fail("expected YYYY-MM-DDTHH:MM[:SS[.fff]] and a zone (Z or +hh:mm)") }
            var v: Int64 = 0
            for _ in 0..<n {
                guard (0x30...0x39).contains(b[i]) else { throw fail("expected YYYY-MM-DDTHH:MM[:SS[.fff]] and a zone (Z or +hh:mm)") }
                v = v * 10 + Int64(b[i] - 0x30)
                i += 1
            }
            return v
        }
        func literal(_ c: Character) throws {
            guard i < b.count, b[i] == c.asciiValue! else { throw fail("expected YYYY-MM-DDTHH:MM[:SS[.fff]] and a zone (Z or +hh:mm)") }
            i += 1
        }
        let year = try digits(4)
        try literal("-")
        let month = try digits(2)
        try literal("-")
        let day = try digits(2)
        guard i < b.count else { throw ConsentError.timeWithoutZone(s) }
        guard b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: "t") else { throw fail("expected T between the date and the time") }
        i += 1
        let hour = try digits(2)
        try literal(":")
        let minute = try digits(2)
        var second: Int64 = 0
        if i < b.count, b[i] == UInt8(ascii: ":") {
            i += 1
            second = try digits(2)
            if i < b.count, b[i] == UInt8(ascii: ".") || b[i] == UInt8(ascii: ",") {
                i += 1
                let start = i
                while i < b.count, (0x30...0x39).contains(b[i]) { i += 1 }
                guard i > start else { throw fail("empty fraction of a second") }
            }
        }
        guard i < b.count else { throw ConsentError.timeWithoutZone(s) }
        var offset: Int64 = 0
        switch b[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            i += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let sign: Int64 = b[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            let oh = try digits(2)
            if i < b.count, b[i] == UInt8(ascii: ":") { i += 1 }
            let om = try digits(2)
            guard oh <= 23, om <= 59 else { throw fail("invalid time zone offset") }
            offset = sign * (oh * 3600 + om * 60)
        default:
            throw fail("unexpected characters after the time (expected Z or an offset such as +01:00)")
        }
        guard i == b.count else { throw fail("unexpected characters after the time zone") }
        guard (1...12).contains(month) else { throw fail("month out of range") }
        guard day >= 1, day <= daysInMonth(year, month) else { throw fail("day out of range") }
        guard hour <= 23, minute <= 59, second <= 59 else { throw fail("time of day out of range") }
        let days = days(fromCivil: year, month, day)
        return Date(timeIntervalSince1970: TimeInterval(days * 86_400 + hour * 3600 + minute * 60 + second - offset))
    }

    static func daysInMonth(_ y: Int64, _ m: Int64) -> Int64 {
        switch m {
        case 2: return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }

    // Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian, day 0 = 1970-01-01).
    static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = floorDiv(y, 400)
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}

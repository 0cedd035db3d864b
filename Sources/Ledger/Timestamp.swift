import Foundation

/// RFC 3339 UTC times with milliseconds, exactly "YYYY-MM-DDTHH:MM:SS.mmmZ" (years 0000 to 9999),
/// computed with integer calendar arithmetic (proleptic Gregorian), independent of locale and
/// of Foundation's formatters.
public enum Timestamp {
    /// Milliseconds since 1970-01-01T00:00:00Z, rounded to the nearest millisecond (clamped to
    /// Int64's range, which no real date approaches).
    public static func millis(_ date: Date) -> Int64 {
        let ms = (date.timeIntervalSince1970 * 1000).rounded()
        if ms.isNaN { return 0 }
        if ms >= 9.2e18 { return .max }
        if ms <= -9.2e18 { return .min }
        return Int64(ms)
    }

    public static func date(millis: Int64) -> Date {
        Date(timeIntervalSince1970: Double(millis) / 1000)
    }

    public static func rfc3339(_ date: Date) -> String { rfc3339(millis: millis(date)) }

    /// "YYYY-MM-DDTHH:MM:SS.mmmZ" for `millis` since the epoch.
    public static func rfc3339(millis: Int64) -> String {
        let (days, msOfDay) = floorDivMod(millis, 86_400_000)
        let (y, m, d) = civil(days)
        let ms = msOfDay % 1000, s = msOfDay / 1000 % 60, min = msOfDay / 60_000 % 60, h = msOfDay / 3_600_000
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(h, 2)):\(pad(min, 2)):\(pad(s, 2)).\(pad(ms, 3))Z"
    }

    /// Milliseconds since the epoch for a time written exactly as `rfc3339(millis:)` writes it;
    /// nil for any other form (other offsets, other precision, impossible dates, leap seconds).
    public static func parseMillis(_ s: String) -> Int64? {
        let c = Array(s.utf8)
        guard c.count == 24, c[4] == 0x2D, c[7] == 0x2D, c[10] == 0x54, c[13] == 0x3A, c[16] == 0x3A,
              c[19] == 0x2E, c[23] == 0x5A else { return nil }
        func num(_ r: Range<Int>) -> Int64? {
            var v: Int64 = 0
            for i in r {
                guard (0x30...0x39).contains(c[i]) else { return nil }
                v = v * 10 + Int64(c[i] - 0x30)
            }
            return v
        }
        guard let y = num(0..<4), let m = num(5..<7), let d = num(8..<10), let h = num(11..<13),
              let min = num(14..<16), let sec = num(17..<19), let ms = num(20..<23),
              (1...12).contains(m), d >= 1, h < 24, min < 60, sec < 60 else { return nil }
        let days = daysFromCivil(y, m, d)
        guard civil(days) == (y, m, d) else { return nil }  // e.g. February 30th
        return days * 86_400_000 + h * 3_600_000 + min * 60_000 + sec * 1000 + ms
    }

    public static func parseRFC3339(_ s: String) -> Date? { parseMillis(s).map(date(millis:)) }

    private static func pad(_ v: Int64, _ width: Int) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }

    private static func floorDivMod(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        let q = a / b, r = a % b
        return r < 0 ? (q - 1, r + b) : (q, r)
    }

    // Days since 1970-01-01 <-> proleptic Gregorian (year, month, day), after Howard Hinnant's
    // "chrono-Compatible Low-Level Date Algorithms" (eras of 400 years starting on March 1st).
    private static func daysFromCivil(_ year: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    private static func civil(_ days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}

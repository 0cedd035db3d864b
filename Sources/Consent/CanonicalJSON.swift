import Foundation

/// A JSON value of the kinds consent documents use. Numbers are integers only (|n| ≤ 2^53 − 1, the
/// range in which RFC 8785 serializes an IEEE 754 double as plain decimal digits); a document with
/// a fraction or an exponent is refused rather than reinterpreted.
public indirect enum ConsentJSON: Equatable, Sendable {
    case string(String)
    case integer(Int64)
    case bool(Bool)
    case null
    case array([ConsentJSON])
    case object([String: ConsentJSON])

    /// The largest integer magnitude accepted: 2^53 − 1 (exact in an IEEE 754 double).
    public static let maxSafeInteger: Int64 = 9_007_199_254_740_991
}

/// RFC 8785 JSON Canonicalization Scheme (JCS) for `ConsentJSON`, and a strict RFC 8259 parser.
///
/// Canonical form, as RFC 8785 §3.2 defines it for these value kinds:
/// - no whitespace between tokens;
/// - object members sorted by their names compared as arrays of UTF-16 code units;
/// - strings: `"` and `\` escaped as `\"` and `\\`; U+0008, U+0009, U+000A, U+000C, U+000D as `\b`
///   `\t` `\n` `\f` `\r`; the other controls below U+0020 as `\u00xx` (lowercase hex); every other
///   character as itself, in UTF-8 (so `/`, U+007F, non-ASCII and U+2028 are not escaped);
/// - integers as plain decimal digits with a leading `-` when negative (`-0` is `0`);
/// - `true`, `false`, `null` as themselves.
public enum JCS {
    /// The canonical UTF-8 bytes of `value`.
    public static func canonicalize(_ value: ConsentJSON) -> Data {
        var out = [UInt8]()
        out.reserveCapacity(512)
        write(value, into: &out, indent: nil, level: 0)
        return Data(out)
    }

    /// A readable rendering (two-space indent, members in canonical order, strings escaped as in
    /// the canonical form). Parsing it gives back the same value; it is what files are written as.
    public static func pretty(_ value: ConsentJSON) -> Data {
        var out = [UInt8]()
        write(value, into: &out, indent: 2, level: 0)
        out.append(0x0A)
        return Data(out)
    }

    /// Object member names in canonical order: by UTF-16 code units.
    public static func sortedKeys<S: Sequence>(_ keys: S) -> [String] where S.Element == String {
        keys.sorted { $0.utf16.lexicographicallyPrecedes($1.utf16) }
    }

    private static func write(_ value: ConsentJSON, into out: inout [UInt8], indent: Int?, level: Int) {
        switch value {
        case .string(let s):
            writeString(s, into: &out)
        case .integer(let n):
            out.append(contentsOf: Array(String(n).utf8))
        case .bool(let b):
            out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case .null:
            out.append(contentsOf: Array("null".utf8))
        case .array(let items):
            out.append(0x5B)
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(0x2C) }
                newline(&out, indent, level + 1)
                write(item, into: &out, indent: indent, level: level + 1)
            }
            if !items.isEmpty { newline(&out, indent, level) }
            out.append(0x5D)
        case .object(let members):
            out.append(0x7B)
            for (i, key) in sortedKeys(members.keys).enumerated() {
                if i > 0 { out.append(0x2C) }
                newline(&out, indent, level + 1)
                writeString(key, into: &out)
                out.append(0x3A)
                if indent != nil { out.append(0x20) }
                write(members[key]!, into: &out, indent: indent, level: level + 1)
            }
            if !members.isEmpty { newline(&out, indent, level) }
            out.append(0x7D)
        }
    }

    private static func newline(_ out: inout [UInt8], _ indent: Int?, _ level: Int) {
        guard let indent else { return }
        out.append(0x0A)
        out.append(contentsOf: repeatElement(0x20, count: indent * level))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    private static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        for byte in s.utf8 {
            switch byte {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x08: out.append(contentsOf: [0x5C, 0x62])
            case 0x09: out.append(contentsOf: [0x5C, 0x74])
            case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
            case 0x0C: out.append(contentsOf: [0x5C, 0x66])
            case 0x0D: out.append(contentsOf: [0x5C, 0x72])
            case 0x00..<0x20:
                out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
            default: out.append(byte)
            }
        }
        out.append(0x22)
    }

    // MARK: - Parsing

    /// Parses one JSON text (RFC 8259) strictly: UTF-8 without a byte order mark; no duplicate
    /// member names; no unpaired surrogate escapes; integers only, within ±(2^53 − 1); nesting at
    /// most 32 deep; nothing but whitespace after the value.
    public static func parse(_ data: Data) throws -> ConsentJSON {
        var parser = Parser(bytes: Array(data))
        return try parser.parseDocument()
    }

    private struct Parser {
        let bytes: [UInt8]
        var pos = 0
        static let maxDepth = 32

        init(bytes: [UInt8]) { self.bytes = bytes }

        func error(_ message: String) -> ConsentError {
            .invalidJSON("\(message) at byte \(pos)")
        }

        mutating func parseDocument() throws -> ConsentJSON {
            guard String(validating: bytes, as: UTF8.self) != nil else {
                throw ConsentError.invalidJSON("not UTF-8 text")
            }
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { throw error("byte order mark") }
            skipWhitespace()
            let value = try parseValue(depth: 0)
            skipWhitespace()
            guard pos == bytes.count else { throw error("unexpected data after the JSON value") }
            return value
        }

        mutating func skipWhitespace() {
            while pos < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[pos]) { pos += 1 }
        }

        mutating func expect(_ literal: String) throws {
            let lit = Array(literal.utf8)
            guard bytes.count - pos >= lit.count, Array(bytes[pos..<pos + lit.count]) == lit else {
                throw error("invalid literal")
            }
            pos += lit.count
        }

        mutating func parseValue(depth: Int) throws -> ConsentJSON {
            guard depth <= Self.maxDepth else { throw error("nested too deeply") }
            guard pos < bytes.count else { throw error("unexpected end of input") }
            switch bytes[pos] {
            case 0x7B: return try parseObject(depth: depth)
            case 0x5B: return try parseArray(depth: depth)
            case 0x22: return .string(try parseString())
            case 0x74: try expect("true"); return .bool(true)
            case 0x66: try expect("false"); return .bool(false)
            case 0x6E: try expect("null"); return .null
            case 0x2D, 0x30...0x39: return .integer(try parseInteger())
            default: throw error("unexpected character")
            }
        }

        mutating func parseObject(depth: Int) throws -> ConsentJSON {
            pos += 1
            var members: [String: ConsentJSON] = [:]
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == 0x7D { pos += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == 0x22 else { throw error("expected a member name") }
                let key = try parseString()
                guard members[key] == nil else { throw error("duplicate member name \"\(key)\"") }
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == 0x3A else { throw error("expected ':'") }
                pos += 1
                skipWhitespace()
                members[key] = try parseValue(depth: depth + 1)
                skipWhitespace()
                guard pos < bytes.count else { throw error("unexpected end of input") }
                if bytes[pos] == 0x2C { pos += 1; continue }
                if bytes[pos] == 0x7D { pos += 1; return .object(members) }
                throw error("expected ',' or '}'")
            }
        }

        mutating func parseArray(depth: Int) throws -> ConsentJSON {
            pos += 1
            var items: [ConsentJSON] = []
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == 0x5D { pos += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try parseValue(depth: depth + 1))
                skipWhitespace()
                guard pos < bytes.count else { throw error("unexpected end of input") }
                if bytes[pos] == 0x2C { pos += 1; continue }
                if bytes[pos] == 0x5D { pos += 1; return .array(items) }
                throw error("expected ',' or ']'")
            }
        }

        mutating func parseInteger() throws -> Int64 {
            let start = pos
            if bytes[pos] == 0x2D { pos += 1 }
            guard pos < bytes.count, (0x30...0x39).contains(bytes[pos]) else { throw error("invalid number") }
            if bytes[pos] == 0x30 {
                pos += 1
            } else {
                while pos < bytes.count, (0x30...0x39).contains(bytes[pos]) { pos += 1 }
            }
            if pos < bytes.count, [0x2E, 0x65, 0x45].contains(bytes[pos]) {
                throw error("only integers are allowed (no fraction or exponent)")
            }
            guard pos - start <= 17, let n = Int64(String(decoding: bytes[start..<pos], as: UTF8.self)),
                  abs(n) <= ConsentJSON.maxSafeInteger else {
                throw error("integer out of range (more than 2^53 - 1)")
            }
            return n == 0 ? 0 : n
        }

        mutating func parseHex4() throws -> UInt32 {
            guard bytes.count - pos >= 4 else { throw error("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[pos]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw error("invalid \\u escape")
                }
                v = v << 4 | d
                pos += 1
            }
            return v
        }

        mutating func parseString() throws -> String {
            pos += 1
            var out = [UInt8]()
            while true {
                guard pos < bytes.count else { throw error("unterminated string") }
                let c = bytes[pos]
                if c == 0x22 { pos += 1; break }
                if c < 0x20 { throw error("unescaped control character in a string") }
                if c != 0x5C { out.append(c); pos += 1; continue }
                pos += 1
                guard pos < bytes.count else { throw error("unterminated string") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case 0x22, 0x5C, 0x2F: out.append(e)
                case 0x62: out.append(0x08)
                case 0x66: out.append(0x0C)
                case 0x6E: out.append(0x0A)
                case 0x72: out.append(0x0D)
                case 0x74: out.append(0x09)
                case 0x75:
                    var scalar = try parseHex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard bytes.count - pos >= 6, bytes[pos] == 0x5C, bytes[pos + 1] == 0x75 else {
                            throw error("unpaired surrogate escape")
                        }
                        pos += 2
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error("unpaired surrogate escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw error("unpaired surrogate escape")
                    }
                    out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
                default:
                    throw error("invalid escape")
                }
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}

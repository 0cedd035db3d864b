/// Makes a value that came from the network safe to put in a log line: printable ASCII stays as
/// is, a backslash becomes `\\`, every other byte (control characters, DEL, bytes of non-ASCII or
/// invalid UTF-8) becomes `\xNN`; the result is cut after `limit` input bytes, with `…(N bytes)`.
/// A terminal that shows the log never receives an escape sequence from a peer.
public enum LogEscape {
    public static let defaultLimit = 128

    public static func escape<Bytes: Collection>(bytes: Bytes, limit: Int = defaultLimit) -> String where Bytes.Element == UInt8 {
        var out = ""
        var n = 0
        for b in bytes {
            if n == limit {
                out += "…(\(bytes.count) bytes)"
                break
            }
            n += 1
            switch b {
            case UInt8(ascii: "\\"): out += "\\\\"
            case 0x20...0x7E: out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = String(b, radix: 16, uppercase: false)
                out += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    public static func escape(_ s: String, limit: Int = defaultLimit) -> String {
        escape(bytes: Array(s.utf8), limit: limit)
    }
}

/// The bytes of a fixed-size C char array up to its first NUL.
func fixedBytes<T>(_ tuple: T) -> [UInt8] {
    withUnsafeBytes(of: tuple) { raw in Array(raw.prefix(while: { $0 != 0 })) }
}

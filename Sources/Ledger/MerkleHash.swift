import Crypto
import Foundation

/// A SHA-256 hash naming a leaf, an interior node or the root of an RFC 6962 / RFC 9162 Merkle tree.
public struct MerkleHash: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    /// Size of a hash in bytes (SHA-256).
    public static let size = 32

    /// The 32 bytes of the hash.
    public let bytes: [UInt8]

    /// The hash with these bytes, or nil unless there are exactly 32 of them.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == MerkleHash.size else { return nil }
        self.bytes = Array(bytes)
    }

    init(digest: SHA256Digest) {
        bytes = Array(digest)
    }

    /// The hash whose standard base64 (RFC 4648 section 4, padded) is `base64`; nil if malformed.
    public init?(base64: String) {
        guard let raw = Base64.decode(base64) else { return nil }
        self.init(bytes: raw)
    }

    /// The hash whose hex encoding (64 digits, either case) is `hex`; nil if malformed.
    public init?(hex: String) {
        guard let raw = Hex.decode(hex) else { return nil }
        self.init(bytes: raw)
    }

    public var data: Data { Data(bytes) }
    /// Lowercase hex, 64 digits.
    public var hex: String { Hex.encode(bytes) }
    /// Standard padded base64 (44 characters), as in checkpoints and tlog.
    public var base64: String { Base64.encode(bytes) }
    public var description: String { hex }

    public static func < (a: MerkleHash, b: MerkleHash) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    // Codable as a base64 string, as tlog's Hash is in JSON.
    public init(from decoder: any Decoder) throws {
        let s = try decoder.singleValueContainer().decode(String.self)
        guard let h = MerkleHash(base64: s) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "malformed hash"))
        }
        self = h
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(base64)
    }
}

/// The RFC 6962 hashing strategy (RFC 6962 section 2.1, RFC 9162 section 2.1.1), SHA-256.
public enum RFC6962 {
    /// MTH({}) = SHA-256() = e3b0c442 98fc1c14 9afbf4c8 996fb924 27ae41e4 649b934c a495991b 7852b855.
    public static let emptyRoot = MerkleHash(digest: SHA256.hash(data: [UInt8]()))

    /// Leaf hash: SHA-256(0x00 || entry).
    public static func leafHash(_ entry: some DataProtocol) -> MerkleHash {
        var h = SHA256()
        h.update(data: [0x00])
        h.update(data: entry)
        return MerkleHash(digest: h.finalize())
    }

    /// Interior node hash: SHA-256(0x01 || left || right), each child 32 bytes.
    public static func nodeHash(_ left: MerkleHash, _ right: MerkleHash) -> MerkleHash {
        var buf = [UInt8]()
        buf.reserveCapacity(1 + 2 * MerkleHash.size)
        buf.append(0x01)
        buf.append(contentsOf: left.bytes)
        buf.append(contentsOf: right.bytes)
        return MerkleHash(digest: SHA256.hash(data: buf))
    }
}

/// Standard base64 (RFC 4648 section 4) with padding, decoded strictly: no whitespace, no missing
/// or extra padding, and no non-zero bits after the last byte (RFC 4648 section 3.5), so every
/// byte string has exactly one accepted encoding.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [UInt8] = {
        var r = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { r[Int(c)] = UInt8(i) }
        return r
    }()

    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        let b = Array(bytes)
        var out = [UInt8]()
        out.reserveCapacity((b.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= b.count {
            let v = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2])
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)], alphabet[Int(v & 63)]]
            i += 3
        }
        switch b.count - i {
        case 1:
            let v = UInt32(b[i]) << 16
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)], 61, 61]
        case 2:
            let v = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)], 61]
        default: break
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The decoded bytes, or nil if `s` is not canonical padded standard base64.
    public static func decode(_ s: String) -> [UInt8]? {
        let c = Array(s.utf8)
        guard c.count % 4 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(c.count / 4 * 3)
        var i = 0
        while i < c.count {
            let last = i + 4 == c.count
            let pad = last ? (c[i + 3] == 61 ? (c[i + 2] == 61 ? 2 : 1) : 0) : 0
            var v: UInt32 = 0
            for j in 0..<(4 - pad) {
                let d = reverse[Int(c[i + j])]
                guard d != 0xFF else { return nil }
                v = v << 6 | UInt32(d)
            }
            switch pad {
            case 0:
                out += [UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
            case 1:  // 18 bits: 2 bytes and 2 zero bits
                guard v & 0x3 == 0 else { return nil }
                out += [UInt8(v >> 10 & 0xFF), UInt8(v >> 2 & 0xFF)]
            default:  // 12 bits: 1 byte and 4 zero bits
                guard v & 0xF == 0 else { return nil }
                out.append(UInt8(v >> 4 & 0xFF))
            }
            i += 4
        }
        return out
    }
}

/// Lowercase hex.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out = [UInt8]()
        for b in bytes { out += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes hex of either case; nil on an odd length or a non-hex character.
    public static func decode(_ s: String) -> [UInt8]? {
        let c = Array(s.utf8)
        guard c.count % 2 == 0 else { return nil }
        func nibble(_ x: UInt8) -> UInt8? {
            switch x {
            case 0x30...0x39: return x - 0x30
            case 0x61...0x66: return x - 0x61 + 10
            case 0x41...0x46: return x - 0x41 + 10
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(c.count / 2)
        var i = 0
        while i < c.count {
            guard let hi = nibble(c[i]), let lo = nibble(c[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

/// A transparency log checkpoint: the note text of C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint).
///
///     <origin>\n
///     <size, ASCII decimal, no leading zeroes>\n
///     <root hash, standard padded base64>\n
///     <extension line>\n ...   (optional, each non-empty)
public struct Checkpoint: Hashable, Sendable, CustomStringConvertible {
    /// The log's identity, e.g. "hospital.example/dicom-bridge". Non-empty, one line.
    public var origin: String
    /// Number of leaves in the tree.
    public var size: UInt64
    /// RFC 6962 root of the tree of `size` leaves.
    public var rootHash: MerkleHash
    /// Opaque extra lines (NOT RECOMMENDED by the spec); each non-empty, without newline.
    public var extensionLines: [String]

    public init(origin: String, size: UInt64, rootHash: MerkleHash, extensionLines: [String] = []) {
        self.origin = origin
        self.size = size
        self.rootHash = rootHash
        self.extensionLines = extensionLines
    }

    /// The note text: every line, the last one included, ends in "\n".
    public func text() -> String {
        ([origin, String(size), rootHash.base64] + extensionLines).map { $0 + "\n" }.joined()
    }

    public var description: String { text() }

    /// Parses checkpoint note text (without signature lines). Rejects anything not in the exact
    /// form `text()` writes: a missing final newline, an empty line, a size with a sign or leading
    /// zero, a root that is not canonical base64 of 32 bytes.
    public static func parse(_ text: String) throws -> Checkpoint {
        // Work on UTF-8 bytes: "\n" is always a line break, whatever follows it.
        let bytes = Array(text.utf8)
        guard !bytes.contains(where: { $0 < 0x20 && $0 != 0x0A }) else { throw CheckpointError.malformed("control character") }
        guard bytes.last == 0x0A else { throw CheckpointError.malformed("text does not end in a newline") }
        let lines = bytes.dropLast().split(separator: 0x0A, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard lines.count >= 3 else { throw CheckpointError.malformed("fewer than three lines") }
        guard lines.allSatisfy({ !$0.isEmpty }) else { throw CheckpointError.malformed("empty line") }
        let sizeText = lines[1]
        guard sizeText.utf8.allSatisfy({ (0x30...0x39).contains($0) }), sizeText == "0" || !sizeText.hasPrefix("0"),
              let size = UInt64(sizeText)
        else { throw CheckpointError.malformed("tree size \"\(sizeText)\" is not a decimal without leading zeroes") }
        guard let root = MerkleHash(base64: lines[2]) else {
            throw CheckpointError.malformed("root hash \"\(lines[2])\" is not base64 of 32 bytes")
        }
        return Checkpoint(origin: lines[0], size: size, rootHash: root, extensionLines: Array(lines[3...]))
    }
}

public enum CheckpointError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)

    public var description: String {
        switch self {
        case let .malformed(why): return "malformed checkpoint: \(why)"
        }
    }
}

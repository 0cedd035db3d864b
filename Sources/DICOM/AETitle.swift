/// An Application Entity title (PS3.5 6.2, VR AE): 1 to 16 characters of the default character
/// repertoire without backslash or control characters; leading and trailing spaces are not significant.
public struct AETitle: Hashable, Sendable, CustomStringConvertible, Codable {
    public let value: String

    public init?(_ raw: String) {
        let trimmed = raw.trimmingCharacters(in: " ")
        guard !trimmed.isEmpty, trimmed.utf8.count <= 16 else { return nil }
        for scalar in trimmed.unicodeScalars {
            guard scalar.value >= 0x20, scalar.value < 0x7f, scalar != "\\" else { return nil }
        }
        value = trimmed
    }

    public var description: String { value }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let ae = AETitle(raw) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid AE title '\(raw)'"))
        }
        self = ae
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(value)
    }
}

extension String {
    func trimmingCharacters(in c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s = s.dropFirst() }
        while s.last == c { s = s.dropLast() }
        return String(s)
    }
}

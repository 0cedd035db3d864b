/// The File Meta Information group (PS3.10 7.1): preamble, "DICM" prefix and group 0002,
/// always in Explicit VR Little Endian whatever the dataset's transfer syntax.
public struct FileMetaInformation: Sendable, Equatable {
    public var mediaStorageSOPClassUID: String
    public var mediaStorageSOPInstanceUID: String
    public var transferSyntaxUID: String
    public var implementationClassUID: String = UID.implementationClass
    public var implementationVersionName: String = UID.implementationVersionName
    public var sourceApplicationEntityTitle: String?

    public init(sopClassUID: String, sopInstanceUID: String, transferSyntaxUID: String, sourceAETitle: String?) {
        mediaStorageSOPClassUID = sopClassUID
        mediaStorageSOPInstanceUID = sopInstanceUID
        self.transferSyntaxUID = transferSyntaxUID
        sourceApplicationEntityTitle = sourceAETitle
    }

    /// The 128-byte preamble, "DICM" and the encoded group 0002, ready to be followed by the dataset.
    public func encoded() -> [UInt8] {
        var group: [UInt8] = []
        // (0002,0001) File Meta Information Version, OB, 00\01.
        appendOB(&group, element: 0x0001, [0x00, 0x01])
        appendString(&group, element: 0x0002, vr: "UI", mediaStorageSOPClassUID, pad: 0)
        appendString(&group, element: 0x0003, vr: "UI", mediaStorageSOPInstanceUID, pad: 0)
        appendString(&group, element: 0x0010, vr: "UI", transferSyntaxUID, pad: 0)
        appendString(&group, element: 0x0012, vr: "UI", implementationClassUID, pad: 0)
        appendString(&group, element: 0x0013, vr: "SH", implementationVersionName, pad: 0x20)
        if let ae = sourceApplicationEntityTitle, !ae.isEmpty {
            appendString(&group, element: 0x0016, vr: "AE", ae, pad: 0x20)
        }
        var out = [UInt8](repeating: 0, count: 128)
        out += Array("DICM".utf8)
        // (0002,0000) File Meta Information Group Length, UL: the bytes that follow it.
        out += [0x02, 0x00, 0x00, 0x00] + Array("UL".utf8) + le16(4) + le32(UInt32(group.count))
        out += group
        return out
    }

    private func appendString(_ out: inout [UInt8], element: UInt16, vr: String, _ value: String, pad: UInt8) {
        var bytes = Array(value.utf8)
        if bytes.count % 2 == 1 { bytes.append(pad) }
        out += [0x02, 0x00] + le16(element) + Array(vr.utf8) + le16(UInt16(bytes.count)) + bytes
    }

    private func appendOB(_ out: inout [UInt8], element: UInt16, _ value: [UInt8]) {
        out += [0x02, 0x00] + le16(element) + Array("OB".utf8) + [0, 0] + le32(UInt32(value.count)) + value
    }
}

@inline(__always) func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
@inline(__always) func le32(_ v: UInt32) -> [UInt8] {
    [UInt8(v & 0xff), UInt8((v >> 8) & 0xff), UInt8((v >> 16) & 0xff), UInt8(v >> 24)]
}

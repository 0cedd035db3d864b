import CDcmtk
import DICOM
import Foundation

/// A DICOM dataset held by DCMTK. Not thread safe; each owner uses its own.
public final class Dataset {
    let handle: OpaquePointer
    private let owned: Bool

    public init() {
        guard let h = cdcm_dataset_new() else { fatalError("out of memory allocating a DICOM dataset") }
        handle = h
        owned = true
    }

    /// A dataset lent by the shim for the duration of a callback: never kept beyond it.
    init(borrowing handle: OpaquePointer) {
        self.handle = handle
        owned = false
    }

    deinit { if owned { cdcm_dataset_free(handle) } }

    /// Loads a Part 10 file; with `untilPixelData`, stops before (7FE0,0010): enough to index.
    public static func load(path: String, untilPixelData: Bool = true) throws -> Dataset {
        let ds = Dataset()
        try dcmtk { cdcm_dataset_load_file(ds.handle, path, untilPixelData ? 1 : 0, $0) }
        return ds
    }

    /// Decodes every string to UTF-8 following Specific Character Set (0008,0005).
    public func convertToUTF8() throws {
        try dcmtk { cdcm_dataset_convert_to_utf8(handle, $0) }
    }

    /// The value of a top-level element (multiple values joined by backslash), nil when absent.
    public func string(_ tag: Tag) -> String? {
        var buffer = [CChar](repeating: 0, count: 1024)
        var found = cdcm_dataset_get_string(handle, tag.rawValue, &buffer, buffer.count)
        if found != 0, strlen(buffer) == buffer.count - 1 {
            // Long value: read again with room enough (a 64 KiB text is the practical ceiling here).
            buffer = [CChar](repeating: 0, count: 1 << 16)
            found = cdcm_dataset_get_string(handle, tag.rawValue, &buffer, buffer.count)
        }
        guard found != 0 else { return nil }
        return String(cString: buffer)
    }

    /// The raw bytes of a top-level string element as the dataset holds them (no character set
    /// decoding), nil when absent.
    public func rawString(_ tag: Tag) -> [UInt8]? {
        var buffer = [CChar](repeating: 0, count: 1 << 16)
        guard cdcm_dataset_get_string(handle, tag.rawValue, &buffer, buffer.count) != 0 else { return nil }
        return buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
    }

    public func set(_ tag: Tag, _ value: String) throws {
        try dcmtk { cdcm_dataset_put_string(handle, tag.rawValue, value, $0) }
    }

    /// Inserts an empty element: a zero-length value, or a sequence without items.
    public func setEmpty(_ tag: Tag) throws {
        try dcmtk { cdcm_dataset_put_empty(handle, tag.rawValue, $0) }
    }

    /// The top-level elements' tags and VRs, in order.
    public var elements: [(tag: Tag, vr: String)] {
        final class Box { var items: [(tag: Tag, vr: String)] = [] }
        let box = Box()
        withExtendedLifetime(box) {
            cdcm_dataset_for_each(handle, { ctx, tag, vr in
                let box = Unmanaged<Box>.fromOpaque(ctx!).takeUnretainedValue()
                box.items.append((Tag(rawValue: tag), String(cString: vr!)))
            }, Unmanaged.passUnretained(box).toOpaque())
        }
        return box.items
    }
}

/// What a Part 10 file's File Meta Information says it holds.
public struct FileMetaSummary: Sendable {
    public var sopClassUID: String
    public var sopInstanceUID: String
    public var transferSyntaxUID: String

    public static func read(path: String) throws -> FileMetaSummary {
        var meta = cdcm_file_meta()
        try dcmtk { cdcm_read_file_meta(path, &meta, $0) }
        return FileMetaSummary(sopClassUID: fixedString(meta.sop_class_uid),
                               sopInstanceUID: fixedString(meta.sop_instance_uid),
                               transferSyntaxUID: fixedString(meta.transfer_syntax_uid))
    }
}

public enum DcmtkDictionary {
    public static func isKnownTransferSyntax(_ uid: String) -> Bool { cdcm_transfer_syntax_known(uid) != 0 }
    public static func isStorageSOPClass(_ uid: String) -> Bool { cdcm_is_storage_sop_class(uid) != 0 }

    /// Process-wide DCMTK set-up (codecs, Nagle off on every socket, DCMTK's own log level).
    /// 0 trace ... 3 warn, 4 error.
    public static func initialize(logLevel: Int32 = 4) { cdcm_initialize(logLevel) }
}

import Crypto
import DICOM
import Foundation

/// One instance on its way in: a temporary file that receives the File Meta group and then the
/// dataset bytes exactly as they arrive, hashed in the same pass (SHA-256 of the whole stored file).
///
/// Not thread safe: one association's thread writes it from start to end.
public final class IncomingInstance: @unchecked Sendable {
    public let sopClassUID: String
    public let sopInstanceUID: String
    public let transferSyntaxUID: String
    public let callingAETitle: String
    public let receivedAt: Date
    public let tempPath: String
    public let origin: InstanceOrigin
    private var fd: Int32
    private var hasher = SHA256()
    private var buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    public private(set) var size: Int64 = 0
    /// The first write error, if any; later bytes are dropped.
    public private(set) var failure: ArchiveError?
    public private(set) var digest: String?

    static let bufferSize = 1 << 20

    /// With `writeMeta`, the file starts with our own File Meta group (a received dataset); without,
    /// the caller writes a whole Part 10 file (an instance imported bit for bit).
    init(tempPath: String, sopClassUID: String, sopInstanceUID: String, transferSyntaxUID: String,
         callingAETitle: String, origin: InstanceOrigin = .dicom, writeMeta: Bool = true) throws {
        self.origin = origin
        self.tempPath = tempPath
        self.sopClassUID = sopClassUID
        self.sopInstanceUID = sopInstanceUID
        self.transferSyntaxUID = transferSyntaxUID
        self.callingAETitle = callingAETitle
        self.receivedAt = Date()
        fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 { throw ArchiveError.errno("cannot create \(tempPath)") }
        buffer = .allocate(byteCount: Self.bufferSize, alignment: 16)
        if writeMeta {
            let meta = FileMetaInformation(sopClassUID: sopClassUID, sopInstanceUID: sopInstanceUID,
                                           transferSyntaxUID: transferSyntaxUID, sourceAETitle: callingAETitle)
            meta.encoded().withUnsafeBytes { _ = write($0) }
        }
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(tempPath)
        }
        buffer.deallocate()
    }

    /// Appends bytes. Returns false once writing has failed (the failure is kept in `failure`).
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard failure == nil, fd >= 0 else { return false }
        hasher.update(bufferPointer: bytes)
        size += Int64(bytes.count)
        var offset = 0
        while offset < bytes.count {
            let n = min(bytes.count - offset, Self.bufferSize - buffered)
            (buffer.baseAddress! + buffered).copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
            buffered += n
            offset += n
            if buffered == Self.bufferSize && !flush() { return false }
        }
        return true
    }

    private func flush() -> Bool {
        var done = 0
        while done < buffered {
            let n = Foundation.write(fd, buffer.baseAddress! + done, buffered - done)
            if n < 0 {
                if errno == EINTR { continue }
                failure = ArchiveError.errno("cannot write \(tempPath)")
                return false
            }
            done += n
        }
        buffered = 0
        return true
    }

    /// Flushes, fsyncs and closes the file; returns its SHA-256 (hex). The file stays in tmp/.
    public func seal() throws -> String {
        if let digest { return digest }
        if let failure { throw failure }
        guard flush() else { throw failure! }
        if fdatasync(fd) != 0 {
            let error = ArchiveError.errno("cannot sync \(tempPath)")
            failure = error
            throw error
        }
        close(fd)
        fd = -1
        let hex = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        digest = hex
        return hex
    }

    /// Drops the instance: closes and removes the temporary file.
    public func discard() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(tempPath)
    }
}

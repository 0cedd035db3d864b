import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Musl)
private let systemWrite = Musl.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif

/// Writing certificates (mode 0644) and private keys (mode 0600). A file appears whole or not at
/// all (written to a temporary file in the same folder, then linked or renamed into place), and an
/// existing file is only replaced when `overwrite` is true.
public enum PKIFiles {
    public static let certificateMode: mode_t = 0o644
    public static let privateKeyMode: mode_t = 0o600

    /// Writes `pair` to `certificatePath` and `keyPath`, after checking that neither exists
    /// (unless `overwrite`), so that a refusal leaves nothing half written. Creates missing folders.
    public static func write(_ pair: CertificateAndKey, certificatePath: String, keyPath: String,
                             overwrite: Bool = false) throws {
        if !overwrite {
            for path in [certificatePath, keyPath] where FileManager.default.fileExists(atPath: path) {
                throw PKIError.fileExists(path)
            }
        }
        try write(pair.privateKeyPEM, to: keyPath, mode: privateKeyMode, overwrite: overwrite)
        try write(pair.certificatePEM, to: certificatePath, mode: certificateMode, overwrite: overwrite)
    }

    /// Writes `text` to `path` with exactly `mode`, atomically.
    public static func write(_ text: String, to path: String, mode: mode_t, overwrite: Bool = false) throws {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw PKIError.writeFailed(path: path, reason: "cannot create the folder \(directory): \(error.localizedDescription)")
        }
        if !overwrite && FileManager.default.fileExists(atPath: path) { throw PKIError.fileExists(path) }
        let temporary = directory + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: .min ... .max))"
        func failure(_ what: String) -> PKIError {
            PKIError.writeFailed(path: path, reason: "\(what): \(String(cString: strerror(errno)))")
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw failure("cannot create \(temporary)") }
        var ok = false
        defer { if !ok { unlink(temporary) } }
        do {
            defer { close(fd) }
            guard fchmod(fd, mode) == 0 else { throw failure("chmod") }
            let bytes = Array(text.utf8)
            var written = 0
            while written < bytes.count {
                let n = bytes[written...].withUnsafeBytes { systemWrite(fd, $0.baseAddress, $0.count) }
                if n < 0 { if errno == EINTR { continue }; throw failure("write") }
                written += n
            }
            guard fsync(fd) == 0 else { throw failure("fsync") }
        }
        if overwrite {
            guard rename(temporary, path) == 0 else { throw failure("rename") }
        } else {
            guard link(temporary, path) == 0 else {
                if errno == EEXIST { throw PKIError.fileExists(path) }
                throw failure("link")
            }
            unlink(temporary)
        }
        ok = true
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}

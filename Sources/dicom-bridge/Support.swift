import ArgumentParser
import Foundation

/// Files under the given paths, recursively, in a stable order.
enum FileWalker {
    static func files(_ paths: [String]) -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        for path in paths {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
                FileHandle.standardError.write(Data("warning: \(path) does not exist\n".utf8))
                continue
            }
            if !isDir.boolValue { out.append(path); continue }
            guard let e = fm.enumerator(atPath: path) else { continue }
            var found: [String] = []
            while let rel = e.nextObject() as? String {
                let full = path + "/" + rel
                var d: ObjCBool = false
                if fm.fileExists(atPath: full, isDirectory: &d), !d.boolValue, !rel.hasSuffix(".json") { found.append(full) }
            }
            out += found.sorted()
        }
        return out
    }
}

final class WorkQueue: @unchecked Sendable {
    private var items: [String]
    private var index = 0
    private let lock = NSLock()
    init(_ items: [String]) { self.items = items }
    func next() -> String? {
        lock.lock(); defer { lock.unlock() }
        guard index < items.count else { return nil }
        index += 1
        return items[index - 1]
    }
}

final class LockedList<T>: @unchecked Sendable {
    private var items: [T] = []
    private let lock = NSLock()
    func append(_ t: T) { lock.lock(); items.append(t); lock.unlock() }
    var all: [T] { lock.lock(); defer { lock.unlock() }; return items }
}

/// A progress bar on standard error when it is a terminal; a line every 10% otherwise.
final class Progress: @unchecked Sendable {
    private let total: Int
    private let label: String
    private let quiet: Bool
    private let tty = isatty(STDERR_FILENO) == 1
    private var done = 0
    private var lastPercent = -1
    private let lock = NSLock()
    private let start = Date()

    init(total: Int, label: String, quiet: Bool) {
        self.total = total
        self.label = label
        self.quiet = quiet
    }

    func advance() {
        lock.lock(); defer { lock.unlock() }
        done += 1
        guard !quiet else { return }
        let percent = total == 0 ? 100 : done * 100 / total
        if tty {
            let width = 30
            let filled = width * done / max(total, 1)
            let rate = Double(done) / max(Date().timeIntervalSince(start), 0.001)
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(done)/\(total) \(String(format: "%.0f", rate))/s".utf8))
        } else if percent / 10 != lastPercent / 10 {
            FileHandle.standardError.write(Data("\(label): \(done)/\(total) (\(percent)%)\n".utf8))
        }
        lastPercent = percent
    }

    func finish() {
        if tty && !quiet { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// Runs `body`, turning its errors into "error: <description>" on standard error and exit code 1
/// (an ExitCode passes through; a ValidationError shows its message).
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as ValidationError {
        throw fail(e.message)
    } catch {
        throw fail("\(error)")
    }
}

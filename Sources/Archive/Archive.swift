import Foundation
import GRDB
import Logging

/// The durable, content-addressed instance store and its SQLite index.
///
/// Layout under the home:
///   index.sqlite              the index (WAL mode, synchronous=FULL)
///   store/ab/<sha256>.dcm     every stored Part 10 file, named by the SHA-256 of its bytes
///   tmp/                      instances on their way in; cleaned (or completed) at start
///
/// A C-STORE is answered Success only once `commit` returns: the file is fsync'd, its staged name
/// in tmp/ is durable, and the index row (with whatever the commit hook adds: the ledger entry) is
/// committed; the move to its content address follows, completed at start-up after a crash. Concurrent commits are batched (group commit): one directory sync and one SQLite
/// transaction serve every instance that arrived meanwhile.
public final class Archive: @unchecked Sendable {
    public let home: URL
    public let database: DatabasePool
    let logger: Logger
    let storeDir: String
    let tmpDir: String
    private let committer: GroupCommitter

    /// Work done inside each commit transaction, after the index rows: the ledger appends its
    /// entries here so that the index and the log can never disagree. Set before serving.
    public typealias CommitHook = @Sendable (Database, [StoreOutcome]) throws -> Void
    /// Work for one instance in its commit transaction, after the index rows and the hook.
    public typealias AfterIndex = @Sendable (Database, StoreOutcome) throws -> Void

    public init(home: URL, logger: Logger, commitHook: CommitHook? = nil) throws {
        self.home = home
        self.logger = logger
        storeDir = home.appendingPathComponent("store").path
        tmpDir = home.appendingPathComponent("tmp").path
        for dir in [home.path, storeDir, tmpDir] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        var config = Configuration()
        config.prepareDatabase { db in
            // WAL with synchronous=FULL: a committed transaction survives power loss.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        config.busyMode = .timeout(30)
        database = try DatabasePool(path: home.appendingPathComponent("index.sqlite").path, configuration: config)
        var migrator = DatabaseMigrator()
        Schema.register(&migrator)
        Archive.extraMigrations.withLock { extra in extra.forEach { $0(&migrator) } }
        // GRDB's DatabasePool sets synchronous=NORMAL on its writer when it enables WAL, after
        // prepareDatabase: set FULL again, so that a commit is on disk before we answer Success.
        try database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        try migrator.migrate(database)
        // One directory per first hash byte, made once, so that storing never has to.
        for byte in 0..<256 {
            let dir = storeDir + "/" + String(format: "%02x", byte)
            if mkdir(dir, 0o755) != 0 && errno != EEXIST { throw ArchiveError.errno("cannot create \(dir)") }
        }
        committer = GroupCommitter(logger: logger)
        committer.archive = self
        committer.hook = commitHook
        try recover()
        committer.start()
    }

    /// Other modules' migrations (the ledger's tables live in the same database, so that one
    /// transaction covers both). Register before opening an archive.
    public static func registerMigrations(_ register: @escaping @Sendable (inout DatabaseMigrator) -> Void) {
        extraMigrations.withLock { $0.append(register) }
    }
    private static let extraMigrations = LockedValue<[@Sendable (inout DatabaseMigrator) -> Void]>([])

    public func setCommitHook(_ hook: CommitHook?) { committer.hook = hook }

    /// Stops the committer after the commits in flight. The archive must not be used after.
    public func close() { committer.stop() }

    // MARK: - Receiving

    /// Starts receiving one instance: a temporary file holding the File Meta group for it.
    public func beginReceive(sopClassUID: String, sopInstanceUID: String, transferSyntaxUID: String,
                             callingAETitle: String) throws -> IncomingInstance {
        let path = tmpDir + "/" + UUID().uuidString.lowercased() + ".part"
        return try IncomingInstance(tempPath: path, sopClassUID: sopClassUID, sopInstanceUID: sopInstanceUID,
                                    transferSyntaxUID: transferSyntaxUID, callingAETitle: callingAETitle)
    }

    /// Starts storing a whole Part 10 file made elsewhere, bit for bit (no File Meta of ours):
    /// an instance fetched from a peer, or a manifest this bridge built with its own File Meta.
    public func beginImport(sopClassUID: String, sopInstanceUID: String, transferSyntaxUID: String,
                            sourceName: String, origin: InstanceOrigin) throws -> IncomingInstance {
        let path = tmpDir + "/" + UUID().uuidString.lowercased() + ".part"
        return try IncomingInstance(tempPath: path, sopClassUID: sopClassUID, sopInstanceUID: sopInstanceUID,
                                    transferSyntaxUID: transferSyntaxUID, callingAETitle: sourceName,
                                    origin: origin, writeMeta: false)
    }

    /// Makes a received instance durable and indexed. Blocks until its group commit is done.
    /// `afterIndex` runs in the same transaction, once the instance's rows are written.
    public func commit(_ incoming: IncomingInstance, attributes: InstanceAttributes,
                       afterIndex: AfterIndex? = nil) throws -> StoreOutcome {
        let sha = try incoming.seal()
        // Name the sealed file by its hash inside tmp/ so that a crash after the index commit can be
        // completed at start; the uuid keeps concurrent identical instances apart.
        let staged = tmpDir + "/" + sha + "." + UUID().uuidString.lowercased() + ".dcm"
        if rename(incoming.tempPath, staged) != 0 {
            let error = ArchiveError.errno("cannot stage \(incoming.tempPath)")
            incoming.discard()
            throw error
        }
        let relative = Archive.relativePath(sha256: sha)
        let instance = StoredInstance(
            attributes: attributes, sha256: sha, size: incoming.size, transferSyntaxUID: incoming.transferSyntaxUID,
            callingAETitle: incoming.callingAETitle, receivedAt: incoming.receivedAt, path: relative, version: 0,
            origin: incoming.origin)
        return try committer.submit(PendingCommit(instance: instance, stagedPath: staged, afterIndex: afterIndex))
    }

    /// Stores a whole Part 10 file already written and verified elsewhere in the home (a fetched
    /// instance whose SHA-256 was checked on the way in): syncs it, moves it into tmp/ under its
    /// staged name and commits it like a received instance (`synced`: the caller already synced
    /// the file's data). The file is consumed.
    public func commitVerifiedFile(at path: String, sha256: String, size: Int64, transferSyntaxUID: String,
                                   sourceName: String, origin: InstanceOrigin, attributes: InstanceAttributes,
                                   synced: Bool = false, afterIndex: AfterIndex? = nil) throws -> StoreOutcome {
        if !synced {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { throw ArchiveError.errno("cannot open \(path)") }
            let ok = fdatasync(fd) == 0
            Glibc.close(fd)
            if !ok { throw ArchiveError.errno("cannot sync \(path)") }
        }
        let staged = tmpDir + "/" + sha256 + "." + UUID().uuidString.lowercased() + ".dcm"
        if rename(path, staged) != 0 { throw ArchiveError.errno("cannot stage \(path)") }
        let instance = StoredInstance(
            attributes: attributes, sha256: sha256, size: size, transferSyntaxUID: transferSyntaxUID,
            callingAETitle: sourceName, receivedAt: Date(), path: Archive.relativePath(sha256: sha256), version: 0,
            origin: origin)
        return try committer.submit(PendingCommit(instance: instance, stagedPath: staged, afterIndex: afterIndex))
    }

    static func relativePath(sha256: String) -> String {
        "store/" + sha256.prefix(2) + "/" + sha256 + ".dcm"
    }

    public func absolutePath(_ relative: String) -> String { home.path + "/" + relative }

    // MARK: - Start-up recovery

    /// Completes or removes what a crash left in tmp/: a staged file whose hash the index holds is
    /// moved into the store (its commit happened); anything else was never acknowledged and goes.
    func recover() throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: tmpDir)) ?? []
        var removed = 0
        var completed = 0
        for name in names {
            let path = tmpDir + "/" + name
            let parts = name.split(separator: ".")
            if parts.count == 3, parts[2] == "dcm", parts[0].count == 64 {
                let sha = String(parts[0])
                let indexed = try database.read { db in
                    try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM instance WHERE sha256 = ?)", arguments: [sha])
                } ?? false
                if indexed {
                    try place(stagedPath: path, sha256: sha)
                    completed += 1
                    continue
                }
            }
            unlink(path)
            removed += 1
        }
        if completed > 0 || removed > 0 {
            try syncDirectory(tmpDir)
            logger.notice("recovered the store after an unclean stop",
                          metadata: ["completed": "\(completed)", "removed-temporary-files": "\(removed)"])
        }
    }

    /// Moves a staged file to its content address (or drops it when those bytes are already there).
    func place(stagedPath: String, sha256: String) throws {
        let final = absolutePath(Archive.relativePath(sha256: sha256))
        if access(final, F_OK) == 0 {
            unlink(stagedPath)
            return
        }
        if rename(stagedPath, final) != 0 { throw ArchiveError.errno("cannot move \(stagedPath) into the store") }
    }

    func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw ArchiveError.errno("cannot open \(path)") }
        defer { Glibc.close(fd) }
        if fsync(fd) != 0 { throw ArchiveError.errno("cannot sync \(path)") }
    }
}

/// A value behind a lock (Swift's Mutex needs macOS 15; this is enough here).
public final class LockedValue<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    public init(_ value: T) { self.value = value }
    public func withLock<R>(_ body: (inout T) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

import Foundation
import GRDB
import Logging

struct PendingCommit {
    var instance: StoredInstance
    var stagedPath: String
    /// Work in the same transaction, after the index rows and the commit hook.
    var afterIndex: Archive.AfterIndex?
}

/// Group commit: association threads submit sealed (fsync'd) instances and wait; one thread takes
/// every instance that is waiting, syncs tmp/ once (the staged names are durable), writes one
/// SQLite transaction (index rows and the commit hook: one sync of the WAL), moves the files to
/// their content addresses, then wakes every submitter with its outcome.
final class GroupCommitter: @unchecked Sendable {
    private final class Ticket {
        let pending: PendingCommit
        var result: Result<StoreOutcome, Error>?
        let done = DispatchSemaphore(value: 0)
        init(_ pending: PendingCommit) { self.pending = pending }
    }

    weak var archive: Archive?
    var hook: Archive.CommitHook? {
        get { hookBox.withLock { $0 } }
        set { hookBox.withLock { $0 = newValue } }
    }
    private let hookBox = LockedValue<Archive.CommitHook?>(nil)
    private let logger: Logger
    private let condition = NSCondition()
    private var queue: [Ticket] = []
    private var stopping = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    /// The largest batch a transaction takes; more waits for the next one.
    static let maxBatch = 256

    init(logger: Logger) { self.logger = logger }

    func start() {
        let t = Thread { [weak self] in self?.run() }
        t.name = "group-commit"
        thread = t
        t.start()
    }

    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
        if thread != nil { finished.wait() }
        thread = nil
    }

    func submit(_ pending: PendingCommit) throws -> StoreOutcome {
        let ticket = Ticket(pending)
        condition.lock()
        if stopping {
            condition.unlock()
            unlink(pending.stagedPath)
            throw ArchiveError(.io, "the archive is shutting down")
        }
        queue.append(ticket)
        condition.signal()
        condition.unlock()
        ticket.done.wait()
        return try ticket.result!.get()
    }

    private func run() {
        defer { finished.signal() }
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping {
                condition.unlock()
                return
            }
            let batch = Array(queue.prefix(Self.maxBatch))
            queue.removeFirst(batch.count)
            condition.unlock()
            process(batch)
        }
    }

    private func process(_ batch: [Ticket]) {
        guard let archive else {
            for t in batch {
                t.result = .failure(ArchiveError(.io, "the archive is closed"))
                t.done.signal()
            }
            return
        }
        do {
            // 1. The staged names must be durable before the index says the instances exist.
            try archive.syncDirectory(archive.tmpDir)
            // 2. One transaction for the whole batch: index rows, then the hook (ledger entries).
            let hook = self.hook
            let outcomes = try archive.database.write { db -> [StoreOutcome] in
                var outcomes: [StoreOutcome] = []
                outcomes.reserveCapacity(batch.count)
                for ticket in batch { outcomes.append(try Index.insert(ticket.pending.instance, db)) }
                let fresh = outcomes.filter { if case .duplicate = $0 { return false } else { return true } }
                if let hook, !fresh.isEmpty { try hook(db, fresh) }
                for (ticket, outcome) in zip(batch, outcomes) { try ticket.pending.afterIndex?(db, outcome) }
                return outcomes
            }
            // 3. Move the files to their content addresses. No directory sync is waited for: each
            //    file is already durable under its staged name in tmp/, and a rename is atomic, so
            //    after a crash the file is either in the store or still staged, where start-up
            //    recovery moves it (its hash is in the index).
            for (ticket, outcome) in zip(batch, outcomes) {
                try archive.place(stagedPath: ticket.pending.stagedPath, sha256: outcome.instance.sha256)
            }
            for (ticket, outcome) in zip(batch, outcomes) {
                ticket.result = .success(outcome)
                ticket.done.signal()
            }
        } catch {
            // Nothing of this batch was acknowledged. Files staged whose rows did not commit are
            // removed; a failure after the commit leaves them staged, completed at next start.
            let committed = (try? archive.database.read { db in
                try batch.map { t in
                    try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM instance WHERE sha256 = ?)",
                                      arguments: [t.pending.instance.sha256]) ?? false
                }
            }) ?? Array(repeating: true, count: batch.count)
            let archiveError = (error as? ArchiveError) ?? ArchiveError(Self.isDiskFull(error) ? .outOfSpace : .database,
                                                                        "index commit failed: \(error)")
            logger.error("group commit failed", metadata: ["instances": "\(batch.count)", "error": "\(archiveError)"])
            for (ticket, isCommitted) in zip(batch, committed) {
                if !isCommitted { unlink(ticket.pending.stagedPath) }
                ticket.result = .failure(archiveError)
                ticket.done.signal()
            }
        }
    }

    static func isDiskFull(_ error: Error) -> Bool {
        if let db = error as? DatabaseError { return db.resultCode == .SQLITE_FULL || db.resultCode == .SQLITE_IOERR }
        return false
    }
}

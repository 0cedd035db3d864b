import Foundation
import GRDB

/// Signs and stores checkpoints of the log as it grows.
public enum CheckpointSigner {
    /// Signs a checkpoint of the current tree and stores it, if the tree grew since the latest
    /// stored checkpoint (or none is stored yet, even for the empty tree); returns the signed
    /// note, or nil if there was nothing new to sign. Run it in a write transaction.
    ///
    /// Before signing, the latest stored checkpoint's root is recomputed from the log: a log that
    /// no longer agrees with what it signed is never signed again (c2sp.org/tlog-checkpoint: a
    /// log MUST NOT sign a checkpoint inconsistent with one it signed before); that throws
    /// `LedgerStoreError.checkpointMismatch`.
    @discardableResult
    public static func signIfGrown(in db: Database, signer: any NoteSigning, origin: String, now: Date) throws -> String? {
        let size = try LedgerStore.treeSize(db)
        if let latest = try LedgerStore.latestCheckpoint(db) {
            if latest.size >= size { return nil }
            let root = try LedgerStore.rootHash(size: latest.size, db)
            guard root == latest.rootHash else {
                throw LedgerStoreError.checkpointMismatch(size: latest.size, checkpointRoot: latest.rootHash, logRoot: root)
            }
        }
        let checkpoint = Checkpoint(origin: origin, size: size, rootHash: try LedgerStore.rootHash(size: size, db))
        try validateOrigin(origin)
        let note = try SignedNote.sign(checkpoint.text(), signers: [signer])
        try LedgerStore.saveCheckpoint(signedNote: note, time: now, db)
        return note
    }

    /// An origin is one non-empty line (c2sp.org/tlog-checkpoint).
    static func validateOrigin(_ origin: String) throws {
        guard !origin.isEmpty, !origin.utf8.contains(where: { $0 < 0x20 }) else {
            throw CheckpointError.malformed("origin \"\(origin)\" is empty or has a control character")
        }
    }
}

import Archive
import Foundation
import GRDB
import Hummingbird
import Ledger
import NIOCore

/// The ledger's read-only HTTP endpoints: the C2SP tlog-tiles layout (`/checkpoint`,
/// `/tile/<L>/<N>[.p/<W>]`, `/tile/entries/<N>[.p/<W>]`) so that anyone can verify the whole log
/// from tiles alone, plus `/key`, `/entry/<N>` and proof endpoints. Served on the plain ledger
/// port and, to peers, on the mutual-TLS peer port. Nothing here names a patient.
public enum LedgerRoutes {
    static func text(_ s: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    /// The latest checkpoint as a signed note, with the cosignatures witnesses gave it.
    public static func checkpointNote(_ db: Database) throws -> String? {
        guard let cp = try LedgerStore.latestCheckpoint(db) else { return nil }
        let lines = try String.fetchAll(db, sql: "SELECT signature_line FROM cosignature WHERE size = ? AND root_hash = ? ORDER BY witness",
                                        arguments: [Int64(cp.size), cp.rootHash.base64])
        return cp.signedNote + lines.joined()
    }

    public static func add<Context: RequestContext>(to router: Router<Context>, archive: Archive, verifierKey key: String) {
        router.get("/checkpoint") { _, _ -> Response in
            guard let note = try await offload({ try archive.database.read { try checkpointNote($0) } }) else {
                return text("no checkpoint signed yet\n", status: .notFound)
            }
            return text(note)
        }
        router.get("/key") { _, _ in text(key + "\n") }
        router.get("/tile/**") { request, _ -> Response in
            let path = String(request.uri.path.dropFirst())  // "tile/..."
            do {
                let tile = try TilePath.parse(path)
                let data = try await offload {
                    try archive.database.read { db -> Data in
                        guard let cp = try LedgerStore.latestCheckpoint(db) else { throw HTTPError(.notFound) }
                        return try TileServer.content(tile, treeSize: cp.size, db)
                    }
                }
                return Response(status: .ok, headers: [.contentType: "application/octet-stream",
                                                       .cacheControl: path.contains(".p/") ? "no-cache" : "max-age=31536000, immutable"],
                                body: .init(byteBuffer: ByteBuffer(bytes: data)))
            } catch let e as HTTPError {
                throw e
            } catch {
                return text("\(error)\n", status: .notFound)
            }
        }
        // One entry's bytes, for a verifier that holds an inclusion proof for it.
        router.get("/entry/:index") { _, context -> Response in
            guard let i = context.parameters.get("index", as: UInt64.self) else { return text("bad index\n", status: .badRequest) }
            guard let data = try await offload({ try archive.database.read { try LedgerStore.entry(at: i, $0) } }) else {
                return text("no entry \(i)\n", status: .notFound)
            }
            return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.get("/proof/inclusion") { request, _ -> Response in
            let q = request.uri.queryParameters
            let reader = LedgerReader(archive: archive, key: key)
            let selector: LedgerReader.Selector
            if let i = q.get("index", as: UInt64.self) { selector = .index(i) }
            else if let s = q.get("sop") { selector = .sop(s) }
            else if let h = q.get("sha256") { selector = .sha256(h) }
            else { return text("give index, sop or sha256\n", status: .badRequest) }
            let size = q.get("size", as: UInt64.self)
            return try await offload {
                var proof: LedgerReader.InclusionProof
                do { proof = try reader.prove(selector) } catch { return text("\(error)\n", status: .notFound) }
                // Against a checkpoint the client already holds, when it names one we signed.
                if let size, size != proof.treeSize {
                    do { proof = try reader.prove(proof.index, size: size) } catch { return text("\(error)\n", status: .notFound) }
                }
                return try json(proof)
            }
        }
        router.get("/proof/consistency") { request, _ -> Response in
            let q = request.uri.queryParameters
            guard let from = q.get("from", as: UInt64.self), let to = q.get("to", as: UInt64.self) else {
                return text("give from and to\n", status: .badRequest)
            }
            return try await offload {
                do { return try json(try LedgerReader(archive: archive, key: key).proveConsistency(from, to)) } catch {
                    return text("\(error)\n", status: .notFound)
                }
            }
        }
    }
}

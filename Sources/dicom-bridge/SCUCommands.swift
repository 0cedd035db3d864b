import ArgumentParser
import Bridge
import DICOM
import DICOMNetwork
import Foundation

struct PeerOptions: ParsableArguments {
    @Argument(help: "The peer's host.") var host: String
    @Argument(help: "The peer's DICOM port.") var port: Int
    @Option(name: .customLong("called-ae"), help: "The peer's AE title.") var calledAE: String
    @Option(name: .customLong("calling-ae"), help: "Our AE title on this association (default DICOM_BRIDGE).")
    var callingAE: String = "DICOM_BRIDGE"
    @Option(help: "Seconds to wait for the peer's answers.") var timeout: Int = 60

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("port \(port) is out of range 1-65535") }
        guard AETitle(calledAE) != nil else { throw ValidationError("--called-ae '\(calledAE)' is not a valid AE title") }
        guard AETitle(callingAE) != nil else { throw ValidationError("--calling-ae '\(callingAE)' is not a valid AE title") }
    }

    var address: PeerAddress {
        var a = PeerAddress(host: host, port: UInt16(port), calledAETitle: calledAE, callingAETitle: callingAE)
        a.acseTimeoutSeconds = Int32(timeout)
        a.dimseTimeoutSeconds = Int32(timeout)
        return a
    }
}

struct Echo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Verify a DICOM peer with C-ECHO.")
    @OptionGroup var peer: PeerOptions
    @Flag(help: "Print JSON.") var json = false

    struct Result: Codable { var ok: Bool; var status: String; var milliseconds: Double; var error: String? }

    func run() throws {
        DcmtkDictionary.initialize()
        let start = Date()
        do {
            let assoc = try Association(peer: peer.address, contexts: [
                ProposedContext(abstractSyntax: UID.verification, transferSyntaxes: TransferSyntax.uncompressed)])
            let status = try assoc.echo()
            assoc.release()
            let ms = Date().timeIntervalSince(start) * 1000
            if json { try printJSON(Result(ok: status.isSuccess, status: status.description, milliseconds: ms)) }
            else { print("C-ECHO \(peer.host):\(peer.port) (\(peer.calledAE)): \(status) in \(String(format: "%.1f", ms)) ms") }
            if !status.isSuccess { throw ExitCode(1) }
        } catch let error as DcmtkError {
            if json { try printJSON(Result(ok: false, status: "", milliseconds: 0, error: error.message)) }
            throw fail("C-ECHO to \(peer.host):\(peer.port) failed: \(error.message)")
        }
    }
}

struct Store: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send DICOM files or folders (recursively) to a peer by C-STORE.",
        discussion: "Files are sent as stored (no transcoding) when the peer accepts their transfer syntax.")

    @OptionGroup var peer: PeerOptions
    @Argument(help: "Files or folders to send.") var paths: [String]
    @Option(help: "Associations in parallel.") var associations: Int = 4
    @Flag(help: "Print a JSON summary.") var json = false

    struct FileResult: Codable { var path: String; var status: String; var error: String? }
    struct Summary: Codable { var sent: Int; var failed: Int; var skipped: Int; var seconds: Double; var failures: [FileResult] }

    func validate() throws {
        guard (1...32).contains(associations) else { throw ValidationError("--associations must be 1-32") }
    }

    func run() throws {
        DcmtkDictionary.initialize()
        var files: [(String, FileMetaSummary)] = []
        var skipped: [FileResult] = []
        for path in FileWalker.files(paths) {
            do { files.append((path, try FileMetaSummary.read(path: path))) }
            catch { skipped.append(FileResult(path: path, status: "skipped", error: "not a DICOM file: \(error)")) }
        }
        if files.isEmpty { throw fail("no DICOM files found in \(paths.joined(separator: " "))") }
        let contexts = Store.contexts(for: files.map(\.1))
        if contexts.count > 128 {
            throw fail("these files need \(contexts.count) presentation contexts, more than one association carries (128); send them in smaller sets")
        }
        let progress = Progress(total: files.count, label: "C-STORE", quiet: json)
        let queue = WorkQueue(files.map(\.0))
        let failures = LockedList<FileResult>()
        let start = Date()
        let group = DispatchGroup()
        for _ in 0..<min(associations, files.count) {
            group.enter()
            Thread.detachNewThread { [peer] in
                defer { group.leave() }
                var assoc: Association?
                while let path = queue.next() {
                    do {
                        if assoc == nil { assoc = try Association(peer: peer.address, contexts: contexts) }
                        let reply = try assoc!.store(path: path)
                        if !reply.status.isSuccess && !reply.status.isWarning {
                            failures.append(FileResult(path: path, status: reply.status.description, error: reply.errorComment))
                        }
                    } catch {
                        failures.append(FileResult(path: path, status: "failed", error: "\(error)"))
                        assoc?.abort()
                        assoc = nil
                    }
                    progress.advance()
                }
                assoc?.release()
            }
        }
        group.wait()
        progress.finish()
        let failed = failures.all
        let summary = Summary(sent: files.count - failed.count, failed: failed.count, skipped: skipped.count,
                              seconds: Date().timeIntervalSince(start), failures: failed + skipped)
        if json {
            try printJSON(summary)
        } else {
            for f in failed + skipped { FileHandle.standardError.write(Data("\(f.path): \(f.status) \(f.error ?? "")\n".utf8)) }
            print("Sent \(summary.sent) of \(files.count) instances in \(String(format: "%.1f", summary.seconds)) s"
                  + (failed.isEmpty ? "" : ", \(failed.count) failed") + (skipped.isEmpty ? "" : ", \(skipped.count) skipped"))
        }
        if !failed.isEmpty { throw ExitCode(1) }
    }

    /// One context per SOP class and stored transfer syntax (sent as is), plus one per SOP class
    /// offering the uncompressed syntaxes, for a peer that refuses the stored one.
    static func contexts(for files: [FileMetaSummary]) -> [ProposedContext] {
        var seen = Set<ProposedContext>()
        var out: [ProposedContext] = []
        func add(_ c: ProposedContext) { if seen.insert(c).inserted { out.append(c) } }
        for f in files { add(ProposedContext(abstractSyntax: f.sopClassUID, transferSyntaxes: [f.transferSyntaxUID])) }
        for f in files where !TransferSyntax.uncompressed.contains(f.transferSyntaxUID) {
            add(ProposedContext(abstractSyntax: f.sopClassUID, transferSyntaxes: TransferSyntax.uncompressed))
        }
        return out
    }
}

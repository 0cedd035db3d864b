import ArgumentParser
import Bridge
import DICOM
import DICOMNetwork
import Foundation

/// What a query or retrieve is about: model, level and keys.
struct IdentifierOptions: ParsableArguments {
    @Option(help: "Information model: study or patient (root).") var model: String = "study"
    @Option(help: "PATIENT, STUDY, SERIES or IMAGE.") var level: String = "STUDY"
    @Option(name: .shortAndLong, help: ArgumentHelp("A key: Keyword=value or gggg,eeee=value; Keyword alone asks for it back.", valueName: "key"))
    var key: [String] = []
    @Option(help: "Shorthand for -k StudyInstanceUID=UID.") var study: String?
    @Option(help: "Shorthand for -k PatientID=ID.") var patient: String?

    func validate() throws {
        guard ["study", "patient"].contains(model) else { throw ValidationError("--model must be study or patient") }
        guard ["PATIENT", "STUDY", "SERIES", "IMAGE"].contains(level.uppercased()) else {
            throw ValidationError("--level must be PATIENT, STUDY, SERIES or IMAGE")
        }
        for k in key where Keyword.tag(String(k.split(separator: "=", maxSplits: 1)[0])) == nil {
            throw ValidationError("unknown key '\(k)': use a keyword such as PatientName or a tag as gggg,eeee")
        }
    }

    func identifier(withDefaults: Bool) throws -> (Dataset, [Tag]) {
        let ds = Dataset()
        let lvl = level.uppercased()
        try ds.set(.queryRetrieveLevel, lvl)
        try ds.set(.specificCharacterSet, "ISO_IR 192")
        var order: [Tag] = []
        func put(_ tag: Tag, _ value: String) throws {
            try ds.set(tag, value)
            if !order.contains(tag) { order.append(tag) }
        }
        if withDefaults { for t in Keyword.defaultReturnKeys(level: lvl) { try put(t, "") } }
        if let study { try put(.studyInstanceUID, study) }
        if let patient { try put(.patientID, patient) }
        for k in key {
            let parts = k.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            try put(Keyword.tag(String(parts[0]))!, parts.count > 1 ? String(parts[1]) : "")
        }
        return (ds, order)
    }

    func sopClass(find: Bool = false, move: Bool = false) -> String {
        switch (model, find, move) {
        case ("patient", true, _): QueryRetrieveSOPClass.patientRootFind
        case ("patient", _, true): QueryRetrieveSOPClass.patientRootMove
        case ("patient", _, _): QueryRetrieveSOPClass.patientRootGet
        case (_, true, _): QueryRetrieveSOPClass.studyRootFind
        case (_, _, true): QueryRetrieveSOPClass.studyRootMove
        default: QueryRetrieveSOPClass.studyRootGet
        }
    }
}

struct Find: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Query a DICOM peer with C-FIND and print the matches.")
    @OptionGroup var peer: PeerOptions
    @OptionGroup var query: IdentifierOptions
    @Flag(help: "Print a JSON array of matches (keyword: value).") var json = false

    func run() throws {
        DcmtkDictionary.initialize()
        let sop = query.sopClass(find: true)
        let (identifier, order) = try query.identifier(withDefaults: true)
        var rows: [[String: String]] = []
        let reply: StatusReply
        do {
            let assoc = try Association(peer: peer.address, contexts: [
                ProposedContext(abstractSyntax: sop, transferSyntaxes: TransferSyntax.uncompressed)])
            defer { assoc.release() }
            reply = try assoc.find(sopClassUID: sop, identifier: identifier) { match in
                try? match.convertToUTF8()
                var row: [String: String] = [:]
                for tag in order { row[Keyword.name(of: tag) ?? tag.description] = match.string(tag) ?? "" }
                rows.append(row)
                return false
            }
        } catch let e as DcmtkError {
            throw fail("C-FIND to \(peer.host):\(peer.port) failed: \(e.message)")
        }
        if json {
            try printJSON(rows)
        } else {
            let columns = order.map { Keyword.name(of: $0) ?? $0.description }
            print(TextTable.render(columns: columns, rows: rows.map { r in columns.map { r[$0] ?? "" } }))
            FileHandle.standardError.write(Data("\(rows.count) match(es); final status \(reply.status)\n".utf8))
        }
        if !reply.status.isSuccess { throw fail("C-FIND ended with \(reply.status)" + (reply.errorComment.map { ": \($0)" } ?? "")) }
    }
}

struct Move: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask a DICOM peer to send instances to a destination (C-MOVE).")
    @OptionGroup var peer: PeerOptions
    @OptionGroup var query: IdentifierOptions
    @Option(help: "The destination AE title (known to the peer).") var destination: String
    @Flag(help: "Print a JSON summary.") var json = false

    struct Summary: Codable { var status: String; var completed: Int; var failed: Int; var warning: Int; var error: String? }

    func run() throws {
        DcmtkDictionary.initialize()
        let sop = query.sopClass(move: true)
        let (identifier, _) = try query.identifier(withDefaults: false)
        let bar = RetrieveProgress(label: "C-MOVE", quiet: json)
        do {
            let assoc = try Association(peer: peer.address, contexts: [
                ProposedContext(abstractSyntax: sop, transferSyntaxes: TransferSyntax.uncompressed)])
            defer { assoc.release() }
            let (reply, counts) = try assoc.move(sopClassUID: sop, identifier: identifier, destination: destination) { bar.update($0) }
            bar.finish()
            try report(reply, counts, json: json, what: "C-MOVE")
        } catch let e as DcmtkError {
            throw fail("C-MOVE via \(peer.host):\(peer.port) failed: \(e.message)")
        }
    }
}

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Retrieve instances from a DICOM peer into a folder (C-GET).")
    @OptionGroup var peer: PeerOptions
    @OptionGroup var query: IdentifierOptions
    @Option(help: "The folder to write the instances to.") var out: String
    @Flag(help: "Print a JSON summary.") var json = false

    func run() throws {
        DcmtkDictionary.initialize()
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let sop = query.sopClass()
        let (identifier, _) = try query.identifier(withDefaults: false)
        let bar = RetrieveProgress(label: "C-GET", quiet: json)
        do {
            let contexts = [ProposedContext(abstractSyntax: sop, transferSyntaxes: TransferSyntax.uncompressed)]
                + ProposedContext.getStorageContexts(limit: 127)
            let assoc = try Association(peer: peer.address, contexts: contexts)
            defer { assoc.release() }
            let (reply, counts) = try assoc.get(sopClassUID: sop, identifier: identifier, directory: out) { bar.update($0) }
            bar.finish()
            try report(reply, counts, json: json, what: "C-GET")
        } catch let e as DcmtkError {
            throw fail("C-GET from \(peer.host):\(peer.port) failed: \(e.message)")
        }
    }
}

func report(_ reply: StatusReply, _ counts: RetrieveCounts, json: Bool, what: String) throws {
    if json {
        try printJSON(Move.Summary(status: reply.status.description, completed: counts.completed, failed: counts.failed,
                                   warning: counts.warning, error: reply.errorComment))
    } else {
        print("\(what): \(counts.completed) completed, \(counts.failed) failed, \(counts.warning) warning; final status \(reply.status)"
              + (reply.errorComment.map { " (\($0))" } ?? ""))
    }
    if !reply.status.isSuccess { throw ExitCode(1) }
}

/// Progress of a retrieval, from the peer's pending responses.
final class RetrieveProgress: @unchecked Sendable {
    let label: String
    let quiet: Bool
    let tty = isatty(STDERR_FILENO) == 1
    var printed = false
    var lastTenth = -1

    init(label: String, quiet: Bool) {
        self.label = label
        self.quiet = quiet
    }

    func update(_ c: RetrieveCounts) {
        guard !quiet else { return }
        let done = c.completed + c.failed + c.warning
        let total = done + c.remaining
        let line = "\(label): \(done)/\(total) (\(c.failed) failed)"
        if tty {
            FileHandle.standardError.write(Data(("\r" + line).utf8))
        } else {
            // Without a terminal: a line per tenth of the way, not one per instance.
            let tenth = total == 0 ? 10 : done * 10 / total
            guard tenth != lastTenth else { return }
            lastTenth = tenth
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        printed = true
    }

    func finish() { if tty && printed && !quiet { FileHandle.standardError.write(Data("\n".utf8)) } }
}

enum TextTable {
    static func render(columns: [String], rows: [[String]]) -> String {
        var widths = columns.map(\.count)
        for r in rows { for (i, v) in r.enumerated() { widths[i] = min(max(widths[i], v.count), 40) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, v in String(v.prefix(40)).padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }
        return ([line(columns)] + rows.map(line)).joined(separator: "\n")
    }
}

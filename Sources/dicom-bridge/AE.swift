import ArgumentParser
import Archive
import Bridge
import DICOM
import Foundation

struct AE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ae",
        abstract: "Known application entities: who may call us, and (with host and port) where we send.",
        discussion: "A running `serve` sees changes at once.",
        subcommands: [Add.self, List.self, Remove.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add (or update) a known AE title.")
        @OptionGroup var home: HomeOptions
        @Argument(help: "The AE title.") var name: String
        @Option(help: "The host it calls from / listens on (name or address). Calls from other hosts are refused.")
        var host: String?
        @Option(help: "Its DICOM port, when it is a destination.") var port: Int?
        @Option(help: "A note for operators.") var description: String = ""
        @Flag(name: .customLong("no-store"), help: "It may not send us instances (C-STORE).") var noStore = false
        @Flag(name: .customLong("no-query"), help: "It may not query us (C-FIND).") var noQuery = false
        @Flag(name: .customLong("no-retrieve"), help: "It may not retrieve from us (C-MOVE, C-GET).") var noRetrieve = false
        @Option(name: .customLong("move-to"), help: "The only destinations it may C-MOVE to (comma-separated; default any known).")
        var moveTo: String?

        func validate() throws {
            guard AETitle(name) != nil else { throw ValidationError("'\(name)' is not a valid AE title (1 to 16 characters, no backslash)") }
            if let port, !(1...65535).contains(port) { throw ValidationError("port \(port) is out of range 1-65535") }
        }

        func run() throws {
            let archive = try Setup.openArchive(home: home.resolved)
            defer { archive.close() }
            let destinations = moveTo.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? ["*"]
            try archive.addApplicationEntity(ApplicationEntity(
                aeTitle: AETitle(name)!.value, host: host, port: port, description: description, mayStore: !noStore,
                mayQuery: !noQuery, mayRetrieve: !noRetrieve, moveDestinations: destinations))
            print("Added \(AETitle(name)!.value)" + (host.map { " at \($0)" } ?? "") + (port.map { ":\($0)" } ?? ""))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the known AE titles.")
        @OptionGroup var home: HomeOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let archive = try Setup.openArchive(home: home.resolved)
            defer { archive.close() }
            let all = try archive.applicationEntities()
            if json { return try printJSON(all) }
            if all.isEmpty { print("No known AE titles. Add one with `dicom-bridge ae add NAME --host HOST --port N`."); return }
            print("AE TITLE          HOST                  PORT   MAY                      DESCRIPTION")
            for ae in all {
                var may = [ae.mayStore ? "store" : nil, ae.mayQuery ? "query" : nil, ae.mayRetrieve ? "retrieve" : nil].compactMap { $0 }
                    .joined(separator: ",")
                if ae.mayRetrieve && !ae.moveDestinations.contains("*") { may += " ->" + ae.moveDestinations.joined(separator: ",") }
                print(ae.aeTitle.padding(toLength: 18, withPad: " ", startingAt: 0)
                      + (ae.host ?? "any").padding(toLength: 22, withPad: " ", startingAt: 0)
                      + (ae.port.map(String.init) ?? "-").padding(toLength: 7, withPad: " ", startingAt: 0)
                      + may.padding(toLength: 25, withPad: " ", startingAt: 0)
                      + ae.description)
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a known AE title.")
        @OptionGroup var home: HomeOptions
        @Argument(help: "The AE title.") var name: String

        func run() throws {
            let archive = try Setup.openArchive(home: home.resolved)
            defer { archive.close() }
            guard try archive.removeApplicationEntity(name) else { throw fail("no known AE title '\(name)'") }
            print("Removed \(name)")
        }
    }
}

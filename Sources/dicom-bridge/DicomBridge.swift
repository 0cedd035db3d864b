import ArgumentParser
import Bridge
import Foundation

@main
struct DicomBridge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dicom-bridge",
        abstract: "A DICOM imaging exchange bridge: receive, store, anchor and share studies.",
        discussion: """
            Every command takes --home DIR (default: $DICOM_BRIDGE_HOME, else ~/.local/share/dicom-bridge).
            Settings come from DIR/config.json, then DICOM_BRIDGE_* environment variables, then flags.
            """,
        version: "0.1.0",
        subcommands: [Init.self, Serve.self, Status.self, AE.self, Echo.self, Store.self, Find.self, Move.self, Get.self, LedgerCommand.self, VerifyStore.self, PKICommand.self, PeerCommand.self, ManifestCommand.self, Fetch.self, ConsentCommand.self, Audit.self]
    )
}

/// Options every command that works on a home shares.
struct HomeOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The bridge's home directory.", valueName: "dir"))
    var home: String?

    var resolved: Home { Home.resolve(home) }
}

struct GlobalFlags: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON.")
    var json = false
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let data = try encoder.encode(value)
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

func fail(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    return ExitCode(1)
}

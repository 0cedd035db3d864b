import ArgumentParser
import Bridge
import Foundation
import Testing
@testable import dicom_bridge

/// The command line's parsing and validation, in process: what a bad argument is told (and its
/// exit code, 64 for a usage error), and how flags land in the configuration.
@Suite struct CLIParsingTests {
    /// Parses `args` as the root command would; returns the error's exit code and message.
    func refusal(_ args: [String]) -> (code: Int32, message: String)? {
        do {
            _ = try DicomBridge.parseAsRoot(args)
            return nil
        } catch {
            return (DicomBridge.exitCode(for: error).rawValue, DicomBridge.message(for: error))
        }
    }

    @Test(arguments: [
        (["find", "127.0.0.1", "104", "--called-ae", "PACS", "--level", "WARD"], "--level must be PATIENT, STUDY, SERIES or IMAGE"),
        (["find", "127.0.0.1", "104", "--called-ae", "PACS", "--model", "hospital"], "--model must be study or patient"),
        (["find", "127.0.0.1", "104", "--called-ae", "PACS", "-k", "NoSuchKeyword=1"], "unknown key 'NoSuchKeyword=1'"),
        (["echo", "127.0.0.1", "70000", "--called-ae", "PACS"], "port 70000 is out of range 1-65535"),
        (["echo", "127.0.0.1", "104", "--called-ae", "WAY_TOO_LONG_AE_TITLE"], "--called-ae 'WAY_TOO_LONG_AE_TITLE' is not a valid AE title"),
        (["echo", "127.0.0.1", "104", "--called-ae", "PACS", "--calling-ae", "A\\B"], "--calling-ae 'A\\B' is not a valid AE title"),
        (["store", "127.0.0.1", "104", "--called-ae", "PACS", "--associations", "0", "x.dcm"], "--associations must be 1-32"),
        (["fetch", "--peer", "b"], "give exactly one of --study and --patient"),
        (["fetch", "--peer", "b", "--study", "1.2", "--patient", "P"], "give exactly one of --study and --patient"),
        (["fetch", "--peer", "b", "--study", "1.2", "--concurrency", "65"], "--concurrency must be 1-64"),
        (["ledger", "prove"], "give exactly one of --index, --sop, --sha256 or --consistency OLD NEW"),
        (["ledger", "prove", "--index", "1", "--sop", "1.2"], "give exactly one of --index, --sop, --sha256 or --consistency OLD NEW"),
        (["ledger", "prove", "--consistency", "1", "2", "3"], "--consistency takes two sizes: OLD NEW"),
        (["ae", "add", "A\\B"], "'A\\B' is not a valid AE title"),
        (["ae", "add", "MODALITY", "--port", "0"], "port 0 is out of range 1-65535"),
        (["pki", "init-ca", "--out", "/nonexistent", "--days", "0"], "--days must be at least 1"),
        (["consent", "grant", "--key", "k", "--patient-id", "P", "--to", "b", "--expires", "2030-01-01T00:00:00Z", "--out", "g"],
         "give exactly one of --study UID and --all"),
    ] as [([String], String)])
    func badArgumentsAreUsageErrorsThatSayWhatIsWrong(args: [String], expected: String) throws {
        let refused = try #require(refusal(args), "\(args) was accepted")
        #expect(refused.code == ExitCode.validationFailure.rawValue, "\(args): exit \(refused.code)")
        #expect(refused.message.contains(expected), "\(args): \(refused.message)")
    }

    @Test func aMissingRequiredOptionNamesIt() throws {
        let refused = try #require(refusal(["peer", "add", "node-b", "--url", "https://b:8443", "--verifier-key", "k"]))
        #expect(refused.code == 64)
        #expect(refused.message.contains("--ca"), "\(refused.message)")
    }

    @Test func anUnknownShareIsRefused() throws {
        let refused = try #require(refusal(["peer", "share", "node-b", "some"]))
        #expect(refused.code == 64)
        #expect(refused.message.contains("some"), "\(refused.message)")
    }

    @Test func validArgumentsParseIntoTheCommandWithTheirValues() throws {
        let find = try #require(try DicomBridge.parseAsRoot(["find", "127.0.0.1", "104", "--called-ae", "PACS", "--level", "series", "--model", "patient", "-k", "PatientID=P1", "-k", "0010,0010"]) as? Find)
        #expect(find.query.level == "series")
        #expect(find.query.model == "patient")
        #expect(find.query.key == ["PatientID=P1", "0010,0010"])
        let fetch = try #require(try DicomBridge.parseAsRoot(["fetch", "--peer", "node-b", "--patient", "P1", "--concurrency", "3", "--json"]) as? Fetch)
        #expect(fetch.peer == "node-b")
        #expect(fetch.patient == "P1")
        #expect(fetch.study == nil)
        #expect(fetch.concurrency == 3)
        #expect(fetch.json)
        let proof = try #require(try DicomBridge.parseAsRoot(["ledger", "prove", "--consistency", "3", "9"]) as? LedgerCommand.Prove)
        #expect(proof.consistency == [3, 9])
    }

    /// Flags override what the home's configuration says; what is not given keeps its value.
    @Test func serverFlagsOverrideTheConfigurationAndLeaveTheRest() throws {
        let options = try ServerOptions.parse(["--ae-title", "FLAG_AE", "--port", "4242", "--accept-any",
                                               "--tls-cert", "certs/node.crt", "--witness-interval", "7.5"])
        var config = BridgeConfiguration()
        config.aeTitle = "FILE_AE"
        config.maxPDU = 32_768
        config.nodeName = "file.node"
        options.apply(to: &config)
        #expect(config.aeTitle == "FLAG_AE")
        #expect(config.port == 4242)
        #expect(config.acceptAny)
        #expect(config.witnessIntervalSeconds == 7.5)
        // Relative paths are made absolute against the working directory: serve may chdir later.
        #expect(config.tlsCert == FileManager.default.currentDirectoryPath + "/certs/node.crt")
        // Untouched by absent flags.
        #expect(config.maxPDU == 32_768)
        #expect(config.nodeName == "file.node")
        #expect(config.httpPort == BridgeConfiguration().httpPort)
        // An absent --accept-any does not turn accept-any off.
        var open = BridgeConfiguration()
        open.acceptAny = true
        try ServerOptions.parse([]).apply(to: &open)
        #expect(open.acceptAny)
    }

    @Test func everySubcommandHasHelpListingItsOptions() throws {
        // The help of each command names each of its options (a renamed or hidden option shows here).
        let expectations: [([String], [String])] = [
            (["init"], ["--home", "--ae-title", "--port", "--http-port", "--peer-port", "--tls-cert", "--tls-key", "--json"]),
            (["fetch"], ["--peer", "--study", "--patient", "--issuer", "--forward", "--concurrency", "--break-glass", "--json"]),
            (["find"], ["--model", "--level", "--key", "--study", "--patient"]),
            (["peer", "add"], ["--url", "--ca", "--verifier-key", "--share", "--replace"]),
            (["ledger", "prove"], ["--index", "--sop", "--sha256", "--consistency"]),
        ]
        for (path, options) in expectations {
            var command: ParsableCommand.Type = DicomBridge.self
            for name in path {
                command = try #require(command.configuration.subcommands.first { $0._commandName == name }, "no subcommand \(name)")
            }
            let help = DicomBridge.helpMessage(for: command, columns: 200)
            for option in options { #expect(help.contains(option), "\(path.joined(separator: " ")) --help lacks \(option)") }
        }
    }
}

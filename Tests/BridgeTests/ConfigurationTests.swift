import Foundation
import Logging
import PKI
import Testing
@testable import Bridge

/// A fresh directory under the temporary folder.
func temporaryDirectory(_ label: String) -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)")
}

/// The configuration: config.json, then DICOM_BRIDGE_* variables, then flags; every bad value
/// refused with a message naming the setting.
@Suite struct ConfigurationTests {
    @Test func aPartialConfigFileKeepsTheDefaultsOfWhatItDoesNotSay() throws {
        let json = #"{"aeTitle": "FROM_FILE", "port": 2104, "audit": {"syslog": true}, "breakGlass": true}"#
        let config = try JSONDecoder().decode(BridgeConfiguration.self, from: Data(json.utf8))
        var expected = BridgeConfiguration()
        expected.aeTitle = "FROM_FILE"
        expected.port = 2104
        expected.audit.syslog = true
        expected.breakGlass = true
        #expect(config == expected)
        #expect(config.maxPDU == 116_794 && config.httpPort == 8787 && config.federationTimeoutSeconds == 5)
    }

    @Test func theConfigurationSurvivesSaveAndLoad() throws {
        let home = Home(temporaryDirectory("home"))
        defer { try? FileManager.default.removeItem(at: home.url) }
        var config = BridgeConfiguration()
        config.aeTitle = "SAVED"
        config.tlsCert = "/etc/node.crt"
        config.tlsKey = "/etc/node.key"
        config.federationTimeoutSeconds = 2.5
        config.audit.file = "/var/log/audit.log"
        try home.saveConfiguration(config)
        #expect(try home.loadConfiguration() == config)
    }

    @Test func theEnvironmentOverridesTheFile() throws {
        var config = BridgeConfiguration()
        config.aeTitle = "FROM_FILE"
        config.port = 2104
        config.logLevel = "debug"
        try config.applyEnvironment(["DICOM_BRIDGE_AE_TITLE": "FROM_ENV", "DICOM_BRIDGE_MAX_PDU": "65536",
                                     "DICOM_BRIDGE_ACCEPT_ANY": "yes", "DICOM_BRIDGE_CHECKPOINT_INTERVAL": "0.25",
                                     "DICOM_BRIDGE_AUDIT_FILE": "/tmp/a.log", "UNRELATED": "x"])
        #expect(config.aeTitle == "FROM_ENV")
        #expect(config.maxPDU == 65536)
        #expect(config.acceptAny)
        #expect(config.checkpointIntervalSeconds == 0.25)
        #expect(config.audit.file == "/tmp/a.log")
        // What the environment does not name keeps the file's value.
        #expect(config.port == 2104)
        #expect(config.logLevel == "debug")
    }

    @Test(arguments: [
        ("DICOM_BRIDGE_PORT", "eleven"),
        ("DICOM_BRIDGE_MAX_ASSOCIATIONS", "16x"),
        ("DICOM_BRIDGE_CHECKPOINT_INTERVAL", "often"),
        ("DICOM_BRIDGE_STUDY_COMPLETE_SECONDS", "1m"),
        ("DICOM_BRIDGE_WITNESS_INTERVAL", "soon"),
        ("DICOM_BRIDGE_ACCEPT_ANY", "maybe"),
        ("DICOM_BRIDGE_BREAK_GLASS", "sure"),
    ])
    func aBadEnvironmentValueIsRefusedByName(key: String, value: String) throws {
        var config = BridgeConfiguration()
        let error = try #require(throws: ConfigurationError.self) { try config.applyEnvironment([key: value]) }
        #expect(error.description.contains(key) && error.description.contains(value), "\(error)")
    }

    /// One bad value per setting, and what its refusal must say.
    static let badValues: [String: (change: @Sendable (inout BridgeConfiguration) -> Void, message: String)] = [
        "empty aeTitle": ({ $0.aeTitle = "" }, "aeTitle"),
        "long aeTitle": ({ $0.aeTitle = "SEVENTEEN_CHARSXX" }, "aeTitle"),
        "port 0": ({ $0.port = 0 }, "port 0 is out of range"),
        "port 70000": ({ $0.port = 70000 }, "port 70000 is out of range"),
        "httpPort = port": ({ $0.httpPort = $0.port }, "httpPort and port must differ"),
        "maxPDU": ({ $0.maxPDU = 1024 }, "maxPDU 1024"),
        "maxAssociations": ({ $0.maxAssociations = 0 }, "maxAssociations 0"),
        "dimseTimeoutSeconds": ({ $0.dimseTimeoutSeconds = 0 }, "dimseTimeoutSeconds"),
        "maxQueryMatches": ({ $0.maxQueryMatches = -1 }, "maxQueryMatches"),
        "peerPort = httpPort": ({ $0.peerPort = $0.httpPort }, "peerPort must differ"),
        "tlsCert alone": ({ $0.tlsCert = "/x.crt" }, "tlsCert and tlsKey go together"),
        "tlsKey alone": ({ $0.tlsKey = "/x.key" }, "tlsCert and tlsKey go together"),
        "studyCompleteSeconds": ({ $0.studyCompleteSeconds = -1 }, "studyCompleteSeconds"),
        "witnessIntervalSeconds": ({ $0.witnessIntervalSeconds = 0 }, "witnessIntervalSeconds"),
        "nodeOID": ({ $0.nodeOID = "not.an.oid" }, "nodeOID 'not.an.oid'"),
        "affinityDomainOID": ({ $0.affinityDomainOID = "1..2" }, "affinityDomainOID '1..2'"),
        "checkpointIntervalSeconds": ({ $0.checkpointIntervalSeconds = 0 }, "checkpointIntervalSeconds"),
        "logLevel": ({ $0.logLevel = "loud" }, "logLevel 'loud'"),
    ]

    @Test(arguments: badValues.keys.sorted())
    func aBadValueIsRefusedWithAMessageNamingIt(setting: String) throws {
        try BridgeConfiguration().validate()  // the defaults are valid: the change alone is refused
        let (change, expected) = try #require(Self.badValues[setting])
        var config = BridgeConfiguration()
        change(&config)
        let error = try #require(throws: ConfigurationError.self) { try config.validate() }
        #expect(error.description.contains(expected), "\(error)")
    }

    @Test func exchangeSettingsFillTheirDefaults() {
        var config = BridgeConfiguration()
        config.nodeOID = "1.2.3.4"
        config.peerPort = 9443
        var s = config.exchangeSettings
        #expect(s.affinityDomainOID == "1.2.3.4")
        #expect(s.publicURL == "https://localhost:9443")
        config.affinityDomainOID = "2.16.5"
        config.publicURL = "https://bridge-a.example:443"
        s = config.exchangeSettings
        #expect(s.affinityDomainOID == "2.16.5")
        #expect(s.publicURL == "https://bridge-a.example:443")
    }

    @Test func aHomeWithoutConfigOrWithABrokenOneSaysSo() throws {
        let home = Home(temporaryDirectory("home"))
        defer { try? FileManager.default.removeItem(at: home.url) }
        let missing = try #require(throws: ConfigurationError.self) { try home.loadConfiguration() }
        #expect(missing.description.contains("dicom-bridge init --home \(home.url.path)"), "\(missing)")
        try FileManager.default.createDirectory(at: home.url, withIntermediateDirectories: true)
        try Data(#"{"port": "eleven"}"#.utf8).write(to: home.configFile)
        let broken = try #require(throws: ConfigurationError.self) { try home.loadConfiguration() }
        #expect(broken.description.contains("cannot read \(home.configFile.path)"), "\(broken)")
        #expect(broken.description.contains("port"), "\(broken)")
    }
}

/// `init` and the configuration of the other commands; what `serve` refuses before it binds anything.
@Suite(.serialized) struct SetupTests {
    @Test func initMakesTheHomeWithAPrivateNodeKey() throws {
        let home = Home(temporaryDirectory("home"))
        defer { try? FileManager.default.removeItem(at: home.url) }
        var config = BridgeConfiguration()
        config.aeTitle = "INIT_AE"
        config.nodeName = "node-a.test"
        let result = try Setup.initialize(home: home, configuration: config)
        #expect(result.aeTitle == "INIT_AE")
        #expect(result.home == home.url.path)
        let saved = try home.loadConfiguration()
        #expect(saved.aeTitle == "INIT_AE")
        #expect(!saved.nodeOID.isEmpty, "init gives the node its OID")
        let attributes = try FileManager.default.attributesOfItem(atPath: home.nodeKeyFile.path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        for name in ["index.sqlite", "store", "tmp"] {
            #expect(FileManager.default.fileExists(atPath: home.url.appendingPathComponent(name).path), "\(name) missing")
        }
        // The verifier key printed is the node key's, for the node's name.
        let signer = try NodeKey.load(home: home)
        #expect(signer.name == "node-a.test")
        #expect(result.verifierKey == signer.verifierKey)
        // Made once: a second load gives the same key, never a new one.
        #expect(try NodeKey.loadOrCreate(home: home, name: "node-a.test").verifierKey == signer.verifierKey)
    }

    @Test func initRefusesAnInvalidConfigurationAndWritesNothing() throws {
        let home = Home(temporaryDirectory("home"))
        defer { try? FileManager.default.removeItem(at: home.url) }
        var config = BridgeConfiguration()
        config.maxPDU = 10
        let error = try #require(throws: ConfigurationError.self) { try Setup.initialize(home: home, configuration: config) }
        #expect(error.description.contains("maxPDU"))
        #expect(!FileManager.default.fileExists(atPath: home.url.path))
    }

    @Test func aCommandsConfigurationIsFileThenEnvironmentThenFlags() throws {
        let home = Home(temporaryDirectory("home"))
        defer { try? FileManager.default.removeItem(at: home.url) }
        var config = BridgeConfiguration()
        config.aeTitle = "FILE_AE"
        config.port = 2104
        config.maxAssociations = 3
        _ = try Setup.initialize(home: home, configuration: config)
        setenv("DICOM_BRIDGE_PORT", "3104", 1)
        setenv("DICOM_BRIDGE_AE_TITLE", "ENV_AE", 1)
        defer { unsetenv("DICOM_BRIDGE_PORT"); unsetenv("DICOM_BRIDGE_AE_TITLE") }
        let resolved = try Setup.configuration(home: home) { $0.aeTitle = "FLAG_AE" }
        #expect(resolved.aeTitle == "FLAG_AE")
        #expect(resolved.port == 3104)
        #expect(resolved.maxAssociations == 3)
        // The result is validated: a flag cannot sneak in a bad value.
        let error = try #require(throws: ConfigurationError.self) { try Setup.configuration(home: home) { $0.maxAssociations = 0 } }
        #expect(error.description.contains("maxAssociations"))
    }

    @Test func theHomeIsTheFlagThenTheEnvironmentThenTheUsersDataFolder() {
        setenv("DICOM_BRIDGE_HOME", "/srv/from-env", 1)
        setenv("XDG_DATA_HOME", "/srv/xdg", 1)
        defer { unsetenv("DICOM_BRIDGE_HOME"); unsetenv("XDG_DATA_HOME") }
        #expect(Home.resolve("/srv/from-flag").url.path == "/srv/from-flag")
        #expect(Home.resolve(nil).url.path == "/srv/from-env")
        unsetenv("DICOM_BRIDGE_HOME")
        #expect(Home.resolve(nil).url.path == "/srv/xdg/dicom-bridge")
    }

    @Test func serveRefusesANodeNameOtherThanTheNodeKeys() throws {
        let home = Home(temporaryDirectory("home"))
        defer { try? FileManager.default.removeItem(at: home.url) }
        var config = BridgeConfiguration()
        config.nodeName = "node-a.test"
        _ = try Setup.initialize(home: home, configuration: config)
        config = try home.loadConfiguration()
        config.nodeName = "node-b.test"
        let error = try #require(throws: ConfigurationError.self) {
            _ = try BridgeServer(home: home, configuration: config, logger: Logger(label: "test"))
        }
        #expect(error.description.contains("'node-b.test'") && error.description.contains("'node-a.test'"), "\(error)")
    }

    @Test func serveRefusesACertificateForAnotherNode() throws {
        let home = Home(temporaryDirectory("home"))
        defer { try? FileManager.default.removeItem(at: home.url) }
        let ca = try CertificateAuthority.create(commonName: "test CA")
        let other = try CertificateAuthority(certificatePEM: ca.certificatePEM, privateKeyPEM: ca.privateKeyPEM).issue(name: "node-z.test")
        try FileManager.default.createDirectory(at: home.url, withIntermediateDirectories: true)
        let cert = home.url.appendingPathComponent("z.crt"), key = home.url.appendingPathComponent("z.key")
        try Data(other.certificatePEM.utf8).write(to: cert)
        try Data(other.privateKeyPEM.utf8).write(to: key)
        var config = BridgeConfiguration()
        config.nodeName = "node-a.test"
        _ = try Setup.initialize(home: home, configuration: config)
        config = try home.loadConfiguration()
        config.tlsCert = cert.path
        config.tlsKey = key.path
        let error = try #require(throws: ConfigurationError.self) {
            _ = try BridgeServer(home: home, configuration: config, logger: Logger(label: "test"))
        }
        #expect(error.description.contains("is for 'node-z.test'") && error.description.contains("'node-a.test'"), "\(error)")
    }
}

import Foundation
import Ledger

/// The node's Ed25519 signing key for ledger checkpoints, kept in `node.key` (mode 0600) in the
/// signed-note private key form (`PRIVATE+KEY+<name>+<key id>+<base64>`).
enum NodeKey {
    static func loadOrCreate(home: Home, name: String) throws -> NoteSigner {
        let path = home.nodeKeyFile.path
        if let data = FileManager.default.contents(atPath: path) {
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            do {
                return try NoteSigner(privateKey: text)
            } catch {
                throw ConfigurationError("cannot read the node key \(path): \(error)")
            }
        }
        let signer = try NoteSigner.generate(name: name)
        guard FileManager.default.createFile(atPath: path, contents: Data((signer.privateKey + "\n").utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw ConfigurationError("cannot write the node key \(path)")
        }
        return signer
    }

    static func load(home: Home) throws -> NoteSigner {
        guard let data = FileManager.default.contents(atPath: home.nodeKeyFile.path) else {
            throw ConfigurationError("no node key at \(home.nodeKeyFile.path)")
        }
        return try NoteSigner(privateKey: String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

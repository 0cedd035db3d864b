import Crypto
import Foundation

/// The node's Ed25519 signing key (ledger checkpoints), kept in `node.key` (mode 0600).
public struct NodeKey {
    public let privateKey: Curve25519.Signing.PrivateKey
    public let name: String

    public var verifierKey: String? { nil }

    static func loadOrCreate(home: Home, name: String) throws -> NodeKey {
        let path = home.nodeKeyFile.path
        if let data = FileManager.default.contents(atPath: path) {
            return NodeKey(privateKey: try Curve25519.Signing.PrivateKey(rawRepresentation: data), name: name)
        }
        let key = Curve25519.Signing.PrivateKey()
        FileManager.default.createFile(atPath: path, contents: key.rawRepresentation, attributes: [.posixPermissions: 0o600])
        return NodeKey(privateKey: key, name: name)
    }
}

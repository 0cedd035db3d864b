import CDcmtk

/// An error from DCMTK, carried across the C line as a value (module, code, condition text).
public struct DcmtkError: Error, CustomStringConvertible, Sendable {
    public let module: UInt16
    public let code: UInt16
    public let message: String

    init(_ err: cdcm_error) {
        module = err.module
        code = err.code
        var copy = err
        message = withUnsafeBytes(of: &copy.text) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    public init(message: String) {
        module = 0xffff
        code = 0xfffe
        self.message = message
    }

    public var description: String { message }

    /// The association was rejected by the peer (A-ASSOCIATE-RJ).
    public var isAssociationRejected: Bool { module == 0xffff && code == 0x0101 }
}

/// Runs a shim call that reports its failure in a cdcm_error. One place turns C errors into Swift errors.
@inline(__always)
func dcmtk(_ body: (UnsafeMutablePointer<cdcm_error>) -> Int32) throws {
    var err = cdcm_error()
    if body(&err) != 0 { throw DcmtkError(err) }
}

func fixedString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self) }
}

func setFixedString<T>(_ tuple: inout T, _ value: String) {
    withUnsafeMutableBytes(of: &tuple) { raw in
        let bytes = Array(value.utf8.prefix(raw.count - 1))
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
}

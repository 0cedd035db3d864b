/// DIMSE status codes as data (PS3.7 annex C, PS3.4 B.2.3 for the Storage Service Class).
public struct DIMSEStatus: Hashable, Sendable, CustomStringConvertible {
    public let code: UInt16

    public init(_ code: UInt16) { self.code = code }

    public static let success = DIMSEStatus(0x0000)
    /// PS3.4 B.2.3: Refused: Out of Resources.
    public static let outOfResources = DIMSEStatus(0xA700)
    /// PS3.4 B.2.3: Error: Data Set does not match SOP Class.
    public static let dataSetDoesNotMatchSOPClass = DIMSEStatus(0xA900)
    /// PS3.4 B.2.3: Error: Cannot understand.
    public static let cannotUnderstand = DIMSEStatus(0xC000)
    /// PS3.7 C.5.3: Refused: SOP Class not supported.
    public static let sopClassNotSupported = DIMSEStatus(0x0122)
    /// PS3.7 C.4.2: Failure: Processing failure.
    public static let processingFailure = DIMSEStatus(0x0110)
    /// PS3.7 C.5.4: Failure: Duplicate invocation.
    public static let duplicateInvocation = DIMSEStatus(0x0210)
    /// PS3.7 C.5.5: Refused: Not Authorized.
    public static let notAuthorized = DIMSEStatus(0x0124)
    /// PS3.4 C.4.2.1.5: Refused: Move Destination unknown.
    public static let moveDestinationUnknown = DIMSEStatus(0xA801)
    /// PS3.4 C.4.1.1.4: Failed: Identifier does not match SOP Class.
    public static let identifierDoesNotMatchSOPClass = DIMSEStatus(0xA900)
    /// PS3.4 C.4.2.1.5: Refused: Out of Resources – Unable to perform sub-operations.
    public static let unableToPerformSubOperations = DIMSEStatus(0xA702)
    /// PS3.4 C.4.2.1.5: Warning: Sub-operations Complete – One or more Failures or Warnings.
    public static let subOperationsCompleteWithFailures = DIMSEStatus(0xB000)
    /// PS3.4 B.2.3: Warning: Coercion of Data Elements.
    public static let coercionOfDataElements = DIMSEStatus(0xB000)

    public var isSuccess: Bool { code == 0 }
    public var isWarning: Bool { code == 0x0001 || (code & 0xF000) == 0xB000 || code == 0x0107 || code == 0x0116 }
    public var isPending: Bool { code == 0xFF00 || code == 0xFF01 }
    public var isCancel: Bool { code == 0xFE00 }
    public var isFailure: Bool { !isSuccess && !isWarning && !isPending && !isCancel }

    public var description: String {
        let hex = String(code, radix: 16, uppercase: true)
        let padded = String(repeating: "0", count: 4 - hex.count) + hex
        return padded + (name.map { " (\($0))" } ?? "")
    }

    public var name: String? {
        switch code {
        case 0x0000: "Success"
        case 0xA700: "Refused: Out of Resources"
        case 0xA900: "Error: Data Set does not match SOP Class"
        case 0xC000: "Error: Cannot understand"
        case 0x0122: "Refused: SOP Class not supported"
        case 0x0110: "Failure: Processing failure"
        case 0x0210: "Failure: Duplicate invocation"
        case 0x0124: "Refused: Not Authorized"
        case 0xA801: "Refused: Move Destination unknown"
        case 0xA701: "Refused: Out of Resources – Unable to calculate number of matches"
        case 0xA702: "Refused: Out of Resources – Unable to perform sub-operations"
        case 0xB000: "Warning: Coercion of Data Elements"
        case 0xB007: "Warning: Data Set does not match SOP Class"
        case 0xB006: "Warning: Elements Discarded"
        case 0xFE00: "Cancel"
        case 0xFF00: "Pending"
        default: nil
        }
    }
}

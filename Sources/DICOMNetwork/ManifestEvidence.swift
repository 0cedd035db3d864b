import CDcmtk
import Foundation

/// One instance an imaging manifest references, as read back from its evidence sequence.
public struct ReferencedInstance: Sendable, Hashable {
    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var sopClassUID: String
    public var sopInstanceUID: String
    public var retrieveAETitle: String
    public var retrieveURL: String
}

private final class EvidenceBox { var items: [ReferencedInstance] = [] }

private let evidenceVisitor: cdcm_evidence_visitor = { ctx, study, series, cls, sop, ae, url in
    let box = Unmanaged<EvidenceBox>.fromOpaque(ctx!).takeUnretainedValue()
    let item = ReferencedInstance(
        studyInstanceUID: String(cString: study!), seriesInstanceUID: String(cString: series!),
        sopClassUID: String(cString: cls!), sopInstanceUID: String(cString: sop!),
        retrieveAETitle: String(cString: ae!), retrieveURL: String(cString: url!))
    box.items.append(item)
}

extension KeyObjectSelection {
    /// The instances a KOS file references in its Current Requested Procedure Evidence Sequence.
    public static func referencedInstances(path: String) throws -> [ReferencedInstance] {
        let box = EvidenceBox()
        let context = Unmanaged.passUnretained(box).toOpaque()
        try withExtendedLifetime(box) {
            try dcmtk { err in cdcm_kos_read_evidence(path, evidenceVisitor, context, err) }
        }
        return box.items
    }
}

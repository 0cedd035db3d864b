import DICOMNetwork
import Foundation

/// Reads what a manifest references, to check it against the list of instance hashes.
enum ManifestReader {
    static func referencedInstances(path: String) throws -> Set<String> {
        Set(try KeyObjectSelection.referencedInstances(path: path).map(\.sopInstanceUID))
    }
}

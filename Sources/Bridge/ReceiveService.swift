import Archive
import Exchange
import DICOM
import DICOMNetwork
import Foundation
import Logging

/// The SCP's services: access control, C-ECHO, and C-STORE into the archive.
final class ReceiveService: SCPDelegate, @unchecked Sendable {
    let archive: Archive
    let configuration: BridgeConfiguration
    let logger: Logger

    init(archive: Archive, configuration: BridgeConfiguration, logger: Logger) {
        self.archive = archive
        self.configuration = configuration
        self.logger = logger
    }

    // MARK: Access control (PS3.8 9.3.4: A-ASSOCIATE-RJ with the reason that applies)

    func associationRequested(_ info: AssociationInfo) -> AssociationDecision {
        if info.calledAETitle != configuration.aeTitle {
            logger.warning("association rejected: called AE title is not ours",
                           metadata: ["association": "\(info)", "reason": "called-ae-not-recognized"])
            return .rejectCalledAENotRecognized
        }
        if configuration.acceptAny {
            logger.info("association accepted (accept-any mode)", metadata: ["association": "\(info)"])
            return .accept
        }
        let known: ApplicationEntity?
        do {
            known = try archive.applicationEntity(info.callingAETitle)
        } catch {
            logger.error("association rejected: cannot read the known AE titles", metadata: ["error": "\(error)"])
            return .rejectLocalLimitExceeded
        }
        guard let known else {
            logger.warning("association rejected: calling AE title not known (add it with `dicom-bridge ae add`)",
                           metadata: ["association": "\(info)", "reason": "calling-ae-not-recognized"])
            return .rejectCallingAENotRecognized
        }
        if let host = known.host, !host.isEmpty, !HostMatcher.matches(configured: host, peer: info.peerHost) {
            logger.warning("association rejected: calling AE title known, but from another host",
                           metadata: ["association": "\(info)", "expected-host": "\(host)", "reason": "calling-ae-not-recognized"])
            return .rejectCallingAENotRecognized
        }
        logger.info("association accepted", metadata: ["association": "\(info)"])
        return .accept
    }

    func associationEnded(_ info: AssociationInfo, aborted: Bool, reason: String) {
        if aborted {
            logger.warning("association ended abnormally", metadata: ["association": "\(info)", "reason": "\(reason)"])
        } else {
            logger.info("association released", metadata: ["association": "\(info)"])
        }
    }

    func echo(_ info: AssociationInfo) -> DIMSEStatus {
        logger.debug("C-ECHO", metadata: ["association": "\(info)"])
        return .success
    }

    // MARK: C-STORE (PS3.4 annex B)

    func storeBegin(_ info: AssociationInfo, _ request: StoreRequest) -> Result<StoreSink, StatusReply> {
        if !configuration.acceptAny, let ae = try? archive.applicationEntity(info.callingAETitle), !ae.mayStore {
            logger.warning("C-STORE refused: the calling AE title may not store", metadata: ["association": "\(info)"])
            return .failure(StatusReply(.notAuthorized, "not authorized to store"))
        }
        guard UID.isValid(request.sopInstanceUID) else {
            logger.warning("C-STORE refused: invalid Affected SOP Instance UID", metadata: ["association": "\(info)"])
            return .failure(StatusReply(.cannotUnderstand, "invalid Affected SOP Instance UID"))
        }
        do {
            let incoming = try archive.beginReceive(
                sopClassUID: request.sopClassUID, sopInstanceUID: request.sopInstanceUID,
                transferSyntaxUID: request.transferSyntaxUID, callingAETitle: info.callingAETitle)
            return .success(Sink(service: self, info: info, request: request, incoming: incoming))
        } catch let error as ArchiveError {
            logger.error("C-STORE refused: cannot create a temporary file", metadata: ["error": "\(error)"])
            return .failure(StatusReply(.outOfResources, error.kind == .outOfSpace ? "out of disk space" : "cannot write"))
        } catch {
            logger.error("C-STORE refused", metadata: ["error": "\(error)"])
            return .failure(StatusReply(.outOfResources, "cannot write"))
        }
    }

    /// Receives one dataset into the archive and makes it durable before answering.
    final class Sink: StoreSink {
        let service: ReceiveService
        let info: AssociationInfo
        let request: StoreRequest
        let incoming: IncomingInstance

        init(service: ReceiveService, info: AssociationInfo, request: StoreRequest, incoming: IncomingInstance) {
            self.service = service
            self.info = info
            self.request = request
            self.incoming = incoming
        }

        func write(_ bytes: UnsafeRawBufferPointer) -> Bool { incoming.write(bytes) }

        func finish(received: Bool) -> StatusReply {
            let logger = service.logger
            var meta: Logger.Metadata = ["association": "\(info)", "sop-instance-uid": "\(request.sopInstanceUID)"]
            guard received else {
                incoming.discard()
                logger.warning("C-STORE interrupted: the association broke during the transfer; nothing kept", metadata: meta)
                return StatusReply(.processingFailure)
            }
            if let failure = incoming.failure {
                incoming.discard()
                meta["error"] = "\(failure)"
                logger.error(failure.kind == .outOfSpace ? "C-STORE refused: out of disk space; nothing kept"
                                                         : "C-STORE failed: cannot write the instance", metadata: meta)
                return failure.kind == .outOfSpace
                    ? StatusReply(.outOfResources, "out of disk space") : StatusReply(.outOfResources, "write error")
            }
            do {
                _ = try incoming.seal()
            } catch {
                incoming.discard()
                meta["error"] = "\(error)"
                logger.error("C-STORE failed: cannot write the instance", metadata: meta)
                let full = (error as? ArchiveError)?.kind == .outOfSpace
                return StatusReply(.outOfResources, full ? "out of disk space" : "write error")
            }
            // Parse what the index needs (from the page cache: the hash was taken on the way in).
            let attributes: InstanceAttributes
            do {
                let (a, warning) = try AttributeReader.read(path: incoming.tempPath)
                if let warning { logger.warning("\(warning)", metadata: meta) }
                attributes = a
            } catch {
                incoming.discard()
                meta["error"] = "\(error)"
                logger.warning("C-STORE refused: the dataset cannot be parsed", metadata: meta)
                return StatusReply(.cannotUnderstand, "dataset cannot be parsed")
            }
            if let problem = Self.mismatch(attributes, request) {
                incoming.discard()
                meta["problem"] = "\(problem)"
                logger.warning("C-STORE refused: the dataset does not match the request", metadata: meta)
                return StatusReply(.dataSetDoesNotMatchSOPClass, problem)
            }
            do {
                let outcome = try service.archive.commit(incoming, attributes: attributes)
                let i = outcome.instance
                meta["sha256"] = "\(i.sha256)"
                meta["bytes"] = "\(i.size)"
                switch outcome {
                case .stored:
                    logger.info("stored", metadata: meta)
                case .duplicate:
                    logger.info("received again with identical bytes: already stored", metadata: meta)
                case .newVersion(_, let previous):
                    meta["previous-sha256"] = "\(previous)"
                    meta["version"] = "\(i.version)"
                    logger.notice("SOP Instance UID received again with different bytes: both versions kept, the newest is served",
                                  metadata: meta)
                }
                return .success
            } catch let error as ArchiveError {
                meta["error"] = "\(error)"
                if error.kind == .outOfSpace {
                    logger.error("C-STORE refused: out of disk space; nothing acknowledged (free space in the home)", metadata: meta)
                    return StatusReply(.outOfResources, "out of disk space")
                }
                logger.error("C-STORE failed: the instance could not be made durable; nothing acknowledged", metadata: meta)
                return StatusReply(.outOfResources, "storage failure")
            } catch {
                meta["error"] = "\(error)"
                logger.error("C-STORE failed: the instance could not be made durable; nothing acknowledged", metadata: meta)
                return StatusReply(.outOfResources, "storage failure")
            }
        }

        /// PS3.4 B.2.3: the dataset must carry the SOP Class and Instance of the request, and the
        /// identifiers the index needs.
        static func mismatch(_ a: InstanceAttributes, _ r: StoreRequest) -> String? {
            if a.sopInstanceUID != r.sopInstanceUID { return "SOP Instance UID differs from the request" }
            if a.sopClassUID != r.sopClassUID { return "SOP Class UID differs from the request" }
            if !UID.isValid(a.studyInstanceUID) { return "missing or invalid Study Instance UID" }
            if !UID.isValid(a.seriesInstanceUID) { return "missing or invalid Series Instance UID" }
            return nil
        }
    }
}

/// Compares a configured host (name or address) with the address a peer connected from.
enum HostMatcher {
    static func matches(configured: String, peer: String) -> Bool {
        if configured == peer { return true }
        // Resolved on a background thread and cached: an association check never waits on DNS for
        // long; addresses not known in time do not match (fail closed).
        return HostAddressCache.shared.addresses(of: configured)?.contains(peer) ?? false
    }

    static func addresses(of host: String) -> Set<String> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var out = Set<String>()
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            var buf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(ai.pointee.ai_addr, ai.pointee.ai_addrlen, &buf, socklen_t(buf.count), nil, 0, NI_NUMERICHOST) == 0 {
                out.insert(String(cString: buf))
            }
            p = ai.pointee.ai_next
        }
        return out
    }
}

import Archive
import DICOM
import DICOMNetwork
import Exchange
import Foundation
import Logging

/// C-FIND, C-MOVE and C-GET over the archive's index (PS3.4 annex C), with access control:
/// which calling AE titles may query and retrieve, and to which destinations they may move.
final class QueryRetrieveService: QueryRetrieveDelegate, @unchecked Sendable {
    let archive: Archive
    let configuration: BridgeConfiguration
    let logger: Logger
    /// Peers asked by C-FIND (STUDY level and below) and fetched from by C-MOVE / C-GET of their studies.
    let federation: FederatedQuery?
    let fetcher: Fetcher?
    let auditor: AccessAuditor?

    init(archive: Archive, configuration: BridgeConfiguration, logger: Logger, federation: FederatedQuery? = nil,
         fetcher: Fetcher? = nil, auditor: AccessAuditor? = nil) {
        self.archive = archive
        self.configuration = configuration
        self.logger = logger
        self.federation = federation
        self.fetcher = fetcher
        self.auditor = auditor
    }

    /// Runs async work from an association's thread and waits for it.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let box = LockedValue<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let value = await body()
            box.withLock { $0 = value }
            done.signal()
        }
        done.wait()
        return box.withLock { $0! }
    }

    /// The calling AE's permissions; nil (with the refusal logged) when it may not do `what`.
    private func permitted(_ info: AssociationInfo, _ what: String, _ check: (ApplicationEntity) -> Bool) -> Bool {
        if configuration.acceptAny { return true }
        guard let ae = try? archive.applicationEntity(info.callingAETitle), check(ae) else {
            logger.warning("\(what) refused: the calling AE title is not allowed to", metadata: ["association": "\(info)"])
            return false
        }
        return true
    }

    /// The identifier as the query engine takes it: level, and every other key with its VR and value.
    /// The status that answers a query or retrieve that could not start, logged: a QueryFailure's own
    /// status (its cited values at debug level only), else C001 "unable to process".
    private func refusal(_ operation: String, _ info: AssociationInfo, _ error: Error) -> StatusReply {
        guard let failure = error as? QueryFailure else {
            logger.error("\(operation) failed", metadata: ["association": "\(info)", "error": "\(error)"])
            return StatusReply(DIMSEStatus(0xC001), "unable to process")
        }
        let reason = Self.withoutValues(failure.reason)
        logger.warning("\(operation) refused: \(reason)", metadata: ["association": "\(info)", "status": "\(failure.status)"])
        logger.debug("\(operation) refused", metadata: ["association": "\(info)", "reason": "\(failure.reason)"])
        return StatusReply(failure.status, String(reason.prefix(64)))
    }

    /// A refusal's reason without the quoted values it cites (a birth date, say): those stay out of
    /// logs above debug and out of the Error Comment.
    static func withoutValues(_ reason: String) -> String {
        var out = ""
        var quoted = false
        for c in reason {
            if c == "\"" {
                if !quoted { out += "…" }
                quoted.toggle()
            } else if !quoted {
                out.append(c)
            }
        }
        return out
    }

    /// Sequence keys of the identifier: the index holds none, so they come back empty (PS3.4 C.2.2.1.3).
    static func sequenceKeys(of identifier: Dataset) -> [Tag] {
        identifier.elements.filter { $0.vr == "SQ" }.map(\.tag)
    }

    static func request(from identifier: Dataset, sopClassUID: String) throws -> (QueryModel, QueryLevel, [QueryKey]) {
        if let charset = identifier.string(.specificCharacterSet), !charset.isEmpty {
            do { try identifier.convertToUTF8() } catch {
                throw QueryFailure(status: DIMSEStatus(0xC000), reason: "cannot decode Specific Character Set '\(charset)'")
            }
        }
        let model: QueryModel = QueryRetrieveSOPClass.isPatientRoot(sopClassUID) ? .patientRoot : .studyRoot
        let levelText = (identifier.string(.queryRetrieveLevel) ?? "").trimmingCharacters(in: .whitespaces)
        guard let level = QueryLevel(rawValue: levelText) else {
            throw QueryFailure(status: .identifierDoesNotMatchSOPClass,
                               reason: levelText.isEmpty ? "missing Query/Retrieve Level (0008,0052)" : "unknown Query/Retrieve Level '\(levelText)'")
        }
        var keys: [QueryKey] = []
        for (tag, vr) in identifier.elements where tag != .queryRetrieveLevel && tag != .specificCharacterSet && vr != "SQ" {
            keys.append(QueryKey(tag: tag, vr: vr, value: identifier.string(tag) ?? ""))
        }
        return (model, level, keys)
    }

    // MARK: C-FIND

    final class Find: FindQuery {
        let cursor: QueryCursor
        let service: QueryRetrieveService
        let info: AssociationInfo
        let level: QueryLevel
        let requested: Set<Tag>
        let sequences: [Tag]
        var matches = 0
        /// Peers' matches for studies not held here, answered after the local ones (NEARLINE).
        var remote: [FederatedMatch] = []
        var unanswered: [String] = []

        init(cursor: QueryCursor, service: QueryRetrieveService, info: AssociationInfo, level: QueryLevel,
             requested: Set<Tag>, sequences: [Tag]) {
            self.cursor = cursor
            self.service = service
            self.info = info
            self.level = level
            self.requested = requested
            self.sequences = sequences
        }

        func next(into response: Dataset) -> FindStep {
            do {
                guard let match = try cursor.next() else {
                    if !remote.isEmpty, !cursor.limitReached {
                        let m = remote.removeFirst()
                        for (tag, value) in m.values where requested.contains(tag) { try? response.set(tag, value) }
                        // PS3.4 C.4.1.1.3.2: the response identifier carries the Query/Retrieve Level, as a local match does.
                        try? response.set(.queryRetrieveLevel, level.rawValue)
                        for tag in sequences { try? response.setEmpty(tag) }
                        // A C-MOVE or C-GET of it goes through us: we fetch it from the peer first.
                        if requested.contains(.retrieveAETitle) { try? response.set(.retrieveAETitle, service.configuration.aeTitle) }
                        if requested.contains(.instanceAvailability) { try? response.set(.instanceAvailability, "NEARLINE") }
                        matches += 1
                        return .match(cursor.pendingStatus)
                    }
                    if cursor.limitReached {
                        service.logger.warning("C-FIND stopped at the configured maximum number of matches",
                                               metadata: ["association": "\(info)", "matches": "\(matches)",
                                                          "max-query-matches": "\(service.configuration.maxQueryMatches)"])
                        return .done(StatusReply(.outOfResources, "too many matches: narrow the query"))
                    }
                    if !unanswered.isEmpty {
                        return .done(StatusReply(.success, String("may be incomplete: no answer from \(unanswered.joined(separator: ","))".prefix(64))))
                    }
                    return .done(.success)
                }
                for (tag, value) in match.values { try? response.set(tag, value) }
                for tag in sequences { try? response.setEmpty(tag) }
                // PS3.4 C.4.1.1.3.2: where the instances can be retrieved from, and how soon.
                if requested.contains(.retrieveAETitle) { try? response.set(.retrieveAETitle, service.configuration.aeTitle) }
                if requested.contains(.instanceAvailability) { try? response.set(.instanceAvailability, "ONLINE") }
                matches += 1
                return .match(cursor.pendingStatus)
            } catch {
                service.logger.error("C-FIND failed while reading the index", metadata: ["association": "\(info)", "error": "\(error)"])
                return .done(StatusReply(DIMSEStatus(0xC001), "unable to process"))
            }
        }

        func end(cancelled: Bool) {
            service.logger.info(cancelled ? "C-FIND cancelled" : "C-FIND answered",
                                metadata: ["association": "\(info)", "level": "\(level.rawValue)", "matches": "\(matches)"])
        }
    }

    func findBegin(_ info: AssociationInfo, sopClassUID: String, identifier: Dataset) -> Result<FindQuery, StatusReply> {
        guard permitted(info, "C-FIND", { $0.mayQuery }) else { return .failure(StatusReply(.notAuthorized, "not authorized to query")) }
        do {
            let sequences = Self.sequenceKeys(of: identifier)
            let (model, level, keys) = try Self.request(from: identifier, sopClassUID: sopClassUID)
            let limit = configuration.maxQueryMatches > 0 ? configuration.maxQueryMatches : nil
            let cursor = try archive.find(QueryRequest(model: model, level: level, keys: keys), maxMatches: limit)
            let find = Find(cursor: cursor, service: self, info: info, level: level, requested: Set(keys.map(\.tag)),
                            sequences: sequences)
            if let federation, level != .patient {
                let (matches, unanswered) = Self.blocking { await federation.find(level: level, keys: keys) }
                // A study held here is answered once, as local.
                let local = try Set(matches.compactMap(\.studyInstanceUID).filter { try archive.hasStudy($0) })
                var seen = Set<String>()
                find.remote = matches.filter { m in
                    guard let study = m.studyInstanceUID, !local.contains(study) else { return false }
                    // The same study from two peers: once.
                    let key = study + "|" + m.values.map(\.value).joined(separator: "|")
                    return seen.insert(key).inserted
                }
                find.unanswered = unanswered
            }
            return .success(find)
        } catch {
            return .failure(refusal("C-FIND", info, error))
        }
    }

    // MARK: C-MOVE and C-GET

    final class Retrieve: Retrieval {
        let destination: RetrieveDestination?
        let files: [RetrieveFile]
        let service: QueryRetrieveService
        let info: AssociationInfo
        let operation: String

        init(destination: RetrieveDestination?, files: [RetrieveFile], service: QueryRetrieveService, info: AssociationInfo) {
            self.destination = destination
            self.files = files
            self.service = service
            self.info = info
            operation = destination == nil ? "C-GET" : "C-MOVE"
        }

        func subOperationEnded(index: Int, status: DIMSEStatus, error: String?) {
            guard !status.isSuccess else { return }
            var meta: Logger.Metadata = ["association": "\(info)", "sop-instance-uid": "\(files[index].sopInstanceUID)",
                                         "status": "\(status)"]
            if let error { meta["error"] = "\(error)" }
            if let d = destination { meta["destination"] = "\(d.aeTitle)" }
            service.logger.warning("\(operation) sub-operation did not succeed", metadata: meta)
        }

        func end(counts: RetrieveCounts, cancelled: Bool) {
            var meta: Logger.Metadata = ["association": "\(info)", "completed": "\(counts.completed)", "failed": "\(counts.failed)",
                                         "warning": "\(counts.warning)", "remaining": "\(counts.remaining)"]
            if let d = destination { meta["destination"] = "\(d.aeTitle)" }
            service.logger.info(cancelled ? "\(operation) cancelled" : "\(operation) done", metadata: meta)
        }
    }

    /// A workstation's refused retrieval of a study held here, in the audit trail.
    /// A C-MOVE's refusal names its destination: the process that would have received the data (A.5.3.3).
    func auditRefusal(_ info: AssociationInfo, identifier: Dataset, action: String, reason: String, moveDestination: String? = nil) {
        guard let auditor, let study = identifier.string(.studyInstanceUID)?.trimmingCharacters(in: .whitespaces),
              UID.isValid(study), let patient = try? archive.patient(ofStudy: study) else { return }
        auditor.record(AuditRecord(time: Date(), requester: .ae(info.callingAETitle, host: info.peerHost),
                                   auditSource: configuration.nodeName, studyInstanceUID: study, patientID: patient.id,
                                   issuerOfPatientID: patient.issuer, action: action, allowed: false, reason: reason,
                                   grant: nil, breakGlass: false, moveDestination: moveDestination))
    }

    /// Fetches a remote study from the peer that offers it; nil when it is now held here, else the
    /// status that refuses the retrieval.
    func fetchRemote(_ study: String, federation: FederatedQuery, fetcher: Fetcher, info: AssociationInfo) -> StatusReply? {
        let logger = self.logger
        let outcome: String? = Self.blocking {
            guard let peer = await federation.source(of: study) else { return "no peer offers this study" }
            logger.notice("retrieval of a remote study: fetching it from the peer first",
                          metadata: ["association": "\(info)", "peer": "\(peer)", "study-instance-uid": "\(study)"])
            do {
                _ = try await fetcher.fetch(FetchRequest(peer: peer, studyInstanceUID: study))
                return nil
            } catch {
                return "\(error)"
            }
        }
        guard let outcome else { return nil }
        logger.warning("retrieval of a remote study failed", metadata: ["association": "\(info)", "study-instance-uid": "\(study)",
                                                                       "reason": "\(outcome)"])
        return StatusReply(DIMSEStatus(0xA702), "remote study unavailable")
    }

    func retrieveBegin(_ info: AssociationInfo, sopClassUID: String, identifier: Dataset,
                       moveDestination: String?) -> Result<Retrieval, StatusReply> {
        let operation = moveDestination == nil ? "C-GET" : "C-MOVE"
        guard permitted(info, operation, { $0.mayRetrieve }) else {
            auditRefusal(info, identifier: identifier, action: operation.lowercased(), reason: "calling AE not allowed to retrieve",
                         moveDestination: moveDestination)
            return .failure(StatusReply(.notAuthorized, "not authorized to retrieve"))
        }
        var destination: RetrieveDestination?
        if let name = moveDestination {
            guard let ae = try? archive.applicationEntity(name), let host = ae.host, let port = ae.port else {
                logger.warning("C-MOVE refused: unknown move destination (add it with `dicom-bridge ae add NAME --host H --port N`)",
                               metadata: ["association": "\(info)", "destination": "\(name)"])
                return .failure(StatusReply(.moveDestinationUnknown, "move destination unknown"))
            }
            if !configuration.acceptAny, let caller = try? archive.applicationEntity(info.callingAETitle), !caller.mayMove(to: name) {
                logger.warning("C-MOVE refused: the calling AE may not move to this destination",
                               metadata: ["association": "\(info)", "destination": "\(name)"])
                auditRefusal(info, identifier: identifier, action: "c-move", reason: "calling AE may not move to \(name)",
                             moveDestination: name)
                return .failure(StatusReply(.notAuthorized, "not authorized to move to this destination"))
            }
            destination = RetrieveDestination(aeTitle: name, host: host, port: UInt16(port))
        }
        do {
            let (model, level, keys) = try Self.request(from: identifier, sopClassUID: sopClassUID)
            var items = try archive.retrieveItems(model: model, level: level, keys: keys)
            let study = keys.first(where: { $0.tag == .studyInstanceUID })?.value ?? ""
            if items.isEmpty, level != .patient, UID.isValid(study), let federation, let fetcher {
                // A study a peer holds (answered NEARLINE by C-FIND): fetch it, verified, then deliver.
                if let failure = fetchRemote(study, federation: federation, fetcher: fetcher, info: info) {
                    return .failure(failure)
                }
                items = try archive.retrieveItems(model: model, level: level, keys: keys)
            }
            if let auditor {
                for uid in Set(items.map(\.studyInstanceUID)) {
                    let patient = try archive.patient(ofStudy: uid)
                    auditor.record(AuditRecord(
                        time: Date(), requester: .ae(info.callingAETitle, host: info.peerHost), auditSource: configuration.nodeName,
                        studyInstanceUID: uid, patientID: patient?.id ?? "", issuerOfPatientID: patient?.issuer ?? "",
                        action: moveDestination == nil ? "c-get" : "c-move", allowed: true,
                        reason: moveDestination.map { "workstation retrieval to \($0)" } ?? "workstation retrieval", grant: nil,
                        breakGlass: false, moveDestination: moveDestination))
                }
            }
            let files = items.map { RetrieveFile(path: $0.path, sopClassUID: $0.sopClassUID, sopInstanceUID: $0.sopInstanceUID,
                                                 transferSyntaxUID: $0.transferSyntaxUID) }
            var meta: Logger.Metadata = ["association": "\(info)", "level": "\(level.rawValue)", "instances": "\(files.count)"]
            if let destination { meta["destination"] = "\(destination.aeTitle)" }
            logger.info("\(operation) started", metadata: meta)
            return .success(Retrieve(destination: destination, files: files, service: self, info: info))
        } catch {
            return .failure(refusal(operation, info, error))
        }
    }
}

import Crypto
import DICOM
import Foundation
import GRDB
import Logging
import Testing
@testable import Archive

// The C-FIND engine against an archive filled through the public receive API. Every expected
// answer is computed here, independently of the engine, from the Swift description of what was
// stored (regular expressions for wildcards, plain comparisons for ranges).

/// DICOM's, not swift-testing's.
private typealias Tag = DICOM.Tag

// MARK: - Fixture

/// Registered once: the lead moves QueryIndex.register into Schema.register (it is idempotent, so
/// both at once do no harm).
private let queryMigrationsRegistered: Void = Archive.registerMigrations { QueryIndex.register(&$0) }

private struct TPatient: Sendable {
    var id: String, issuer: String = "", name: String, birth: String, sex: String
    var key: String { id + "|" + issuer }
}

private struct TStudy: Sendable {
    var uid: String, patient: TPatient, date: String, time: String, accession: String, studyID: String
    var description: String, referring: String
}

private struct TSeries: Sendable {
    var uid: String, study: TStudy, modality: String, number: String, description: String, bodyPart: String
}

private struct TInstance: Sendable {
    var sop: String, series: TSeries, number: String, sopClass: String, payload: [UInt8]
}

private let ctImage = "1.2.840.10008.5.1.4.1.1.2"
private let mrImage = "1.2.840.10008.5.1.4.1.1.4"
private let usImage = "1.2.840.10008.5.1.4.1.1.6.1"
private let srDocument = "1.2.840.10008.5.1.4.1.1.88.67"
private let prState = "1.2.840.10008.5.1.4.1.1.11.1"
private let crImage = "1.2.840.10008.5.1.4.1.1.1"
private let dxImage = "1.2.840.10008.5.1.4.1.1.1.1"
private let otImage = "1.2.840.10008.5.1.4.1.1.7"
private let nmImage = "1.2.840.10008.5.1.4.1.1.20"
private let explicitLittle = "1.2.840.10008.1.2.1"

private struct QueryFixture: Sendable {
    let archive: Archive
    let patients: [TPatient]
    let studies: [TStudy]
    let series: [TSeries]
    /// The instances served: the last version of each SOP Instance UID.
    let instances: [TInstance]
    /// SHA-256 of the bytes served for each SOP Instance UID.
    let servedSHA: [String: String]
    let versionedSOP = "1.9.3.1101"
    let movedSOP = "1.9.3.1901"
    let emptiedSeriesUID = "1.9.2.19"

    static func build() throws -> QueryFixture {
        _ = queryMigrationsRegistered
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("query-test-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let archive = try Archive(home: home, logger: Logger(label: "query-test"))

        let p1 = TPatient(id: "PID001", name: "Doe^John", birth: "19700101", sex: "M")
        let p2 = TPatient(id: "PID002", name: "Doe^Jane", birth: "19851231", sex: "F")
        let p3 = TPatient(id: "PID003", name: "Müller^Jürgen", birth: "19600515", sex: "M")
        let p4 = TPatient(id: "PID004", issuer: "HOSP_B", name: "MÜLLER^Anna", birth: "19921111", sex: "F")
        let p5 = TPatient(id: "PID005", name: "Yamada^Taro=山田^太郎=やまだ^たろう", birth: "19550303", sex: "M")
        let p6 = TPatient(id: "PID001", issuer: "OTHER", name: "Ñúñez^José", birth: "20000229", sex: "O")
        let p7 = TPatient(id: "X[7]", name: "O'Brien^Seán^^Dr", birth: "", sex: "")

        let s1 = TStudy(uid: "1.9.1.1", patient: p1, date: "20200115", time: "083000", accession: "ACC100", studyID: "1",
                        description: "CT Chest", referring: "Smith^Adam")
        let s2 = TStudy(uid: "1.9.1.2", patient: p1, date: "20210620", time: "141500.25", accession: "ACC101", studyID: "2",
                        description: "MR Brain", referring: "smith^eve")
        let s3 = TStudy(uid: "1.9.1.3", patient: p2, date: "20200116", time: "235959", accession: "ACC200", studyID: "3",
                        description: "US Abdomen", referring: "Jones^Bob")
        let s4 = TStudy(uid: "1.9.1.4", patient: p3, date: "20191231", time: "1200", accession: "ACC300", studyID: "4",
                        description: "CT Chest low dose", referring: "Müller^Hans")
        let s5 = TStudy(uid: "1.9.1.5", patient: p4, date: "20220301", time: "", accession: "XYZ-1", studyID: "5",
                        description: "Chest X-Ray", referring: "")
        let s6 = TStudy(uid: "1.9.1.6", patient: p5, date: "20230707", time: "101010", accession: "ACC500", studyID: "6",
                        description: "MR Knee", referring: "Tanaka^Ken")
        let s7 = TStudy(uid: "1.9.1.7", patient: p6, date: "", time: "", accession: "", studyID: "7",
                        description: "no date", referring: "")
        let s8 = TStudy(uid: "1.9.1.8", patient: p7, date: "20240101", time: "000000", accession: "ACC700", studyID: "8",
                        description: "ct chest", referring: "Smith^Adam")

        let se1a = TSeries(uid: "1.9.2.11", study: s1, modality: "CT", number: "1", description: "Axial", bodyPart: "CHEST")
        let se1b = TSeries(uid: "1.9.2.12", study: s1, modality: "CT", number: "2", description: "Coronal", bodyPart: "CHEST")
        let se1c = TSeries(uid: "1.9.2.13", study: s1, modality: "SR", number: "99", description: "Dose report", bodyPart: "")
        let se1x = TSeries(uid: "1.9.2.19", study: s1, modality: "NM", number: "9", description: "Emptied", bodyPart: "")
        let se2a = TSeries(uid: "1.9.2.21", study: s2, modality: "MR", number: "1", description: "T1 axial", bodyPart: "HEAD")
        let se2b = TSeries(uid: "1.9.2.22", study: s2, modality: "MR", number: "2", description: "T2", bodyPart: "HEAD")
        let se3a = TSeries(uid: "1.9.2.31", study: s3, modality: "US", number: "1", description: "Liver", bodyPart: "ABDOMEN")
        let se4a = TSeries(uid: "1.9.2.41", study: s4, modality: "CT", number: "1", description: "Low dose", bodyPart: "CHEST")
        let se4b = TSeries(uid: "1.9.2.42", study: s4, modality: "PR", number: "2", description: "Presentation", bodyPart: "")
        let se5a = TSeries(uid: "1.9.2.51", study: s5, modality: "CR", number: "1", description: "PA", bodyPart: "CHEST")
        let se5b = TSeries(uid: "1.9.2.52", study: s5, modality: "DX", number: "2", description: "Lateral", bodyPart: "CHEST")
        let se6a = TSeries(uid: "1.9.2.61", study: s6, modality: "MR", number: "3", description: "Sag PD", bodyPart: "KNEE")
        let se7a = TSeries(uid: "1.9.2.71", study: s7, modality: "OT", number: "1", description: "", bodyPart: "")
        let se8a = TSeries(uid: "1.9.2.81", study: s8, modality: "CT", number: "1", description: "Scout", bodyPart: "CHEST")

        func make(_ series: TSeries, _ sop: String, _ number: String, _ sopClass: String, _ tag: String = "") -> TInstance {
            TInstance(sop: sop, series: series, number: number, sopClass: sopClass, payload: Array((sop + tag).utf8))
        }
        // In arrival order. The versioned SOP arrives twice with other bytes; the moved SOP first
        // lands in a series of its own and then, as a new version, in another: its first series
        // then holds no current instance and must never be served.
        let arrivals: [TInstance] = [
            make(se1a, "1.9.3.1101", "1", ctImage, "v1"),
            make(se1a, "1.9.3.1102", "2", ctImage),
            make(se1a, "1.9.3.1103", "3", ctImage),
            make(se1b, "1.9.3.1201", "1", ctImage),
            make(se1c, "1.9.3.1301", "1", srDocument),
            make(se1x, "1.9.3.1901", "1", nmImage, "v1"),
            make(se2a, "1.9.3.2101", "1", mrImage),
            make(se2a, "1.9.3.2102", "2", mrImage),
            make(se2b, "1.9.3.2201", "1", mrImage),
            make(se3a, "1.9.3.3101", "1", usImage),
            make(se3a, "1.9.3.3102", "2", usImage),
            make(se4a, "1.9.3.4101", "1", ctImage),
            make(se4b, "1.9.3.4201", "1", prState),
            make(se5a, "1.9.3.5101", "1", crImage),
            make(se5b, "1.9.3.5201", "1", dxImage),
            make(se6a, "1.9.3.6101", "1", mrImage),
            make(se6a, "1.9.3.6102", "2", mrImage),
            make(se7a, "1.9.3.7101", "1", otImage),
            make(se8a, "1.9.3.8101", "1", ctImage),
            make(se1a, "1.9.3.1101", "1", ctImage, "v2"),
            make(se1b, "1.9.3.1901", "2", ctImage, "v2"),
        ]
        var served: [String: TInstance] = [:]
        var order: [String] = []
        var sha: [String: String] = [:]
        for instance in arrivals {
            let outcome = try receiveForQuery(archive, instance)
            if served[instance.sop] == nil { order.append(instance.sop) }
            served[instance.sop] = instance
            sha[instance.sop] = outcome.instance.sha256
        }
        let instances = order.map { served[$0]! }
        func unique<T>(_ values: [T], by key: (T) -> String) -> [T] {
            var seen = Set<String>()
            return values.filter { seen.insert(key($0)).inserted }
        }
        let series = unique(instances.map(\.series), by: \.uid)
        let studies = unique(series.map(\.study), by: \.uid)
        let patients = unique(studies.map(\.patient), by: \.key)
        return QueryFixture(archive: archive, patients: patients, studies: studies, series: series,
                            instances: instances, servedSHA: sha)
    }

    static func attributes(_ i: TInstance) -> InstanceAttributes {
        var a = InstanceAttributes()
        a.specificCharacterSet = "ISO_IR 192"
        let p = i.series.study.patient, st = i.series.study, se = i.series
        a.patientName = p.name
        a.patientID = p.id
        a.issuerOfPatientID = p.issuer
        a.patientBirthDate = p.birth
        a.patientSex = p.sex
        a.studyInstanceUID = st.uid
        a.studyDate = st.date
        a.studyTime = st.time
        a.accessionNumber = st.accession
        a.studyID = st.studyID
        a.studyDescription = st.description
        a.referringPhysicianName = st.referring
        a.seriesInstanceUID = se.uid
        a.modality = se.modality
        a.seriesNumber = se.number
        a.seriesDescription = se.description
        a.bodyPartExamined = se.bodyPart
        a.sopInstanceUID = i.sop
        a.sopClassUID = i.sopClass
        a.instanceNumber = i.number
        return a
    }

    // Counts of what is served, computed from the model.
    func seriesOf(_ study: TStudy) -> [TSeries] { series.filter { $0.study.uid == study.uid } }
    func instancesOf(series uid: String) -> [TInstance] { instances.filter { $0.series.uid == uid } }
    func instancesOf(study uid: String) -> [TInstance] { instances.filter { $0.series.study.uid == uid } }
    func studiesOf(_ patient: TPatient) -> [TStudy] { studies.filter { $0.patient.key == patient.key } }
}

private func receiveForQuery(_ archive: Archive, _ i: TInstance) throws -> StoreOutcome {
    let incoming = try archive.beginReceive(sopClassUID: i.sopClass, sopInstanceUID: i.sop,
                                            transferSyntaxUID: explicitLittle, callingAETitle: "QUERYTEST")
    i.payload.withUnsafeBytes { _ = incoming.write($0) }
    return try archive.commit(incoming, attributes: QueryFixture.attributes(i))
}

/// Built once for all the tests of this file (they only read).
private let fixtureResult = Result { try QueryFixture.build() }
private func fixture() throws -> QueryFixture { try fixtureResult.get() }

// MARK: - Reference matching, independent of the engine

/// DICOM wildcards through NSRegularExpression.
private func wildcardReference(_ pattern: String, _ value: String, caseInsensitive: Bool = false) -> Bool {
    var regex = "^"
    for c in pattern {
        switch c {
        case "*": regex += ".*"
        case "?": regex += "."
        default: regex += NSRegularExpression.escapedPattern(for: String(c))
        }
    }
    regex += "$"
    let options: NSRegularExpression.Options = caseInsensitive ? [.caseInsensitive, .dotMatchesLineSeparators]
                                                               : [.dotMatchesLineSeparators]
    let re = try! NSRegularExpression(pattern: regex, options: options)
    return re.firstMatch(in: value, range: NSRange(value.startIndex..., in: value)) != nil
}

/// The documented Person Name rules: case-insensitive, against the whole name or its first
/// component group, a query without ^ being a family name.
private func personNameReference(_ pattern: String, _ name: String) -> Bool {
    var candidates = [name]
    if !pattern.contains("="), name.contains("=") { candidates.append(String(name.split(separator: "=")[0])) }
    var patterns = [pattern]
    if !pattern.contains("^") && !pattern.contains("=") { patterns.append(pattern + "^*") }
    return patterns.contains { p in candidates.contains { wildcardReference(p, $0, caseInsensitive: true) } }
}

private func inRange(_ value: String, _ lower: String?, _ upper: String?) -> Bool {
    !value.isEmpty && (lower.map { value >= $0 } ?? true) && (upper.map { value <= $0 } ?? true)
}

// MARK: - Running queries

private func keys(_ pairs: [(Tag, String)]) -> [QueryKey] { pairs.map { QueryKey(tag: $0.0, value: $0.1) } }

private func find(_ f: QueryFixture, _ model: QueryModel, _ level: QueryLevel, _ pairs: [(Tag, String)],
                  combined: Bool = false, maxMatches: Int? = nil, pageSize: Int = 200) throws -> [QueryMatch] {
    let request = QueryRequest(model: model, level: level,
                               keys: keys([(.queryRetrieveLevel, level.rawValue)] + pairs),
                               combinedDateTimeMatching: combined)
    let cursor = try f.archive.find(request, maxMatches: maxMatches, pageSize: pageSize)
    var matches: [QueryMatch] = []
    while let m = try cursor.next() { matches.append(m) }
    return matches
}

/// The values of `tag` in the matches, checking that no entity comes twice.
private func values(_ matches: [QueryMatch], _ tag: Tag, sourceLocation: SourceLocation = #_sourceLocation) -> Set<String> {
    let list = matches.map { $0[tag] ?? "<absent>" }
    #expect(Set(list).count == list.count, "duplicate matches: \(list)", sourceLocation: sourceLocation)
    return Set(list)
}

private func failure(_ body: () throws -> Void) -> QueryFailure? {
    do {
        try body()
        return nil
    } catch let failure as QueryFailure {
        return failure
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

// MARK: - Tests

@Suite struct QueryTests {
    @Test func patientLevelMatchingInPatientRoot() throws {
        let f = try fixture()
        typealias Case = (keys: [(Tag, String)], expected: (TPatient) -> Bool)
        let cases: [Case] = [
            ([], { _ in true }),
            ([(.patientName, "")], { _ in true }),
            ([(.patientName, "*")], { _ in true }),
            ([(.patientName, "doe*")], { personNameReference("doe*", $0.name) }),
            ([(.patientName, "DOE^J*")], { personNameReference("DOE^J*", $0.name) }),
            ([(.patientName, "doe")], { personNameReference("doe", $0.name) }),
            ([(.patientName, "Doe^John")], { personNameReference("Doe^John", $0.name) }),
            ([(.patientName, "Doe^John^^")], { personNameReference("Doe^John", $0.name) }),
            ([(.patientName, "?oe^Jan?")], { personNameReference("?oe^Jan?", $0.name) }),
            ([(.patientName, "müller*")], { personNameReference("müller*", $0.name) }),
            ([(.patientName, "MÜLLER^JÜRGEN")], { personNameReference("MÜLLER^JÜRGEN", $0.name) }),
            ([(.patientName, "yamada^taro")], { personNameReference("yamada^taro", $0.name) }),
            ([(.patientName, "*太郎*")], { personNameReference("*太郎*", $0.name) }),
            ([(.patientName, "ñúñez")], { personNameReference("ñúñez", $0.name) }),
            ([(.patientName, "o'brien^seán^^dr")], { personNameReference("o'brien^seán^^dr", $0.name) }),
            ([(.patientName, "Doe^John\\Ñúñez")], { personNameReference("Doe^John", $0.name) || personNameReference("Ñúñez", $0.name) }),
            ([(.patientID, "PID001")], { $0.id == "PID001" }),
            ([(.patientID, "PID00?")], { wildcardReference("PID00?", $0.id) }),
            ([(.patientID, "pid001")], { $0.id == "pid001" }),
            ([(.patientID, "X[*")], { wildcardReference("X[*", $0.id) }),
            ([(.patientID, "PID001"), (.issuerOfPatientID, "OTHER")], { $0.id == "PID001" && $0.issuer == "OTHER" }),
            ([(.patientBirthDate, "19700101")], { $0.birth == "19700101" }),
            ([(.patientBirthDate, "19800101-")], { inRange($0.birth, "19800101", nil) }),
            ([(.patientBirthDate, "-19600515")], { inRange($0.birth, nil, "19600515") }),
            ([(.patientBirthDate, "19600101-19751231")], { inRange($0.birth, "19600101", "19751231") }),
            ([(.patientSex, "F")], { $0.sex == "F" }),
            ([(.patientSex, "M\\O")], { $0.sex == "M" || $0.sex == "O" }),
            ([(.patientName, "doe*"), (.patientSex, "F")], { personNameReference("doe*", $0.name) && $0.sex == "F" }),
        ]
        for (pairs, expected) in cases {
            // Issuer of Patient ID as a return key too: Patient ID alone does not name a patient.
            let withIssuer = pairs.contains { $0.0 == .issuerOfPatientID } ? pairs : pairs + [(.issuerOfPatientID, "")]
            let matches = try find(f, .patientRoot, .patient, withIssuer)
            let got = Set(matches.map { ($0[.patientID] ?? "") + "|" + ($0[.issuerOfPatientID] ?? "") })
            #expect(got.count == matches.count)
            let want = Set(f.patients.filter(expected).map(\.key))
            #expect(got == want, "keys \(pairs)")
        }
        // Some answers spelled out, so that the reference itself is checked.
        let doe = try find(f, .patientRoot, .patient, [(.patientName, "doe")])
        #expect(values(doe, .patientName) == ["Doe^John", "Doe^Jane"])
        let muller = try find(f, .patientRoot, .patient, [(.patientName, "müller*")])
        #expect(values(muller, .patientName) == ["Müller^Jürgen", "MÜLLER^Anna"])
        let yamada = try find(f, .patientRoot, .patient, [(.patientName, "yamada^taro")])
        #expect(values(yamada, .patientID) == ["PID005"])
    }

    @Test func studyLevelMatchingInStudyRoot() throws {
        let f = try fixture()
        typealias Case = (keys: [(Tag, String)], expected: (TStudy) -> Bool)
        let cases: [Case] = [
            ([], { _ in true }),
            ([(.studyDate, "20200115")], { $0.date == "20200115" }),
            ([(.studyDate, "20200101-20201231")], { inRange($0.date, "20200101", "20201231") }),
            ([(.studyDate, "-20191231")], { inRange($0.date, nil, "20191231") }),
            ([(.studyDate, "20220101-")], { inRange($0.date, "20220101", nil) }),
            ([(.studyDate, "20200115\\20230707")], { $0.date == "20200115" || $0.date == "20230707" }),
            ([(.studyTime, "0800-0900")], { inRange($0.time, "0800", "090059.999999") }),
            ([(.studyTime, "1415")], { inRange($0.time, "1415", "141559.999999") }),
            ([(.studyTime, "2359-")], { inRange($0.time, "2359", nil) }),
            ([(.studyTime, "-00")], { inRange($0.time, nil, "005959.999999") }),
            ([(.accessionNumber, "ACC1*")], { wildcardReference("ACC1*", $0.accession) }),
            ([(.accessionNumber, "XYZ-1")], { $0.accession == "XYZ-1" }),
            ([(.studyDescription, "*Chest*")], { wildcardReference("*Chest*", $0.description) }),
            ([(.studyDescription, "ct chest")], { $0.description == "ct chest" }),
            ([(.studyID, "7")], { $0.studyID == "7" }),
            ([(.referringPhysicianName, "smith*")], { personNameReference("smith*", $0.referring) }),
            ([(.referringPhysicianName, "müller^hans")], { personNameReference("müller^hans", $0.referring) }),
            ([(.modalitiesInStudy, "MR")], { s in f.seriesOf(s).contains { $0.modality == "MR" } }),
            ([(.modalitiesInStudy, "CT\\US")], { s in f.seriesOf(s).contains { ["CT", "US"].contains($0.modality) } }),
            ([(.modalitiesInStudy, "C?")], { s in f.seriesOf(s).contains { wildcardReference("C?", $0.modality) } }),
            ([(.modalitiesInStudy, "NM")], { s in f.seriesOf(s).contains { $0.modality == "NM" } }),
            ([(.studyInstanceUID, "1.9.1.1\\1.9.1.3\\1.9.1.99")], { ["1.9.1.1", "1.9.1.3"].contains($0.uid) }),
            ([(.studyInstanceUID, "1.9.1.4")], { $0.uid == "1.9.1.4" }),
            ([(.patientName, "doe*")], { personNameReference("doe*", $0.patient.name) }),
            ([(.patientSex, "F"), (.studyDate, "20200101-")], { $0.patient.sex == "F" && inRange($0.date, "20200101", nil) }),
            ([(.patientID, "PID001")], { $0.patient.id == "PID001" }),
            // Mixed range forms are never combined: date and time are matched on their own.
            ([(.studyDate, "20200115-"), (.studyTime, "-1200")],
             { inRange($0.date, "20200115", nil) && inRange($0.time, nil, "120059.999999") }),
        ]
        for (pairs, expected) in cases {
            for combined in [false, true] {
                let matches = try find(f, .studyRoot, .study, pairs, combined: combined)
                #expect(values(matches, .studyInstanceUID) == Set(f.studies.filter(expected).map(\.uid)),
                        "keys \(pairs) combined \(combined)")
            }
        }
        // Spelled out.
        #expect(values(try find(f, .studyRoot, .study, [(.studyDescription, "*Chest*")]), .studyInstanceUID)
                == ["1.9.1.1", "1.9.1.4", "1.9.1.5"])
        #expect(try find(f, .studyRoot, .study, [(.modalitiesInStudy, "NM")]).isEmpty)
        #expect(values(try find(f, .studyRoot, .study, [(.referringPhysicianName, "smith*")]), .studyInstanceUID)
                == ["1.9.1.1", "1.9.1.2", "1.9.1.8"])
    }

    @Test func combinedDateTimeMatching() throws {
        let f = try fixture()
        // From 2019-12-31 13:00 to 2020-01-16 20:00: only S1 (2020-01-15 08:30) falls inside; S4
        // (2019-12-31 12:00) is before and S3 (2020-01-16 23:59:59) after.
        let range = [(Tag.studyDate, "20191231-20200116"), (Tag.studyTime, "1300-2000")]
        func instant(_ s: TStudy) -> String { s.date + s.time.padding(toLength: 6, withPad: "0", startingAt: 0) }
        let combined = try find(f, .studyRoot, .study, range, combined: true)
        #expect(values(combined, .studyInstanceUID)
                == Set(f.studies.filter { !$0.date.isEmpty && !$0.time.isEmpty
                    && instant($0) >= "20191231130000" && instant($0) <= "20200116200059.999999" }.map(\.uid)))
        #expect(values(combined, .studyInstanceUID) == ["1.9.1.1"])
        // Independently: a time between 13:00 and 20:00 on any of those days: none.
        #expect(try find(f, .studyRoot, .study, range, combined: false).isEmpty)
        // A time range that runs "backwards" only makes sense combined.
        let overnight = [(Tag.studyDate, "20191231-20200115"), (Tag.studyTime, "1100-0900")]
        #expect(values(try find(f, .studyRoot, .study, overnight, combined: true), .studyInstanceUID)
                == ["1.9.1.4", "1.9.1.1"])
        #expect(failure { _ = try find(f, .studyRoot, .study, overnight, combined: false) }?.status == QueryStatus.unableToProcess)
        // Lower bounds only.
        let from = [(Tag.studyDate, "20230707-"), (Tag.studyTime, "1011-")]
        #expect(values(try find(f, .studyRoot, .study, from, combined: true), .studyInstanceUID) == ["1.9.1.8"])
        #expect(values(try find(f, .studyRoot, .study, from, combined: false), .studyInstanceUID).isEmpty)
    }

    @Test func studyLevelInPatientRootNeedsThePatient() throws {
        let f = try fixture()
        let all = try find(f, .patientRoot, .study, [(.patientID, "PID001")])
        // Patient ID alone names two patients here (two issuers).
        #expect(values(all, .studyInstanceUID) == Set(f.studies.filter { $0.patient.id == "PID001" }.map(\.uid)))
        let one = try find(f, .patientRoot, .study, [(.patientID, "PID001"), (.issuerOfPatientID, "OTHER")])
        #expect(values(one, .studyInstanceUID) == ["1.9.1.7"])
        let dated = try find(f, .patientRoot, .study, [(.patientID, "PID001"), (.studyDate, "20210101-")])
        #expect(values(dated, .studyInstanceUID) == ["1.9.1.2"])
        // Patient Root answers carry the unique keys of every level down to the level.
        #expect(dated.first?[.patientID] == "PID001")
    }

    @Test func seriesLevelMatchingInBothModels() throws {
        let f = try fixture()
        typealias Case = (keys: [(Tag, String)], expected: (TSeries) -> Bool)
        for study in f.studies {
            let cases: [Case] = [
                ([], { _ in true }),
                ([(.modality, "CT")], { $0.modality == "CT" }),
                ([(.modality, "?R")], { wildcardReference("?R", $0.modality) }),
                ([(.seriesNumber, "99")], { $0.number == "99" }),
                ([(.seriesNumber, "1\\2")], { ["1", "2"].contains($0.number) }),
                ([(.seriesDescription, "*o*")], { wildcardReference("*o*", $0.description) }),
                ([(.bodyPartExamined, "CHEST")], { $0.bodyPart == "CHEST" }),
                ([(.seriesInstanceUID, "1.9.2.11\\1.9.2.13\\1.9.2.41")], { ["1.9.2.11", "1.9.2.13", "1.9.2.41"].contains($0.uid) }),
                // A non-unique key of the study level is matched too.
                ([(.studyDate, "20200115")], { $0.study.date == "20200115" }),
            ]
            for (pairs, expected) in cases {
                let want = Set(f.seriesOf(study).filter(expected).map(\.uid))
                let studyRoot = try find(f, .studyRoot, .series, [(.studyInstanceUID, study.uid)] + pairs)
                #expect(values(studyRoot, .seriesInstanceUID) == want, "study \(study.uid) keys \(pairs)")
                let patientRoot = try find(f, .patientRoot, .series,
                                           [(.patientID, study.patient.id), (.studyInstanceUID, study.uid)] + pairs)
                #expect(values(patientRoot, .seriesInstanceUID) == want, "study \(study.uid) keys \(pairs)")
            }
        }
        // The series emptied by a new version elsewhere is never served.
        let s1 = try find(f, .studyRoot, .series, [(.studyInstanceUID, "1.9.1.1")])
        #expect(values(s1, .seriesInstanceUID) == ["1.9.2.11", "1.9.2.12", "1.9.2.13"])
        #expect(!values(s1, .seriesInstanceUID).contains(f.emptiedSeriesUID))
        // A series key that names a series of another study matches nothing.
        #expect(try find(f, .studyRoot, .series, [(.studyInstanceUID, "1.9.1.1"), (.seriesInstanceUID, "1.9.2.21")]).isEmpty)
    }

    @Test func imageLevelMatchingInBothModels() throws {
        let f = try fixture()
        typealias Case = (keys: [(Tag, String)], expected: (TInstance) -> Bool)
        for series in f.series {
            let cases: [Case] = [
                ([], { _ in true }),
                ([(.sopInstanceUID, "1.9.3.1101\\1.9.3.2102\\1.9.3.1901")], { ["1.9.3.1101", "1.9.3.2102", "1.9.3.1901"].contains($0.sop) }),
                ([(.sopClassUID, ctImage)], { $0.sopClass == ctImage }),
                ([(.instanceNumber, "2")], { $0.number == "2" }),
                ([(.modality, "MR")], { $0.series.modality == "MR" }),
            ]
            for (pairs, expected) in cases {
                let want = Set(f.instancesOf(series: series.uid).filter(expected).map(\.sop))
                let up = [(Tag.studyInstanceUID, series.study.uid), (Tag.seriesInstanceUID, series.uid)]
                #expect(values(try find(f, .studyRoot, .image, up + pairs), .sopInstanceUID) == want)
                #expect(values(try find(f, .patientRoot, .image, [(.patientID, series.study.patient.id)] + up + pairs),
                               .sopInstanceUID) == want)
            }
        }
        // The versioned instance is answered once; the moved one where it now is.
        let se1a = try find(f, .studyRoot, .image, [(.studyInstanceUID, "1.9.1.1"), (.seriesInstanceUID, "1.9.2.11")])
        #expect(values(se1a, .sopInstanceUID) == ["1.9.3.1101", "1.9.3.1102", "1.9.3.1103"])
        let se1b = try find(f, .studyRoot, .image, [(.studyInstanceUID, "1.9.1.1"), (.seriesInstanceUID, "1.9.2.12"),
                                                    (.sopClassUID, ""), (.instanceNumber, "")])
        #expect(values(se1b, .sopInstanceUID) == ["1.9.3.1201", "1.9.3.1901"])
        #expect(se1b.first { $0[.sopInstanceUID] == f.movedSOP }?[.sopClassUID] == ctImage)
        #expect(try find(f, .studyRoot, .image, [(.studyInstanceUID, "1.9.1.1"), (.seriesInstanceUID, f.emptiedSeriesUID)]).isEmpty)
    }

    @Test func computedAttributes() throws {
        let f = try fixture()
        let counts: [(Tag, String)] = [(.numberOfStudyRelatedSeries, ""), (.numberOfStudyRelatedInstances, ""),
                                       (.modalitiesInStudy, ""), (.numberOfPatientRelatedStudies, ""),
                                       (.numberOfPatientRelatedSeries, ""), (.numberOfPatientRelatedInstances, "")]
        let studies = try find(f, .studyRoot, .study, counts)
        #expect(studies.count == f.studies.count)
        for match in studies {
            let study = f.studies.first { $0.uid == match[.studyInstanceUID] }!
            let series = f.seriesOf(study)
            #expect(match[.numberOfStudyRelatedSeries] == String(series.count))
            #expect(match[.numberOfStudyRelatedInstances] == String(f.instancesOf(study: study.uid).count))
            #expect(match[.modalitiesInStudy] == Set(series.map(\.modality)).sorted().joined(separator: "\\"))
            let patientStudies = f.studiesOf(study.patient)
            #expect(match[.numberOfPatientRelatedStudies] == String(patientStudies.count))
            #expect(match[.numberOfPatientRelatedSeries] == String(patientStudies.map { f.seriesOf($0).count }.reduce(0, +)))
            #expect(match[.numberOfPatientRelatedInstances]
                    == String(patientStudies.map { f.instancesOf(study: $0.uid).count }.reduce(0, +)))
        }
        // Spelled out for S1: CT, CT and SR series (the emptied NM series does not count); five
        // current instances (the versioned one once, the moved one in its new series).
        let s1 = studies.first { $0[.studyInstanceUID] == "1.9.1.1" }!
        #expect(s1[.modalitiesInStudy] == "CT\\SR")
        #expect(s1[.numberOfStudyRelatedSeries] == "3")
        #expect(s1[.numberOfStudyRelatedInstances] == "6")

        let patients = try find(f, .patientRoot, .patient, [(.issuerOfPatientID, "")] + counts)
        for match in patients {
            let patient = f.patients.first { $0.id == match[.patientID] && $0.issuer == match[.issuerOfPatientID] }!
            let studies = f.studiesOf(patient)
            #expect(match[.numberOfPatientRelatedStudies] == String(studies.count))
            #expect(match[.numberOfPatientRelatedSeries] == String(studies.map { f.seriesOf($0).count }.reduce(0, +)))
            #expect(match[.numberOfPatientRelatedInstances] == String(studies.map { f.instancesOf(study: $0.uid).count }.reduce(0, +)))
            // Study-level keys are below the PATIENT level: answered zero length.
            #expect(match[.modalitiesInStudy] == "")
        }
        let series = try find(f, .studyRoot, .series, [(.studyInstanceUID, "1.9.1.1"), (.numberOfSeriesRelatedInstances, "")])
        #expect(Dictionary(uniqueKeysWithValues: series.map { ($0[.seriesInstanceUID]!, $0[.numberOfSeriesRelatedInstances]!) })
                == ["1.9.2.11": "3", "1.9.2.12": "2", "1.9.2.13": "1"])
    }

    @Test func responseIdentifierContents() throws {
        let f = try fixture()
        let institutionName = Tag(0x0008, 0x0080)
        let sliceThickness = Tag(0x0018, 0x0050)
        let privateTag = Tag(0x0009, 0x1001)
        let request = QueryRequest(model: .studyRoot, level: .study, keys: [
            QueryKey(tag: .specificCharacterSet, vr: "CS", value: "ISO_IR 100"),
            QueryKey(tag: .queryRetrieveLevel, vr: "CS", value: "STUDY"),
            QueryKey(tag: .studyInstanceUID, vr: "UI", value: "1.9.1.1"),
            QueryKey(tag: .patientName, vr: "PN"),
            QueryKey(tag: institutionName, vr: "LO"),
            QueryKey(tag: sliceThickness, vr: "DS", value: "5"),
            QueryKey(tag: privateTag, vr: "LO"),
            QueryKey(tag: .modality, vr: "CS", value: "CT"),  // a SERIES key in a STUDY query
            QueryKey(tag: .numberOfStudyRelatedInstances, vr: "IS", value: "6"),  // return key only
            QueryKey(tag: .instanceAvailability, vr: "CS"),
            QueryKey(tag: .studyDate, vr: "DA"),
        ])
        let cursor = try f.archive.find(request, maxMatches: nil)
        let match = try #require(try cursor.next())
        #expect(try cursor.next() == nil)
        #expect(match.values.map(\.tag) == match.values.map(\.tag).sorted())
        #expect(match[.specificCharacterSet] == "ISO_IR 192")
        #expect(match[.queryRetrieveLevel] == "STUDY")
        #expect(match[.studyInstanceUID] == "1.9.1.1")
        #expect(match[.patientName] == "Doe^John")
        #expect(match[.studyDate] == "20200115")
        #expect(match[.numberOfStudyRelatedInstances] == "6")
        #expect(match[.instanceAvailability] == "ONLINE")
        for unknown in [institutionName, sliceThickness, privateTag, Tag.modality] {
            #expect(match[unknown] == "", "\(unknown) should be answered zero length")
        }
        #expect(Set(match.values.map(\.tag)).count == match.values.count)
        #expect(cursor.unsupportedKeys == [.modality, sliceThickness, .numberOfStudyRelatedInstances].sorted())
        #expect(cursor.pendingStatus == QueryStatus.pendingUnsupportedOptionalKeys)

        // Unique keys of every level down to the query level are always there, requested or not.
        let image = try find(f, .patientRoot, .image, [(.patientID, "PID001"), (.studyInstanceUID, "1.9.1.1"),
                                                       (.seriesInstanceUID, "1.9.2.13")])
        #expect(image.count == 1)
        #expect(image[0].values.map(\.tag) == [.specificCharacterSet, .sopInstanceUID, .queryRetrieveLevel,
                                               .patientID, .studyInstanceUID, .seriesInstanceUID])
        #expect(image[0][.sopInstanceUID] == "1.9.3.1301")
        let plain = try f.archive.find(QueryRequest(model: .studyRoot, level: .study, keys: []), maxMatches: nil)
        #expect(plain.pendingStatus == QueryStatus.pending)
        #expect(try plain.next()?.values.map(\.tag) == [.specificCharacterSet, .queryRetrieveLevel, .studyInstanceUID])
    }

    @Test func invalidRequestsAreRefused() throws {
        let f = try fixture()
        let a900 = QueryStatus.identifierDoesNotMatchSOPClass
        let c000 = QueryStatus.unableToProcess
        func refusal(_ model: QueryModel, _ level: QueryLevel, _ pairs: [(Tag, String)], combined: Bool = false) -> QueryFailure? {
            failure { _ = try find(f, model, level, pairs, combined: combined) }
        }
        // Hierarchical model: the unique keys above the level.
        let noStudy = refusal(.studyRoot, .series, [(.modality, "CT")])
        #expect(noStudy?.status == a900)
        #expect(noStudy?.offendingElements == [.studyInstanceUID])
        #expect(refusal(.studyRoot, .series, [(.studyInstanceUID, "")])?.status == a900)
        #expect(refusal(.studyRoot, .series, [(.studyInstanceUID, "1.9.1.1\\1.9.1.2")])?.status == a900)
        #expect(refusal(.studyRoot, .image, [(.studyInstanceUID, "1.9.1.1")])?.offendingElements == [.seriesInstanceUID])
        #expect(refusal(.patientRoot, .study, [(.studyDate, "20200101-")])?.offendingElements == [.patientID])
        #expect(refusal(.patientRoot, .study, [(.patientID, "PID*")])?.status == a900)
        #expect(refusal(.patientRoot, .series, [(.patientID, "PID001")])?.offendingElements == [.studyInstanceUID])
        // No PATIENT level in Study Root.
        #expect(refusal(.studyRoot, .patient, [])?.status == a900)
        // The level itself.
        let missing = failure { _ = try QueryRequest(model: .studyRoot, identifier: keys([(.patientName, "Doe*")])) }
        #expect(missing?.status == a900)
        #expect(missing?.offendingElements == [.queryRetrieveLevel])
        #expect(failure { _ = try QueryRequest(model: .studyRoot, identifier: keys([(.queryRetrieveLevel, "FRAME")])) }?.status == a900)
        #expect(failure { _ = try QueryRequest(model: .studyRoot, identifier: keys([(.queryRetrieveLevel, "")])) }?.status == a900)
        let parsed = try QueryRequest(model: .studyRoot, identifier: keys([(.queryRetrieveLevel, " SERIES ")]))
        #expect(parsed.level == .series)
        // Values that cannot be parsed.
        let badRange = refusal(.studyRoot, .study, [(.studyDate, "2020-01-01")])
        #expect(badRange?.status == c000)
        #expect(badRange?.offendingElements == [.studyDate])
        for bad in ["2020", "20201301", "20200132", "20200102-20200101", "2020.01.01", "abcdefgh-", "20200101--"] {
            #expect(refusal(.studyRoot, .study, [(.studyDate, bad)])?.status == c000, "\(bad)")
        }
        for bad in ["25", "1260", "123", "1000-0900", "10:61", "120000.1234567", "1200.5"] {
            #expect(refusal(.studyRoot, .study, [(.studyTime, bad)])?.status == c000, "\(bad)")
        }
        #expect(refusal(.patientRoot, .patient, [(.patientBirthDate, "1970-01-01")])?.offendingElements == [.patientBirthDate])
        // And what is accepted: the retired HH:MM:SS form, surrounding spaces, "-" alone.
        #expect(refusal(.studyRoot, .study, [(.studyTime, "08:30:00")]) == nil)
        #expect(refusal(.studyRoot, .study, [(.studyDate, " 20200115 ")]) == nil)
        #expect(try find(f, .studyRoot, .study, [(.studyDate, "-")]).count == f.studies.count)
    }

    @Test func maxMatchesStopsAndPagesStream() throws {
        let f = try fixture()
        let all = try find(f, .studyRoot, .study, [])
        #expect(all.count == f.studies.count)
        for pageSize in [1, 2, 3, 200] {
            let paged = try find(f, .studyRoot, .study, [], pageSize: pageSize)
            #expect(paged.map { $0[.studyInstanceUID] } == all.map { $0[.studyInstanceUID] }, "page size \(pageSize)")
            let images = try find(f, .studyRoot, .image, [(.studyInstanceUID, "1.9.1.1"), (.seriesInstanceUID, "1.9.2.11")],
                                  pageSize: pageSize)
            #expect(images.count == 3)
        }
        for (limit, pageSize) in [(3, 200), (3, 2), (5, 1), (0, 200), (7, 7)] {
            let request = QueryRequest(model: .studyRoot, level: .study, keys: [])
            let cursor = try f.archive.find(request, maxMatches: limit, pageSize: pageSize)
            var got: [String] = []
            while let m = try cursor.next() { got.append(m[.studyInstanceUID]!) }
            #expect(got == all.prefix(limit).map { $0[.studyInstanceUID]! }, "limit \(limit) page \(pageSize)")
            #expect(cursor.limitReached, "limit \(limit) page \(pageSize)")
            #expect(try cursor.next() == nil)
            #expect(cursor.count == limit)
        }
        for limit in [f.studies.count, f.studies.count + 1] {
            let cursor = try f.archive.find(QueryRequest(model: .studyRoot, level: .study, keys: []), maxMatches: limit)
            var n = 0
            while try cursor.next() != nil { n += 1 }
            #expect(n == f.studies.count)
            #expect(!cursor.limitReached)
        }
        // The limit counts matches, not rows read: a selective query under the limit is complete.
        let cursor = try f.archive.find(QueryRequest(model: .studyRoot, level: .study,
                                                     keys: keys([(.modalitiesInStudy, "MR")])), maxMatches: 2, pageSize: 1)
        var n = 0
        while try cursor.next() != nil { n += 1 }
        #expect(n == 2 && !cursor.limitReached)
    }

    @Test func retrieveItemsAtEachLevel() throws {
        let f = try fixture()
        func sops(_ items: [RetrieveItem]) -> Set<String> {
            let list = items.map(\.sopInstanceUID)
            #expect(Set(list).count == list.count)
            return Set(list)
        }
        // PATIENT (Patient Root only): a single Patient ID, narrowed by an issuer when given.
        let p1 = try f.archive.retrieveItems(model: .patientRoot, level: .patient, keys: keys([(.patientID, "PID001")]))
        #expect(sops(p1) == Set(f.instances.filter { $0.series.study.patient.id == "PID001" }.map(\.sop)))
        let p6 = try f.archive.retrieveItems(model: .patientRoot, level: .patient,
                                             keys: keys([(.patientID, "PID001"), (.issuerOfPatientID, "OTHER")]))
        #expect(sops(p6) == ["1.9.3.7101"])
        // STUDY: list of UIDs; Patient Root also wants the patient.
        let studies = try f.archive.retrieveItems(model: .studyRoot, level: .study,
                                                  keys: keys([(.studyInstanceUID, "1.9.1.1\\1.9.1.3\\1.9.1.99")]))
        #expect(sops(studies) == Set(f.instances.filter { ["1.9.1.1", "1.9.1.3"].contains($0.series.study.uid) }.map(\.sop)))
        #expect(sops(studies).count == 8)
        let prStudy = try f.archive.retrieveItems(model: .patientRoot, level: .study,
                                                  keys: keys([(.patientID, "PID002"), (.studyInstanceUID, "1.9.1.1\\1.9.1.3")]))
        #expect(sops(prStudy) == ["1.9.3.3101", "1.9.3.3102"])
        // SERIES: a series of another study is not retrieved.
        let series = try f.archive.retrieveItems(model: .studyRoot, level: .series,
                                                 keys: keys([(.studyInstanceUID, "1.9.1.1"),
                                                             (.seriesInstanceUID, "1.9.2.11\\1.9.2.12\\1.9.2.21")]))
        #expect(sops(series) == ["1.9.3.1101", "1.9.3.1102", "1.9.3.1103", "1.9.3.1201", "1.9.3.1901"])
        #expect(try f.archive.retrieveItems(model: .studyRoot, level: .series,
                                            keys: keys([(.studyInstanceUID, "1.9.1.1"), (.seriesInstanceUID, f.emptiedSeriesUID)])).isEmpty)
        // IMAGE, in both models.
        let imageKeys = [(Tag.studyInstanceUID, "1.9.1.1"), (Tag.seriesInstanceUID, "1.9.2.11"),
                         (Tag.sopInstanceUID, "1.9.3.1101\\1.9.3.1103")]
        let images = try f.archive.retrieveItems(model: .studyRoot, level: .image, keys: keys(imageKeys))
        #expect(sops(images) == ["1.9.3.1101", "1.9.3.1103"])
        #expect(sops(try f.archive.retrieveItems(model: .patientRoot, level: .image,
                                                 keys: keys([(.patientID, "PID001")] + imageKeys))) == ["1.9.3.1101", "1.9.3.1103"])
        #expect(try f.archive.retrieveItems(model: .patientRoot, level: .image,
                                            keys: keys([(.patientID, "PID002")] + imageKeys)).isEmpty)
        // A long list (past the inline placeholders) works the same.
        let many = (0..<500).map { "1.9.3.\($0)" } + ["1.9.3.1102", "1.9.3.1201"]
        let long = try f.archive.retrieveItems(model: .studyRoot, level: .image,
                                               keys: keys([(.studyInstanceUID, "1.9.1.1"), (.seriesInstanceUID, "1.9.2.11"),
                                                           (.sopInstanceUID, many.joined(separator: "\\"))]))
        #expect(sops(long) == ["1.9.3.1102"])
        let longFind = try find(f, .studyRoot, .study, [(.studyInstanceUID, (many + ["1.9.1.2"]).joined(separator: "\\"))])
        #expect(values(longFind, .studyInstanceUID) == ["1.9.1.2"])

        // What each item says: the served version, its file, hash and size.
        for item in studies + p1 {
            let expected = f.instances.first { $0.sop == item.sopInstanceUID }!
            #expect(item.sopClassUID == expected.sopClass)
            #expect(item.studyInstanceUID == expected.series.study.uid)
            #expect(item.seriesInstanceUID == expected.series.uid)
            #expect(item.transferSyntaxUID == explicitLittle)
            #expect(item.sha256 == f.servedSHA[item.sopInstanceUID])
            #expect(item.path.hasPrefix("/"))
            let bytes = try Data(contentsOf: URL(fileURLWithPath: item.path))
            #expect(Int64(bytes.count) == item.size)
            #expect(SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() == item.sha256)
            #expect(Array(bytes.suffix(expected.payload.count)) == expected.payload)
        }
        #expect(studies.first { $0.sopInstanceUID == f.versionedSOP }.map { Array(try! Data(contentsOf: URL(fileURLWithPath: $0.path)).suffix(2)) } == Array("v2".utf8))

        // Refusals (A900).
        let a900 = QueryStatus.identifierDoesNotMatchSOPClass
        let refusals: [(QueryModel, QueryLevel, [(Tag, String)])] = [
            (.patientRoot, .patient, []),
            (.patientRoot, .patient, [(.patientID, "PID001\\PID002")]),
            (.patientRoot, .patient, [(.patientID, "PID*")]),
            (.patientRoot, .study, [(.studyInstanceUID, "1.9.1.1")]),
            (.studyRoot, .patient, [(.patientID, "PID001")]),
            (.studyRoot, .study, []),
            (.studyRoot, .study, [(.studyInstanceUID, "*")]),
            (.studyRoot, .series, [(.seriesInstanceUID, "1.9.2.11")]),
            (.studyRoot, .image, [(.studyInstanceUID, "1.9.1.1"), (.sopInstanceUID, "1.9.3.1101")]),
            (.studyRoot, .image, [(.studyInstanceUID, "1.9.1.1"), (.seriesInstanceUID, "1.9.2.11"), (.sopInstanceUID, "")]),
        ]
        for (model, level, pairs) in refusals {
            let refusal = failure { _ = try f.archive.retrieveItems(model: model, level: level, keys: keys(pairs)) }
            #expect(refusal?.status == a900, "\(model) \(level) \(pairs)")
        }
    }

    @Test func queriesRunOnIndexes() throws {
        let f = try fixture()
        func plan(_ model: QueryModel, _ level: QueryLevel, _ pairs: [(Tag, String)]) throws -> String {
            let cursor = try f.archive.find(QueryRequest(model: model, level: level, keys: keys(pairs)), maxMatches: nil)
            return try cursor.queryPlan().joined(separator: "\n")
        }
        // Which index serves which key (names from Schema.swift and QueryIndex).
        let expectations: [(QueryModel, QueryLevel, [(Tag, String)], String)] = [
            (.patientRoot, .patient, [(.patientName, "doe^j*")], "query_patient_name"),
            (.patientRoot, .patient, [(.patientID, "PID001")], "sqlite_autoindex_patient_1"),
            (.studyRoot, .study, [(.studyDate, "20200101-20201231")], "study_date_time"),
            (.studyRoot, .study, [(.accessionNumber, "ACC1*")], "study_accession"),
            (.studyRoot, .study, [(.modalitiesInStudy, "MR")], "query_series_modality_study"),
            (.studyRoot, .study, [(.studyInstanceUID, "1.9.1.1")], "sqlite_autoindex_study_1"),
            (.studyRoot, .study, [(.patientName, "doe*")], "query_patient_name"),
            (.studyRoot, .study, [(.patientID, "PID001")], "sqlite_autoindex_patient_1"),
            (.studyRoot, .study, [(.studyDate, "20200101-"), (.studyTime, "0800-")], "study_date_time"),
            (.studyRoot, .study, [(.referringPhysicianName, "smith*")], "query_study_referring_physician"),
            (.studyRoot, .series, [(.studyInstanceUID, "1.9.1.1")], "series_study"),
            (.studyRoot, .image, [(.studyInstanceUID, "1.9.1.1"), (.seriesInstanceUID, "1.9.2.11")], "instance_series"),
            (.studyRoot, .image, [(.studyInstanceUID, "1.9.1.1"), (.seriesInstanceUID, "1.9.2.11"),
                                  (.sopInstanceUID, "1.9.3.1101")], "instance_"),
        ]
        for (model, level, pairs, index) in expectations {
            let text = try plan(model, level, pairs)
            if ProcessInfo.processInfo.environment["QUERY_PRINT_PLANS"] != nil { print("\(level) \(pairs):\n\(text)\n") }
            #expect(text.contains(index), "\(pairs):\n\(text)")
            // Never a full scan of the instance table.
            #expect(!text.contains("SCAN i\n") && !text.hasSuffix("SCAN i") && !text.contains("SCAN instance"), "\(pairs):\n\(text)")
        }
    }

    @Test func valuesOnlyEverTravelAsArguments() throws {
        let f = try fixture()
        for hostile in ["'; DROP TABLE study; --", "x' OR '1'='1", "*' OR 1=1 --*", "[a-z]*", "%", "_"] {
            #expect(try find(f, .studyRoot, .study, [(.studyDescription, hostile)]).isEmpty, "\(hostile)")
            #expect(try find(f, .studyRoot, .study, [(.referringPhysicianName, hostile)]).isEmpty, "\(hostile)")
            #expect(try find(f, .studyRoot, .study, [(.studyInstanceUID, hostile)]).isEmpty, "\(hostile)")
        }
        #expect(try find(f, .studyRoot, .study, []).count == f.studies.count)
        // Padding is not significant: a UID padded with NUL, a CS with spaces.
        #expect(values(try find(f, .studyRoot, .study, [(.studyInstanceUID, "1.9.1.2\0")]), .studyInstanceUID) == ["1.9.1.2"])
        #expect(values(try find(f, .studyRoot, .series, [(.studyInstanceUID, "1.9.1.2\0"), (.modality, " MR ")]),
                       .seriesInstanceUID) == ["1.9.2.21", "1.9.2.22"])
        #expect(try f.archive.retrieveItems(model: .studyRoot, level: .study, keys: keys([(.studyInstanceUID, "1.9.1.2\0")])).count == 3)
    }

    @Test func personNameMatcherUnits() {
        #expect(PersonName.matches(value: "Doe^John", pattern: "doe"))
        #expect(PersonName.matches(value: "Doe^John", pattern: "DOE^JOHN"))
        #expect(PersonName.matches(value: "Doe^John^^^", pattern: "Doe^John"))
        #expect(PersonName.matches(value: "Doe ^ John", pattern: "Doe^John"))
        #expect(!PersonName.matches(value: "Doe^John", pattern: "Doe^Jo"))
        #expect(!PersonName.matches(value: "Doeson^John", pattern: "Doe"))
        #expect(PersonName.matches(value: "Doeson^John", pattern: "Doe*"))
        #expect(PersonName.matches(value: "Müller^Jürgen", pattern: "MÜLLER^J?RGEN"))
        // Canonically equivalent spellings (precomposed / combining) are the same name.
        #expect(PersonName.matches(value: "M\u{00FC}ller", pattern: "mu\u{0308}ller"))
        #expect(PersonName.matches(value: "Yamada^Taro=山田^太郎", pattern: "Yamada^Taro"))
        #expect(PersonName.matches(value: "Yamada^Taro=山田^太郎", pattern: "Yamada^Taro=山田^太郎"))
        #expect(!PersonName.matches(value: "Yamada^Taro=山田^太郎", pattern: "Yamada^Taro=山田"))
        #expect(PersonName.matches(value: "", pattern: "*"))
        // The index prefix never excludes a match: every accepted name starts with it.
        for (name, pattern) in [("Doe^John", "DOE^J*"), ("Müller", "mü*"), ("K\u{212A}elvin", "k*"), ("Doe^John", "doe")] {
            let prefix = PersonName.indexPrefix(pattern)
            if PersonName.matches(value: name, pattern: pattern) {
                #expect(name.lowercased().hasPrefix(prefix), "\(name) \(pattern) prefix \(prefix)")
            }
        }
        #expect(PersonName.indexPrefix("Doe^J*") == "doe")
        #expect(PersonName.indexPrefix("mü*") == "m")
        #expect(PersonName.indexPrefix("*x") == "")
    }

    /// Thousands of rows written straight into the index (the receive path is not under test
    /// here): answers stay right across many pages, and a selective query does not walk them all.
    @Test func manyStudiesStreamInPages() throws {
        _ = queryMigrationsRegistered
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("query-scale-" + UUID().uuidString)
        let archive = try Archive(home: home, logger: Logger(label: "query-test"))
        defer { archive.close() }
        let studyCount = 5000
        let patientCount = 700
        func date(_ n: Int) -> String {
            let year = 2000 + n % 20, month = 1 + n % 12, day = 1 + n % 28
            return String(year) + (month < 10 ? "0" : "") + String(month) + (day < 10 ? "0" : "") + String(day)
        }
        let modalities = ["CT", "MR", "US", "CR"]
        try archive.database.write { db in
            for n in 0..<studyCount {
                let patientID = "P" + String(n % patientCount)
                try db.execute(sql: "INSERT INTO patient (patient_id, patient_name) VALUES (?, ?) ON CONFLICT DO NOTHING",
                               arguments: [patientID, "Name" + String(n % patientCount) + "^Given"])
                let patient = try Int64.fetchOne(db, sql: "SELECT id FROM patient WHERE patient_id = ?", arguments: [patientID])!
                try db.execute(sql: """
                    INSERT INTO study (patient_ref, study_instance_uid, study_date, last_received_at) VALUES (?, ?, ?, '')
                    """, arguments: [patient, "2.1." + String(n), date(n)])
                try db.execute(sql: "INSERT INTO series (study_ref, series_instance_uid, modality) VALUES (?, ?, ?)",
                               arguments: [db.lastInsertedRowID, "2.2." + String(n), modalities[n % 4]])
                let series = db.lastInsertedRowID
                for k in 0..<2 {
                    try db.execute(sql: """
                        INSERT INTO instance (series_ref, sop_instance_uid, sop_class_uid, transfer_syntax_uid, sha256, size,
                                              path, calling_ae_title, received_at, version, is_current)
                        VALUES (?, ?, '1.2.3', '1.2.840.10008.1.2.1', ?, 1, 'x', 'AE', '', 1, 1)
                        """, arguments: [series, "2.3." + String(n) + "." + String(k), String(n) + "." + String(k)])
                }
            }
        }
        func count(_ pairs: [(Tag, String)], maxMatches: Int? = nil) throws -> (Int, Bool, Duration) {
            let clock = ContinuousClock()
            var n = 0
            var reached = false
            let elapsed = try clock.measure {
                let cursor = try archive.find(QueryRequest(model: .studyRoot, level: .study,
                                                           keys: keys(pairs + [(.numberOfStudyRelatedInstances, "")])),
                                              maxMatches: maxMatches)
                var last = ""
                while let m = try cursor.next() {
                    n += 1
                    #expect(m[.numberOfStudyRelatedInstances] == "2")
                    last = m[.studyInstanceUID]!
                }
                _ = last
                reached = cursor.limitReached
            }
            return (n, reached, elapsed)
        }
        let all = try count([])
        #expect(all.0 == studyCount && !all.1)
        let year = try count([(.studyDate, "20050101-20051231")])
        #expect(year.0 == (0..<studyCount).filter { date($0).hasPrefix("2005") }.count)
        let names = try count([(.patientName, "name12*")])
        #expect(names.0 == (0..<studyCount).filter { String($0 % patientCount).hasPrefix("12") }.count)
        let modality = try count([(.modalitiesInStudy, "MR")])
        #expect(modality.0 == studyCount / 4)
        let limited = try count([], maxMatches: 1000)
        #expect(limited.0 == 1000 && limited.1)
        if ProcessInfo.processInfo.environment["QUERY_PRINT_PLANS"] != nil {
            print("all \(all) year \(year) names \(names) modality \(modality) limited \(limited)")
        }
    }
}

import Foundation
import FoundationXML
import Testing

@testable import Exchange

@Suite("DocumentEntryTests")
struct DocumentEntryTests {
    static let kosUID = "1.2.826.0.1.3680043.8.498.1"
    static let studyUID = "1.2.826.0.1.3680043.8.498.100"
    static let affinityOID = "1.3.6.1.4.1.21367.2005.3.7"
    static let nodeOID = "1.2.826.0.1.3680043.8.498.9000"
    // 2024-03-05 06:07:08 UTC
    static let created = Date(timeIntervalSince1970: 1_709_618_828)

    static func input(
        bytes: Data = Data("abc".utf8), kos: String = kosUID, issuer: String? = "2.16.840.1.113883.3.999",
        studyDate: String? = "20240301", studyTime: String? = "143005.123", description: String? = "CT THORAX",
        accession: String? = "ACC123", accessionIssuer: String? = "1.2.3.4.5.6",
        includeInfo: Bool = false, status: AvailabilityStatus = .approved
    ) -> DocumentEntryInput {
        DocumentEntryInput(
            document: .bytes(bytes), kosSOPInstanceUID: kos, studyInstanceUID: studyUID,
            patientID: "PAT001 ", issuerOfPatientID: issuer, affinityDomainOID: affinityOID,
            nodeOID: nodeOID, homeCommunityID: "1.2.826.0.1.3680043.8.498.7", studyDate: studyDate,
            studyTime: studyTime, studyDescription: description, accessionNumber: accession,
            accessionNumberIssuerOID: accessionIssuer, creationDate: created, status: status,
            ledgerIndex: 42, retrieveURL: "https://node.example/manifests/\(kos)",
            includeSourcePatientInfo: includeInfo, patientName: "Doe^John^Q^Dr^III",
            patientBirthDate: "19650120", patientSex: "M")
    }

    // MARK: Attribute values

    @Test func identifiersAndTimes() {
        let e = DocumentEntry(Self.input())
        #expect(e.uniqueId == Self.kosUID)
        #expect(e.patientId == "PAT001^^^&1.3.6.1.4.1.21367.2005.3.7&ISO")
        #expect(e.sourcePatientId == "PAT001^^^&2.16.840.1.113883.3.999&ISO")
        #expect(e.referenceIdList == [
            "ACC123^^^&1.2.3.4.5.6&ISO^urn:ihe:iti:xds:2013:accession",
            "1.2.826.0.1.3680043.8.498.100^^^^urn:ihe:iti:xds:2016:studyInstanceUID",
        ])
        #expect(e.creationTime == "20240305060708")
        #expect(e.serviceStartTime == "20240301143005")
        #expect(e.mimeType == "application/dicom")
        #expect(e.formatCode == Code("1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.2.6.1", "Key Object Selection Document"))
        #expect(e.repositoryUniqueId == Self.nodeOID)
        #expect(e.homeCommunityId == "urn:oid:1.2.826.0.1.3680043.8.498.7")
        #expect(e.title == "CT THORAX")
        #expect(e.languageCode == "en-US")
        #expect(e.availabilityStatus == "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved")
        #expect(e.ledgerIndex == 42)
        #expect(e.studyInstanceUID == Self.studyUID)
        #expect(e.sourcePatientInfo == nil)
        #expect(e.codes == .defaults)
    }

    @Test func sourcePatientIdForms() {
        var i = Self.input(issuer: "HOSP^A")
        #expect(DocumentEntry(i).sourcePatientId == "PAT001^^^HOSP\\S\\A")
        i = Self.input(issuer: nil)
        #expect(DocumentEntry(i).sourcePatientId == "PAT001^^^&\(Self.nodeOID)&ISO")
        i = Self.input(issuer: "HOSP")
        i.issuerOfPatientIDUniversalEntityID = "1.2.3.99"
        #expect(DocumentEntry(i).sourcePatientId == "PAT001^^^HOSP&1.2.3.99&ISO")
        i.patientID = "A&B"
        #expect(DocumentEntry(i).patientId == "A\\T\\B^^^&\(Self.affinityOID)&ISO")
    }

    @Test func referenceIdListWithoutAccessionOrIssuer() {
        #expect(DocumentEntry(Self.input(accession: nil)).referenceIdList
            == ["\(Self.studyUID)^^^^urn:ihe:iti:xds:2016:studyInstanceUID"])
        #expect(DocumentEntry(Self.input(accessionIssuer: nil)).referenceIdList.first
            == "ACC123^^^&\(Self.nodeOID)&ISO^urn:ihe:iti:xds:2013:accession")
    }

    @Test func serviceStartTimePrecisionAndZone() {
        #expect(DocumentEntry(Self.input(studyTime: nil)).serviceStartTime == "20240301")
        #expect(DocumentEntry(Self.input(studyTime: "1430")).serviceStartTime == "202403011430")
        #expect(DocumentEntry(Self.input(studyTime: "14:30:05")).serviceStartTime == "20240301143005")
        #expect(DocumentEntry(Self.input(studyTime: "garbage")).serviceStartTime == "20240301")
        #expect(DocumentEntry(Self.input(studyDate: nil)).serviceStartTime == nil)
        #expect(DocumentEntry(Self.input(studyDate: "2024-03-01")).serviceStartTime == nil)
        var i = Self.input(studyDate: "20240301", studyTime: "003005")
        i.timezoneOffsetFromUTC = "+0100"
        #expect(DocumentEntry(i).serviceStartTime == "20240229233005")
        i.timezoneOffsetFromUTC = "-0530"
        #expect(DocumentEntry(i).serviceStartTime == "20240301060005")
    }

    @Test func hashesAndSize() {
        // RFC 3174 / FIPS 180 test vector "abc".
        let e = DocumentEntry(Self.input(bytes: Data("abc".utf8)))
        #expect(e.hash == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(e.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(e.size == 3)
        let empty = DocumentEntry(Self.input(bytes: Data()))
        #expect(empty.hash == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(empty.size == 0)
        var i = Self.input()
        i.document = .digests(sha1: "A9993E364706816ABA3E25717850C26C9CD0D89D", sha256: "AB", size: 3)
        #expect(DocumentEntry(i).hash == "a9993e364706816aba3e25717850c26c9cd0d89d")
    }

    @Test func entryUUIDIsStableAndDistinct() {
        let a = DocumentEntry(Self.input()).entryUUID
        // Python: uuid.uuid5(uuid.NAMESPACE_OID, "1.2.826.0.1.3680043.8.498.1")
        #expect(a == "urn:uuid:52f20efb-3cd2-5af3-bd3d-8aa5a52898e8")
        #expect(DocumentEntry(Self.input(bytes: Data("other".utf8))).entryUUID == a)
        let b = DocumentEntry(Self.input(kos: "1.2.826.0.1.3680043.8.498.2")).entryUUID
        #expect(b == "urn:uuid:1ad273a8-8361-507d-8ca1-332236a2eca3")
        #expect(a != b)
    }

    @Test func titleFallbackAndLength() {
        #expect(DocumentEntry(Self.input(description: nil)).title == "Imaging manifest")
        #expect(DocumentEntry(Self.input(description: "   ")).title == "Imaging manifest")
        #expect(DocumentEntry(Self.input(description: String(repeating: "x", count: 300))).title.count == 127)
    }

    @Test func sourcePatientInfoOnlyWhenAsked() throws {
        let e = DocumentEntry(Self.input(includeInfo: true))
        #expect(e.sourcePatientInfo == [
            "PID-3|PAT001^^^&2.16.840.1.113883.3.999&ISO",
            "PID-5|Doe^John^Q^III^Dr",
            "PID-7|19650120",
            "PID-8|M",
        ])
        let without = String(decoding: try DocumentEntry.jsonEncoder.encode(DocumentEntry(Self.input())), as: UTF8.self)
        #expect(!without.contains("sourcePatientInfo"))
        #expect(!EbRIM.extrinsicObject(DocumentEntry(Self.input())).contains("sourcePatientInfo"))
        #expect(EbRIM.extrinsicObject(e).contains("PID-8|M"))
    }

    @Test func deprecatedStatus() {
        #expect(DocumentEntry(Self.input(status: .deprecated)).availabilityStatus
            == "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated")
    }

    // MARK: JSON

    @Test func jsonRoundTripsWithSortedKeys() throws {
        let e = DocumentEntry(Self.input(includeInfo: true))
        let data = try DocumentEntry.jsonEncoder.encode(e)
        #expect(try DocumentEntry.jsonDecoder.decode(DocumentEntry.self, from: data) == e)
        #expect(try DocumentEntry.jsonEncoder.encode(e) == data)
        let text = String(decoding: data, as: UTF8.self)
        let keys = ["availabilityStatus", "classCode", "confidentialityCode", "creationTime", "entryUUID"]
        let positions = keys.map { text.range(of: "\"\($0)\"")!.lowerBound }
        #expect(positions == positions.sorted())
        #expect(text.contains("\"retrieveURL\":\"https://node.example/manifests/"))
    }

    // MARK: ebRIM

    static func elements(_ node: XMLNode, named local: String) -> [XMLElement] {
        var out: [XMLElement] = []
        for child in node.children ?? [] {
            if let el = child as? XMLElement {
                if el.localName == local { out.append(el) }
                out += elements(el, named: local)
            }
        }
        return out
    }

    static func attr(_ el: XMLElement, _ name: String) -> String? { el.attribute(forName: name)?.stringValue }

    static func slotValues(_ object: XMLElement, _ name: String) -> [String]? {
        guard let slot = (object.children ?? []).compactMap({ $0 as? XMLElement })
            .first(where: { $0.localName == "Slot" && attr($0, "name") == name }) else { return nil }
        return elements(slot, named: "Value").map { $0.stringValue ?? "" }
    }

    @Test func extrinsicObjectParsesAndCarriesTheMetadata() throws {
        let e = DocumentEntry(Self.input())
        let doc = try XMLDocument(xmlString: EbRIM.extrinsicObject(e), options: [])
        let eo = try #require(doc.rootElement())
        #expect(eo.localName == "ExtrinsicObject")
        #expect(eo.uri == "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0")
        #expect(Self.attr(eo, "id") == e.entryUUID)
        #expect(Self.attr(eo, "objectType") == "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1")
        #expect(Self.attr(eo, "mimeType") == "application/dicom")
        #expect(Self.attr(eo, "status") == "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved")
        #expect(Self.attr(eo, "home") == "urn:oid:1.2.826.0.1.3680043.8.498.7")

        #expect(Self.slotValues(eo, "creationTime") == ["20240305060708"])
        #expect(Self.slotValues(eo, "hash") == ["a9993e364706816aba3e25717850c26c9cd0d89d"])
        #expect(Self.slotValues(eo, "size") == ["3"])
        #expect(Self.slotValues(eo, "repositoryUniqueId") == [Self.nodeOID])
        #expect(Self.slotValues(eo, "sourcePatientId") == ["PAT001^^^&2.16.840.1.113883.3.999&ISO"])
        #expect(Self.slotValues(eo, "serviceStartTime") == ["20240301143005"])
        #expect(Self.slotValues(eo, "languageCode") == ["en-US"])
        #expect(Self.slotValues(eo, "urn:ihe:iti:xds:2013:referenceIdList") == e.referenceIdList)
        // Extensions stay out of ebRIM.
        #expect(Self.slotValues(eo, "sha256") == nil)
        #expect(Self.slotValues(eo, "ledgerIndex") == nil)

        let expected: [String: Code] = [
            "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a": e.classCode,
            "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983": e.typeCode,
            "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d": e.formatCode,
            "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f": e.confidentialityCode,
            "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1": e.healthcareFacilityTypeCode,
            "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead": e.practiceSettingCode,
        ]
        let classifications = Self.elements(eo, named: "Classification")
        #expect(classifications.count == expected.count)
        var seenIDs = Set<String>()
        for c in classifications {
            let scheme = try #require(Self.attr(c, "classificationScheme"))
            let code = try #require(expected[scheme], "unexpected scheme \(scheme)")
            #expect(Self.attr(c, "classifiedObject") == e.entryUUID)
            #expect(Self.attr(c, "nodeRepresentation") == code.code)
            #expect(Self.attr(c, "objectType") == "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification")
            #expect(Self.slotValues(c, "codingScheme") == [code.scheme])
            let name = try #require(Self.elements(c, named: "LocalizedString").first)
            #expect(Self.attr(name, "value") == code.display)
            let id = try #require(Self.attr(c, "id"))
            #expect(id.hasPrefix("urn:uuid:"))
            seenIDs.insert(id)
        }
        #expect(seenIDs.count == classifications.count)
        #expect(Set(classifications.compactMap { Self.attr($0, "classificationScheme") }) == Set(expected.keys))

        let ids = Self.elements(eo, named: "ExternalIdentifier")
        #expect(ids.count == 2)
        let byScheme = Dictionary(uniqueKeysWithValues: ids.map { (Self.attr($0, "identificationScheme") ?? "", $0) })
        let pid = try #require(byScheme["urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"])
        #expect(Self.attr(pid, "value") == "PAT001^^^&1.3.6.1.4.1.21367.2005.3.7&ISO")
        #expect(Self.attr(pid, "registryObject") == e.entryUUID)
        #expect(Self.elements(pid, named: "LocalizedString").first.flatMap { Self.attr($0, "value") } == "XDSDocumentEntry.patientId")
        let uid = try #require(byScheme["urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"])
        #expect(Self.attr(uid, "value") == Self.kosUID)
        #expect(Self.elements(uid, named: "LocalizedString").first.flatMap { Self.attr($0, "value") } == "XDSDocumentEntry.uniqueId")

        // Stable rendering.
        #expect(EbRIM.extrinsicObject(e) == EbRIM.extrinsicObject(DocumentEntry(Self.input())))
    }

    @Test func specialCharactersAreEscaped() throws {
        let title = "A<&>\"'B"
        var i = Self.input(description: title, accession: "X&Y<Z")
        i.includeSourcePatientInfo = true
        i.patientName = "O'Brien^\"Jo\"<&>"
        let e = DocumentEntry(i)
        let xml = EbRIM.extrinsicObject(e)
        #expect(xml.contains("value=\"A&lt;&amp;&gt;&quot;&apos;B\""))
        #expect(!xml.contains(title))
        let doc = try XMLDocument(xmlString: xml, options: [])
        let eo = try #require(doc.rootElement())
        let name = (eo.children ?? []).compactMap { $0 as? XMLElement }.first { $0.localName == "Name" }
        let localized = try #require(name.flatMap { Self.elements($0, named: "LocalizedString").first })
        #expect(Self.attr(localized, "value") == title)
        #expect(Self.slotValues(eo, "urn:ihe:iti:xds:2013:referenceIdList")?.first
            == "X\\T\\Y<Z^^^&1.2.3.4.5.6&ISO^urn:ihe:iti:xds:2013:accession")
        #expect(Self.slotValues(eo, "sourcePatientInfo")?.contains("PID-5|O'Brien^\"Jo\"<\\T\\>") == true)
    }

    @Test func adhocQueryResponseParses() throws {
        let a = DocumentEntry(Self.input())
        let b = DocumentEntry(Self.input(kos: "1.2.826.0.1.3680043.8.498.2", status: .deprecated))
        let doc = try XMLDocument(xmlString: EbRIM.adhocQueryResponse([a, b]), options: [])
        let root = try #require(doc.rootElement())
        #expect(root.localName == "AdhocQueryResponse")
        #expect(root.uri == "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0")
        #expect(Self.attr(root, "status") == "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success")
        let list = try #require(Self.elements(root, named: "RegistryObjectList").first)
        #expect(list.uri == "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0")
        let objects = Self.elements(list, named: "ExtrinsicObject")
        #expect(objects.map { Self.attr($0, "id") } == [a.entryUUID, b.entryUUID])
        #expect(objects.map { Self.attr($0, "status") } == [
            "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved",
            "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated",
        ])
        #expect(objects.allSatisfy { $0.uri == "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0" })
        // Child ids differ between entries.
        let ids = Self.elements(list, named: "Classification").compactMap { Self.attr($0, "id") }
        #expect(Set(ids).count == 12)

        let empty = try XMLDocument(xmlString: EbRIM.adhocQueryResponse([]), options: [])
        #expect(Self.elements(try #require(empty.rootElement()), named: "ExtrinsicObject").isEmpty)
    }

    @Test func uuidV5MatchesRFCExample() {
        // RFC 9562 Appendix A.4: UUIDv5 of "www.example.com" in the DNS namespace.
        let dns: [UInt8] = [0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8]
        #expect(XDSIdentifiers.uuidV5(namespace: dns, name: "www.example.com") == "2ed6657d-e927-568b-95e1-2665a8aea6a2")
    }
}

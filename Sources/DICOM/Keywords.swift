/// PS3.6 keywords of the attributes the bridge queries on, for the CLI's `-k Keyword=value`.
public enum Keyword {
    public static let tags: [String: Tag] = [
        "SpecificCharacterSet": .specificCharacterSet, "SOPClassUID": .sopClassUID, "SOPInstanceUID": .sopInstanceUID,
        "StudyDate": .studyDate, "StudyTime": .studyTime, "AccessionNumber": .accessionNumber,
        "QueryRetrieveLevel": .queryRetrieveLevel, "RetrieveAETitle": .retrieveAETitle,
        "InstanceAvailability": .instanceAvailability, "Modality": .modality, "ModalitiesInStudy": .modalitiesInStudy,
        "ReferringPhysicianName": .referringPhysicianName, "StudyDescription": .studyDescription,
        "SeriesDescription": .seriesDescription, "PatientName": .patientName, "PatientID": .patientID,
        "IssuerOfPatientID": .issuerOfPatientID, "PatientBirthDate": .patientBirthDate, "PatientSex": .patientSex,
        "BodyPartExamined": .bodyPartExamined, "StudyInstanceUID": .studyInstanceUID,
        "SeriesInstanceUID": .seriesInstanceUID, "StudyID": .studyID, "SeriesNumber": .seriesNumber,
        "InstanceNumber": .instanceNumber, "NumberOfPatientRelatedStudies": .numberOfPatientRelatedStudies,
        "NumberOfPatientRelatedSeries": .numberOfPatientRelatedSeries,
        "NumberOfPatientRelatedInstances": .numberOfPatientRelatedInstances,
        "NumberOfStudyRelatedSeries": .numberOfStudyRelatedSeries,
        "NumberOfStudyRelatedInstances": .numberOfStudyRelatedInstances,
        "NumberOfSeriesRelatedInstances": .numberOfSeriesRelatedInstances,
    ]

    public static func name(of tag: Tag) -> String? { names[tag] }
    private static let names: [Tag: String] = Dictionary(uniqueKeysWithValues: tags.map { ($1, $0) })

    /// A keyword or "gggg,eeee".
    public static func tag(_ text: String) -> Tag? {
        if let t = tags[text] { return t }
        let parts = text.trimmingCharacters(in: "(").trimmingCharacters(in: ")").split(separator: ",")
        guard parts.count == 2, let g = UInt16(parts[0], radix: 16), let e = UInt16(parts[1], radix: 16) else { return nil }
        return Tag(g, e)
    }

    /// The keys a query at each level returns by default.
    public static func defaultReturnKeys(level: String) -> [Tag] {
        switch level {
        case "PATIENT": [.patientName, .patientID, .patientBirthDate, .patientSex, .numberOfPatientRelatedStudies]
        case "SERIES": [.studyInstanceUID, .seriesInstanceUID, .modality, .seriesNumber, .seriesDescription,
                        .numberOfSeriesRelatedInstances]
        case "IMAGE": [.studyInstanceUID, .seriesInstanceUID, .sopInstanceUID, .sopClassUID, .instanceNumber]
        default: [.patientName, .patientID, .studyInstanceUID, .studyDate, .studyTime, .accessionNumber,
                  .studyDescription, .modalitiesInStudy, .numberOfStudyRelatedSeries, .numberOfStudyRelatedInstances]
        }
    }
}

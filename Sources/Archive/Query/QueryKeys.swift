import DICOM

/// The keys the engine knows: where each lives in the index and how it is matched.
struct QueryKeySpec: Sendable {
    enum Source: Sendable {
        /// A column of patient p / study st / series se / instance i.
        case column(String)
        /// Computed in SQL from the current instances.
        case computed(Computed)
        /// The same for every entity (Instance Availability: everything indexed is on line).
        case constant(String)
    }

    enum Computed: Sendable {
        case patientStudies, patientSeries, patientInstances
        case studySeries, studyInstances, seriesInstances
        case modalitiesInStudy
    }

    let tag: Tag
    let vr: String
    /// The level whose entity holds the attribute. Patient attributes belong to the STUDY level
    /// of the Study Root model (PS3.4 C.6.2.1.2), which changes nothing here: they are above or
    /// at every level of that model.
    let entity: QueryLevel
    let source: Source

    /// Whether a non-empty value is matched (else it is a return key only, PS3.4 table C.6-1 to
    /// C.6-6 give these attributes no matching, and the SCP answers FF01 when one has a value).
    var isMatchable: Bool {
        switch source {
        case .column: true
        case .computed(let c): c == .modalitiesInStudy
        case .constant: false
        }
    }

    /// The SQL expression of the value, in terms of the aliases p, st, se, i.
    var sqlExpression: String {
        switch source {
        case .column(let column): column
        case .constant(let value): "'" + value + "'"
        case .computed(let c): c.sql
        }
    }
}

extension QueryKeySpec.Computed {
    /// Correlated subqueries counting what is served: current instances, and series / studies
    /// that hold at least one. Every join follows an index (study_patient, series_study,
    /// instance_series).
    var sql: String {
        switch self {
        case .patientStudies:
            """
            (SELECT COUNT(*) FROM study cs WHERE cs.patient_ref = p.id AND EXISTS (SELECT 1 FROM series cse \
            JOIN instance ci ON ci.series_ref = cse.id AND ci.is_current = 1 WHERE cse.study_ref = cs.id))
            """
        case .patientSeries:
            """
            (SELECT COUNT(*) FROM study cs JOIN series cse ON cse.study_ref = cs.id WHERE cs.patient_ref = p.id \
            AND EXISTS (SELECT 1 FROM instance ci WHERE ci.series_ref = cse.id AND ci.is_current = 1))
            """
        case .patientInstances:
            """
            (SELECT COUNT(*) FROM study cs JOIN series cse ON cse.study_ref = cs.id \
            JOIN instance ci ON ci.series_ref = cse.id AND ci.is_current = 1 WHERE cs.patient_ref = p.id)
            """
        case .studySeries:
            """
            (SELECT COUNT(*) FROM series cse WHERE cse.study_ref = st.id \
            AND EXISTS (SELECT 1 FROM instance ci WHERE ci.series_ref = cse.id AND ci.is_current = 1))
            """
        case .studyInstances:
            """
            (SELECT COUNT(*) FROM series cse JOIN instance ci ON ci.series_ref = cse.id AND ci.is_current = 1 \
            WHERE cse.study_ref = st.id)
            """
        case .seriesInstances:
            "(SELECT COUNT(*) FROM instance ci WHERE ci.series_ref = se.id AND ci.is_current = 1)"
        case .modalitiesInStudy:
            // Distinct, sorted (sorted again in Swift: SQLite does not promise group_concat order),
            // backslash-joined.
            """
            (SELECT group_concat(m, '\\') FROM (SELECT DISTINCT cse.modality AS m FROM series cse \
            WHERE cse.study_ref = st.id AND cse.modality <> '' \
            AND EXISTS (SELECT 1 FROM instance ci WHERE ci.series_ref = cse.id AND ci.is_current = 1) ORDER BY m))
            """
        }
    }
}

enum QueryKeys {
    static let all: [QueryKeySpec] = [
        // PATIENT (PS3.4 table C.6-1; also the study level of Study Root, table C.6-5)
        .init(tag: .patientName, vr: "PN", entity: .patient, source: .column("p.patient_name")),
        .init(tag: .patientID, vr: "LO", entity: .patient, source: .column("p.patient_id")),
        .init(tag: .issuerOfPatientID, vr: "LO", entity: .patient, source: .column("p.issuer_of_patient_id")),
        .init(tag: .patientBirthDate, vr: "DA", entity: .patient, source: .column("p.patient_birth_date")),
        .init(tag: .patientSex, vr: "CS", entity: .patient, source: .column("p.patient_sex")),
        .init(tag: .numberOfPatientRelatedStudies, vr: "IS", entity: .patient, source: .computed(.patientStudies)),
        .init(tag: .numberOfPatientRelatedSeries, vr: "IS", entity: .patient, source: .computed(.patientSeries)),
        .init(tag: .numberOfPatientRelatedInstances, vr: "IS", entity: .patient, source: .computed(.patientInstances)),
        // STUDY (table C.6-2)
        .init(tag: .studyInstanceUID, vr: "UI", entity: .study, source: .column("st.study_instance_uid")),
        .init(tag: .studyDate, vr: "DA", entity: .study, source: .column("st.study_date")),
        .init(tag: .studyTime, vr: "TM", entity: .study, source: .column("st.study_time")),
        .init(tag: .accessionNumber, vr: "SH", entity: .study, source: .column("st.accession_number")),
        .init(tag: .studyID, vr: "SH", entity: .study, source: .column("st.study_id")),
        .init(tag: .studyDescription, vr: "LO", entity: .study, source: .column("st.study_description")),
        .init(tag: .referringPhysicianName, vr: "PN", entity: .study, source: .column("st.referring_physician_name")),
        .init(tag: .modalitiesInStudy, vr: "CS", entity: .study, source: .computed(.modalitiesInStudy)),
        .init(tag: .numberOfStudyRelatedSeries, vr: "IS", entity: .study, source: .computed(.studySeries)),
        .init(tag: .numberOfStudyRelatedInstances, vr: "IS", entity: .study, source: .computed(.studyInstances)),
        // SERIES (table C.6-3)
        .init(tag: .seriesInstanceUID, vr: "UI", entity: .series, source: .column("se.series_instance_uid")),
        .init(tag: .modality, vr: "CS", entity: .series, source: .column("se.modality")),
        .init(tag: .seriesNumber, vr: "IS", entity: .series, source: .column("se.series_number")),
        .init(tag: .seriesDescription, vr: "LO", entity: .series, source: .column("se.series_description")),
        .init(tag: .bodyPartExamined, vr: "CS", entity: .series, source: .column("se.body_part_examined")),
        .init(tag: .numberOfSeriesRelatedInstances, vr: "IS", entity: .series, source: .computed(.seriesInstances)),
        // IMAGE (table C.6-4)
        .init(tag: .sopInstanceUID, vr: "UI", entity: .image, source: .column("i.sop_instance_uid")),
        .init(tag: .sopClassUID, vr: "UI", entity: .image, source: .column("i.sop_class_uid")),
        .init(tag: .instanceNumber, vr: "IS", entity: .image, source: .column("i.instance_number")),
    ]

    static let byTag: [Tag: QueryKeySpec] = Dictionary(uniqueKeysWithValues: all.map { ($0.tag, $0) })

    /// Instance Availability (0008,0056), an optional return key: every instance the index
    /// serves is ONLINE, so it is answered at every level and never matched.
    static let instanceAvailability = QueryKeySpec(tag: .instanceAvailability, vr: "CS", entity: .patient,
                                                   source: .constant("ONLINE"))

    static func spec(_ tag: Tag) -> QueryKeySpec? {
        tag == .instanceAvailability ? instanceAvailability : byTag[tag]
    }
}

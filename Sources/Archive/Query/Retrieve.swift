import DICOM
import Foundation
import GRDB

extension Archive {
    /// The current instances selected by a C-MOVE / C-GET identifier (PS3.4 C.4.2.2.1,
    /// C.4.3.2.1, baseline behaviour): a single value of the unique key of each level above
    /// `level`, and at `level` one value or a list of UIDs (Patient ID: a single value only, as
    /// the note of C.4.2.1.4.1 says). Other keys are ignored, except a non-empty Issuer of Patient
    /// ID in the Patient Root model, which narrows the patient.
    ///
    /// Ordered by study, series, then arrival. Empty when nothing matches.
    /// - Throws: `QueryFailure` A900 for an identifier that does not follow these rules, C001
    ///   when the index cannot be read.
    public func retrieveItems(model: QueryModel, level: QueryLevel, keys: [QueryKey]) throws -> [RetrieveItem] {
        guard model.levels.contains(level) else {
            throw QueryFailure(.identifierDoesNotMatchSOPClass,
                               "Query/Retrieve Level \(level.rawValue) is not a level of the Study Root model",
                               offending: [.queryRetrieveLevel])
        }
        let value = { (tag: Tag) in keys.first(where: { $0.tag == tag })?.value }
        var conditions: [SQLCondition] = []
        for above in model.levels.prefix(while: { $0 != level }) {
            try CompiledQuery.requireSingleValue(above.uniqueKey, value(above.uniqueKey), above: level)
            let spec = QueryKeys.byTag[above.uniqueKey]!
            conditions.append(SQLCondition("\(spec.sqlExpression) = ?", [QueryText.trim(value(above.uniqueKey)!, vr: spec.vr)]))
        }
        let spec = QueryKeys.byTag[level.uniqueKey]!
        if level == .patient {
            try CompiledQuery.requireSingleValue(.patientID, value(.patientID), above: level)
            conditions.append(SQLCondition("p.patient_id = ?", [QueryText.trim(value(.patientID)!, vr: "LO")]))
        } else {
            let uids = QueryText.values(value(level.uniqueKey) ?? "", vr: "UI")
            if uids.isEmpty || uids.contains(where: QueryText.hasWildcard) {
                throw QueryFailure(.identifierDoesNotMatchSOPClass,
                                   "Missing \(level.uniqueKey): a \(level.rawValue) level retrieve needs one UID or a list of UIDs",
                                   offending: [level.uniqueKey])
            }
            conditions.append(Matching.membership(spec.sqlExpression, uids))
        }
        if model == .patientRoot, let issuer = value(.issuerOfPatientID).map({ QueryText.trim($0, vr: "LO") }),
           !issuer.isEmpty {
            conditions.append(SQLCondition("p.issuer_of_patient_id = ?", [issuer]))
        }

        let sql = """
            SELECT i.path, i.sop_class_uid, i.sop_instance_uid, i.transfer_syntax_uid, st.study_instance_uid, \
            se.series_instance_uid, i.sha256, i.size \
            FROM instance i JOIN series se ON se.id = i.series_ref JOIN study st ON st.id = se.study_ref \
            JOIN patient p ON p.id = st.patient_ref \
            WHERE i.is_current = 1 AND \(conditions.map(\.sql).joined(separator: " AND ")) \
            ORDER BY st.id, se.id, i.id
            """
        let arguments = StatementArguments(conditions.flatMap(\.arguments))
        do {
            return try database.read { db in
                try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                    RetrieveItem(path: absolutePath(row[0]), sopClassUID: row[1], sopInstanceUID: row[2],
                                 transferSyntaxUID: row[3], studyInstanceUID: row[4], seriesInstanceUID: row[5],
                                 sha256: row[6], size: row[7])
                }
            }
        } catch {
            throw QueryFailure(.databaseFailure, "Cannot read the index: \(error)")
        }
    }
}

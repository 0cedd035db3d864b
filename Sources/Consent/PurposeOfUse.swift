/// HL7 v3 PurposeOfUse: the value set `http://terminology.hl7.org/ValueSet/v3-PurposeOfUse`
/// (version 2.0.0, as FHIR R5 binds it to Consent.provision.purpose), codes of the code system
/// `http://terminology.hl7.org/CodeSystem/v3-ActReason`. A grant's `purpose` is one of these codes.
public enum PurposeOfUse {
    public static let defaultCode = "TREAT"
    public static let codeSystem = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
    public static let valueSet = "http://terminology.hl7.org/ValueSet/v3-PurposeOfUse"

    /// Code → display name.
    public static let codes: [String: String] = [
        "BIORCH": "biomedical research",
        "BTG": "break the glass",
        "CAREMGT": "care management",
        "CLINTRCH": "clinical trial research",
        "CLINTRCHNPC": "clinical trial research without patient care",
        "CLINTRCHPC": "clinical trial research with patient care",
        "CLINTRL": "clinical trial",
        "CLMATTCH": "claim attachment",
        "COC": "coordination of care",
        "COVAUTH": "coverage authorization",
        "COVERAGE": "coverage under policy or program",
        "DISASTER": "disaster",
        "DONAT": "donation",
        "DSRCH": "disease specific healthcare research",
        "ELIGDTRM": "eligibility determination",
        "ELIGVER": "eligibility verification",
        "ENROLLM": "enrollment",
        "ERTREAT": "emergency room treatment",
        "ETREAT": "emergency treatment",
        "FAMRQT": "family requested",
        "FRAUD": "fraud",
        "GOV": "government",
        "HACCRED": "health accreditation",
        "HCOMPL": "health compliance",
        "HDECD": "decedent",
        "HDIRECT": "directory",
        "HDM": "healthcare delivery management",
        "HLEGAL": "legal",
        "HMARKT": "healthcare marketing",
        "HOPERAT": "healthcare operations",
        "HOUTCOMS": "health outcome measure",
        "HPAYMT": "healthcare payment",
        "HPRGRP": "health program reporting",
        "HQUALIMP": "health quality improvement",
        "HRESCH": "healthcare research",
        "HSYSADMIN": "health system administration",
        "HTEST": "test health data",
        "LABELING": "labeling",
        "MEMADMIN": "member administration",
        "METAMGT": "metadata management",
        "MILCDM": "military command",
        "MILDCRG": "military discharge",
        "PATADMIN": "patient administration",
        "PATRQT": "patient requested",
        "PATSFTY": "patient safety",
        "PERFMSR": "performance measure",
        "POARCH": "population origins or ancestry healthcare research",
        "POPHLTH": "population health",
        "PRECLINTRCH": "preclinical trial research",
        "PUBHLTH": "public health",
        "PWATRNY": "power of attorney",
        "RECORDMGT": "records management",
        "REMITADV": "remittance advice",
        "SUPNWK": "support network",
        "SYSDEV": "system development",
        "THREAT": "threat",
        "TRAIN": "training",
        "TRANSRCH": "translational healthcare research",
        "TREAT": "treatment",
    ]

    public static func isKnown(_ code: String) -> Bool { codes[code] != nil }

    /// `code` if it is in the value set (exact, uppercase), else `ConsentError.unknownPurpose`.
    public static func validate(_ code: String) throws -> String {
        guard isKnown(code) else { throw ConsentError.unknownPurpose(code) }
        return code
    }
}

// Key Object Selection documents (PS3.3 A.35.4) as IHE XDS-I.b Imaging Manifests (RAD TF-3 4.68),
// built with dcmsr's DSRDocument and encoded as an Explicit VR Little Endian dataset.
#include "shim_common.h"

#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcsequen.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcvrur.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "dcmtk/dcmsr/dsrcodvl.h"
#include "dcmtk/dcmsr/dsrcomvl.h"
#include "dcmtk/dcmsr/dsrimgvl.h"
#include "dcmtk/dcmsr/dsrwavvl.h"

#include <map>
#include <set>
#include <vector>

namespace {

std::string str(const char *s) { return s ? s : ""; }

/// A failed step: the DCMTK condition with what we were doing, so the caller knows which value.
struct Failure {
    std::string what;
    OFCondition cond;
};

void check(const OFCondition &cond, const std::string &what) {
    if (cond.bad()) throw Failure{what, cond};
}

/// Which SR value type references this SOP class: IMAGE for image storage (and segmentations),
/// WAVEFORM for waveform storage, COMPOSITE for any other composite object (TID 2010).
DSRTypes::E_ValueType reference_value_type(const std::string &sop_class, const std::string &sop_instance) {
    DSRImageReferenceValue image;
    if (image.setReference(sop_class.c_str(), sop_instance.c_str(), OFTrue).good()) return DSRTypes::VT_Image;
    DSRWaveformReferenceValue waveform;
    if (waveform.setReference(sop_class.c_str(), sop_instance.c_str(), OFTrue).good()) return DSRTypes::VT_Waveform;
    return DSRTypes::VT_Composite;
}

/// Adds Retrieve URL (0008,1190) to the series items of the written Current Requested Procedure
/// Evidence Sequence: dcmsr 3.6.7's DSRSOPInstanceReferenceList knows AE title and location UID only.
void add_retrieve_urls(DcmDataset &dataset, const std::map<std::string, std::string> &url_by_series) {
    if (url_by_series.empty()) return;
    DcmSequenceOfItems *studies = nullptr;
    check(dataset.findAndGetSequence(DCM_CurrentRequestedProcedureEvidenceSequence, studies),
          "Current Requested Procedure Evidence Sequence not written");
    size_t added = 0;
    for (unsigned long i = 0; studies && i < studies->card(); ++i) {
        DcmSequenceOfItems *series = nullptr;
        if (studies->getItem(i)->findAndGetSequence(DCM_ReferencedSeriesSequence, series).bad() || !series) continue;
        for (unsigned long j = 0; j < series->card(); ++j) {
            DcmItem *item = series->getItem(j);
            OFString uid;
            item->findAndGetOFString(DCM_SeriesInstanceUID, uid);
            auto found = url_by_series.find(uid.c_str());
            if (found == url_by_series.end()) continue;
            check(item->putAndInsertOFStringArray(DCM_RetrieveURL, found->second.c_str()),
                  "Retrieve URL of series " + found->first);
            ++added;
        }
    }
    if (added != url_by_series.size()) throw Failure{"Retrieve URL: series missing from the evidence", EC_IllegalCall};
}

void build(const cdcm_kos_request &r, DcmDataset &dataset) {
    const std::string study_uid = str(r.study_instance_uid);
    if (str(r.sop_instance_uid).empty() || str(r.series_instance_uid).empty() || study_uid.empty())
        throw Failure{"SOP Instance, Series Instance and Study Instance UIDs are required", EC_IllegalParameter};
    if (r.series_count == 0 || !r.series)
        throw Failure{"a manifest references at least one instance", EC_IllegalParameter};

    DSRDocument doc(DSRTypes::DT_KeyObjectSelectionDocument);
    // Character set first: the other setters check their values against it.
    const std::string charset = str(r.specific_character_set).empty() ? "ISO_IR 192" : str(r.specific_character_set);
    check(doc.setSpecificCharacterSet(charset.c_str()), "Specific Character Set");
    check(doc.createNewSeriesInStudy(study_uid.c_str()), "Study Instance UID");

    // Patient (PS3.3 C.7.1.1) and General Study (C.7.2.1).
    check(doc.setPatientName(str(r.patient_name).c_str()), "Patient's Name");
    check(doc.setPatientID(str(r.patient_id).c_str()), "Patient ID");
    check(doc.setIssuerOfPatientID(str(r.issuer_of_patient_id).c_str()), "Issuer of Patient ID");
    check(doc.setPatientBirthDate(str(r.patient_birth_date).c_str()), "Patient's Birth Date");
    check(doc.setPatientSex(str(r.patient_sex).c_str()), "Patient's Sex");
    check(doc.setStudyDate(str(r.study_date).c_str()), "Study Date");
    check(doc.setStudyTime(str(r.study_time).c_str()), "Study Time");
    check(doc.setReferringPhysicianName(str(r.referring_physician_name).c_str()), "Referring Physician's Name");
    check(doc.setStudyID(str(r.study_id).c_str()), "Study ID");
    check(doc.setAccessionNumber(str(r.accession_number).c_str()), "Accession Number");
    check(doc.setStudyDescription(str(r.study_description).c_str()), "Study Description");

    // Key Object Document Series (C.17.6.1), General Equipment (C.7.5.1), Key Object Document (C.17.6.2).
    check(doc.setSeriesNumber(std::to_string(r.series_number).c_str()), "Series Number");
    check(doc.setManufacturer(str(r.manufacturer).c_str()), "Manufacturer");
    check(doc.setInstanceNumber(std::to_string(r.instance_number).c_str()), "Instance Number");
    check(doc.setContentDate(str(r.content_date).c_str()), "Content Date");
    check(doc.setContentTime(str(r.content_time).c_str()), "Content Time");

    // SR Document Content (C.17.3): TID 2010 with the document title "Manifest" (113030, DCM).
    DSRDocumentTree &tree = doc.getTree();
    if (tree.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container) == 0)
        throw Failure{"cannot add the root CONTAINER", EC_IllegalCall};
    check(tree.getCurrentContentItem().setConceptName(DSRCodedEntryValue("113030", "DCM", "Manifest")),
          "Document Title");
    check(tree.getCurrentContentItem().setContinuityOfContent(DSRTypes::COC_Separate), "Continuity Of Content");
    check(tree.getCurrentContentItem().setTemplateIdentification("2010", "DCMR"), "Content Template");

    DSRSOPInstanceReferenceList &evidence = doc.getCurrentRequestedProcedureEvidence();
    std::map<std::string, std::string> url_by_series;
    std::set<std::string> seen_series, seen_instances;
    bool first = true;
    for (size_t s = 0; s < r.series_count; ++s) {
        const cdcm_kos_series &series = r.series[s];
        const std::string series_uid = str(series.series_instance_uid);
        if (series_uid.empty()) throw Failure{"a referenced series has no Series Instance UID", EC_IllegalParameter};
        if (!seen_series.insert(series_uid).second)
            throw Failure{"series " + series_uid + " is given twice", EC_IllegalParameter};
        if (series.instance_count == 0 || !series.instances)
            throw Failure{"series " + series_uid + " references no instance", EC_IllegalParameter};
        for (size_t i = 0; i < series.instance_count; ++i) {
            const std::string sop_class = str(series.instances[i].sop_class_uid);
            const std::string sop_instance = str(series.instances[i].sop_instance_uid);
            if (!seen_instances.insert(sop_instance).second)
                throw Failure{"instance " + sop_instance + " is referenced twice", EC_IllegalParameter};
            // The content item, CONTAINS, below the root for the first and after its sibling then.
            const DSRTypes::E_ValueType type = reference_value_type(sop_class, sop_instance);
            if (tree.addContentItem(DSRTypes::RT_contains, type, first ? DSRTypes::AM_belowCurrent
                                                                       : DSRTypes::AM_afterCurrent) == 0)
                throw Failure{"cannot add a reference content item", EC_IllegalCall};
            first = false;
            DSRContentItem &item = tree.getCurrentContentItem();
            const std::string what = "reference to " + sop_class + " " + sop_instance;
            if (type == DSRTypes::VT_Image)
                check(item.setImageReference(DSRImageReferenceValue(sop_class.c_str(), sop_instance.c_str())), what);
            else if (type == DSRTypes::VT_Waveform)
                check(item.setWaveformReference(DSRWaveformReferenceValue(sop_class.c_str(), sop_instance.c_str())),
                      what);
            else
                check(item.setCompositeReference(
                          DSRCompositeReferenceValue(sop_class.c_str(), sop_instance.c_str())), what);
            // The evidence: every instance referenced in the content, by study and series.
            check(evidence.addItem(study_uid.c_str(), series_uid.c_str(), sop_class.c_str(), sop_instance.c_str()),
                  "evidence: " + what);
        }
        check(evidence.gotoItem(study_uid.c_str(), series_uid.c_str(), str(series.instances[0].sop_instance_uid).c_str()),
              "evidence: series " + series_uid);
        check(evidence.setRetrieveAETitle(str(series.retrieve_ae_title).c_str()), "Retrieve AE Title of " + series_uid);
        check(evidence.setRetrieveLocationUID(str(series.retrieve_location_uid).c_str()),
              "Retrieve Location UID of " + series_uid);
        if (!str(series.retrieve_url).empty()) url_by_series[series_uid] = str(series.retrieve_url);
    }

    check(doc.write(dataset), "writing the Key Object Selection document");

    // What DSRDocument generates itself is replaced by the caller's values, so the encoding is a
    // function of the request alone (no creation time, no UIDs made here).
    check(dataset.putAndInsertString(DCM_SOPInstanceUID, r.sop_instance_uid), "SOP Instance UID");
    check(dataset.putAndInsertString(DCM_SeriesInstanceUID, r.series_instance_uid), "Series Instance UID");
    delete dataset.remove(DCM_InstanceCreationDate);
    delete dataset.remove(DCM_InstanceCreationTime);
    delete dataset.remove(DCM_InstanceCreatorUID);
    if (!str(r.institution_name).empty())
        check(dataset.putAndInsertString(DCM_InstitutionName, r.institution_name), "Institution Name");
    add_retrieve_urls(dataset, url_by_series);
}

}  // namespace

extern "C" int cdcm_kos_encode_manifest(const cdcm_kos_request *request, cdcm_bytes_sink sink, void *context,
                                        cdcm_error *err) {
    try {
        if (!request || !sink) return cdcm::fail(err, std::string("no request or no sink"));
        DcmDataset dataset;
        try {
            build(*request, dataset);
        } catch (const Failure &f) {
            std::string text = f.what;
            if (f.cond.bad()) text += std::string(": ") + f.cond.text();
            return cdcm::fail(err, text);
        }
        // Explicit VR Little Endian, explicit lengths, no group lengths, no File Meta: in chunks.
        std::vector<Uint8> chunk(64 * 1024);
        DcmOutputBufferStream out(chunk.data(), chunk.size());
        dataset.transferInit();
        OFCondition cond = EC_StreamNotifyClient;
        while (cond == EC_StreamNotifyClient) {
            cond = dataset.write(out, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
            void *bytes = nullptr;
            offile_off_t length = 0;
            out.flushBuffer(bytes, length);
            if (length > 0) sink(context, bytes, static_cast<size_t>(length));
        }
        dataset.transferEnd();
        return cdcm::fail(err, cond);
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

// Reads the Current Requested Procedure Evidence Sequence of a KOS (PS3.3 C.17.2.1): which
// instances an imaging manifest references, and where it says they can be retrieved.
#include "shim_common.h"
#include "include/CDcmtkEvidence.h"

#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcitem.h"
#include "dcmtk/dcmdata/dcsequen.h"

namespace {
std::string get(DcmItem *item, const DcmTagKey &tag) {
    OFString value;
    if (item && item->findAndGetOFStringArray(tag, value).good()) return std::string(value.c_str());
    return std::string();
}
}  // namespace

extern "C" int cdcm_kos_read_evidence(const char *path, cdcm_evidence_visitor visit, void *context, cdcm_error *err) {
    try {
        DcmFileFormat file;
        OFCondition cond = file.loadFile(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
        if (cond.bad()) return cdcm::fail(err, cond);
        DcmDataset *ds = file.getDataset();
        DcmSequenceOfItems *evidence = nullptr;
        if (ds->findAndGetSequence(DCM_CurrentRequestedProcedureEvidenceSequence, evidence).bad() || !evidence) {
            return cdcm::fail(err, std::string("no Current Requested Procedure Evidence Sequence (0040,A375)"));
        }
        for (unsigned long s = 0; s < evidence->card(); ++s) {
            DcmItem *study = evidence->getItem(s);
            std::string study_uid = get(study, DCM_StudyInstanceUID);
            DcmSequenceOfItems *seriesSeq = nullptr;
            if (study->findAndGetSequence(DCM_ReferencedSeriesSequence, seriesSeq).bad() || !seriesSeq) continue;
            for (unsigned long r = 0; r < seriesSeq->card(); ++r) {
                DcmItem *series = seriesSeq->getItem(r);
                std::string series_uid = get(series, DCM_SeriesInstanceUID);
                std::string ae = get(series, DCM_RetrieveAETitle);
                std::string url = get(series, DCM_RetrieveURL);
                DcmSequenceOfItems *sops = nullptr;
                if (series->findAndGetSequence(DCM_ReferencedSOPSequence, sops).bad() || !sops) continue;
                for (unsigned long i = 0; i < sops->card(); ++i) {
                    DcmItem *sop = sops->getItem(i);
                    visit(context, study_uid.c_str(), series_uid.c_str(), get(sop, DCM_ReferencedSOPClassUID).c_str(),
                          get(sop, DCM_ReferencedSOPInstanceUID).c_str(), ae.c_str(), url.c_str());
                }
            }
        }
        cdcm::clear(err);
        return 0;
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

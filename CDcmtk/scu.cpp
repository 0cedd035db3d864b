// The SCU: associations we request, C-ECHO and C-STORE of Part 10 files.
#include "shim_common.h"

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/diutil.h"

#include <string>
#include <vector>

struct cdcm_scu {
    T_ASC_Network *network = nullptr;
    T_ASC_Association *assoc = nullptr;
    int dimse_timeout = 60;
};

namespace {

void destroy(cdcm_scu *scu) {
    if (!scu) return;
    if (scu->assoc) ASC_destroyAssociation(&scu->assoc);
    if (scu->network) ASC_dropNetwork(&scu->network);
    delete scu;
}

std::string rejection_text(const T_ASC_RejectParameters &rej) {
    OFString text;
    ASC_printRejectParameters(text, &rej);
    return std::string("association rejected: ") + text.c_str();
}

}  // namespace

extern "C" cdcm_scu *cdcm_scu_connect(const cdcm_scu_config *config, const cdcm_proposed_context *contexts,
                                      size_t context_count, cdcm_error *err) {
    cdcm_scu *scu = nullptr;
    T_ASC_Parameters *params = nullptr;
    try {
        cdcm_initialize(4);
        scu = new cdcm_scu();
        scu->dimse_timeout = config->dimse_timeout_seconds > 0 ? config->dimse_timeout_seconds : 60;
        int acse_timeout = config->acse_timeout_seconds > 0 ? config->acse_timeout_seconds : 30;
        OFCondition cond = ASC_initializeNetwork(NET_REQUESTOR, 0, acse_timeout, &scu->network);
        if (cond.bad()) {
            cdcm::fail(err, cond);
            destroy(scu);
            return nullptr;
        }
        uint32_t max_pdu = config->max_pdu ? config->max_pdu : ASC_DEFAULTMAXPDU;
        cond = ASC_createAssociationParameters(&params, max_pdu);
        if (cond.bad()) {
            cdcm::fail(err, cond);
            destroy(scu);
            return nullptr;
        }
        ASC_setAPTitles(params, config->calling_ae, config->called_ae, nullptr);
        std::string peer = std::string(config->host) + ":" + std::to_string(config->port);
        ASC_setPresentationAddresses(params, "localhost", peer.c_str());
        T_ASC_PresentationContextID id = 1;
        for (size_t i = 0; i < context_count; ++i) {
            const cdcm_proposed_context &pc = contexts[i];
            std::vector<const char *> ts(pc.transfer_syntaxes, pc.transfer_syntaxes + pc.transfer_syntax_count);
            cond = ASC_addPresentationContext(params, id, pc.abstract_syntax, ts.data(),
                                              OFstatic_cast(int, ts.size()));
            if (cond.bad()) {
                cdcm::fail(err, cond);
                ASC_destroyAssociationParameters(&params);
                destroy(scu);
                return nullptr;
            }
            id = OFstatic_cast(T_ASC_PresentationContextID, id + 2);
            if (id > 255) break;
        }
        cond = ASC_requestAssociation(scu->network, params, &scu->assoc);
        if (cond.bad()) {
            if (cond == DUL_ASSOCIATIONREJECTED) {
                T_ASC_RejectParameters rej;
                ASC_getRejectParameters(params, &rej);
                cdcm::fail(err, rejection_text(rej), 0x0101);
            } else {
                cdcm::fail(err, cond);
            }
            if (!scu->assoc) ASC_destroyAssociationParameters(&params);
            destroy(scu);
            return nullptr;
        }
        if (ASC_countAcceptedPresentationContexts(params) == 0) {
            cdcm::fail(err, std::string("the peer accepted none of the proposed presentation contexts"), 0x0102);
            ASC_abortAssociation(scu->assoc);
            destroy(scu);
            return nullptr;
        }
        cdcm::clear(err);
        return scu;
    } catch (...) {
        cdcm::fail_exception(err);
        destroy(scu);
        return nullptr;
    }
}

extern "C" int cdcm_scu_echo(cdcm_scu *scu, uint16_t *status, cdcm_error *err) {
    try {
        DIC_US msg_id = scu->assoc->nextMsgID++;
        DcmDataset *detail = nullptr;
        DIC_US st = 0;
        OFCondition cond = DIMSE_echoUser(scu->assoc, msg_id, DIMSE_BLOCKING, 0, &st, &detail);
        delete detail;
        if (cond.bad()) return cdcm::fail(err, cond);
        *status = st;
        cdcm::clear(err);
        return 0;
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

extern "C" int cdcm_scu_store_file(cdcm_scu *scu, const char *path, cdcm_status *status, cdcm_error *err) {
    try {
        std::memset(status, 0, sizeof *status);
        DcmFileFormat file;
        // Only the header is parsed here; the bytes are sent from the file as stored when possible.
        OFCondition cond = file.loadFileUntilTag(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength,
                                                 ERM_autoDetect, DCM_PixelData);
        if (cond.bad()) return cdcm::fail(err, cond);
        OFString sop_class, sop_instance, ts;
        file.getMetaInfo()->findAndGetOFString(DCM_MediaStorageSOPClassUID, sop_class);
        file.getMetaInfo()->findAndGetOFString(DCM_MediaStorageSOPInstanceUID, sop_instance);
        file.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, ts);
        if (sop_class.empty()) file.getDataset()->findAndGetOFString(DCM_SOPClassUID, sop_class);
        if (sop_instance.empty()) file.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, sop_instance);
        if (sop_class.empty() || sop_instance.empty())
            return cdcm::fail(err, std::string("not a DICOM instance: no SOP Class or SOP Instance UID"), 0x0201);

        cdcm::SendRequest r{path, sop_class.c_str(), sop_instance.c_str(), ts.c_str(), nullptr, 0};
        uint16_t st = 0;
        std::string comment;
        cond = cdcm::send_file(scu->assoc, r, scu->dimse_timeout, &st, &comment);
        if (cond.bad()) return cdcm::fail(err, cond);
        status->status = st;
        cdcm::copy_string(status->error_comment, sizeof status->error_comment, comment.c_str());
        cdcm::clear(err);
        return 0;
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

extern "C" void cdcm_scu_release(cdcm_scu *scu) {
    if (!scu) return;
    try {
        if (scu->assoc) ASC_releaseAssociation(scu->assoc);
    } catch (...) {
    }
    destroy(scu);
}

extern "C" void cdcm_scu_abort(cdcm_scu *scu) {
    if (!scu) return;
    try {
        if (scu->assoc) ASC_abortAssociation(scu->assoc);
    } catch (...) {
    }
    destroy(scu);
}

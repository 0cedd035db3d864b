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
#include "dcmtk/dcmdata/dcostrmf.h"

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
                                              OFstatic_cast(int, ts.size()),
                                              pc.scp_role ? ASC_SC_ROLE_SCUSCP : ASC_SC_ROLE_DEFAULT);
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

namespace {

struct FindUser {
    cdcm_find_match on_match;
    void *context;
    bool cancel_sent = false;
    T_ASC_Association *assoc;
    T_ASC_PresentationContextID pres_id;
};

void find_user_callback(void *data, T_DIMSE_C_FindRQ *req, int, T_DIMSE_C_FindRSP *, DcmDataset *ids) {
    auto *f = static_cast<FindUser *>(data);
    if (!ids || f->cancel_sent) return;
    cdcm_dataset *wrapped = cdcm_dataset_wrap(ids);
    int cancel = f->on_match(f->context, wrapped);
    cdcm_dataset_free(wrapped);
    if (cancel) {
        DIMSE_sendCancelRequest(f->assoc, f->pres_id, req->MessageID);
        f->cancel_sent = true;
    }
}

void fill_final(cdcm_status *status, uint16_t code, DcmDataset *detail) {
    std::memset(status, 0, sizeof *status);
    status->status = code;
    if (detail) {
        OFString comment;
        if (detail->findAndGetOFString(DCM_ErrorComment, comment).good())
            cdcm::copy_string(status->error_comment, sizeof status->error_comment, comment.c_str());
    }
}

T_ASC_PresentationContextID context_for(cdcm_scu *scu, const char *sop_class, cdcm_error *err) {
    T_ASC_PresentationContextID id = ASC_findAcceptedPresentationContextID(scu->assoc, sop_class);
    if (id == 0) cdcm::fail(err, std::string("the peer accepted no presentation context for ") + sop_class, 0x0203);
    return id;
}

}  // namespace

extern "C" int cdcm_scu_find(cdcm_scu *scu, const char *sop_class_uid, const cdcm_dataset *identifier,
                             cdcm_find_match on_match, void *context, cdcm_status *status, cdcm_error *err) {
    try {
        T_ASC_PresentationContextID pres_id = context_for(scu, sop_class_uid, err);
        if (!pres_id) return 1;
        T_DIMSE_C_FindRQ req;
        std::memset(&req, 0, sizeof req);
        req.MessageID = scu->assoc->nextMsgID++;
        OFStandard::strlcpy(req.AffectedSOPClassUID, sop_class_uid, sizeof req.AffectedSOPClassUID);
        req.DataSetType = DIMSE_DATASET_PRESENT;
        req.Priority = DIMSE_PRIORITY_MEDIUM;
        FindUser f{on_match, context, false, scu->assoc, pres_id};
        int count = 0;
        T_DIMSE_C_FindRSP rsp;
        std::memset(&rsp, 0, sizeof rsp);
        DcmDataset *detail = nullptr;
        OFCondition cond = DIMSE_findUser(scu->assoc, pres_id, &req, cdcm::dataset_ptr(identifier), count,
                                          find_user_callback, &f, DIMSE_NONBLOCKING, scu->dimse_timeout, &rsp, &detail);
        if (cond.bad()) {
            delete detail;
            return cdcm::fail(err, cond);
        }
        fill_final(status, rsp.DimseStatus, detail);
        delete detail;
        cdcm::clear(err);
        return 0;
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

namespace {
struct MoveUser {
    cdcm_retrieve_progress progress;
    void *context;
    cdcm_retrieve_counts *counts;
};

void move_user_callback(void *data, T_DIMSE_C_MoveRQ *, int, T_DIMSE_C_MoveRSP *rsp) {
    auto *m = static_cast<MoveUser *>(data);
    m->counts->remaining = rsp->NumberOfRemainingSubOperations;
    m->counts->completed = rsp->NumberOfCompletedSubOperations;
    m->counts->failed = rsp->NumberOfFailedSubOperations;
    m->counts->warning = rsp->NumberOfWarningSubOperations;
    if (m->progress) m->progress(m->context, m->counts);
}
}  // namespace

extern "C" int cdcm_scu_move(cdcm_scu *scu, const char *sop_class_uid, const cdcm_dataset *identifier,
                             const char *destination_ae, cdcm_retrieve_progress progress, void *context,
                             cdcm_status *status, cdcm_retrieve_counts *counts, cdcm_error *err) {
    try {
        std::memset(counts, 0, sizeof *counts);
        T_ASC_PresentationContextID pres_id = context_for(scu, sop_class_uid, err);
        if (!pres_id) return 1;
        T_DIMSE_C_MoveRQ req;
        std::memset(&req, 0, sizeof req);
        req.MessageID = scu->assoc->nextMsgID++;
        OFStandard::strlcpy(req.AffectedSOPClassUID, sop_class_uid, sizeof req.AffectedSOPClassUID);
        OFStandard::strlcpy(req.MoveDestination, destination_ae, sizeof req.MoveDestination);
        req.DataSetType = DIMSE_DATASET_PRESENT;
        req.Priority = DIMSE_PRIORITY_MEDIUM;
        MoveUser m{progress, context, counts};
        T_DIMSE_C_MoveRSP rsp;
        std::memset(&rsp, 0, sizeof rsp);
        DcmDataset *detail = nullptr;
        DcmDataset *ids = nullptr;
        OFCondition cond = DIMSE_moveUser(scu->assoc, pres_id, &req, cdcm::dataset_ptr(identifier), move_user_callback, &m,
                                          DIMSE_NONBLOCKING, scu->dimse_timeout, scu->network, nullptr, nullptr, &rsp,
                                          &detail, &ids);
        delete ids;
        if (cond.bad()) {
            delete detail;
            return cdcm::fail(err, cond);
        }
        counts->remaining = (rsp.opts & O_MOVE_NUMBEROFREMAININGSUBOPERATIONS) ? rsp.NumberOfRemainingSubOperations : 0;
        counts->completed = rsp.NumberOfCompletedSubOperations;
        counts->failed = rsp.NumberOfFailedSubOperations;
        counts->warning = rsp.NumberOfWarningSubOperations;
        fill_final(status, rsp.DimseStatus, detail);
        delete detail;
        cdcm::clear(err);
        return 0;
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

extern "C" int cdcm_scu_get(cdcm_scu *scu, const char *sop_class_uid, const cdcm_dataset *identifier,
                            const char *directory, cdcm_retrieve_progress progress, void *context, cdcm_status *status,
                            cdcm_retrieve_counts *counts, cdcm_error *err) {
    try {
        std::memset(counts, 0, sizeof *counts);
        T_ASC_PresentationContextID pres_id = context_for(scu, sop_class_uid, err);
        if (!pres_id) return 1;
        T_DIMSE_Message msg;
        std::memset(&msg, 0, sizeof msg);
        msg.CommandField = DIMSE_C_GET_RQ;
        T_DIMSE_C_GetRQ &req = msg.msg.CGetRQ;
        req.MessageID = scu->assoc->nextMsgID++;
        OFStandard::strlcpy(req.AffectedSOPClassUID, sop_class_uid, sizeof req.AffectedSOPClassUID);
        req.DataSetType = DIMSE_DATASET_PRESENT;
        req.Priority = DIMSE_PRIORITY_MEDIUM;
        OFCondition cond = DIMSE_sendMessageUsingMemoryData(scu->assoc, pres_id, &msg, nullptr,
                                                            cdcm::dataset_ptr(identifier), nullptr, nullptr);
        if (cond.bad()) return cdcm::fail(err, cond);
        // PS3.4 C.4.3: C-STORE sub-operations arrive on this association, interleaved with C-GET-RSPs.
        for (;;) {
            T_DIMSE_Message in;
            T_ASC_PresentationContextID in_pres = 0;
            DcmDataset *detail = nullptr;
            cond = DIMSE_receiveCommand(scu->assoc, DIMSE_NONBLOCKING, scu->dimse_timeout, &in_pres, &in, &detail);
            if (cond.bad()) {
                delete detail;
                return cdcm::fail(err, cond);
            }
            if (in.CommandField == DIMSE_C_GET_RSP) {
                T_DIMSE_C_GetRSP &rsp = in.msg.CGetRSP;
                if (rsp.DataSetType != DIMSE_DATASET_NULL) {
                    DcmDataset *ids = nullptr;
                    T_ASC_PresentationContextID p = 0;
                    DIMSE_receiveDataSetInMemory(scu->assoc, DIMSE_NONBLOCKING, scu->dimse_timeout, &p, &ids, nullptr, nullptr);
                    delete ids;
                }
                if (rsp.opts & O_GET_NUMBEROFREMAININGSUBOPERATIONS) counts->remaining = rsp.NumberOfRemainingSubOperations;
                if (rsp.opts & O_GET_NUMBEROFCOMPLETEDSUBOPERATIONS) counts->completed = rsp.NumberOfCompletedSubOperations;
                if (rsp.opts & O_GET_NUMBEROFFAILEDSUBOPERATIONS) counts->failed = rsp.NumberOfFailedSubOperations;
                if (rsp.opts & O_GET_NUMBEROFWARNINGSUBOPERATIONS) counts->warning = rsp.NumberOfWarningSubOperations;
                bool final = rsp.DimseStatus != 0xFF00 && rsp.DimseStatus != 0xFF01;
                if (final && !(rsp.opts & O_GET_NUMBEROFREMAININGSUBOPERATIONS)) counts->remaining = 0;
                if (progress) progress(context, counts);
                if (final) {
                    fill_final(status, rsp.DimseStatus, detail);
                    delete detail;
                    cdcm::clear(err);
                    return 0;
                }
                delete detail;
            } else if (in.CommandField == DIMSE_C_STORE_RQ) {
                delete detail;
                T_DIMSE_C_StoreRQ &sreq = in.msg.CStoreRQ;
                std::string path = std::string(directory) + "/" + sreq.AffectedSOPInstanceUID + ".dcm";
                std::string tmp = path + ".part";
                DcmOutputFileStream *stream = nullptr;
                cdcm_status st;
                std::memset(&st, 0, sizeof st);
                cond = DIMSE_createFilestream(tmp.c_str(), &sreq, scu->assoc, in_pres, OFTrue, &stream);
                if (cond.good()) {
                    T_ASC_PresentationContextID p = in_pres;
                    cond = DIMSE_receiveDataSetInFile(scu->assoc, DIMSE_NONBLOCKING, scu->dimse_timeout, &p, stream, nullptr, nullptr);
                    delete stream;
                    if (cond.bad()) {
                        unlink(tmp.c_str());
                        return cdcm::fail(err, cond);
                    }
                    st.status = rename(tmp.c_str(), path.c_str()) == 0 ? 0x0000 : 0xA700;
                } else {
                    DIMSE_ignoreDataSet(scu->assoc, DIMSE_NONBLOCKING, scu->dimse_timeout, nullptr, nullptr);
                    st.status = 0xA700;
                }
                cdcm::send_store_response(scu->assoc, in_pres, sreq, st);
            } else {
                delete detail;
                return cdcm::fail(err, std::string("unexpected DIMSE message during C-GET"), 0x0205);
            }
        }
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

extern "C" const char *const *cdcm_get_storage_sop_classes(size_t *count) {
    *count = OFstatic_cast(size_t, numberOfDcmLongSCUStorageSOPClassUIDs);
    return dcmLongSCUStorageSOPClassUIDs;
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

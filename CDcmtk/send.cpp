// Sending a stored Part 10 file by C-STORE: as stored when the peer accepted its transfer syntax,
// else converted (decompressed with DCMTK's codecs) to a syntax the peer accepted.
#include "shim_common.h"

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"

namespace cdcm {

OFCondition load_converted(const char *path, const char *transfer_syntax_uid, DcmFileFormat &file) {
    OFCondition cond = file.loadFile(path);
    if (cond.bad()) return cond;
    cond = file.loadAllDataIntoMemory();
    if (cond.bad()) return cond;
    DcmXfer target(transfer_syntax_uid);
    DcmDataset *ds = file.getDataset();
    cond = ds->chooseRepresentation(target.getXfer(), nullptr);
    if (cond.bad() || !ds->canWriteXfer(target.getXfer())) {
        DcmXfer source(ds->getOriginalXfer());
        std::string text = std::string("cannot convert from ") + source.getXferName() + " to " +
                           target.getXferName() + " (no decoder for it in DCMTK)";
        return makeOFCondition(0xffff, 0x0204, OF_error, text.c_str());
    }
    return EC_Normal;
}

OFCondition send_file(T_ASC_Association *assoc, const SendRequest &r, int timeout, uint16_t *status,
                      std::string *comment) {
    *status = 0;
    comment->clear();
    T_DIMSE_C_StoreRQ req;
    std::memset(&req, 0, sizeof req);
    req.MessageID = assoc->nextMsgID++;
    OFStandard::strlcpy(req.AffectedSOPClassUID, r.sop_class_uid, sizeof req.AffectedSOPClassUID);
    OFStandard::strlcpy(req.AffectedSOPInstanceUID, r.sop_instance_uid, sizeof req.AffectedSOPInstanceUID);
    req.DataSetType = DIMSE_DATASET_PRESENT;
    req.Priority = DIMSE_PRIORITY_MEDIUM;
    if (r.move_originator_ae && *r.move_originator_ae) {
        req.opts |= O_STORE_MOVEORIGINATORAETITLE | O_STORE_MOVEORIGINATORID;
        OFStandard::strlcpy(req.MoveOriginatorApplicationEntityTitle, r.move_originator_ae,
                            sizeof req.MoveOriginatorApplicationEntityTitle);
        req.MoveOriginatorID = r.move_originator_id;
    }

    T_DIMSE_C_StoreRSP rsp;
    std::memset(&rsp, 0, sizeof rsp);
    DcmDataset *detail = nullptr;
    OFCondition cond;
    T_ASC_PresentationContextID pres_id =
        (r.transfer_syntax_uid && *r.transfer_syntax_uid)
            ? ASC_findAcceptedPresentationContextID(assoc, r.sop_class_uid, r.transfer_syntax_uid)
            : 0;
    if (pres_id != 0) {
        // That lookup falls back to any uncompressed context when none carries the stored syntax:
        // send as stored only on an exact match, else convert below.
        T_ASC_PresentationContext exact;
        if (ASC_findAcceptedPresentationContext(assoc->params, pres_id, &exact).bad() ||
            std::strcmp(exact.acceptedTransferSyntax, r.transfer_syntax_uid) != 0)
            pres_id = 0;
    }
    if (pres_id != 0) {
        // Bit-preserving: the dataset part of the file goes out as it is on disk.
        T_DIMSE_Message msg;
        std::memset(&msg, 0, sizeof msg);
        msg.CommandField = DIMSE_C_STORE_RQ;
        msg.msg.CStoreRQ = req;
        cond = DIMSE_sendMessageUsingFileData(assoc, pres_id, &msg, nullptr, r.path, nullptr, nullptr);
        if (cond.bad()) return cond;
        T_DIMSE_Message rsp_msg;
        T_ASC_PresentationContextID rsp_pres = 0;
        for (;;) {
            cond = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, timeout, &rsp_pres, &rsp_msg, &detail);
            if (cond.bad()) {
                delete detail;
                return cond;
            }
            // A C-GET's requester may send its C-CANCEL-RQ at any time (PS3.4 C.4.3.3), also while
            // a sub-operation waits for its response: note it and go on waiting for the response.
            if (r.cancel_seen && rsp_msg.CommandField == DIMSE_C_CANCEL_RQ) {
                if (rsp_msg.msg.CCancelRQ.MessageIDBeingRespondedTo == r.cancel_message_id) *r.cancel_seen = true;
                delete detail;
                detail = nullptr;
                continue;
            }
            break;
        }
        if (rsp_msg.CommandField != DIMSE_C_STORE_RSP) {
            delete detail;
            return makeOFCondition(0xffff, 0x0202, OF_error, "unexpected response to C-STORE");
        }
        rsp = rsp_msg.msg.CStoreRSP;
    } else {
        pres_id = ASC_findAcceptedPresentationContextID(assoc, r.sop_class_uid);
        if (pres_id == 0) {
            std::string text = std::string("the peer accepted no presentation context for SOP class ") + r.sop_class_uid;
            return makeOFCondition(0xffff, 0x0203, OF_error, text.c_str());
        }
        T_ASC_PresentationContext pc;
        ASC_findAcceptedPresentationContext(assoc->params, pres_id, &pc);
        DcmFileFormat file;
        cond = load_converted(r.path, pc.acceptedTransferSyntax, file);
        if (cond.bad()) return cond;
        DcmDataset *ds = file.getDataset();
        T_DIMSE_DetectedCancelParameters cancel;
        std::memset(&cancel, 0, sizeof cancel);
        cond = DIMSE_storeUser(assoc, pres_id, &req, nullptr, ds, nullptr, nullptr, DIMSE_NONBLOCKING, timeout,
                               &rsp, &detail, r.cancel_seen ? &cancel : nullptr);
        if (cond.bad()) {
            delete detail;
            return cond;
        }
        if (r.cancel_seen && cancel.cancelEncountered && cancel.req.MessageIDBeingRespondedTo == r.cancel_message_id)
            *r.cancel_seen = true;
    }
    *status = rsp.DimseStatus;
    if (detail) {
        OFString text;
        if (detail->findAndGetOFString(DCM_ErrorComment, text).good()) *comment = text.c_str();
        delete detail;
    }
    return EC_Normal;
}

/// Answers a C-STORE with `st` (and its Error Comment when it is a failure).
void send_store_response(T_ASC_Association *assoc, T_ASC_PresentationContextID pres_id, T_DIMSE_C_StoreRQ &rq,
                         const cdcm_status &st) {
    T_DIMSE_C_StoreRSP rsp;
    std::memset(&rsp, 0, sizeof rsp);
    rsp.MessageIDBeingRespondedTo = rq.MessageID;
    OFStandard::strlcpy(rsp.AffectedSOPClassUID, rq.AffectedSOPClassUID, sizeof rsp.AffectedSOPClassUID);
    OFStandard::strlcpy(rsp.AffectedSOPInstanceUID, rq.AffectedSOPInstanceUID, sizeof rsp.AffectedSOPInstanceUID);
    rsp.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
    rsp.DataSetType = DIMSE_DATASET_NULL;
    rsp.DimseStatus = st.status;
    DcmDataset *detail = nullptr;
    if (st.status != STATUS_Success && st.error_comment[0]) {
        detail = new DcmDataset();
        detail->putAndInsertString(DCM_ErrorComment, st.error_comment);
    }
    DIMSE_sendStoreResponse(assoc, pres_id, &rq, &rsp, detail);
    delete detail;
}

}  // namespace cdcm

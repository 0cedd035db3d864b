// Query/Retrieve providers (PS3.4 annex C): C-FIND, C-MOVE and C-GET over DCMTK's DIMSE
// providers, which also watch for C-CANCEL between responses.
#include "shim_common.h"
#include "qr.h"

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"

#include <set>
#include <string>
#include <utility>
#include <vector>

namespace {

// PS3.4 C.4.2.1.5 / C.4.3.1.5 status values.
constexpr uint16_t kPending = 0xFF00;
constexpr uint16_t kCancel = 0xFE00;
constexpr uint16_t kSubOpsWarning = 0xB000;          // one or more failures or warnings
constexpr uint16_t kUnableToPerformSubOps = 0xA702;  // refused: out of resources

struct FindContext {
    const cdcm_scp_callbacks *cb;
    void *ctx;
    const cdcm_association_info *info;
    const char *sop_class;
    void *query = nullptr;
    bool ended = false;
};

// Ownership: DIMSE_findProvider, DIMSE_moveProvider and DIMSE_getProvider delete the response
// identifiers and status detail datasets the callback hands them after sending each response.

void find_callback(void *data, OFBool cancelled, T_DIMSE_C_FindRQ *, DcmDataset *identifier, int count,
                   T_DIMSE_C_FindRSP *rsp, DcmDataset **response_ids, DcmDataset **detail) {
    auto *f = static_cast<FindContext *>(data);
    *response_ids = nullptr;
    *detail = nullptr;
    cdcm_status st;
    std::memset(&st, 0, sizeof st);
    try {
        if (count == 1) {
            cdcm_dataset *id = cdcm_dataset_wrap(identifier);
            f->query = f->cb->find_begin(f->ctx, f->info, f->sop_class, id, &st);
            cdcm_dataset_free(id);
            if (!f->query) {
                f->ended = true;
                rsp->DimseStatus = st.status ? st.status : 0xC000;
                if (st.error_comment[0]) {
                    *detail = new DcmDataset();
                    (*detail)->putAndInsertString(DCM_ErrorComment, st.error_comment);
                }
                return;
            }
        }
        if (cancelled) {
            rsp->DimseStatus = kCancel;
            f->cb->find_end(f->ctx, f->query, 1);
            f->query = nullptr;
            f->ended = true;
            return;
        }
        auto *response = new DcmDataset();
        cdcm_dataset *out = cdcm_dataset_wrap(response);
        int more = f->cb->find_next(f->ctx, f->query, out, &st);
        cdcm_dataset_free(out);
        if (more) {
            rsp->DimseStatus = st.status ? st.status : kPending;  // FF00, or FF01 (optional keys not supported)
            *response_ids = response;  // DCMTK deletes it once sent
            return;
        }
        delete response;
        rsp->DimseStatus = st.status;
        // A final Success may carry a comment too: a federated answer that may be incomplete.
        if (st.error_comment[0]) {
            *detail = new DcmDataset();
            (*detail)->putAndInsertString(DCM_ErrorComment, st.error_comment);
        }
        f->cb->find_end(f->ctx, f->query, 0);
        f->query = nullptr;
        f->ended = true;
    } catch (...) {
        rsp->DimseStatus = 0xC000;
        if (f->query) f->cb->find_end(f->ctx, f->query, 1);
        f->query = nullptr;
        f->ended = true;
    }
}

/// A retrieval in progress: the instances, the association the sub-operations use, the counts.
struct RetrieveContext {
    const cdcm_scp_callbacks *cb;
    void *ctx;
    const cdcm_association_info *info;
    const char *sop_class;
    T_ASC_Association *requester;
    bool is_move;
    int timeout;
    uint32_t max_pdu;
    const char *our_ae;
    void *retrieval = nullptr;
    size_t total = 0;
    size_t next = 0;
    cdcm_retrieve_counts counts{};
    std::vector<std::string> failed_uids;
    T_ASC_Network *net = nullptr;
    T_ASC_Association *sub = nullptr;  // C-MOVE: our association to the destination
    uint16_t message_id = 0;
    bool cancel_seen = false;  // C-GET: a C-CANCEL-RQ read while a sub-operation awaited its response
    std::string setup_error;
    DcmDataset *detail = nullptr;  // handed to DCMTK with the final response

    ~RetrieveContext() {
        close_sub();
        delete detail;
    }

    void close_sub() {
        if (sub) {
            ASC_releaseAssociation(sub);
            ASC_destroyAssociation(&sub);
        }
        if (net) ASC_dropNetwork(&net);
    }
};

/// Opens the C-MOVE sub-association: per SOP class, one context per stored transfer syntax (sent
/// as is) and one offering the uncompressed syntaxes (for a destination that refuses the stored one).
bool open_sub_association(RetrieveContext &r, const cdcm_retrieve_destination &dest) {
    std::set<std::pair<std::string, std::string>> stored;
    std::set<std::string> classes;
    cdcm_retrieve_item item;
    for (size_t i = 0; i < r.total; ++i) {
        std::memset(&item, 0, sizeof item);
        if (r.cb->retrieve_item(r.ctx, r.retrieval, i, &item) != 0) continue;
        stored.insert({item.sop_class_uid, item.transfer_syntax_uid});
        classes.insert(item.sop_class_uid);
    }
    OFCondition cond = ASC_initializeNetwork(NET_REQUESTOR, 0, r.timeout, &r.net);
    if (cond.bad()) {
        r.setup_error = cond.text();
        return false;
    }
    T_ASC_Parameters *params = nullptr;
    ASC_createAssociationParameters(&params, r.max_pdu ? r.max_pdu : ASC_DEFAULTMAXPDU);
    ASC_setAPTitles(params, r.our_ae, dest.ae_title, nullptr);
    std::string peer = std::string(dest.host) + ":" + std::to_string(dest.port);
    ASC_setPresentationAddresses(params, "localhost", peer.c_str());
    static const char *uncompressed[] = {UID_LittleEndianExplicitTransferSyntax,
                                         UID_LittleEndianImplicitTransferSyntax};
    int id = 1;
    for (const auto &p : stored) {
        if (id > 255) break;
        const char *ts[] = {p.second.c_str()};
        ASC_addPresentationContext(params, OFstatic_cast(T_ASC_PresentationContextID, id), p.first.c_str(), ts, 1);
        id += 2;
    }
    for (const auto &c : classes) {
        if (id > 255) break;
        ASC_addPresentationContext(params, OFstatic_cast(T_ASC_PresentationContextID, id), c.c_str(), uncompressed, 2);
        id += 2;
    }
    cond = ASC_requestAssociation(r.net, params, &r.sub);
    if (cond.bad()) {
        r.setup_error = std::string("cannot open an association to ") + dest.ae_title + " at " + peer + ": " + cond.text();
        if (r.sub) ASC_destroyAssociation(&r.sub);
        else ASC_destroyAssociationParameters(&params);
        r.sub = nullptr;
        return false;
    }
    return true;
}

DIC_US saturate_us(uint32_t n) { return n > 0xFFFFu ? DIC_US(0xFFFF) : OFstatic_cast(DIC_US, n); }

/// Adds one to a sub-operation count, saturating instead of wrapping.
void bump(uint32_t &n) {
    if (n != UINT32_MAX) ++n;
}

/// Fills a C-MOVE/C-GET response's counts (and, at the end, the Failed SOP Instance UID List).
template <typename RSP>
void fill_counts(RetrieveContext &r, RSP *rsp, bool final, DcmDataset **ids, unsigned remaining_opt,
                 unsigned completed_opt, unsigned failed_opt, unsigned warning_opt) {
    // The counts are US (16 bits) on the wire: a retrieval of more than 65535 instances reports
    // 65535 (saturated), never a count wrapped modulo 65536.
    rsp->NumberOfRemainingSubOperations = saturate_us(r.counts.remaining);
    rsp->NumberOfCompletedSubOperations = saturate_us(r.counts.completed);
    rsp->NumberOfFailedSubOperations = saturate_us(r.counts.failed);
    rsp->NumberOfWarningSubOperations = saturate_us(r.counts.warning);
    rsp->opts |= completed_opt | failed_opt | warning_opt;
    if (!final || rsp->DimseStatus == kCancel) rsp->opts |= remaining_opt;
    if (final && !r.failed_uids.empty()) {
        // PS3.4 C.4.2.1.4.2: Failed SOP Instance UID List (0008,0058) in the final identifier.
        std::string list;
        for (size_t i = 0; i < r.failed_uids.size(); ++i) list += (i ? "\\" : "") + r.failed_uids[i];
        auto *failed = new DcmDataset();
        failed->putAndInsertString(DCM_FailedSOPInstanceUIDList, list.c_str());
        *ids = failed;  // DCMTK deletes it once sent
    }
}

/// One step of a retrieval: the first call selects; each call sends one instance; the last answers.
/// Returns the status for this response.
uint16_t retrieve_step(RetrieveContext &r, OFBool cancelled, DcmDataset *identifier, int count,
                       const char *move_destination, uint16_t originator_msg_id, bool &final) {
    final = false;
    if (count == 1) {
        cdcm_retrieve_destination dest;
        std::memset(&dest, 0, sizeof dest);
        cdcm_status st;
        std::memset(&st, 0, sizeof st);
        cdcm_dataset *id = cdcm_dataset_wrap(identifier);
        r.retrieval = r.cb->retrieve_begin(r.ctx, r.info, r.sop_class, id, move_destination, &dest, &r.total, &st);
        cdcm_dataset_free(id);
        if (!r.retrieval) {
            final = true;
            if (st.error_comment[0]) {
                r.detail = new DcmDataset();
                r.detail->putAndInsertString(DCM_ErrorComment, st.error_comment);
            }
            return st.status ? st.status : 0xC000;
        }
        r.counts.remaining = r.total > UINT32_MAX ? UINT32_MAX : OFstatic_cast(uint32_t, r.total);
        if (r.is_move && r.total > 0 && !open_sub_association(r, dest)) {
            r.counts.failed = r.counts.remaining;
            r.counts.remaining = 0;
            for (size_t i = 0; i < r.total; ++i) {
                cdcm_retrieve_item item;
                std::memset(&item, 0, sizeof item);
                if (r.cb->retrieve_item(r.ctx, r.retrieval, i, &item) == 0 && item.sop_instance_uid[0])
                    r.failed_uids.push_back(std::string(item.sop_instance_uid, strnlen(item.sop_instance_uid, sizeof item.sop_instance_uid)));
                r.cb->retrieve_result(r.ctx, r.retrieval, i, kUnableToPerformSubOps, r.setup_error.c_str());
            }
            r.detail = new DcmDataset();
            r.detail->putAndInsertString(DCM_ErrorComment, std::string(r.setup_error, 0, 64).c_str());
            final = true;
            return kUnableToPerformSubOps;
        }
    }
    if (cancelled || r.cancel_seen) {
        final = true;
        return kCancel;
    }
    if (r.next < r.total) {
        size_t index = r.next++;
        // Zeroed: when retrieve_item fails, nothing of it is read but an empty UID.
        cdcm_retrieve_item item;
        std::memset(&item, 0, sizeof item);
        uint16_t status = 0;
        std::string comment;
        OFCondition cond;
        if (r.cb->retrieve_item(r.ctx, r.retrieval, index, &item) != 0) {
            cond = makeOFCondition(0xffff, 0x0301, OF_error, "instance not available");
        } else {
            cdcm::SendRequest s{item.path, item.sop_class_uid, item.sop_instance_uid, item.transfer_syntax_uid,
                                r.is_move ? r.info->calling_ae : nullptr, originator_msg_id};
            if (!r.is_move) {
                s.cancel_message_id = r.message_id;
                s.cancel_seen = &r.cancel_seen;
            }
            cond = cdcm::send_file(r.is_move ? r.sub : r.requester, s, r.timeout, &status, &comment);
        }
        if (r.counts.remaining > 0) r.counts.remaining--;
        if (r.next >= r.total) r.counts.remaining = 0;
        item.sop_instance_uid[sizeof item.sop_instance_uid - 1] = '\0';
        if (cond.bad()) {
            bump(r.counts.failed);
            if (item.sop_instance_uid[0]) r.failed_uids.push_back(item.sop_instance_uid);
            r.cb->retrieve_result(r.ctx, r.retrieval, index, 0xC000, cond.text());
        } else {
            if (status == 0) bump(r.counts.completed);
            else if ((status & 0xF000) == 0xB000) bump(r.counts.warning);
            else {
                bump(r.counts.failed);
                if (item.sop_instance_uid[0]) r.failed_uids.push_back(item.sop_instance_uid);
            }
            r.cb->retrieve_result(r.ctx, r.retrieval, index, status, comment.empty() ? nullptr : comment.c_str());
        }
        if (r.cancel_seen && r.next < r.total) {  // cancelled during this sub-operation: start no other
            final = true;
            return kCancel;
        }
        if (r.next < r.total) return kPending;
    }
    final = true;
    if (r.counts.failed == 0 && r.counts.warning == 0) return 0x0000;
    if (r.counts.completed == 0 && r.counts.warning == 0) return kUnableToPerformSubOps;
    return kSubOpsWarning;
}

void finish_retrieval(RetrieveContext &r, bool cancelled) {
    if (r.retrieval) r.cb->retrieve_end(r.ctx, r.retrieval, &r.counts, cancelled ? 1 : 0);
    r.retrieval = nullptr;
    r.close_sub();
}

/// One C-MOVE or C-GET response: a step of the retrieval, its counts, and the end when final.
/// `dest` and `msg_id` are the C-MOVE's destination and Message ID (NULL and 0 for a C-GET).
template <typename RSP>
void respond(RetrieveContext *r, OFBool cancelled, DcmDataset *identifier, int count, const char *dest,
             uint16_t msg_id, RSP *rsp, DcmDataset **detail, DcmDataset **ids, unsigned remaining_opt,
             unsigned completed_opt, unsigned failed_opt, unsigned warning_opt) {
    *detail = nullptr;
    *ids = nullptr;
    bool final = true;
    try {
        rsp->DimseStatus = retrieve_step(*r, cancelled, identifier, count, dest, msg_id, final);
    } catch (...) {
        rsp->DimseStatus = 0xC000;
    }
    fill_counts(*r, rsp, final, ids, remaining_opt, completed_opt, failed_opt, warning_opt);
    if (final) {
        *detail = r->detail;  // DCMTK deletes it once sent
        r->detail = nullptr;
        finish_retrieval(*r, rsp->DimseStatus == kCancel);
    }
}

void move_callback(void *data, OFBool cancelled, T_DIMSE_C_MoveRQ *req, DcmDataset *identifier, int count,
                   T_DIMSE_C_MoveRSP *rsp, DcmDataset **detail, DcmDataset **ids) {
    respond(static_cast<RetrieveContext *>(data), cancelled, identifier, count, req->MoveDestination, req->MessageID,
            rsp, detail, ids, O_MOVE_NUMBEROFREMAININGSUBOPERATIONS, O_MOVE_NUMBEROFCOMPLETEDSUBOPERATIONS,
            O_MOVE_NUMBEROFFAILEDSUBOPERATIONS, O_MOVE_NUMBEROFWARNINGSUBOPERATIONS);
}

void get_callback(void *data, OFBool cancelled, T_DIMSE_C_GetRQ *, DcmDataset *identifier, int count,
                  T_DIMSE_C_GetRSP *rsp, DcmDataset **detail, DcmDataset **ids) {
    respond(static_cast<RetrieveContext *>(data), cancelled, identifier, count, nullptr, 0, rsp, detail, ids,
            O_GET_NUMBEROFREMAININGSUBOPERATIONS, O_GET_NUMBEROFCOMPLETEDSUBOPERATIONS,
            O_GET_NUMBEROFFAILEDSUBOPERATIONS, O_GET_NUMBEROFWARNINGSUBOPERATIONS);
}

}  // namespace

namespace cdcm {

bool is_find_model(const char *uid) {
    return std::strcmp(uid, UID_FINDPatientRootQueryRetrieveInformationModel) == 0 ||
           std::strcmp(uid, UID_FINDStudyRootQueryRetrieveInformationModel) == 0;
}
bool is_move_model(const char *uid) {
    return std::strcmp(uid, UID_MOVEPatientRootQueryRetrieveInformationModel) == 0 ||
           std::strcmp(uid, UID_MOVEStudyRootQueryRetrieveInformationModel) == 0;
}
bool is_get_model(const char *uid) {
    return std::strcmp(uid, UID_GETPatientRootQueryRetrieveInformationModel) == 0 ||
           std::strcmp(uid, UID_GETStudyRootQueryRetrieveInformationModel) == 0;
}

OFCondition handle_find(const QRServer &s, T_ASC_Association *assoc, const cdcm_association_info &info,
                        T_ASC_PresentationContextID pres_id, T_DIMSE_C_FindRQ &req) {
    FindContext f{s.callbacks, s.context, &info, req.AffectedSOPClassUID};
    OFCondition cond = DIMSE_findProvider(assoc, pres_id, &req, find_callback, &f, DIMSE_NONBLOCKING, s.timeout);
    if (f.query) s.callbacks->find_end(s.context, f.query, 1);
    return cond;
}

OFCondition handle_move(const QRServer &s, T_ASC_Association *assoc, const cdcm_association_info &info,
                        T_ASC_PresentationContextID pres_id, T_DIMSE_C_MoveRQ &req) {
    RetrieveContext r{s.callbacks, s.context, &info, req.AffectedSOPClassUID, assoc, true, s.timeout, s.max_pdu, s.ae_title};
    OFCondition cond = DIMSE_moveProvider(assoc, pres_id, &req, move_callback, &r, DIMSE_NONBLOCKING, s.timeout);
    finish_retrieval(r, true);
    return cond;
}

OFCondition handle_get(const QRServer &s, T_ASC_Association *assoc, const cdcm_association_info &info,
                       T_ASC_PresentationContextID pres_id, T_DIMSE_C_GetRQ &req) {
    RetrieveContext r{s.callbacks, s.context, &info, req.AffectedSOPClassUID, assoc, false, s.timeout, s.max_pdu, s.ae_title};
    r.message_id = req.MessageID;
    OFCondition cond = DIMSE_getProvider(assoc, pres_id, &req, get_callback, &r, DIMSE_NONBLOCKING, s.timeout);
    finish_retrieval(r, true);
    return cond;
}

}  // namespace cdcm

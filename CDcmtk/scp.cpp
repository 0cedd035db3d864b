// The SCP: one listening socket, one thread per association, DIMSE dispatch to C callbacks.
//
// The accept loop runs on the thread that calls cdcm_scp_run (a dedicated thread, never a Swift
// concurrency thread). Each accepted association is negotiated and served on its own std::thread.
// C-STORE datasets are streamed to the `store_data` callback exactly as they arrive in the PDVs
// (bit-preserving: DIMSE_receiveDataSetInFile with a stream of our own), so the caller can hash
// and write them in one pass without the dataset ever being parsed or re-encoded.
#include "shim_common.h"
#include "qr.h"

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcostrma.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/diutil.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

struct cdcm_scp {
    cdcm_scp_config config{};
    std::string ae_title;
    T_ASC_Network *network = nullptr;
    std::atomic<bool> stopping{false};
    std::atomic<uint32_t> active{0};
    std::atomic<uint32_t> next_id{1};
    std::mutex mutex;
    std::condition_variable idle;
};

namespace {

/// A DcmConsumer that hands every byte to the store_data callback. After a callback reports an
/// error the bytes are still accepted (and dropped) so that DCMTK reads the dataset to its end
/// and the association stays usable: the failure is answered with a DIMSE status, not an abort.
class CallbackConsumer : public DcmConsumer {
  public:
    CallbackConsumer(const cdcm_scp_callbacks &callbacks, void *context, void *sink)
        : callbacks_(callbacks), context_(context), sink_(sink) {}
    OFBool good() const override { return OFTrue; }
    OFCondition status() const override { return EC_Normal; }
    OFBool isFlushed() const override { return OFTrue; }
    offile_off_t avail() const override { return OFstatic_cast(offile_off_t, 1) << 30; }
    offile_off_t write(const void *buf, offile_off_t buflen) override {
        if (!failed_ && sink_ && buflen > 0) {
            if (callbacks_.store_data(context_, sink_, buf, OFstatic_cast(size_t, buflen)) != 0) failed_ = true;
        }
        return buflen;
    }
    void flush() override {}

  private:
    const cdcm_scp_callbacks &callbacks_;
    void *context_;
    void *sink_;
    bool failed_ = false;
};

class CallbackStream : public DcmOutputStream {
  public:
    explicit CallbackStream(CallbackConsumer *consumer) : DcmOutputStream(consumer) {}
};

struct AssociationGuard {
    cdcm_scp *scp;
    ~AssociationGuard() {
        std::lock_guard<std::mutex> lock(scp->mutex);
        scp->active.fetch_sub(1);
        scp->idle.notify_all();
    }
};

void reject(T_ASC_Association *assoc, T_ASC_RejectParametersResult result, T_ASC_RejectParametersSource source,
            T_ASC_RejectParametersReason reason) {
    T_ASC_RejectParameters rej = {result, source, reason};
    ASC_rejectAssociation(assoc, &rej);
}

bool is_verification(const char *uid) { return std::strcmp(uid, UID_VerificationSOPClass) == 0; }

/// PS3.8 9.3.3.2 / PS3.7 D.3.3.4: accept each proposed context whose abstract syntax we serve,
/// with the first transfer syntax the requester proposed that DCMTK knows (the sender's own
/// preference, so that nothing is transcoded on the way in).
void negotiate_contexts(T_ASC_Parameters *params, const cdcm_scp_callbacks &cb) {
    int count = ASC_countPresentationContexts(params);
    for (int i = 0; i < count; ++i) {
        T_ASC_PresentationContext pc;
        if (ASC_getPresentationContext(params, i, &pc).bad()) continue;
        bool storage = dcmIsaStorageSOPClassUID(pc.abstractSyntax, ESSC_All);
        bool served = is_verification(pc.abstractSyntax) || storage ||
                      (cb.find_begin && cdcm::is_find_model(pc.abstractSyntax)) ||
                      (cb.retrieve_begin && (cdcm::is_move_model(pc.abstractSyntax) || cdcm::is_get_model(pc.abstractSyntax)));
        if (!served) {
            ASC_refusePresentationContext(params, pc.presentationContextID, ASC_P_ABSTRACTSYNTAXNOTSUPPORTED);
            continue;
        }
        const char *chosen = nullptr;
        for (int t = 0; t < pc.transferSyntaxCount; ++t) {
            DcmXfer xfer(pc.proposedTransferSyntaxes[t]);
            if (xfer.getXfer() != EXS_Unknown) {
                chosen = pc.proposedTransferSyntaxes[t];
                break;
            }
        }
        if (!chosen) {
            ASC_refusePresentationContext(params, pc.presentationContextID, ASC_P_TRANSFERSYNTAXESNOTSUPPORTED);
            continue;
        }
        // PS3.7 D.3.3.4 role selection: a C-GET requester proposes the SCP role for the storage
        // classes it wants to receive; we accept the role it proposed.
        T_ASC_SC_ROLE role = ASC_SC_ROLE_DEFAULT;
        if (storage && (pc.proposedRole == ASC_SC_ROLE_SCP || pc.proposedRole == ASC_SC_ROLE_SCUSCP))
            role = pc.proposedRole;
        ASC_acceptPresentationContext(params, pc.presentationContextID, chosen, role);
    }
}

/// Handles one C-STORE. Returns false when the association must end (it was aborted or broke).
bool handle_store(cdcm_scp *scp, T_ASC_Association *assoc, const cdcm_association_info &info,
                  T_ASC_PresentationContextID pres_id, T_DIMSE_C_StoreRQ &rq, std::string &end_reason) {
    const cdcm_scp_callbacks &cb = scp->config.callbacks;
    T_ASC_PresentationContext pc;
    std::string ts;
    if (ASC_findAcceptedPresentationContext(assoc->params, pres_id, &pc).good()) ts = pc.acceptedTransferSyntax;

    cdcm_store_request req;
    req.sop_class_uid = rq.AffectedSOPClassUID;
    req.sop_instance_uid = rq.AffectedSOPInstanceUID;
    req.transfer_syntax_uid = ts.c_str();
    req.message_id = rq.MessageID;
    req.move_originator_ae = (rq.opts & O_STORE_MOVEORIGINATORAETITLE) ? rq.MoveOriginatorApplicationEntityTitle : "";

    cdcm_status st;
    std::memset(&st, 0, sizeof st);
    void *sink = cb.store_begin(scp->config.context, &info, &req, &st);
    T_ASC_PresentationContextID data_pres_id = pres_id;
    OFCondition cond;
    if (sink) {
        CallbackConsumer consumer(cb, scp->config.context, sink);
        CallbackStream stream(&consumer);
        cond = DIMSE_receiveDataSetInFile(assoc, DIMSE_NONBLOCKING, scp->config.dimse_timeout_seconds, &data_pres_id,
                                          &stream, nullptr, nullptr);
        if (cond.good()) stream.flush();
    } else {
        // DCMTK adds to both counters without a null check: they must be given.
        DIC_UL ignored_bytes = 0, ignored_pdvs = 0;
        cond = DIMSE_ignoreDataSet(assoc, DIMSE_NONBLOCKING, scp->config.dimse_timeout_seconds, &ignored_bytes, &ignored_pdvs);
    }
    if (cond.bad()) {
        end_reason = std::string("dataset reception failed: ") + cond.text();
        if (sink) {
            cdcm_status ignored;
            std::memset(&ignored, 0, sizeof ignored);
            cb.store_end(scp->config.context, sink, 0, &ignored);
        }
        return false;
    }
    if (sink) cb.store_end(scp->config.context, sink, 1, &st);
    cdcm::send_store_response(assoc, pres_id, rq, st);
    return true;
}

void serve_association(cdcm_scp *scp, T_ASC_Association *assoc, cdcm_association_info info) {
    AssociationGuard guard{scp};
    const cdcm_scp_callbacks &cb = scp->config.callbacks;
    void *ctx = scp->config.context;

    negotiate_contexts(assoc->params, cb);
    cdcm::QRServer qr{&cb, ctx, scp->config.dimse_timeout_seconds, scp->config.max_retrieve_pdu, scp->ae_title.c_str()};
    if (ASC_acknowledgeAssociation(assoc).bad()) {
        cb.association_ended(ctx, &info, 1, "could not acknowledge the association");
        ASC_dropSCPAssociation(assoc);
        ASC_destroyAssociation(&assoc);
        return;
    }

    bool aborted = true;
    std::string reason;
    for (;;) {
        if (scp->stopping.load()) {
            reason = "server shutting down";
            ASC_abortAssociation(assoc);
            break;
        }
        T_DIMSE_Message msg;
        T_ASC_PresentationContextID pres_id = 0;
        // Wake up every second to notice a shutdown; the idle timeout is counted here.
        OFCondition cond;
        int waited = 0;
        for (;;) {
            cond = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, 1, &pres_id, &msg, nullptr);
            if (cond != DIMSE_NODATAAVAILABLE) break;
            if (scp->stopping.load() || ++waited >= scp->config.dimse_timeout_seconds) break;
        }
        if (cond == DIMSE_NODATAAVAILABLE) {
            reason = scp->stopping.load() ? "server shutting down" : "idle timeout";
            ASC_abortAssociation(assoc);
            break;
        }
        if (cond == DUL_PEERREQUESTEDRELEASE) {
            ASC_acknowledgeRelease(assoc);
            aborted = false;
            reason = "released";
            break;
        }
        if (cond == DUL_PEERABORTEDASSOCIATION) {
            reason = "aborted by the peer";
            break;
        }
        if (cond.bad()) {
            reason = std::string("receive failed: ") + cond.text();
            ASC_abortAssociation(assoc);
            break;
        }
        bool go_on = true;
        switch (msg.CommandField) {
            case DIMSE_C_ECHO_RQ: {
                uint16_t status = cb.echo(ctx, &info);
                DIMSE_sendEchoResponse(assoc, pres_id, &msg.msg.CEchoRQ, status, nullptr);
                break;
            }
            case DIMSE_C_STORE_RQ:
                go_on = handle_store(scp, assoc, info, pres_id, msg.msg.CStoreRQ, reason);
                if (!go_on) ASC_abortAssociation(assoc);
                break;
            case DIMSE_C_FIND_RQ:
            case DIMSE_C_MOVE_RQ:
            case DIMSE_C_GET_RQ: {
                OFCondition c;
                if (!cb.find_begin || !cb.retrieve_begin) {
                    c = makeOFCondition(0xffff, 0x0401, OF_error, "query/retrieve not offered");
                } else if (msg.CommandField == DIMSE_C_FIND_RQ) {
                    c = cdcm::handle_find(qr, assoc, info, pres_id, msg.msg.CFindRQ);
                } else if (msg.CommandField == DIMSE_C_MOVE_RQ) {
                    c = cdcm::handle_move(qr, assoc, info, pres_id, msg.msg.CMoveRQ);
                } else {
                    c = cdcm::handle_get(qr, assoc, info, pres_id, msg.msg.CGetRQ);
                }
                if (c.bad()) {
                    reason = std::string("query/retrieve failed: ") + c.text();
                    ASC_abortAssociation(assoc);
                    go_on = false;
                }
                break;
            }
            case DIMSE_C_CANCEL_RQ:
                // A C-CANCEL that arrived after its operation had ended: nothing to cancel.
                break;
            default:
                reason = "unsupported DIMSE command " + std::to_string(static_cast<int>(msg.CommandField));
                ASC_abortAssociation(assoc);
                go_on = false;
                break;
        }
        if (!go_on) break;
    }
    cb.association_ended(ctx, &info, aborted ? 1 : 0, reason.c_str());
    ASC_dropSCPAssociation(assoc);
    ASC_destroyAssociation(&assoc);
}

}  // namespace

extern "C" cdcm_scp *cdcm_scp_create(const cdcm_scp_config *config, cdcm_error *err) {
    try {
        cdcm_initialize(4);
        auto *scp = new cdcm_scp();
        scp->config = *config;
        scp->ae_title = config->ae_title ? config->ae_title : "";
        scp->config.ae_title = scp->ae_title.c_str();
        if (scp->config.dimse_timeout_seconds <= 0) scp->config.dimse_timeout_seconds = 60;
        if (scp->config.acse_timeout_seconds <= 0) scp->config.acse_timeout_seconds = 30;
        if (scp->config.max_associations == 0) scp->config.max_associations = 16;
        OFCondition cond = ASC_initializeNetwork(NET_ACCEPTOR, config->port, scp->config.acse_timeout_seconds,
                                                 &scp->network);
        if (cond.bad()) {
            cdcm::fail(err, cond);
            delete scp;
            return nullptr;
        }
        cdcm::clear(err);
        return scp;
    } catch (...) {
        cdcm::fail_exception(err);
        return nullptr;
    }
}

extern "C" int cdcm_scp_run(cdcm_scp *scp, cdcm_error *err) {
    try {
        const cdcm_scp_callbacks &cb = scp->config.callbacks;
        while (!scp->stopping.load()) {
            if (!ASC_associationWaiting(scp->network, 1)) continue;
            T_ASC_Association *assoc = nullptr;
            OFCondition cond = ASC_receiveAssociation(scp->network, &assoc, scp->config.max_pdu, nullptr, nullptr,
                                                      OFFalse, DUL_NOBLOCK, scp->config.acse_timeout_seconds);
            if (cond.bad()) {
                // A peer that connected and said nothing valid; nothing to answer.
                if (assoc) {
                    ASC_dropAssociation(assoc);
                    ASC_destroyAssociation(&assoc);
                }
                continue;
            }
            cdcm_association_info info;
            std::memset(&info, 0, sizeof info);
            info.id = scp->next_id.fetch_add(1);
            DIC_AE calling, called;
            ASC_getAPTitles(assoc->params, calling, sizeof calling, called, sizeof called, nullptr, 0);
            cdcm::copy_string(info.calling_ae, sizeof info.calling_ae, OFSTRING_GUARD(calling));
            cdcm::copy_string(info.called_ae, sizeof info.called_ae, OFSTRING_GUARD(called));
            cdcm::copy_string(info.peer_host, sizeof info.peer_host, assoc->params->DULparams.callingPresentationAddress);
            info.max_pdu = assoc->params->theirMaxPDUReceiveSize;

            cdcm_association_decision decision;
            char app_context[128];
            ASC_getApplicationContextName(assoc->params, app_context, sizeof app_context);
            if (std::strcmp(app_context, UID_StandardApplicationContext) != 0) {
                reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
                       ASC_REASON_SU_APPCONTEXTNAMENOTSUPPORTED);
                cb.association_ended(scp->config.context, &info, 1, "application context name not supported");
                decision = CDCM_REJECT_NO_REASON;
            } else if (scp->active.load() >= scp->config.max_associations) {
                decision = CDCM_REJECT_LOCAL_LIMIT_EXCEEDED;
                reject(assoc, ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                       ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
                cb.association_ended(scp->config.context, &info, 1, "too many concurrent associations");
            } else {
                decision = cb.association_requested(scp->config.context, &info);
                switch (decision) {
                    case CDCM_ACCEPT: break;
                    case CDCM_REJECT_CALLING_AE_NOT_RECOGNIZED:
                        reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
                               ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED);
                        break;
                    case CDCM_REJECT_CALLED_AE_NOT_RECOGNIZED:
                        reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
                               ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED);
                        break;
                    case CDCM_REJECT_LOCAL_LIMIT_EXCEEDED:
                        reject(assoc, ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
                        break;
                    default:
                        reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_NOREASON);
                        break;
                }
            }
            if (decision != CDCM_ACCEPT) {
                ASC_dropAssociation(assoc);
                ASC_destroyAssociation(&assoc);
                continue;
            }
            scp->active.fetch_add(1);
            try {
                std::thread(serve_association, scp, assoc, info).detach();
            } catch (...) {
                scp->active.fetch_sub(1);
                ASC_abortAssociation(assoc);
                ASC_dropAssociation(assoc);
                ASC_destroyAssociation(&assoc);
            }
        }
        // Wait for the associations still being served (they notice `stopping` within a second).
        std::unique_lock<std::mutex> lock(scp->mutex);
        scp->idle.wait(lock, [scp] { return scp->active.load() == 0; });
        cdcm::clear(err);
        return 0;
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

extern "C" void cdcm_scp_stop(cdcm_scp *scp) { scp->stopping.store(true); }

extern "C" uint32_t cdcm_scp_active_associations(const cdcm_scp *scp) { return scp->active.load(); }

extern "C" void cdcm_scp_free(cdcm_scp *scp) {
    if (!scp) return;
    if (scp->network) ASC_dropNetwork(&scp->network);
    delete scp;
}

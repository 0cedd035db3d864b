// The SCP: one listening socket, one thread per association, DIMSE dispatch to C callbacks.
//
// The accept loop runs on the thread that calls cdcm_scp_run (a dedicated thread, never a Swift
// concurrency thread). It only accepts TCP connections: each one is handed at once to its own
// std::thread, which reads the A-ASSOCIATE-RQ (ACSE timeout), asks the delegate, and then serves
// the association. Nothing a peer sends (or does not send) can hold the accept loop, and at most
// `max_negotiating` connections may be in set-up at once: more are closed as soon as accepted.
// Every thread body catches every C++ exception: the association is aborted, the process lives.
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

#include "dcmtk/dcmnet/dcmlayer.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/dcmnet/dulstruc.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

struct cdcm_scp {
    cdcm_scp_config config{};
    std::string ae_title;
    T_ASC_Network *network = nullptr;
    std::atomic<bool> stopping{false};
    std::atomic<uint32_t> active{0};       // associations being served
    std::atomic<uint32_t> negotiating{0};  // connections accepted, association not yet set up
    std::atomic<uint32_t> next_id{1};
    std::mutex mutex;                      // guards negotiating_fds; `idle` waits on it
    std::condition_variable idle;
    std::set<int> negotiating_fds;         // shut down at stop, to end a pending ACSE read at once
    std::string throw_in_store_uid;        // test hook, read once at create (see cdcm_scp_create)
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

/// The text of the exception being handled (call inside a catch block only).
std::string exception_text() {
    try {
        throw;
    } catch (const std::exception &e) {
        return std::string("internal error: ") + e.what();
    } catch (...) {
        return "internal error: unknown C++ exception";
    }
}

// ---- Handing an accepted socket to DCMTK ------------------------------------------------------
//
// DCMTK 3.6.7 has no call that reads an A-ASSOCIATE-RQ from a socket accepted elsewhere, except
// through the process-wide dcmExternalSocketHandle (meant for forked children): when it is set,
// DUL_ReceiveAssociationRQ takes that socket instead of calling accept(). The global is read only
// between the start of ASC_receiveAssociation and the moment DCMTK wraps the socket in a transport
// connection (HandoffLayer::createConnection below). So a negotiation thread takes g_handoff,
// sets the global to its socket, and lets go of both as soon as DCMTK has created the connection:
// the lock is held for microseconds, and the slow part (reading the request, under the ACSE
// timeout) runs on the negotiation thread alone, in parallel with the others.
std::mutex g_handoff;
thread_local bool t_holding_handoff = false;
thread_local bool t_connection_created = false;

void release_handoff() {
    if (!t_holding_handoff) return;
    dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
    t_holding_handoff = false;
    g_handoff.unlock();
}

struct HandoffRelease {
    ~HandoffRelease() { release_handoff(); }
};

class HandoffLayer : public DcmTransportLayer {
  public:
    DcmTransportConnection *createConnection(DcmNativeSocketType openSocket, OFBool useSecureLayer) override {
        release_handoff();
        t_connection_created = true;
        return DcmTransportLayer::createConnection(openSocket, useSecureLayer);
    }
};

/// Counts one connection in set-up; on destruction it is no longer counted (it became an
/// association, or was refused, or failed).
struct NegotiationSlot {
    cdcm_scp *scp;
    int fd;
    bool listed = true;
    bool counted = true;
    /// From here on DCMTK owns (and will close) the socket: stop() must no longer touch the fd.
    void forget_fd() {
        if (!listed) return;
        listed = false;
        std::lock_guard<std::mutex> lock(scp->mutex);
        scp->negotiating_fds.erase(fd);
    }
    void done() {
        forget_fd();
        if (!counted) return;
        counted = false;
        std::lock_guard<std::mutex> lock(scp->mutex);
        scp->negotiating.fetch_sub(1);
        scp->idle.notify_all();
    }
    ~NegotiationSlot() { done(); }
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
    // Whatever happens below (an exception included), the sink is released exactly once.
    struct SinkRelease {
        const cdcm_scp_callbacks &cb;
        void *ctx;
        void *&sink;
        ~SinkRelease() {
            if (!sink) return;
            cdcm_status ignored;
            std::memset(&ignored, 0, sizeof ignored);
            cb.store_end(ctx, sink, 0, &ignored);
        }
    } release{cb, scp->config.context, sink};
    if (!scp->throw_in_store_uid.empty() && scp->throw_in_store_uid == req.sop_instance_uid)
        throw std::runtime_error("test hook DICOM_BRIDGE_TEST_THROW_IN_STORE");
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
        return false;  // `release` ends the sink as not received
    }
    if (sink) {
        void *done = sink;
        sink = nullptr;
        cb.store_end(scp->config.context, done, 1, &st);
    }
    cdcm::send_store_response(assoc, pres_id, rq, st);
    return true;
}

/// Serves an accepted association until it ends. Returns whether it ended aborted; `reason`
/// says why. May throw: serve_association catches.
bool serve_dimse(cdcm_scp *scp, T_ASC_Association *assoc, const cdcm_association_info &info, std::string &reason) {
    const cdcm_scp_callbacks &cb = scp->config.callbacks;
    void *ctx = scp->config.context;
    cdcm::QRServer qr{&cb, ctx, scp->config.dimse_timeout_seconds, scp->config.max_retrieve_pdu, scp->ae_title.c_str()};
    bool aborted = true;
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
    return aborted;
}

/// Acknowledges and serves an association (the caller counted it in `active`); never throws.
void serve_association(cdcm_scp *scp, T_ASC_Association *assoc, const cdcm_association_info &info) {
    AssociationGuard guard{scp};
    const cdcm_scp_callbacks &cb = scp->config.callbacks;
    void *ctx = scp->config.context;
    bool aborted = true;
    std::string reason;
    try {
        negotiate_contexts(assoc->params, cb);
        if (ASC_acknowledgeAssociation(assoc).bad()) {
            reason = "could not acknowledge the association";
        } else {
            aborted = serve_dimse(scp, assoc, info, reason);
        }
    } catch (...) {
        // PS3.8 7.3: an A-ABORT ends the association; the other associations go on.
        aborted = true;
        reason = exception_text() + "; association aborted";
        try {
            ASC_abortAssociation(assoc);
        } catch (...) {
        }
    }
    try {
        cb.association_ended(ctx, &info, aborted ? 1 : 0, reason.c_str());
    } catch (...) {
    }
    try {
        ASC_dropSCPAssociation(assoc);
        ASC_destroyAssociation(&assoc);
    } catch (...) {
    }
}

/// Fills what the SCP knows of an association from its request.
cdcm_association_info describe(cdcm_scp *scp, T_ASC_Association *assoc) {
    cdcm_association_info info;
    std::memset(&info, 0, sizeof info);
    info.id = scp->next_id.fetch_add(1);
    DIC_AE calling, called;
    std::memset(calling, 0, sizeof calling);
    std::memset(called, 0, sizeof called);
    ASC_getAPTitles(assoc->params, calling, sizeof calling, called, sizeof called, nullptr, 0);
    cdcm::copy_string(info.calling_ae, sizeof info.calling_ae, OFSTRING_GUARD(calling));
    cdcm::copy_string(info.called_ae, sizeof info.called_ae, OFSTRING_GUARD(called));
    cdcm::copy_string(info.peer_host, sizeof info.peer_host, assoc->params->DULparams.callingPresentationAddress);
    info.max_pdu = assoc->params->theirMaxPDUReceiveSize;
    return info;
}

/// Decides on an association request: our own checks, then the delegate's. Answers A-ASSOCIATE-RJ
/// unless accepted. On acceptance the association is already counted in `active`.
bool admit(cdcm_scp *scp, T_ASC_Association *assoc, const cdcm_association_info &info) {
    const cdcm_scp_callbacks &cb = scp->config.callbacks;
    char app_context[128];
    app_context[0] = '\0';
    ASC_getApplicationContextName(assoc->params, app_context, sizeof app_context);
    if (std::strcmp(app_context, UID_StandardApplicationContext) != 0) {
        reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_APPCONTEXTNAMENOTSUPPORTED);
        cb.association_ended(scp->config.context, &info, 1, "application context name not supported");
        return false;
    }
    if (scp->active.load() >= scp->config.max_associations) {
        reject(assoc, ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
        cb.association_ended(scp->config.context, &info, 1, "too many concurrent associations");
        return false;
    }
    cdcm_association_decision decision = cb.association_requested(scp->config.context, &info);
    if (decision == CDCM_ACCEPT) {
        // Counted now; checked again, since other associations were set up in parallel.
        if (scp->active.fetch_add(1) < scp->config.max_associations) return true;
        scp->active.fetch_sub(1);
        decision = CDCM_REJECT_LOCAL_LIMIT_EXCEEDED;
        cb.association_ended(scp->config.context, &info, 1, "too many concurrent associations");
    }
    switch (decision) {
        case CDCM_REJECT_CALLING_AE_NOT_RECOGNIZED:
            reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED);
            break;
        case CDCM_REJECT_CALLED_AE_NOT_RECOGNIZED:
            reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED);
            break;
        case CDCM_REJECT_LOCAL_LIMIT_EXCEEDED:
            reject(assoc, ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                   ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
            break;
        default:
            reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_NOREASON);
            break;
    }
    return false;
}

/// Waits until the connection's first PDU (the A-ASSOCIATE-RQ) is entirely in the socket's receive
/// buffer, without consuming it, within one deadline for the whole request: DCMTK reads a request's
/// body with a blocking read, so a peer that sends half a request (or trickles it) would otherwise
/// hold the thread for good. Returns false when the deadline passes or the peer closes first.
/// A request larger than we peek at (rare) is left to DCMTK, under SO_RCVTIMEO.
bool wait_for_request(cdcm_scp *scp, int fd) {
    constexpr size_t kPeekMax = 256 * 1024;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(scp->config.acse_timeout_seconds);
    std::vector<unsigned char> buf(6);
    size_t need = 6;
    for (;;) {
        ssize_t n = ::recv(fd, buf.data(), need, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0) return false;  // closed
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
        if (n >= 6 && need == 6) {
            uint32_t length = (uint32_t(buf[2]) << 24) | (uint32_t(buf[3]) << 16) | (uint32_t(buf[4]) << 8) | buf[5];
            if (buf[0] != 0x01 || length > kPeekMax - 6) return true;  // DCMTK answers or refuses it
            need = 6 + length;
            buf.resize(need);
            continue;
        }
        if (n >= 0 && size_t(n) >= need) return true;
        if (scp->stopping.load()) return false;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        if (n > 0) {
            // Part of it is there: poll() would return at once; look again shortly.
            std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(20)));
        } else {
            struct pollfd pfd = {fd, POLLIN, 0};
            ::poll(&pfd, 1, int(std::min<long long>(left.count(), 1000)));
        }
    }
}

void set_receive_timeout(int fd, int seconds) {
    struct timeval tv;
    tv.tv_sec = seconds;
    tv.tv_usec = 0;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/// The body of a connection's thread: read the association request (ACSE timeout), decide, serve.
/// The caller counted the connection in `negotiating` and listed `fd`. Never throws.
void handle_connection(cdcm_scp *scp, int fd) {
    NegotiationSlot slot{scp, fd};
    T_ASC_Association *assoc = nullptr;
    try {
        if (!wait_for_request(scp, fd)) {
            slot.forget_fd();
            ::close(fd);
            return;
        }
        // A request larger than we peeked at is read by DCMTK with blocking reads: bound each one.
        set_receive_timeout(fd, scp->config.acse_timeout_seconds);
        OFCondition cond;
        t_connection_created = false;
        {
            HandoffRelease release;
            g_handoff.lock();
            t_holding_handoff = true;
            dcmExternalSocketHandle.set(fd);
            cond = ASC_receiveAssociation(scp->network, &assoc, scp->config.max_pdu, nullptr, nullptr, OFFalse,
                                          DUL_NOBLOCK, scp->config.acse_timeout_seconds);
        }
        slot.forget_fd();
        if (!t_connection_created) {
            ::close(fd);  // DCMTK never took the socket
        } else {
            set_receive_timeout(fd, 0);  // DIMSE reads have their own timeouts
        }
        if (cond.bad()) {
            // A peer that connected and said nothing valid in time: nothing to answer.
            if (assoc) {
                ASC_dropAssociation(assoc);
                ASC_destroyAssociation(&assoc);
            }
            return;
        }
        cdcm_association_info info = describe(scp, assoc);
        bool accepted = admit(scp, assoc, info);
        slot.done();
        if (!accepted) {
            ASC_dropAssociation(assoc);
            ASC_destroyAssociation(&assoc);
            return;
        }
        T_ASC_Association *served = assoc;
        assoc = nullptr;
        serve_association(scp, served, info);  // releases the association and the `active` count
    } catch (...) {
        try {
            if (assoc) {
                ASC_abortAssociation(assoc);
                ASC_dropAssociation(assoc);
                ASC_destroyAssociation(&assoc);
            }
        } catch (...) {
        }
    }
}

}  // namespace

/// The listening socket DCMTK opened (it accepts nothing itself: the accept loop does).
static int listen_socket(T_ASC_Network *network) {
    auto *key = reinterpret_cast<PRIVATE_NETWORKKEY *>(network->network);
    return OFstatic_cast(int, key->networkSpecific.TCP.listenSocket);
}

extern "C" cdcm_scp *cdcm_scp_create(const cdcm_scp_config *config, cdcm_error *err) {
    try {
        cdcm_initialize(4);
        auto *scp = new cdcm_scp();
        scp->config = *config;
        scp->ae_title = config->ae_title ? config->ae_title : "";
        scp->config.ae_title = scp->ae_title.c_str();
        if (scp->config.dimse_timeout_seconds <= 0) scp->config.dimse_timeout_seconds = 60;
        if (scp->config.acse_timeout_seconds <= 0) scp->config.acse_timeout_seconds = 10;
        if (scp->config.max_associations == 0) scp->config.max_associations = 16;
        if (scp->config.max_negotiating == 0) scp->config.max_negotiating = 64;
        // TEST ONLY: with DICOM_BRIDGE_TEST_THROW_IN_STORE=<SOP Instance UID>, the C-STORE of that
        // instance throws a C++ exception inside the shim (the integration suite uses it to show
        // that an exception aborts its association only). Read once, here; never set it in production.
        if (const char *uid = std::getenv("DICOM_BRIDGE_TEST_THROW_IN_STORE")) scp->throw_in_store_uid = uid;
        OFCondition cond = ASC_initializeNetwork(NET_ACCEPTOR, config->port, scp->config.acse_timeout_seconds,
                                                 &scp->network);
        if (cond.good()) cond = ASC_setTransportLayer(scp->network, new HandoffLayer(), 1);
        if (cond.bad()) {
            cdcm::fail(err, cond);
            if (scp->network) ASC_dropNetwork(&scp->network);
            delete scp;
            return nullptr;
        }
        int lfd = listen_socket(scp->network);
        if (lfd < 0) {
            cdcm::fail(err, std::string("no listening socket"));
            ASC_dropNetwork(&scp->network);
            delete scp;
            return nullptr;
        }
        // Non-blocking: a connection reset between poll() and accept() must not block the loop.
        ::fcntl(lfd, F_SETFL, ::fcntl(lfd, F_GETFL) | O_NONBLOCK);
        ::fcntl(lfd, F_SETFD, ::fcntl(lfd, F_GETFD) | FD_CLOEXEC);
        cdcm::clear(err);
        return scp;
    } catch (...) {
        cdcm::fail_exception(err);
        return nullptr;
    }
}

extern "C" int cdcm_scp_run(cdcm_scp *scp, cdcm_error *err) {
    try {
        const int lfd = listen_socket(scp->network);
        while (!scp->stopping.load()) {
            struct pollfd pfd = {lfd, POLLIN, 0};
            int n = ::poll(&pfd, 1, 1000);  // wake up every second to notice a stop
            if (n <= 0) continue;
            int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                // EMFILE/ENFILE: no descriptor to accept with; let the pending connection wait
                // a moment rather than spin (it stays in the backlog).
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                continue;
            }
            {
                std::lock_guard<std::mutex> lock(scp->mutex);
                if (scp->negotiating.load() >= scp->config.max_negotiating) {
                    // Too many connections still in set-up: refuse this one at once.
                    ::close(fd);
                    continue;
                }
                scp->negotiating.fetch_add(1);
                scp->negotiating_fds.insert(fd);
            }
            try {
                std::thread(handle_connection, scp, fd).detach();
            } catch (...) {
                std::lock_guard<std::mutex> lock(scp->mutex);
                scp->negotiating_fds.erase(fd);
                scp->negotiating.fetch_sub(1);
                ::close(fd);
            }
        }
        // End the association requests still being read, then wait for every thread: the
        // associations being served notice `stopping` within a second.
        std::unique_lock<std::mutex> lock(scp->mutex);
        for (int fd : scp->negotiating_fds) ::shutdown(fd, SHUT_RDWR);
        scp->idle.wait(lock, [scp] { return scp->active.load() == 0 && scp->negotiating.load() == 0; });
        cdcm::clear(err);
        return 0;
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

extern "C" void cdcm_scp_stop(cdcm_scp *scp) { scp->stopping.store(true); }

extern "C" uint32_t cdcm_scp_active_associations(const cdcm_scp *scp) { return scp->active.load(); }

extern "C" uint32_t cdcm_scp_negotiating_connections(const cdcm_scp *scp) { return scp->negotiating.load(); }

extern "C" void cdcm_scp_free(cdcm_scp *scp) {
    if (!scp) return;
    if (scp->network) ASC_dropNetwork(&scp->network);
    delete scp;
}

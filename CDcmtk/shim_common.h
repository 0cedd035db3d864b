// Internal helpers shared by the shim's translation units. Never included by Swift.
#pragma once

#include "include/CDcmtk.h"

#include "dcmtk/config/osconfig.h"
#include "dcmtk/ofstd/ofcond.h"
#include "dcmtk/dcmnet/dimse.h"

#include <cstring>
#include <exception>
#include <string>

class DcmDataset;
class DcmFileFormat;
/// Lends a DCMTK-owned dataset to a callback; cdcm_dataset_free releases the wrapper only.
cdcm_dataset *cdcm_dataset_wrap(DcmDataset *external);
namespace cdcm { DcmDataset *dataset_ptr(const cdcm_dataset *ds); }

namespace cdcm {

inline void clear(cdcm_error *err) {
    if (err) {
        err->module = 0;
        err->code = 0;
        err->text[0] = '\0';
    }
}

inline void copy_string(char *dst, size_t cap, const char *src) {
    if (cap == 0) return;
    if (!src) src = "";
    std::strncpy(dst, src, cap - 1);
    dst[cap - 1] = '\0';
}

/// Fills `err` from a DCMTK condition. Returns 0 when the condition is good, 1 otherwise.
inline int fail(cdcm_error *err, const OFCondition &cond) {
    if (cond.good()) {
        clear(err);
        return 0;
    }
    if (err) {
        err->module = cond.module();
        err->code = cond.code() == 0 ? 0xffff : cond.code();
        copy_string(err->text, sizeof err->text, cond.text());
    }
    return 1;
}

/// Fills `err` with a message of our own. Returns 1.
inline int fail(cdcm_error *err, const std::string &text, uint16_t code = 0xfffe) {
    if (err) {
        err->module = 0xffff;
        err->code = code;
        copy_string(err->text, sizeof err->text, text.c_str());
    }
    return 1;
}

/// Converts an escaping C++ exception into an error value: nothing may cross the C line.
inline int fail_exception(cdcm_error *err) {
    try {
        throw;
    } catch (const std::exception &e) {
        return fail(err, std::string("internal error: ") + e.what());
    } catch (...) {
        return fail(err, std::string("internal error: unknown C++ exception"));
    }
}

/// A stored instance to send by C-STORE.
struct SendRequest {
    const char *path;
    const char *sop_class_uid;
    const char *sop_instance_uid;
    const char *transfer_syntax_uid;   // as stored
    const char *move_originator_ae;    // C-MOVE sub-operations only
    uint16_t move_originator_id;
    // C-GET sub-operations only: the C-GET's Message ID and where to note a C-CANCEL-RQ for it that
    // arrives, on the same association, while the C-STORE-RSP is awaited (it is read past).
    uint16_t cancel_message_id = 0;
    bool *cancel_seen = nullptr;
};

/// Loads a stored Part 10 file whole and converts its dataset to `transfer_syntax_uid` (decoding
/// with DCMTK's codecs): what sending it to a peer that did not accept the stored syntax does
/// (send.cpp). A bad condition means it cannot be converted.
OFCondition load_converted(const char *path, const char *transfer_syntax_uid, DcmFileFormat &file);

/// Sends one file by C-STORE on `assoc` (send.cpp). A bad condition means it could not be sent.
OFCondition send_file(T_ASC_Association *assoc, const SendRequest &r, int timeout, uint16_t *status,
                      std::string *comment);

/// Answers a C-STORE request with `st` (send.cpp); the Error Comment goes with a failure only.
void send_store_response(T_ASC_Association *assoc, T_ASC_PresentationContextID pres_id, T_DIMSE_C_StoreRQ &rq,
                         const cdcm_status &st);

}  // namespace cdcm

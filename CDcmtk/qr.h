// Internal: the Query/Retrieve providers (qr.cpp), called from the SCP's DIMSE loop.
#pragma once

#include "shim_common.h"

#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"

namespace cdcm {

struct QRServer {
    const cdcm_scp_callbacks *callbacks;
    void *context;
    int timeout;
    uint32_t max_pdu;
    const char *ae_title;
};

bool is_find_model(const char *uid);
bool is_move_model(const char *uid);
bool is_get_model(const char *uid);

OFCondition handle_find(const QRServer &s, T_ASC_Association *assoc, const cdcm_association_info &info,
                        T_ASC_PresentationContextID pres_id, T_DIMSE_C_FindRQ &req);
OFCondition handle_move(const QRServer &s, T_ASC_Association *assoc, const cdcm_association_info &info,
                        T_ASC_PresentationContextID pres_id, T_DIMSE_C_MoveRQ &req);
OFCondition handle_get(const QRServer &s, T_ASC_Association *assoc, const cdcm_association_info &info,
                       T_ASC_PresentationContextID pres_id, T_DIMSE_C_GetRQ &req);

}  // namespace cdcm

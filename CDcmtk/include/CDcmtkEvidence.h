/*
 * CDcmtk: reading what a Key Object Selection document (an imaging manifest) references.
 * Same rules as CDcmtk.h: plain C, callbacks with a context pointer, errors as values.
 */
#ifndef CDCMTK_EVIDENCE_H
#define CDCMTK_EVIDENCE_H

#include "CDcmtk.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Called once per instance referenced in the Current Requested Procedure Evidence Sequence
 *  (0040,A375): study, series, SOP class and SOP instance UIDs, and the series' Retrieve AE
 *  Title and Retrieve URL (empty strings when absent). */
typedef void (*cdcm_evidence_visitor)(void *context, const char *study_uid, const char *series_uid,
                                      const char *sop_class_uid, const char *sop_instance_uid,
                                      const char *retrieve_ae_title, const char *retrieve_url);

/** Reads a Part 10 KOS file and visits every referenced instance. Returns 0 on success; a file
 *  without the evidence sequence is an error. */
int cdcm_kos_read_evidence(const char *path, cdcm_evidence_visitor visit, void *context, cdcm_error *err);

#ifdef __cplusplus
}
#endif

#endif

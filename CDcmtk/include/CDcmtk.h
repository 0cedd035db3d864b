/*
 * CDcmtk: the only place in dicom-bridge that touches DCMTK (3.6.7, Debian libdcmtk-dev).
 *
 * C++ lives inside this target; this header is all Swift sees. The rules:
 *   - opaque handles, plain C structs, callbacks that carry a `void *context`;
 *   - errors are values (cdcm_error), shaped like DCMTK's OFCondition (module, code, text);
 *   - no C++ exception ever crosses this line: every entry point catches and converts.
 */
#ifndef CDCMTK_H
#define CDCMTK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

/** An error carried as a value. `code == 0` means success. `text` holds DCMTK's condition text. */
typedef struct cdcm_error {
    uint16_t module;
    uint16_t code;
    char text[512];
} cdcm_error;

/** Process-wide initialisation: codecs, the Nagle fix, logging level. Idempotent. */
void cdcm_initialize(int log_level);

/* -------------------------------------------------------------- datasets */

/** An opaque DICOM dataset (DCMTK DcmDataset). */
typedef struct cdcm_dataset cdcm_dataset;

cdcm_dataset *cdcm_dataset_new(void);
void cdcm_dataset_free(cdcm_dataset *ds);

/**
 * Loads a Part 10 file (or a raw dataset when the file has no preamble) into `ds`.
 * With `until_pixel_data` non-zero, parsing stops before (7FE0,0010): enough to index.
 * Returns 0 on success, non-zero with `err` filled otherwise.
 */
int cdcm_dataset_load_file(cdcm_dataset *ds, const char *path, int until_pixel_data, cdcm_error *err);

/** Decodes every string of the dataset to UTF-8 according to Specific Character Set (0008,0005). */
int cdcm_dataset_convert_to_utf8(cdcm_dataset *ds, cdcm_error *err);

/**
 * Copies the value of the element `tag` ((group << 16) | element) at the top level of the dataset,
 * all values joined by backslash, into `buf` (NUL-terminated, truncated to `cap`).
 * Returns 1 when the element is present (possibly empty), 0 when it is absent.
 */
int cdcm_dataset_get_string(const cdcm_dataset *ds, uint32_t tag, char *buf, size_t cap);

/** Sets (creates or replaces) a string element at the top level. Returns 0 on success. */
int cdcm_dataset_put_string(cdcm_dataset *ds, uint32_t tag, const char *value, cdcm_error *err);

/** Inserts an empty element (zero-length value, or a sequence with no items) at the top level. */
int cdcm_dataset_put_empty(cdcm_dataset *ds, uint32_t tag, cdcm_error *err);

/** Calls `visit` for each top-level element: its tag and VR (two characters + NUL). */
typedef void (*cdcm_element_visitor)(void *context, uint32_t tag, const char *vr);
void cdcm_dataset_for_each(const cdcm_dataset *ds, cdcm_element_visitor visit, void *context);

/** What a Part 10 file's File Meta Information (or, failing that, its dataset) says it holds. */
typedef struct cdcm_file_meta {
    char sop_class_uid[65];
    char sop_instance_uid[65];
    char transfer_syntax_uid[65];
} cdcm_file_meta;

/** Reads the File Meta Information group of a Part 10 file. Returns 0 on success. */
int cdcm_read_file_meta(const char *path, cdcm_file_meta *meta, cdcm_error *err);

/* ---------------------------------------------------------- transfer syntax */

/** Is this a transfer syntax DCMTK knows? (non-zero: yes) */
int cdcm_transfer_syntax_known(const char *uid);
/** Is this a storage SOP class DCMTK knows? (non-zero: yes) */
int cdcm_is_storage_sop_class(const char *uid);

/* -------------------------------------------------------------- SCP */

/** What the SCP knows of an association when it asks whether to accept it. */
typedef struct cdcm_association_info {
    char calling_ae[17];
    char called_ae[17];
    char peer_host[256];
    uint32_t id;             /* per-server association counter */
    uint32_t max_pdu;        /* the peer's maximum PDU length */
} cdcm_association_info;

/** The SCP's answer to an association request (PS3.8 9.3.4 A-ASSOCIATE-RJ). */
typedef enum cdcm_association_decision {
    CDCM_ACCEPT = 0,
    CDCM_REJECT_CALLING_AE_NOT_RECOGNIZED = 1, /* permanent, service-user, reason 3 */
    CDCM_REJECT_CALLED_AE_NOT_RECOGNIZED = 2,  /* permanent, service-user, reason 7 */
    CDCM_REJECT_NO_REASON = 3,                 /* permanent, service-user, reason 1 */
    CDCM_REJECT_LOCAL_LIMIT_EXCEEDED = 4,      /* transient, service-provider (presentation), reason 2 */
} cdcm_association_decision;

/** A C-STORE request as it arrives, before its dataset. */
typedef struct cdcm_store_request {
    const char *sop_class_uid;
    const char *sop_instance_uid;
    const char *transfer_syntax_uid; /* of the presentation context the dataset travels on */
    uint16_t message_id;
    const char *move_originator_ae;  /* empty when not a C-MOVE sub-operation */
} cdcm_store_request;

/** A DIMSE status with an optional Error Comment (0000,0902), at most 64 characters. */
typedef struct cdcm_status {
    uint16_t status;
    char error_comment[65];
} cdcm_status;

/** Where a C-MOVE sends its sub-operations. */
typedef struct cdcm_retrieve_destination {
    char ae_title[17];
    char host[256];
    uint16_t port;
} cdcm_retrieve_destination;

/** One instance of a retrieval (C-MOVE or C-GET). */
typedef struct cdcm_retrieve_item {
    char path[4096];
    char sop_class_uid[65];
    char sop_instance_uid[65];
    char transfer_syntax_uid[65];
} cdcm_retrieve_item;

/** Sub-operation counts (PS3.4 C.4.2.1.4 / C.4.3.1.4). */
typedef struct cdcm_retrieve_counts {
    uint32_t remaining;
    uint32_t completed;
    uint32_t failed;
    uint32_t warning;
} cdcm_retrieve_counts;

/**
 * Callbacks of the SCP. They run on the association's own thread (never a Swift concurrency
 * thread) and may block. `context` is the pointer given in cdcm_scp_config.
 */
typedef struct cdcm_scp_callbacks {
    /** Decide whether to accept an association. */
    cdcm_association_decision (*association_requested)(void *context, const cdcm_association_info *info);
    /** The association ended; `aborted` is non-zero when it did not end by an orderly release. */
    void (*association_ended)(void *context, const cdcm_association_info *info, int aborted, const char *reason);
    /** A C-ECHO arrived; returns the DIMSE status to answer (0x0000). */
    uint16_t (*echo)(void *context, const cdcm_association_info *info);
    /**
     * A C-STORE request arrived. Return an opaque sink (non-NULL) to receive the dataset, or NULL
     * with `status` filled to refuse it (the dataset is then read and discarded, then answered).
     */
    void *(*store_begin)(void *context, const cdcm_association_info *info, const cdcm_store_request *req,
                         cdcm_status *status);
    /** Bytes of the dataset, in order, exactly as received. Return 0 to go on, non-zero after a
        write error (the rest of the dataset is then discarded; store_end still follows). */
    int (*store_data)(void *context, void *sink, const void *bytes, size_t length);
    /**
     * The dataset is complete (`received_ok` non-zero) or its reception failed (zero: the
     * association is being aborted, no answer will be sent). Fill `status` with the answer.
     * The sink is released by this call.
     */
    void (*store_end)(void *context, void *sink, int received_ok, cdcm_status *status);

    /**
     * C-FIND: start a query on `identifier` (lent for this call only). Return an opaque query, or
     * NULL with `status` filled with a failure. May be NULL when the SCP offers no C-FIND.
     */
    void *(*find_begin)(void *context, const cdcm_association_info *info, const char *sop_class_uid,
                        cdcm_dataset *identifier, cdcm_status *status);
    /** Next match: fill `response` and return 1 (Pending; `status` may give FF01 instead of FF00),
        or return 0 with the final `status`. */
    int (*find_next)(void *context, void *query, cdcm_dataset *response, cdcm_status *status);
    /** The query ended (`cancelled` non-zero after a C-CANCEL). Releases it. */
    void (*find_end)(void *context, void *query, int cancelled);

    /**
     * C-MOVE (`move_destination` non-NULL) or C-GET (NULL): select the instances to send. Return an
     * opaque retrieval with `count` set (and, for C-MOVE, `destination` filled), or NULL with
     * `status` filled (A801 unknown destination, A900/C000 bad identifier, ...).
     */
    void *(*retrieve_begin)(void *context, const cdcm_association_info *info, const char *sop_class_uid,
                            cdcm_dataset *identifier, const char *move_destination,
                            cdcm_retrieve_destination *destination, size_t *count, cdcm_status *status);
    /** The `index`-th instance of the retrieval. Returns 0 on success. */
    int (*retrieve_item)(void *context, void *retrieval, size_t index, cdcm_retrieve_item *item);
    /** A sub-operation ended: its C-STORE status, or an error text when it could not be sent. */
    void (*retrieve_result)(void *context, void *retrieval, size_t index, uint16_t status, const char *error);
    /** The retrieval ended with these counts (`cancelled` non-zero after a C-CANCEL). Releases it. */
    void (*retrieve_end)(void *context, void *retrieval, const cdcm_retrieve_counts *counts, int cancelled);
} cdcm_scp_callbacks;

typedef struct cdcm_scp_config {
    const char *ae_title;
    uint16_t port;
    uint32_t max_pdu;                  /* our maximum receive PDU, 4096 ... 131072 */
    uint32_t max_associations;         /* concurrent associations; more are rejected (transient) */
    int acse_timeout_seconds;          /* time a connection has to send its A-ASSOCIATE-RQ (default 10) */
    int dimse_timeout_seconds;         /* idle time on an association before it is aborted */
    uint32_t max_retrieve_pdu;         /* max PDU we propose on C-MOVE sub-associations */
    uint32_t max_negotiating;          /* connections in association set-up at once; more are closed
                                          as soon as accepted (0: 64) */
    cdcm_scp_callbacks callbacks;
    void *context;
} cdcm_scp_config;

typedef struct cdcm_scp cdcm_scp;

/** Opens the listening socket. Returns NULL with `err` filled when it cannot. */
cdcm_scp *cdcm_scp_create(const cdcm_scp_config *config, cdcm_error *err);
/**
 * Serves associations until cdcm_scp_stop is called. The calling thread only accepts connections;
 * each is negotiated (ACSE timeout) and served on its own thread, and every C++ exception on it
 * ends in an A-ABORT of that association. Blocks: run it on a dedicated thread. Returns 0 after a stop.
 *
 * TEST ONLY: when the environment holds DICOM_BRIDGE_TEST_THROW_IN_STORE=<SOP Instance UID> at
 * cdcm_scp_create, the C-STORE of that instance throws inside the shim.
 */
int cdcm_scp_run(cdcm_scp *scp, cdcm_error *err);
/** Asks a running cdcm_scp_run to return; it waits for open associations to finish. Thread safe. */
void cdcm_scp_stop(cdcm_scp *scp);
/** Number of associations being served now. */
uint32_t cdcm_scp_active_associations(const cdcm_scp *scp);
/** Number of connections accepted whose association is not set up yet. */
uint32_t cdcm_scp_negotiating_connections(const cdcm_scp *scp);
/** Frees the server after cdcm_scp_run has returned (or was never called). */
void cdcm_scp_free(cdcm_scp *scp);

/* -------------------------------------------------------------- SCU */

typedef struct cdcm_scu cdcm_scu;

typedef struct cdcm_scu_config {
    const char *calling_ae;
    const char *called_ae;
    const char *host;
    uint16_t port;
    uint32_t max_pdu;
    int acse_timeout_seconds;
    int dimse_timeout_seconds;
} cdcm_scu_config;

/** One presentation context to propose: an abstract syntax with its transfer syntaxes. */
typedef struct cdcm_proposed_context {
    const char *abstract_syntax;
    const char *const *transfer_syntaxes;
    size_t transfer_syntax_count;
    int scp_role;  /* non-zero: propose the SCP role too (C-GET storage sub-operations) */
} cdcm_proposed_context;

/** Requests an association proposing `contexts`. NULL with `err` filled on failure or rejection. */
cdcm_scu *cdcm_scu_connect(const cdcm_scu_config *config, const cdcm_proposed_context *contexts,
                           size_t context_count, cdcm_error *err);
/** Sends C-ECHO; the response status goes in `status`. */
int cdcm_scu_echo(cdcm_scu *scu, uint16_t *status, cdcm_error *err);
/**
 * Sends the Part 10 file at `path` by C-STORE on an accepted context for its SOP class and
 * transfer syntax (converting only when no context carries it and DCMTK can). The dataset is
 * sent as the file holds it when possible.
 */
int cdcm_scu_store_file(cdcm_scu *scu, const char *path, cdcm_status *status, cdcm_error *err);
/** A C-FIND match arrives (`identifier` is lent for the call). Return non-zero to send C-CANCEL. */
typedef int (*cdcm_find_match)(void *context, cdcm_dataset *identifier);
/**
 * Sends C-FIND with `identifier` on a context for `sop_class_uid`, calling `on_match` for each
 * Pending response; the final status goes in `status` (with its Error Comment).
 */
int cdcm_scu_find(cdcm_scu *scu, const char *sop_class_uid, const cdcm_dataset *identifier, cdcm_find_match on_match,
                  void *context, cdcm_status *status, cdcm_error *err);

/** Progress of a C-MOVE or C-GET: the counts of the latest response. */
typedef void (*cdcm_retrieve_progress)(void *context, const cdcm_retrieve_counts *counts);
/** Sends C-MOVE to `destination_ae`; reports each response's counts; final status in `status`. */
int cdcm_scu_move(cdcm_scu *scu, const char *sop_class_uid, const cdcm_dataset *identifier, const char *destination_ae,
                  cdcm_retrieve_progress progress, void *context, cdcm_status *status, cdcm_retrieve_counts *counts,
                  cdcm_error *err);
/**
 * Sends C-GET and stores each instance that comes back on the association into `directory` as a
 * Part 10 file named by its SOP Instance UID, dataset bytes as received.
 */
int cdcm_scu_get(cdcm_scu *scu, const char *sop_class_uid, const cdcm_dataset *identifier, const char *directory,
                 cdcm_retrieve_progress progress, void *context, cdcm_status *status, cdcm_retrieve_counts *counts,
                 cdcm_error *err);
/** The storage SOP classes a C-GET requester proposes (SCP role), and how many there are. */
const char *const *cdcm_get_storage_sop_classes(size_t *count);

/** Releases the association (orderly) and frees the handle. */
void cdcm_scu_release(cdcm_scu *scu);
/** Aborts the association and frees the handle. */
void cdcm_scu_abort(cdcm_scu *scu);

/* ------------------------------------------- key object selection (XDS-I.b imaging manifests) */

/** One referenced instance of a manifest. */
typedef struct cdcm_kos_instance {
    const char *sop_class_uid;
    const char *sop_instance_uid;
} cdcm_kos_instance;

/** One referenced series of the manifest's study, with where its instances are retrieved from. */
typedef struct cdcm_kos_series {
    const char *series_instance_uid;
    const char *retrieve_ae_title;       /* (0008,0054); NULL or empty: absent */
    const char *retrieve_location_uid;   /* (0040,E011), XDS-I.b: the repository's unique ID; NULL or empty: absent */
    const char *retrieve_url;            /* (0008,1190), e.g. a WADO-RS study/series URL; NULL or empty: absent */
    const cdcm_kos_instance *instances;  /* at least one */
    size_t instance_count;
} cdcm_kos_series;

/**
 * An IHE XDS-I.b Imaging Manifest: a Key Object Selection Document (PS3.3 A.35.4, TID 2010,
 * title (113030, DCM, "Manifest")) referencing instances of one study. Strings are in the
 * character set named by `specific_character_set` (NULL or empty: "ISO_IR 192", UTF-8); NULL
 * stands for empty. Dates are DA (YYYYMMDD), times TM (HHMMSS[.F]).
 */
typedef struct cdcm_kos_request {
    /* the manifest itself */
    const char *sop_instance_uid;        /* required */
    const char *series_instance_uid;     /* required */
    int32_t series_number;
    int32_t instance_number;
    const char *content_date;
    const char *content_time;
    const char *manufacturer;
    const char *institution_name;        /* optional */
    const char *specific_character_set;
    /* patient */
    const char *patient_name;
    const char *patient_id;
    const char *issuer_of_patient_id;
    const char *patient_birth_date;
    const char *patient_sex;
    /* study */
    const char *study_instance_uid;      /* required */
    const char *study_date;
    const char *study_time;
    const char *referring_physician_name;
    const char *study_id;
    const char *accession_number;
    const char *study_description;
    /* what it references: one content item and one evidence entry per instance */
    const cdcm_kos_series *series;       /* at least one */
    size_t series_count;
} cdcm_kos_request;

/** Receives encoded bytes, in order, possibly in several calls; `bytes` is valid for the call only. */
typedef void (*cdcm_bytes_sink)(void *context, const void *bytes, size_t length);

/**
 * Builds the manifest with dcmsr and hands its dataset to `sink`, encoded in Explicit VR Little
 * Endian with explicit lengths, without preamble or File Meta group (the caller writes its own).
 * Instance Creation Date/Time are left out: the same request gives the same bytes. Each instance
 * is referenced by an IMAGE, WAVEFORM or COMPOSITE content item (CONTAINS) after its SOP class,
 * and listed in the Current Requested Procedure Evidence Sequence with its series' retrieve
 * attributes. Returns 0 on success; non-zero with `err` filled (nothing, or part of the dataset,
 * may have reached `sink`: discard it).
 */
int cdcm_kos_encode_manifest(const cdcm_kos_request *request, cdcm_bytes_sink sink, void *context, cdcm_error *err);

#ifdef __cplusplus
}
#endif

#endif /* CDCMTK_H */
#include "CDcmtkEvidence.h"

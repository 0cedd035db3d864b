// Datasets, transfer syntaxes and process initialisation.
#include "shim_common.h"

#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/oflog/oflog.h"

#include <cstdlib>
#include <mutex>

struct cdcm_dataset {
    DcmDataset owned;
    DcmFileFormat *file = nullptr;  // a loaded file; ds is then its dataset
    DcmDataset *ds = &owned;        // or a dataset DCMTK owns, lent for the duration of a callback
    ~cdcm_dataset() { delete file; }
};

cdcm_dataset *cdcm_dataset_wrap(DcmDataset *external) {
    auto *d = new cdcm_dataset();
    d->ds = external;
    return d;
}

extern "C" void cdcm_initialize(int log_level) {
    static std::once_flag once;
    std::call_once(once, [log_level] {
        // DCMTK 3.6.7 as Debian builds it leaves Nagle's algorithm on unless TCP_NODELAY=1 is in the
        // environment when a connection is made (dul.cc): that costs ~40 ms per DIMSE request on
        // loopback. The bridge turns it off for its own sockets, whatever the environment says.
        setenv("TCP_NODELAY", "1", 1);
        // Peers are identified by address; a reverse DNS lookup per association only adds latency.
        dcmDisableGethostbyaddr.set(OFTrue);
        // Decoders, for the SCU when a peer refuses the stored transfer syntax.
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
        DcmRLEDecoderRegistration::registerCodecs();
        OFLogger::LogLevel level = OFLogger::WARN_LOG_LEVEL;
        switch (log_level) {
            case 0: level = OFLogger::TRACE_LOG_LEVEL; break;
            case 1: level = OFLogger::DEBUG_LOG_LEVEL; break;
            case 2: level = OFLogger::INFO_LOG_LEVEL; break;
            case 3: level = OFLogger::WARN_LOG_LEVEL; break;
            case 4: level = OFLogger::ERROR_LOG_LEVEL; break;
            default: level = OFLogger::FATAL_LOG_LEVEL; break;
        }
        OFLog::configure(level);
    });
}

DcmDataset *cdcm::dataset_ptr(const cdcm_dataset *ds) { return ds->ds; }

extern "C" cdcm_dataset *cdcm_dataset_new(void) {
    try {
        return new cdcm_dataset();
    } catch (...) {
        return nullptr;
    }
}

extern "C" void cdcm_dataset_free(cdcm_dataset *ds) { delete ds; }

extern "C" int cdcm_dataset_load_file(cdcm_dataset *ds, const char *path, int until_pixel_data, cdcm_error *err) {
    try {
        // The file's own dataset is kept (no copy: this runs for every stored instance).
        auto *file = new DcmFileFormat();
        OFCondition cond;
        if (until_pixel_data) {
            cond = file->loadFileUntilTag(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect,
                                          DCM_PixelData);
        } else {
            cond = file->loadFile(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
        }
        DcmDataset *loaded = cond.good() ? file->getDataset() : nullptr;
        if (!loaded) {
            delete file;
            return cond.bad() ? cdcm::fail(err, cond) : cdcm::fail(err, std::string("file holds no dataset"));
        }
        delete ds->file;
        ds->file = file;
        ds->ds = loaded;
        cdcm::clear(err);
        return 0;
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

extern "C" int cdcm_dataset_convert_to_utf8(cdcm_dataset *ds, cdcm_error *err) {
    try {
        return cdcm::fail(err, ds->ds->convertToUTF8());
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

extern "C" int cdcm_dataset_get_string(const cdcm_dataset *ds, uint32_t tag, char *buf, size_t cap) {
    if (cap > 0) buf[0] = '\0';
    try {
        DcmTagKey key(static_cast<Uint16>(tag >> 16), static_cast<Uint16>(tag & 0xffff));
        DcmElement *element = nullptr;
        if (ds->ds->findAndGetElement(key, element, OFFalse).bad() || !element)
            return 0;
        OFString value;
        if (element->getLength() > 0) element->getOFStringArray(value);
        cdcm::copy_string(buf, cap, value.c_str());
        return 1;
    } catch (...) {
        return 0;
    }
}

extern "C" int cdcm_dataset_put_string(cdcm_dataset *ds, uint32_t tag, const char *value, cdcm_error *err) {
    try {
        DcmTagKey key(static_cast<Uint16>(tag >> 16), static_cast<Uint16>(tag & 0xffff));
        return cdcm::fail(err, ds->ds->putAndInsertString(key, value ? value : ""));
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

extern "C" int cdcm_dataset_put_empty(cdcm_dataset *ds, uint32_t tag, cdcm_error *err) {
    try {
        DcmTagKey key(static_cast<Uint16>(tag >> 16), static_cast<Uint16>(tag & 0xffff));
        return cdcm::fail(err, ds->ds->insertEmptyElement(key));
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

extern "C" void cdcm_dataset_for_each(const cdcm_dataset *ds, cdcm_element_visitor visit, void *context) {
    try {
        DcmDataset &dataset = *ds->ds;
        for (unsigned long i = 0; i < dataset.card(); ++i) {
            DcmElement *element = dataset.getElement(i);
            if (!element) continue;
            DcmTag tag = element->getTag();
            uint32_t key = (static_cast<uint32_t>(tag.getGroup()) << 16) | tag.getElement();
            visit(context, key, DcmVR(element->getVR()).getVRName());
        }
    } catch (...) {
    }
}

extern "C" int cdcm_read_file_meta(const char *path, cdcm_file_meta *meta, cdcm_error *err) {
    try {
        std::memset(meta, 0, sizeof *meta);
        DcmFileFormat file;
        // Stop early: the meta group and the first attributes are all we need.
        OFCondition cond = file.loadFileUntilTag(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect,
                                                 DCM_StudyDate);
        if (cond.bad()) return cdcm::fail(err, cond);
        OFString v;
        DcmMetaInfo *m = file.getMetaInfo();
        DcmDataset *d = file.getDataset();
        if (m->findAndGetOFString(DCM_MediaStorageSOPClassUID, v).bad() || v.empty()) d->findAndGetOFString(DCM_SOPClassUID, v);
        cdcm::copy_string(meta->sop_class_uid, sizeof meta->sop_class_uid, v.c_str());
        v.clear();
        if (m->findAndGetOFString(DCM_MediaStorageSOPInstanceUID, v).bad() || v.empty()) d->findAndGetOFString(DCM_SOPInstanceUID, v);
        cdcm::copy_string(meta->sop_instance_uid, sizeof meta->sop_instance_uid, v.c_str());
        v.clear();
        if (m->findAndGetOFString(DCM_TransferSyntaxUID, v).bad() || v.empty()) {
            DcmXfer xfer(d->getOriginalXfer());
            v = xfer.getXferID();
        }
        cdcm::copy_string(meta->transfer_syntax_uid, sizeof meta->transfer_syntax_uid, v.c_str());
        if (!meta->sop_class_uid[0] || !meta->sop_instance_uid[0])
            return cdcm::fail(err, std::string("not a DICOM instance: no SOP Class or SOP Instance UID"));
        cdcm::clear(err);
        return 0;
    } catch (...) {
        return cdcm::fail_exception(err);
    }
}

extern "C" int cdcm_transfer_syntax_known(const char *uid) {
    if (!uid || !*uid) return 0;
    DcmXfer xfer(uid);
    return xfer.getXfer() != EXS_Unknown ? 1 : 0;
}

extern "C" int cdcm_is_storage_sop_class(const char *uid) {
    if (!uid || !*uid) return 0;
    return dcmIsaStorageSOPClassUID(uid, ESSC_All) ? 1 : 0;
}

// Helpers shared by the libFuzzer targets over the CDcmtk shim (see Tests/fuzz/README.md).
#pragma once

#include "CDcmtk.h"
#include "CDcmtkEvidence.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace fuzz {

inline void copy(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src);
}

/// One in-memory file per process (memfd), rewritten for each input: the shim's entry points take
/// paths, as the bridge hands them the files it stored. Reached as /proc/self/fd/N.
class MemFile {
  public:
    MemFile() {
        fd_ = memfd_create("cdcm-fuzz", MFD_CLOEXEC);
        if (fd_ < 0) { perror("memfd_create"); abort(); }
        path_ = "/proc/self/fd/" + std::to_string(fd_);
    }
    const char *write(const uint8_t *data, size_t size) {
        if (ftruncate(fd_, 0) != 0) abort();
        size_t done = 0;
        while (done < size) {
            ssize_t n = pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
            if (n <= 0) abort();
            done += static_cast<size_t>(n);
        }
        return path_.c_str();
    }

  private:
    int fd_ = -1;
    std::string path_;
};

/// Reads a string back through the shim with a small buffer and a large one (both paths the
/// Swift side takes), and touches every byte so that ASan sees any bad read.
inline void read_string(const cdcm_dataset *ds, uint32_t tag) {
    static char small[1024], large[1 << 16];
    volatile size_t sum = 0;
    if (cdcm_dataset_get_string(ds, tag, small, sizeof small)) sum += strlen(small);
    if (cdcm_dataset_get_string(ds, tag, large, sizeof large)) sum += strlen(large);
    (void)sum;
}

/// The attributes AttributeReader (Sources/Exchange/AttributeReader.swift) reads for the index.
static const uint32_t kIndexTags[] = {
    0x00080005, 0x00100010, 0x00100020, 0x00100021, 0x00100030, 0x00100040, 0x0020000D, 0x00080020,
    0x00080030, 0x00080050, 0x00200010, 0x00081030, 0x00080090, 0x0020000E, 0x00080060, 0x00200011,
    0x0008103E, 0x00180015, 0x00080018, 0x00080016, 0x00200013,
};

inline void visit_element(void *ctx, uint32_t, const char *vr) { *static_cast<size_t *>(ctx) += strlen(vr); }

inline void visit_evidence(void *ctx, const char *a, const char *b, const char *c, const char *d, const char *e,
                           const char *f) {
    *static_cast<size_t *>(ctx) += strlen(a) + strlen(b) + strlen(c) + strlen(d) + strlen(e) + strlen(f);
}

/// Everything the bridge does with a stored (received or imported) file through the shim:
/// File Meta summary, the index read (parse up to the pixel data, character set to UTF-8, the
/// indexed strings), the element walk, and the KOS evidence reader.
inline void exercise_file(const char *path) {
    cdcm_error err;
    cdcm_file_meta meta;
    if (cdcm_read_file_meta(path, &meta, &err) == 0) {
        volatile size_t n = strlen(meta.sop_class_uid) + strlen(meta.sop_instance_uid) +
                            strlen(meta.transfer_syntax_uid);
        (void)n;
        cdcm_transfer_syntax_known(meta.transfer_syntax_uid);
        cdcm_is_storage_sop_class(meta.sop_class_uid);
    }

    cdcm_dataset *ds = cdcm_dataset_new();
    if (cdcm_dataset_load_file(ds, path, 1, &err) == 0) {
        size_t total = 0;
        cdcm_dataset_for_each(ds, visit_element, &total);
        for (uint32_t tag : kIndexTags) read_string(ds, tag);  // raw (rawString / ISO 2022 path)
        if (cdcm_dataset_convert_to_utf8(ds, &err) == 0)
            for (uint32_t tag : kIndexTags) read_string(ds, tag);
    }
    cdcm_dataset_free(ds);

    size_t evidence = 0;
    cdcm_kos_read_evidence(path, visit_evidence, &evidence, &err);
}

}  // namespace fuzz

// Target "stored": a received C-STORE dataset as the bridge stores it. The peer chooses the bytes
// of the dataset and, among the transfer syntaxes it proposed, the one it travels on; the bridge
// prefixes its own File Meta group (Sources/DICOM/FileMeta.swift) and writes the file. Then
// everything the bridge does with that file goes through the shim: the index read (parse to the
// pixel data, inflating a deflated dataset, character sets), the KOS reader, and the conversion a
// later C-MOVE/C-GET to a peer that does not accept the stored syntax makes (send.cpp: whole
// load, decompression with DCMTK's JPEG, JPEG-LS and RLE codecs, re-encoding).
//
// Input: byte 0 chooses the transfer syntax (low 4 bits) and the conversion target (bit 4);
// the rest is the dataset.
#include "fuzz_common.h"
#include "shim_common.h"

#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcxfer.h"

namespace {

const char *const kTransferSyntaxes[16] = {
    "1.2.840.10008.1.2",          // Implicit VR Little Endian
    "1.2.840.10008.1.2.1",        // Explicit VR Little Endian
    "1.2.840.10008.1.2.2",        // Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.1.99",     // Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",     // JPEG Baseline
    "1.2.840.10008.1.2.4.51",     // JPEG Extended
    "1.2.840.10008.1.2.4.57",     // JPEG Lossless
    "1.2.840.10008.1.2.4.70",     // JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",     // JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",     // JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.5",        // RLE Lossless
    "1.2.840.10008.1.2.4.90",     // JPEG 2000 (no decoder in DCMTK)
    "1.2.840.10008.1.2.4.91",     // JPEG 2000
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1.99",
};

void le16(std::vector<uint8_t> &out, uint16_t v) {
    out.push_back(v & 0xff);
    out.push_back(v >> 8);
}
void le32(std::vector<uint8_t> &out, uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back((v >> (8 * i)) & 0xff);
}
void element(std::vector<uint8_t> &out, uint16_t el, const char *vr, std::string value, char pad) {
    if (value.size() % 2) value.push_back(pad);
    le16(out, 0x0002);
    le16(out, el);
    out.insert(out.end(), vr, vr + 2);
    le16(out, static_cast<uint16_t>(value.size()));
    out.insert(out.end(), value.begin(), value.end());
}

/// FileMetaInformation.encoded() of Sources/DICOM/FileMeta.swift, byte for byte.
std::vector<uint8_t> file_meta(const char *ts) {
    std::vector<uint8_t> group;
    le16(group, 0x0002); le16(group, 0x0001);
    group.push_back('O'); group.push_back('B'); le16(group, 0); le32(group, 2);
    group.push_back(0); group.push_back(1);
    element(group, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.7", '\0');
    element(group, 0x0003, "UI", "1.2.826.0.1.3680043.8.498.1", '\0');
    element(group, 0x0010, "UI", ts, '\0');
    element(group, 0x0012, "UI", "1.2.826.0.1.3680043.8.498.2", '\0');
    element(group, 0x0013, "SH", "DICOM_BRIDGE", ' ');
    element(group, 0x0016, "AE", "FUZZ", ' ');
    std::vector<uint8_t> out(128, 0);
    out.insert(out.end(), {'D', 'I', 'C', 'M', 0x02, 0x00, 0x00, 0x00, 'U', 'L', 4, 0});
    le32(out, static_cast<uint32_t>(group.size()));
    out.insert(out.end(), group.begin(), group.end());
    return out;
}

/// Encodes the converted dataset as DIMSE_storeUser would, into a discarding buffer.
void encode(DcmDataset *ds, E_TransferSyntax xfer) {
    std::vector<Uint8> chunk(16 * 1024);
    DcmOutputBufferStream out(chunk.data(), chunk.size());
    ds->transferInit();
    OFCondition cond = EC_StreamNotifyClient;
    while (cond == EC_StreamNotifyClient) {
        cond = ds->write(out, xfer, EET_ExplicitLength, nullptr);
        void *bytes = nullptr;
        offile_off_t length = 0;
        out.flushBuffer(bytes, length);
    }
    ds->transferEnd();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    cdcm_initialize(5);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static fuzz::MemFile file;
    const char *ts = kTransferSyntaxes[data[0] & 0x0f];
    std::vector<uint8_t> bytes = file_meta(ts);
    bytes.insert(bytes.end(), data + 1, data + size);
    const char *path = file.write(bytes.data(), bytes.size());
    fuzz::exercise_file(path);

    const char *target = (data[0] & 0x10) ? "1.2.840.10008.1.2" : "1.2.840.10008.1.2.1";
    try {
        DcmFileFormat converted;
        if (cdcm::load_converted(path, target, converted).good())
            encode(converted.getDataset(), DcmXfer(target).getXfer());
    } catch (const std::bad_alloc &) {
        // The bridge's callers catch exceptions; an allocation the input asked for is not a bug here
        // (libFuzzer's -malloc_limit_mb reports one that is too large before it throws).
    }
    return 0;
}

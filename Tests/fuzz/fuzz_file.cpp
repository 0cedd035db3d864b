// Target "file": a whole Part 10 file (or a bare dataset) as the shim's file entry points read
// it: what `import`, `send` and the index read of every stored instance go through.
#include "fuzz_common.h"

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    cdcm_initialize(5);  // fatal only: DCMTK's warnings about bad input are expected here
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz::MemFile file;
    fuzz::exercise_file(file.write(data, size));
    return 0;
}

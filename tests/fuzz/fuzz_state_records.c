/* libFuzzer target: eb_fuzz_state_records (tests/fuzz/entries.h). */
#include <stdint.h>
#include <stdlib.h>

#include "entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (eb_fuzz_state_records(data, size))
                abort(); /* a broken contract is a finding too */
        return 0;
}

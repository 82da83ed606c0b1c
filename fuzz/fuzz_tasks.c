// Fuzzes the zero-shot task reader (JSONL in every layout: query/choices,
// WinoGrande, LAMBADA) with and without a field map.
#include <stddef.h>
#include <stdint.h>

#include "eval/zeroshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tern_zs_task t;
    if (tern_zs_task_parse(&t, (const char *)data, size, "fuzz.jsonl", NULL) == 0) tern_zs_task_free(&t);
    tern_zs_opts o = {.fields = "query=ctx,choices=endings|alt,gold=label", .skip_bad = 1, .limit = 8};
    if (tern_zs_task_parse(&t, (const char *)data, size, "fuzz.jsonl", &o) == 0) tern_zs_task_free(&t);
    return 0;
}

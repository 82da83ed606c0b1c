// Fuzzes the `tern report` parsers: JSONL training logs and PPL-vs-bits tables.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "eval/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tern_report_log log;
    if (tern_report_parse(&log, (const char *)data, size, "fuzz.jsonl", NULL) == 0) tern_report_log_free(&log);
    tern_report_row *rows;
    int n;
    if (tern_report_rows_parse((const char *)data, size, "fuzz.tsv", &rows, &n) == 0) free(rows);
    return 0;
}

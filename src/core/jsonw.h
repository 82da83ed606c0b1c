// Tiny JSON writer helpers for --json reports.
#ifndef TERN_CORE_JSONW_H
#define TERN_CORE_JSONW_H

#include <stddef.h>
#include <stdio.h>

// Writes s (len bytes) as a quoted JSON string with escapes.
void tern_json_write_string(FILE *f, const char *s, size_t len);
// The same without the quotes.
void tern_json_write_escaped(FILE *f, const char *s, size_t len);
// Writes a finite double (non-finite values become null).
void tern_json_write_number(FILE *f, double v);

#endif

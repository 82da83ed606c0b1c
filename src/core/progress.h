// Progress bar on stderr with rate and ETA; quiet when stderr is not a terminal
// unless forced (then it prints a line every few seconds instead of redrawing).
#ifndef TERN_CORE_PROGRESS_H
#define TERN_CORE_PROGRESS_H

#include <stdint.h>

typedef struct {
    const char *label;
    const char *unit; // e.g. "tok", "chunk", "step"
    int64_t total;
    double start, last_draw;
    int tty, enabled;
} tern_progress;

void tern_progress_begin(tern_progress *p, const char *label, const char *unit, int64_t total);
// `extra` (may be NULL) is appended, e.g. "loss 2.31".
void tern_progress_update(tern_progress *p, int64_t done, const char *extra);
void tern_progress_end(tern_progress *p);
// Globally silence progress output (e.g. --quiet or --json).
void tern_progress_set_enabled(int on);

#endif

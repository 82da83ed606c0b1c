#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[TERN_ERR_MAX];

int tern_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    // One line only: fold any newline a message may carry.
    for (char *p = last_error; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return -1;
}

int tern_error_prefix(const char *fmt, ...) {
    char prefix[TERN_ERR_MAX], old[TERN_ERR_MAX];
    memcpy(old, last_error, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    return tern_errorf("%s: %s", prefix, old);
}

const char *tern_last_error(void) { return last_error[0] ? last_error : "unknown error"; }

void tern_clear_error(void) { last_error[0] = 0; }

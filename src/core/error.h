// Error reporting: every failing library call records one line ("FILE: problem")
// in a thread-local buffer and returns non-zero; the CLI prints it and exits 1.
#ifndef TERN_CORE_ERROR_H
#define TERN_CORE_ERROR_H

#define TERN_ERR_MAX 768

// Records a formatted message as the last error; always returns -1 so callers
// can write `return tern_errorf(...)`.
int tern_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prefixes the current error with more context ("while X: <old message>").
int tern_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *tern_last_error(void);
void tern_clear_error(void);

#endif

#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// 1 when `arg` (up to len characters) is one of the '|'-separated names.
static int matches(const char *names, const char *arg, size_t len) {
    for (const char *p = names; *p;) {
        const char *end = strchr(p, '|');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && !strncmp(p, arg, len)) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

static int usage_error(const char *cmd, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "tern %s: ", cmd);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see tern %s --help)\n", cmd);
    return 2;
}

// The canonical name: the first of names (into buf).
static const char *first_name(const char *names, char *buf, size_t cap) {
    size_t n = strcspn(names, "|");
    if (n >= cap) n = cap - 1;
    memcpy(buf, names, n);
    buf[n] = 0;
    return buf;
}

static int set_value(const char *cmd, const cli_opt *o, const char *given, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case CLI_STR:
        *(const char **)o->dst = v;
        return 0;
    case CLI_LIST: {
        int *n = o->seen;
        if (*n >= (int)o->hi) {
            char cap[32];
            snprintf(cap, sizeof cap, "%d", (int)o->hi);
            return usage_error(cmd, "%s: at most %s", given, cap);
        }
        ((const char **)o->dst)[(*n)++] = v;
        return 0;
    }
    case CLI_INT:
    case CLI_U64: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno || x < o->lo || x > o->hi) {
            fprintf(stderr, "tern %s: %s must be an integer in [%.0f, %.0f], got '%s'\n", cmd, given, o->lo, o->hi,
                    v);
            return 2;
        }
        if (o->type == CLI_INT) *(int *)o->dst = (int)x;
        else *(uint64_t *)o->dst = (uint64_t)x;
        return 0;
    }
    case CLI_FLOAT:
    case CLI_DOUBLE: {
        double x = strtod(v, &end);
        if (!*v || *end || !(x >= o->lo && x <= o->hi)) {
            fprintf(stderr, "tern %s: %s must be a number in [%g, %g], got '%s'\n", cmd, given, o->lo, o->hi, v);
            return 2;
        }
        if (o->type == CLI_FLOAT) *(float *)o->dst = (float)x;
        else *(double *)o->dst = x;
        return 0;
    }
    case CLI_ENUM: {
        int k = 0;
        for (const char *p = o->choices; *p; k++) {
            size_t n = strcspn(p, "|");
            if (strlen(v) == n && !strncmp(p, v, n)) {
                *(int *)o->dst = k;
                return 0;
            }
            p += n + (p[n] == '|');
        }
        fprintf(stderr, "tern %s: unknown %s %s (one of %s)\n", cmd, given, v, o->choices);
        return 2;
    }
    case CLI_FLAG:
        break;
    }
    return 2;
}

int cli_parse(const char *cmd, const cli_opt *opts, int n_opts, int argc, char **argv, const char **positional) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        // --name=value is accepted for options that take a value.
        const char *eq = a[0] == '-' && a[1] == '-' ? strchr(a, '=') : NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const cli_opt *o = NULL;
        for (int k = 0; k < n_opts && !o; k++)
            if (matches(opts[k].names, a, len)) o = &opts[k];
        if (!o) {
            if (a[0] != '-' || !a[1]) {
                if (positional && !*positional) {
                    *positional = a;
                    continue;
                }
                return usage_error(cmd, "unexpected argument '%s'%s", a, "");
            }
            return usage_error(cmd, "unknown option %s%s", a, "");
        }
        char given[64];
        snprintf(given, sizeof given, "%.*s", (int)len, a);
        if (o->seen && o->type != CLI_LIST) *o->seen = 1;
        if (o->type == CLI_FLAG) {
            if (eq) return usage_error(cmd, "%s takes no value%s", given, "");
            *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) return usage_error(cmd, "%s needs a value%s", given, "");
            v = argv[++i];
        }
        if (set_value(cmd, o, given, v)) return 2;
    }
    return 0;
}

void cli_help(FILE *f, const char *usage, const cli_opt *opts, int n_opts) {
    fputs(usage, f);
    for (int k = 0; k < n_opts; k++) {
        const cli_opt *o = &opts[k];
        char left[160], name[64];
        int n = snprintf(left, sizeof left, "  %s", first_name(o->names, name, sizeof name));
        if (o->type != CLI_FLAG)
            n += snprintf(left + n, sizeof left - (size_t)n, " %s",
                          o->arg ? o->arg : o->type == CLI_ENUM ? o->choices : "X");
        if (o->def) n += snprintf(left + n, sizeof left - (size_t)n, " (%s)", o->def);
        const char *alias = strchr(o->names, '|');
        if (alias) {
            // Aliases, llama.cpp's spellings among them: "-c, --ctx-size".
            n += snprintf(left + n, sizeof left - (size_t)n, ";");
            for (const char *p = alias + 1; *p && n < (int)sizeof left - 2;) {
                size_t len = strcspn(p, "|");
                n += snprintf(left + n, sizeof left - (size_t)n, " %.*s%s", (int)len, p, p[len] ? "," : "");
                p += len + (p[len] == '|');
            }
        }
        const char *h = o->help ? o->help : "";
        if (n > 27) fprintf(f, "%s\n%29s", left, "");
        else fprintf(f, "%-29s", left);
        for (const char *p = h; *p;) {
            size_t len = strcspn(p, "\n");
            fprintf(f, "%.*s\n", (int)len, p);
            p += len;
            if (*p == '\n' && *++p) fprintf(f, "%29s", "");
        }
        if (!*h) fputc('\n', f);
    }
}

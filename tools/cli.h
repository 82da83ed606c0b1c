// Option tables for the tern CLI: each command declares its options once
// (names and aliases, type, range, default, help) and parsing, validation and
// `--help` all follow from that table.
#ifndef TERN_TOOLS_CLI_H
#define TERN_TOOLS_CLI_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    CLI_FLAG,   // no value; int* set to 1
    CLI_STR,    // const char **
    CLI_INT,    // int *, in [lo, hi]
    CLI_U64,    // uint64_t *, in [lo, hi]
    CLI_FLOAT,  // float *, in [lo, hi]
    CLI_DOUBLE, // double *, in [lo, hi]
    CLI_ENUM,   // int *: index of the value in `choices` ("a|b|c")
    CLI_LIST,   // const char ** array of `hi` entries; count in *seen (repeatable option)
} cli_type;

typedef struct {
    const char *names;   // "--ctx|-c|--ctx-size": the first is the name, the others aliases
    cli_type type;
    void *dst;
    double lo, hi;       // range (INT, U64, FLOAT, DOUBLE); LIST: hi = capacity
    const char *choices; // ENUM: "e2e|blockwise"
    const char *arg;     // value's name in the help ("N", "FILE")
    const char *def;     // default as shown in the help (NULL: none shown)
    const char *help;    // one or more lines (wrapped by the author; '\n' starts a new one)
    int *seen;           // optional: set to 1 when given (LIST: the number given)
} cli_opt;

// Parses argv[1..argc) against the table. Returns 0 when every argument was
// an option of the table (or a positional argument accepted by *positional,
// which may be NULL), 1 when --help/-h was given (the help is printed), 2
// after printing a one-line usage error naming the option.
int cli_parse(const char *cmd, const cli_opt *opts, int n_opts, int argc, char **argv, const char **positional);

// Prints `usage` (may be several lines), then the table's options with their
// aliases, argument, default and help.
void cli_help(FILE *f, const char *usage, const cli_opt *opts, int n_opts);

#endif

// tern: command-line front end. Subcommands only parse arguments and call libtern.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/progress.h"
#include "core/threads.h"
#include "io/info.h"
#include "io/model.h"

static const char *usage_text =
    "usage: tern COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  info      --model M [--tokenizer T] [--json]      describe a model\n"
    "\n"
    "Models: a Hugging Face directory, a GGUF file, or a llama2.c checkpoint\n"
    "(llama2.c needs --tokenizer tokenizer.bin). Run `tern COMMAND --help` for details.\n";

// Shared option parsing: every command takes --model, --tokenizer, --threads, --json.
typedef struct {
    const char *model, *tokenizer;
    int threads, json;
} common_opts;

static int die(void) {
    fprintf(stderr, "tern: %s\n", tern_last_error());
    return 1;
}

static int bad_usage(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "tern %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see tern %s --help)\n", cmd);
    return 2;
}

// Returns 1 when argv[*i] was a common option (consuming its value), 0 if not,
// -1 when its value is missing.
static int parse_common(common_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char **target = NULL;
    if (!strcmp(a, "--model") || !strcmp(a, "-m")) target = &o->model;
    else if (!strcmp(a, "--tokenizer")) target = &o->tokenizer;
    else if (!strcmp(a, "--json")) {
        o->json = 1;
        return 1;
    } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
        if (*i + 1 >= argc) return -1;
        o->threads = atoi(argv[++*i]);
        return 1;
    } else return 0;
    if (*i + 1 >= argc) return -1;
    *target = argv[++*i];
    return 1;
}

static int load_model(const common_opts *o, tern_model *m, const char *cmd) {
    if (!o->model) return bad_usage(cmd, "%s", "--model is required");
    tern_set_threads(o->threads);
    if (tern_model_load(m, o->model, o->tokenizer)) return die();
    return 0;
}

static int cmd_info(int argc, char **argv) {
    common_opts o = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: tern info --model M [--tokenizer T] [--json]\n"
                   "Prints the architecture, hyper-parameters, tensor table and parameter counts.\n");
            return 0;
        }
        int r = parse_common(&o, argc, argv, &i);
        if (r < 0) return bad_usage("info", "%s needs a value", argv[i]);
        if (r == 0) {
            if (!o.model && argv[i][0] != '-') o.model = argv[i];
            else return bad_usage("info", "unknown option %s", argv[i]);
        }
    }
    tern_model m;
    int rc = load_model(&o, &m, "info");
    if (rc) return rc;
    tern_model_print_info(&m, stdout, o.json);
    tern_model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } commands[] = {
        {"info", cmd_info},
    };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "tern: unknown command '%s'\n%s", argv[1], usage_text);
    return 2;
}

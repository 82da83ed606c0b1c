// tern: command-line front end. Subcommands only parse arguments and call libtern.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <string.h>

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "tern.h"
#include "core/dist.h"
#include "core/error.h"
#include "core/file.h"
#include "core/jsonw.h"
#include "core/progress.h"
#include "core/threads.h"
#include "eval/ppl.h"
#include "eval/report.h"
#include "eval/zeroshot.h"
#include "infer/bench.h"
#include "infer/chat.h"
#include "infer/export.h"
#include "infer/generate.h"
#include "serve/serve.h"

// Spins of a waiting OpenMP thread before it sleeps (see bounded_spin_wait).
#define TERN_SPINCOUNT "1000"
#include "infer/packed.h"
#include "infer/quantize_file.h"
#include "io/gguf_write.h"
#include "io/info.h"
#include "io/model.h"
#include "nn/matmul.h"
#include "tok/tokenizer.h"
#include "quant/quant.h"
#include "train/trainer.h"

static const char *usage_text =
    "usage: tern COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  info      --model M [--json]                        describe a model\n"
    "  generate  --model M --prompt TEXT [--n-predict N]    generate text\n"
    "  serve     --model M [--port P] [--parallel N]        OpenAI-compatible HTTP server\n"
    "  chat      --model M [--system TEXT]                  chat through the model's chat template\n"
    "  ppl       --model M --file TEXT [--ctx 512]          perplexity\n"
    "  bench     --model M [--compare f32,t2] [--json]      throughput (pp512, tg128) per format\n"
    "  eval      --model M --task FILE [--task FILE ...]    zero-shot multiple-choice accuracy\n"
    "  train     --model M --data TEXT --out OUT.gguf       full-precision fine-tuning\n"
    "  quantize  --model M --method M --calib TEXT --out O  QAT/PTQ to ternary or low-bit\n"
    "  report    LOG [LOG ...] --out report.svg [--json]   plot training logs (loss, dead zone)\n"
    "  export    --model M --out MODEL.tern [--pack 2|1.6]  packed ternary / low-bit model file\n"
    "\n"
    "Models: a Hugging Face directory, a GGUF or .tern file, or a llama2.c checkpoint\n"
    "(llama2.c needs --tokenizer tokenizer.bin). Every command takes --model,\n"
    "--tokenizer (overrides the embedded tokenizer) and --threads N.\n"
    "Run `tern COMMAND --help` for details; `tern --version` prints the version.\n";

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


// Option-table entries every command that loads a model takes.
#define OPT_MODEL(o) \
    {"--model|-m", CLI_STR, &(o).model, 0, 0, NULL, "M", NULL, \
     "GGUF, .tern, llama2.c checkpoint or Hugging Face directory", NULL}
#define OPT_TOKENIZER(o) \
    {"--tokenizer", CLI_STR, &(o).tokenizer, 0, 0, NULL, "T", NULL, \
     "tokenizer replacing the model's: tokenizer.json, GGUF, or llama2.c tokenizer.bin", NULL}
#define OPT_THREADS(o) {"--threads|-t", CLI_INT, &(o).threads, 1, 4096, NULL, "N", "all cores", "worker threads", NULL}
#define OPT_JSON(o) \
    {"--json", CLI_FLAG, &(o).json, 0, 0, NULL, NULL, NULL, "one JSON object on stdout (progress stays on stderr)", NULL}
// Sampling, context and batch options (generate, chat): g a tern_gen_opts.
#define OPT_SAMPLING(g, seed, seed_given) \
    {"--temp|--temperature", CLI_FLOAT, &(g).temp, 0, 100, NULL, "T", "0.8", "temperature; 0 = greedy", NULL}, \
    {"--top-p", CLI_FLOAT, &(g).top_p, 1e-6, 1, NULL, "P", "0.95", "nucleus sampling (after temperature); 1 = off", \
     NULL}, \
    {"--top-k", CLI_INT, &(g).top_k, 0, 1 << 30, NULL, "K", "0 = off", "sample among the K most likely tokens", NULL}, \
    {"--min-p", CLI_FLOAT, &(g).min_p, 0, 1, NULL, "P", "0 = off", \
     "drop tokens less likely than P times the most likely (at temperature 1)", NULL}, \
    {"--repeat-penalty", CLI_FLOAT, &(g).repeat_penalty, 0, 100, NULL, "R", "1 = off", \
     "divide the positive logits (multiply the negative) of recent tokens by R", NULL}, \
    {"--repeat-last-n", CLI_INT, &(g).repeat_last_n, 0, 1 << 20, NULL, "N", "64", \
     "tokens (prompt included) the penalty looks back over", NULL}, \
    {"--seed|-s", CLI_U64, &(seed), 0, 9007199254740991.0, NULL, "S", "random", "sampling seed (printed on stderr)", \
     &(seed_given)}, \
    {"--ctx|-c|--ctx-size", CLI_INT, &(g).ctx, 1, 1 << 20, NULL, "N", "the model's, at most 4096", \
     "context length: prompt + generated tokens", NULL}, \
    {"--batch-size|-b", CLI_INT, &(g).batch, 1, 1 << 16, NULL, "N", "256", "prompt tokens per forward pass", NULL}, \
    {"--format", CLI_STR, &(g).format, 0, 0, NULL, "F", "native", \
     "run the linears as f32, bf16, t2, t1.6 or q8 (see tern bench --help)", NULL}

// Chat options (generate --chat, chat): c a chat_opts.
typedef struct {
    int on;
    const char *system, *tmpl;
} chat_opts;
#define OPT_CHAT(c) \
    {"--system", CLI_STR, &(c).system, 0, 0, NULL, "TEXT", NULL, "the system prompt (default: the template's, if any)", \
     NULL}, \
    {"--chat-template", CLI_STR, &(c).tmpl, 0, 0, NULL, "NAME", "the model's", \
     "chatml, smollm2, llama3, llama2, mistral, zephyr or gemma", NULL}

#define N_OPTS(a) ((int)(sizeof(a) / sizeof((a)[0])))

// Parses argv with a command's option table. Returns -1 to go on, else the
// exit status (0 after printing --help, 2 after a usage error).
static int parse_opts(const char *cmd, const char *usage, const cli_opt *opts, int n, int argc, char **argv,
                      const char **positional) {
    int r = cli_parse(cmd, opts, n, argc, argv, positional);
    if (r == 1) {
        cli_help(stdout, usage, opts, n);
        return 0;
    }
    return r ? 2 : -1;
}

// Refuses outputs that name an input: the atomic rename would replace the
// input with the output. Compared by device and inode, not by name.
static int clobbers_input(const char *cmd, const char *const *outs, int n_out, const char *const *ins, int n_in) {
    for (int i = 0; i < n_out; i++)
        for (int j = 0; j < n_in; j++)
            if (outs[i] && ins[j] && tern_same_file(outs[i], ins[j])) {
                fprintf(stderr, "tern %s: output %s is the input %s; refusing to overwrite it\n", cmd, outs[i], ins[j]);
                return 2;
            }
    return 0;
}

// A file size for people: "138.5 KB", "97.6 MB", "1.20 GB" (powers of 1000).
static const char *size_str(int64_t bytes, char *buf, size_t cap) {
    if (bytes >= 1000000000) snprintf(buf, cap, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1000000) snprintf(buf, cap, "%.1f MB", bytes / 1e6);
    else snprintf(buf, cap, "%.1f KB", bytes / 1e3);
    return buf;
}

// load_model flags: a model without a tokenizer is fine (info, bench); say
// when a large model starts loading (long jobs show progress from the start).
// LOAD_PACKED: the command runs only the native format (tern_model_load_ex's TERN_LOAD_PACKED).
enum { LOAD_NO_TOKENIZER = 1, LOAD_ANNOUNCE = 2, LOAD_PACKED = 4 };

// Whether a --format value runs the model's own packing (NULL: the default).
static int native_format(const char *f) { return !f || !strcmp(f, "native"); }

// Checks --model and sets the threads before anything else runs.
static int model_given(const common_opts *o, const char *cmd, int flags) {
    if (!o->model) return bad_usage(cmd, "%s", "--model is required");
    tern_set_threads(o->threads);
    struct stat st;
    if ((flags & LOAD_ANNOUNCE) && stat(o->model, &st) == 0 && (S_ISDIR(st.st_mode) || st.st_size > 50000000))
        fprintf(stderr, "loading %s\n", o->model);
    return 0;
}

static int load_model(const common_opts *o, tern_model *m, const char *cmd, int flags) {
    int rc = model_given(o, cmd, flags);
    if (rc) return rc;
    int lf = (flags & LOAD_NO_TOKENIZER ? 0 : TERN_LOAD_TOKENIZER) | (flags & LOAD_PACKED ? TERN_LOAD_PACKED : 0);
    if (tern_model_load_ex(m, o->model, o->tokenizer, lf)) return die();
    return 0;
}

static int cmd_info(int argc, char **argv) {
    common_opts o = {0};
    const cli_opt opts[] = {OPT_MODEL(o), OPT_TOKENIZER(o), OPT_THREADS(o), OPT_JSON(o)};
    int rc = parse_opts("info", "usage: tern info [--model] M [--tokenizer T] [--json]\n"
                                "Prints the architecture, hyper-parameters, file type (method, bits, group, bits per\n"
                                "weight), tensor table and parameter counts. A llama2.c checkpoint needs no tokenizer.\n",
                        opts, N_OPTS(opts), argc, argv, &o.model);
    if (rc >= 0) return rc;
    tern_model m;
    if ((rc = load_model(&o, &m, "info", LOAD_NO_TOKENIZER | LOAD_PACKED))) return rc;
    // The file type: what tern quantize / tern export recorded (tern.* metadata).
    tern_export_meta meta;
    char type[160] = "";
    if (tern_export_input_meta(o.model, &meta) == 0 && meta.method[0]) {
        int packed = 0;
        for (int i = 0; i < m.n_tensors; i++) packed |= m.tensors[i].packed != NULL;
        char bits[32] = "";
        if (meta.bits && strcmp(meta.method, "absmean") && strcmp(meta.method, "twn") &&
            strcmp(meta.method, "tequila") && strcmp(meta.method, "dlt"))
            snprintf(bits, sizeof bits, ", %d-bit", meta.bits);
        snprintf(type, sizeof type, "%s%s, group %d%s (%s)", meta.method, bits, meta.group,
                 meta.n_linear ? ", mixed precision" : "",
                 packed ? "packed" : "latent fake-quant FP32; tern export packs it");
    }
    tern_model_print_info(&m, stdout, o.json, type);
    tern_model_free(&m);
    return 0;
}

// Option values: each returns 0 or prints a usage error (and returns 2).
static int need_value(int argc, char **argv, int *i, const char *cmd, const char **out) {
    if (*i + 1 >= argc) return bad_usage(cmd, "%s needs a value", argv[*i]);
    *out = argv[++*i];
    return 0;
}



static int is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

static int load_model_and_tokenizer(const common_opts *o, tern_model *m, tern_tokenizer **tok, const char *cmd,
                                    int flags) {
    int rc = load_model(o, m, cmd, flags);
    if (rc) return rc;
    if (tern_tokenizer_init(tok, &m->vocab)) {
        tern_model_free(m);
        return die();
    }
    return 0;
}

// Chat: --chat-template is checked before the model loads (a usage error);
// then the model, its tokenizer and its template (override > the model's).
// A --system the template cannot express fails here, before any turn.
static int load_chat_model(const common_opts *o, const chat_opts *c, tern_model *m, tern_tokenizer **tok, int *tmpl,
                           const char *cmd, int flags) {
    if (c->tmpl && tern_chat_template_from_name(c->tmpl) < 0)
        return bad_usage(cmd, "unknown --chat-template '%s' (chatml, smollm2, llama3, llama2, mistral, zephyr, gemma)",
                         c->tmpl);
    if (!o->model) return bad_usage(cmd, "%s", "--model is required");
    int rc = load_model_and_tokenizer(o, m, tok, cmd, flags);
    if (rc) return rc;
    *tmpl = tern_chat_template_pick(&m->vocab, c->tmpl);
    char *probe = NULL;
    if (*tmpl >= 0 && c->system) {
        tern_chat_msg msgs[] = {{"system", c->system}, {"user", "?"}};
        probe = tern_chat_render(*tmpl, msgs, 2, 1, NULL, NULL);
    }
    if (*tmpl < 0 || (c->system && !probe)) {
        fprintf(stderr, "tern %s: %s: %s\n", cmd, o->model, tern_last_error());
        tern_tokenizer_free(*tok);
        tern_model_free(m);
        return 1;
    }
    free(probe);
    return 0;
}

static int print_piece(const char *piece, size_t len, void *user) {
    fwrite(piece, 1, len, user);
    fflush(user);
    return 0;
}

// One reply of a chat session to the conversation so far, streamed to stdout.
// The context filling up is said on stderr.
static int chat_reply(const char *cmd, tern_chat_session *cs, const tern_chat_msg *msgs, int n, char **reply,
                      tern_gen_stats *st) {
    int rc = tern_chat_session_reply(cs, msgs, n, print_piece, stdout, reply, st);
    if (rc == 0) printf("\n");
    fflush(stdout);
    if (rc == 0 && st->stopped_ctx)
        fprintf(stderr, "tern %s: the context of %d tokens is full: the reply was cut (/reset starts a new "
                        "conversation; --ctx sets the context)\n", cmd, st->ctx);
    return rc;
}

static int cmd_generate(int argc, char **argv) {
    common_opts o = {0};
    const char *prompt = NULL, *prompt_file = NULL;
    tern_gen_opts g = {.n_predict = 128, .temp = 0.8f, .top_p = 0.95f, .repeat_penalty = 1.0f, .repeat_last_n = 64};
    uint64_t seed = 0;
    int seed_given = 0;
    chat_opts chat = {0};
    const cli_opt opts[] = {
        OPT_MODEL(o),
        OPT_TOKENIZER(o),
        {"--prompt|-p", CLI_STR, &prompt, 0, 0, NULL, "TEXT", NULL, "the text to continue ('' starts from BOS)", NULL},
        {"--file|-f", CLI_STR, &prompt_file, 0, 0, NULL, "FILE", NULL, "read the prompt from FILE instead", NULL},
        {"--n-predict|-n", CLI_INT, &g.n_predict, 0, 1 << 24, NULL, "N", "128",
         "tokens to generate (fewer at end of text or a full context)", NULL},
        OPT_SAMPLING(g, seed, seed_given),
        {"--chat", CLI_FLAG, &chat.on, 0, 0, NULL, NULL, NULL,
         "the prompt is one user turn of the model's chat template; stop at its end of turn", NULL},
        OPT_CHAT(chat),
        OPT_THREADS(o),
    };
    int rc = parse_opts("generate",
                        "usage: tern generate --model M [--tokenizer T] --prompt TEXT|--file FILE [options]\n"
                        "Writes only the generated text to stdout (the seed and timings go to stderr). Stops at\n"
                        "the end of text, after --n-predict tokens, or when the context is full (said on stderr).\n"
                        "Sampling: repetition penalty, top-k, min-p, temperature, top-p, in that order.\n"
                        "--chat: the prompt is one user turn (after --system, if given) of the chat template,\n"
                        "and generation stops at the template's end of turn.\n",
                        opts, N_OPTS(opts), argc, argv, NULL);
    if (rc >= 0) return rc;
    if (g.format && !tern_format_known(g.format))
        return bad_usage("generate", "unknown --format %s (native, f32, bf16, t2, t1.6, q8)", g.format);
    if (prompt && prompt_file) return bad_usage("generate", "%s", "give --prompt or --file, not both");
    if (!chat.on && (chat.system || chat.tmpl))
        return bad_usage("generate", "%s", "--system and --chat-template go with --chat (or tern chat)");
    char *file_text = NULL;
    size_t file_len;
    if (prompt_file) {
        if (tern_read_file(prompt_file, &file_text, &file_len)) return die();
        prompt = file_text;
    }
    if (!prompt) return bad_usage("generate", "%s", "--prompt is required (use --prompt '' to start from BOS)");
    g.seed = seed_given ? seed : (uint64_t)time(NULL);
    tern_model m;
    tern_tokenizer *tok;
    int tmpl = -1;
    const int lf = native_format(g.format) ? LOAD_PACKED : 0;
    rc = chat.on ? load_chat_model(&o, &chat, &m, &tok, &tmpl, "generate", lf)
                 : load_model_and_tokenizer(&o, &m, &tok, "generate", lf);
    if (rc) {
        free(file_text);
        return rc;
    }
    if (g.ctx > m.cfg.max_seq)
        fprintf(stderr, "tern generate: warning: --ctx %d exceeds the model's training context %d\n", g.ctx,
                m.cfg.max_seq);
    else if (!g.ctx && m.cfg.max_seq > 4096)
        fprintf(stderr, "tern generate: note: context capped at 4096 of the model's %d tokens (raise it with --ctx)\n",
                m.cfg.max_seq);
    fprintf(stderr, "tern generate: seed %llu\n", (unsigned long long)g.seed);
    tern_gen_stats st;
    if (chat.on) {
        tern_chat_session cs;
        tern_chat_msg msgs[] = {{"system", chat.system}, {"user", prompt}};
        rc = tern_chat_session_init(&cs, &m, tok, tmpl, &g);
        if (rc == 0) rc = chat_reply("generate", &cs, msgs + !chat.system, 1 + !!chat.system, NULL, &st);
        if (rc == 0) st.stopped_ctx = 0; // already said
        tern_chat_session_free(&cs);
    } else {
        rc = tern_generate(&m, tok, prompt, &g, stdout, &st);
        printf("\n");
    }
    fflush(stdout); // the timing line on stderr must follow the text, also through pipes
    if (rc == 0 && st.stopped_ctx)
        fprintf(stderr, "tern generate: stopped at the context limit of %d tokens after %d of --n-predict %d tokens "
                        "(--ctx sets it)\n", st.ctx, st.generated, g.n_predict);
    if (rc == 0)
        fprintf(stderr, "prompt: %d tokens in %.2f s (%.1f tok/s); generated: %d tokens in %.2f s (%.1f tok/s)\n",
                st.prompt_tokens, st.prompt_sec, st.prompt_tokens / (st.prompt_sec + 1e-9), st.generated,
                st.gen_sec, st.generated / (st.gen_sec + 1e-9));
    free(file_text);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    return rc ? die() : 0;
}

// A model's name for /v1/models: the file's (or directory's) base name.
static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *b = path + n;
    while (b > path && b[-1] != '/') b--;
    static char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(path + n - b), b);
    return name;
}

static int cmd_serve(int argc, char **argv) {
    common_opts o = {0};
    tern_serve_opts so = {.host = "127.0.0.1", .port = 8080, .parallel = 1, .chat_template = -1,
                          .max_body = 1 << 20,
                          .defaults = {.temp = 0.8f, .top_p = 0.95f, .repeat_penalty = 1.0f, .seed_random = 1}};
    int max_body_kb = 1024, seed_given = 0;
    uint64_t seed = 0;
    const char *tmpl = NULL;
    const cli_opt opts[] = {
        OPT_MODEL(o),
        OPT_TOKENIZER(o),
        {"--chat-template", CLI_STR, &tmpl, 0, 0, NULL, "NAME", "the model's",
         "chatml, smollm2, llama3, llama2, mistral, zephyr or gemma (without one, chat requests are refused)", NULL},
        {"--host", CLI_STR, &so.host, 0, 0, NULL, "ADDR", "127.0.0.1", "IPv4 address to listen on", NULL},
        {"--port", CLI_INT, &so.port, 0, 65535, NULL, "P", "8080", "TCP port (0: any free one, printed)", NULL},
        {"--parallel|-np", CLI_INT, &so.parallel, 1, 256, NULL, "N", "1",
         "requests served at once (each has its own KV cache); more wait", NULL},
        {"--ctx|-c|--ctx-size", CLI_INT, &so.ctx, 1, 1 << 20, NULL, "N", "the model's, at most 4096",
         "context length of each slot: prompt + generated tokens", NULL},
        {"--alias|-a", CLI_STR, &so.model_name, 0, 0, NULL, "NAME", "the model file's name",
         "model name in /v1/models and responses", NULL},
        {"--temp|--temperature", CLI_FLOAT, &so.defaults.temp, 0, 100, NULL, "T", "0.8",
         "default temperature of requests that give none", NULL},
        {"--top-p", CLI_FLOAT, &so.defaults.top_p, 1e-6, 1, NULL, "P", "0.95", "default top-p", NULL},
        {"--top-k", CLI_INT, &so.defaults.top_k, 0, 1 << 30, NULL, "K", "0 = off", "default top-k", NULL},
        {"--min-p", CLI_FLOAT, &so.defaults.min_p, 0, 1, NULL, "P", "0 = off", "default min-p", NULL},
        {"--repeat-penalty", CLI_FLOAT, &so.defaults.repeat_penalty, 0, 100, NULL, "R", "1 = off",
         "default repetition penalty", NULL},
        {"--seed|-s", CLI_U64, &seed, 0, 9007199254740991.0, NULL, "S", "a fresh one per request",
         "seed of requests that give none", &seed_given},
        {"--max-body", CLI_INT, &max_body_kb, 1, 1 << 20, NULL, "KB", "1024", "largest request body accepted", NULL},
        {"--quiet|--log-disable", CLI_FLAG, &so.quiet, 0, 0, NULL, NULL, NULL, "no line per request on stderr", NULL},
        OPT_THREADS(o),
    };
    int rc = parse_opts("serve",
                        "usage: tern serve --model M [--tokenizer T] [--host ADDR] [--port P] [--parallel N] [options]\n"
                        "An OpenAI-compatible HTTP server: POST /v1/completions, /v1/chat/completions (\"stream\": true\n"
                        "for server-sent events), GET /v1/models, /health, and a chat page at /. A completion at\n"
                        "temperature 0 is tern generate --temp 0's text. SIGINT/SIGTERM finish the running requests.\n",
                        opts, N_OPTS(opts), argc, argv, NULL);
    if (rc >= 0) return rc;
    if (!tern_serve_available()) {
        fprintf(stderr, "tern serve: this tern was built without the HTTP server (install libmicrohttpd-dev and "
                        "rebuild)\n");
        return 1;
    }
    so.max_body = (size_t)max_body_kb << 10;
    if (seed_given) so.defaults.seed = seed, so.defaults.seed_random = 0;
    struct in_addr host_addr;
    if (inet_pton(AF_INET, so.host, &host_addr) != 1)
        return bad_usage("serve", "--host must be an IPv4 address such as 127.0.0.1 or 0.0.0.0, not '%s'", so.host);
    if (tmpl && tern_chat_template_from_name(tmpl) < 0)
        return bad_usage("serve", "unknown --chat-template '%s' (chatml, smollm2, llama3, llama2, mistral, zephyr, gemma)",
                         tmpl);
    tern_model m;
    tern_tokenizer *tok;
    if ((rc = load_model_and_tokenizer(&o, &m, &tok, "serve", LOAD_ANNOUNCE | LOAD_PACKED))) return rc;
    so.model = &m, so.tok = tok, so.threads = o.threads;
    // The chat template: the override, else the model's; without one only completions are served.
    so.chat_template = tmpl || m.vocab.chat_template ? tern_chat_template_pick(&m.vocab, tmpl) : -1;
    if (so.chat_template < 0)
        fprintf(stderr, "tern serve: note: %s; /v1/chat/completions will refuse requests\n",
                m.vocab.chat_template ? tern_last_error() : "the model has no chat template (--chat-template NAME sets one)");
    if (!so.model_name) so.model_name = base_name(o.model);
    rc = tern_serve(&so);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    return rc ? die() : 0;
}

// The conversation of `tern chat`: messages with owned contents.
typedef struct {
    tern_chat_msg *msgs;
    int n, cap;
} chat_log;

static int chat_log_add(chat_log *l, const char *role, char *content) { // takes content
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        tern_chat_msg *p = realloc(l->msgs, (size_t)cap * sizeof *p);
        if (!p) return free(content), tern_errorf("out of memory");
        l->msgs = p, l->cap = cap;
    }
    l->msgs[l->n++] = (tern_chat_msg){role, content};
    return 0;
}

static void chat_log_truncate(chat_log *l, int n) {
    while (l->n > n) free((char *)l->msgs[--l->n].content);
}

// A line without its end-of-line and surrounding blanks (in place).
static char *trim_line(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    while (*s == ' ' || *s == '\t') s++;
    return s;
}

static int cmd_chat(int argc, char **argv) {
    common_opts o = {0};
    tern_gen_opts g = {.n_predict = 1024, .temp = 0.8f, .top_p = 0.95f, .repeat_penalty = 1.0f, .repeat_last_n = 64};
    uint64_t seed = 0;
    int seed_given = 0;
    chat_opts chat = {0};
    const cli_opt opts[] = {
        OPT_MODEL(o),
        OPT_TOKENIZER(o),
        OPT_CHAT(chat),
        {"--n-predict|-n", CLI_INT, &g.n_predict, 1, 1 << 24, NULL, "N", "1024",
         "tokens per reply at most (fewer at the end of the turn or a full context)", NULL},
        OPT_SAMPLING(g, seed, seed_given),
        OPT_THREADS(o),
    };
    int rc = parse_opts("chat",
                        "usage: tern chat --model M [--system TEXT] [--chat-template NAME] [sampling options]\n"
                        "Chats with an instruction-tuned model through its chat template (the model's own, or\n"
                        "--chat-template). Reads one user message per line from stdin and writes each reply to\n"
                        "stdout, streamed, followed by a newline. `/reset` starts a new conversation (the system\n"
                        "prompt stays), `/exit` or end of input quits; blank lines are skipped. Only the new\n"
                        "tokens of each turn run: the KV cache keeps the conversation so far. A prompt `> ` is\n"
                        "shown only when stdin is a terminal; notes (the template, a full context) go to stderr.\n"
                        "A turn that cannot run (the conversation no longer fits the context) is said on stderr\n"
                        "and dropped; the chat goes on, and the exit status is then 1.\n",
                        opts, N_OPTS(opts), argc, argv, NULL);
    if (rc >= 0) return rc;
    if (g.format && !tern_format_known(g.format))
        return bad_usage("chat", "unknown --format %s (native, f32, bf16, t2, t1.6, q8)", g.format);
    g.seed = seed_given ? seed : (uint64_t)time(NULL);
    tern_model m;
    tern_tokenizer *tok;
    int tmpl;
    if ((rc = load_chat_model(&o, &chat, &m, &tok, &tmpl, "chat", native_format(g.format) ? LOAD_PACKED : 0))) return rc;
    tern_chat_session cs;
    if (tern_chat_session_init(&cs, &m, tok, tmpl, &g)) {
        tern_tokenizer_free(tok);
        tern_model_free(&m);
        return die();
    }
    int tty = isatty(0), failed = 0;
    fprintf(stderr, "tern chat: template %s, context %d tokens, seed %llu; /reset starts over, /exit quits\n",
            tern_chat_template_name(tmpl), tern_chat_session_n_ctx(&cs), (unsigned long long)g.seed);
    chat_log log = {0};
    rc = chat.system ? chat_log_add(&log, "system", strdup(chat.system)) : 0;
    int n_keep = log.n; // what /reset keeps
    char *line = NULL;
    size_t cap = 0;
    while (rc == 0) {
        if (tty) fputs("> ", stdout), fflush(stdout);
        if (getline(&line, &cap, stdin) < 0) break;
        char *text = trim_line(line);
        if (!*text) continue;
        if (!strcmp(text, "/exit")) break;
        if (!strcmp(text, "/reset")) {
            chat_log_truncate(&log, n_keep);
            tern_chat_session_reset(&cs);
            fprintf(stderr, "tern chat: new conversation\n");
            continue;
        }
        char *content = strdup(text);
        if (!content || chat_log_add(&log, "user", content)) {
            rc = -1;
            break;
        }
        char *reply = NULL;
        tern_gen_stats st;
        if (chat_reply("chat", &cs, log.msgs, log.n, &reply, &st)) {
            fprintf(stderr, "tern chat: %s\n", tern_last_error()); // the turn is dropped; the chat goes on
            chat_log_truncate(&log, log.n - 1);
            failed = 1;
            continue;
        }
        rc = chat_log_add(&log, "assistant", reply);
    }
    free(line);
    chat_log_truncate(&log, 0);
    free(log.msgs);
    tern_chat_session_free(&cs);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    if (rc) return die();
    return failed;
}

static int cmd_ppl(int argc, char **argv) {
    common_opts o = {0};
    const char *file = NULL, *format = "native";
    int ctx = 512, chunks = 0;
    const cli_opt opts[] = {
        OPT_MODEL(o),
        OPT_TOKENIZER(o),
        {"--file|-f", CLI_STR, &file, 0, 0, NULL, "TEXT", NULL, "the text (plain UTF-8)", NULL},
        {"--ctx|-c|--ctx-size", CLI_INT, &ctx, 4, 1 << 20, NULL, "N", "512", "tokens per chunk", NULL},
        {"--chunks", CLI_INT, &chunks, 0, 1 << 30, NULL, "K", "all", "score only the first K chunks", NULL},
        {"--format", CLI_STR, &format, 0, 0, NULL, "F", "native",
         "run the linears as f32, bf16, t2, t1.6 or q8 (see tern bench --help)", NULL},
        OPT_THREADS(o),
        OPT_JSON(o),
    };
    int rc = parse_opts("ppl",
                        "usage: tern ppl --model M [--tokenizer T] --file TEXT [--ctx 512] [--chunks K] [--json]\n"
                        "Perplexity as llama.cpp's llama-perplexity computes it: non-overlapping chunks of --ctx\n"
                        "tokens, BOS at each chunk start when the vocabulary adds BOS, the second half of each\n"
                        "chunk scored. Prints the running estimate after each chunk ([1]x,[2]y,... as llama.cpp\n"
                        "does; on stderr with --json), then the result.\n",
                        opts, N_OPTS(opts), argc, argv, NULL);
    if (rc >= 0) return rc;
    if (!tern_format_known(format)) return bad_usage("ppl", "unknown --format %s (native, f32, bf16, t2, t1.6, q8)", format);
    if (!file) return bad_usage("ppl", "%s", "--file is required");
    char *text;
    size_t len;
    if (tern_read_file(file, &text, &len)) return die();
    tern_model m;
    tern_tokenizer *tok;
    if ((rc = load_model_and_tokenizer(&o, &m, &tok, "ppl", native_format(format) ? LOAD_PACKED : 0))) {
        free(text);
        return rc;
    }
    if (ctx > m.cfg.max_seq)
        fprintf(stderr, "tern ppl: warning: --ctx %d exceeds the model's training context %d\n", ctx, m.cfg.max_seq);
    tern_ppl_result r;
    tern_ppl_set_running(o.json ? stderr : stdout);
    // When stdout and stderr are one file (a terminal, 2>&1), the running line is
    // the progress: a bar in the middle of it would only garble both.
    struct stat so, se;
    if (!o.json && fstat(1, &so) == 0 && fstat(2, &se) == 0 && so.st_dev == se.st_dev && so.st_ino == se.st_ino)
        tern_progress_set_enabled(0);
    rc = tern_perplexity_text(&m, tok, text, len, ctx, chunks, format, &r);
    tern_ppl_set_running(NULL);
    if (rc == 0) {
        if (o.json)
            printf("{\"ppl\": %.6f, \"ppl_se\": %.6f, \"nll\": %.6f, \"tokens\": %lld, \"text_tokens\": %lld, "
                   "\"chunks\": %d, \"ctx\": %d, \"seconds\": %.3f}\n",
                   r.ppl, r.ppl_se, r.nll, (long long)r.tokens, (long long)r.text_tokens, r.chunks, r.ctx, r.seconds);
        else
            printf("PPL = %.4f +/- %.5f  (%lld tokens scored in %d chunks of %d; %.1f s, %.1f tok/s)\n", r.ppl,
                   r.ppl_se, (long long)r.tokens, r.chunks, r.ctx, r.seconds,
                   (double)r.chunks * r.ctx / (r.seconds + 1e-9));
    }
    free(text);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    return rc ? die() : 0;
}

// The OpenMP waiting policy this process runs with, for reports (timings
// depend on it): the variable that set it.
static const char *omp_wait_str(void) {
    static char buf[200];
    const char *vars[] = {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"};
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < 3; i++)
        if (getenv(vars[i]) && n < sizeof buf)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s=%.40s", n ? " " : "", vars[i], getenv(vars[i]));
    return n ? buf : "the OpenMP runtime's default";
}

static int cmd_bench(int argc, char **argv) {
    common_opts o = {0};
    tern_bench_opts b = {.n_prompt = 512, .n_gen = 128, .reps = 3};
    const char *compare = "native";
    int output = 0; // text, json, md, csv
    const cli_opt opts[] = {
        OPT_MODEL(o),
        OPT_TOKENIZER(o),
        {"--compare", CLI_STR, &compare, 0, 0, NULL, "F,F,...", "native",
         "formats: native (the file's own), f32, bf16, t2, t1.6, q8 (at most 16)", NULL},
        {"--reps|-r", CLI_INT, &b.reps, 1, 1000, NULL, "N", "3", "repetitions after a warm-up", NULL},
        {"--n-prompt|-p", CLI_INT, &b.n_prompt, 1, 1 << 16, NULL, "N", "512", "prompt tokens (the ppN test)", NULL},
        {"--n-gen|-n", CLI_INT, &b.n_gen, 1, 1 << 16, NULL, "N", "128", "generated tokens (the tgN test)", NULL},
        {"--profile", CLI_FLAG, &b.profile, 0, 0, NULL, NULL, NULL,
         "where a generated token's time goes: us per token in each phase of the forward", NULL},
        {"--output|-o", CLI_ENUM, &output, 0, 0, "text|json|md|csv", NULL, "text", "report format (json = --json)", NULL},
        OPT_THREADS(o),
        OPT_JSON(o),
    };
    int rc = parse_opts("bench",
                        "usage: tern bench --model M [--compare f32,bf16,t2,t1.6,q8] [--threads N] [options]\n"
                        "For each format: prompt processing (ppN) and generation (tgN) tokens/s, mean +/- sd over\n"
                        "repetitions after a warm-up, the bytes streamed per token, the file size in that format, and\n"
                        "for generation the fraction of the measured read bandwidth reached. Formats other than f32\n"
                        "are made from the loaded model: bf16 rounds the weights; t2/t1.6 ternarize every linear\n"
                        "layer with absmean per group of 128 (LM head at 8 bits); q8 is int8 per block of 128.\n",
                        opts, N_OPTS(opts), argc, argv, NULL);
    if (rc >= 0) return rc;
    rc = 0;
    if (o.json) output = 1;
    // The whole list is checked before anything runs.
    char formats[256], *list[16];
    int n_formats = 0;
    if (strlen(compare) >= sizeof formats) return bad_usage("bench", "%s", "--compare: list too long");
    snprintf(formats, sizeof formats, "%s", compare);
    for (char *save = NULL, *f = strtok_r(formats, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        if (!tern_format_known(f)) return bad_usage("bench", "--compare: unknown format '%s' (native, f32, bf16, t2, t1.6, q8)", f);
        if (n_formats == 16) return bad_usage("bench", "%s", "--compare: at most 16 formats");
        list[n_formats++] = f;
    }
    if (n_formats == 0) return bad_usage("bench", "%s", "--compare: no format given");
    int all_native = 1;
    for (int k = 0; k < n_formats; k++) all_native &= native_format(list[k]);
    tern_model m; // no tokenizer needed: bench runs token ids
    if ((rc = load_model(&o, &m, "bench", LOAD_NO_TOKENIZER | (all_native ? LOAD_PACKED : 0)))) return rc;
    if (b.n_prompt > m.cfg.max_seq || b.n_gen > m.cfg.max_seq)
        fprintf(stderr, "tern bench: warning: %s %d exceeds the model's training context of %d tokens (the KV cache "
                        "is made that long; positions past the context are timed all the same)\n",
                b.n_prompt > m.cfg.max_seq ? "--n-prompt" : "--n-gen",
                b.n_prompt > m.cfg.max_seq ? b.n_prompt : b.n_gen, m.cfg.max_seq);
    double bw = tern_bench_read_bandwidth();
    tern_bench_result res[32];
    int n_res = 0;
    for (int k = 0; k < n_formats && rc == 0; k++, n_res += 2) rc = tern_bench_run(&m, list[k], &b, res + n_res);
    for (int k = 0; k < n_res && rc == 0; k++) // a large spread makes the mean a poor summary: say so
        if (b.reps > 1 && res[k].sd > 0.1 * res[k].tokens_per_s)
            fprintf(stderr, "tern bench: warning: %s %s varies by %.0f%% between repetitions (a busy machine?); "
                            "more --reps or a quieter moment give a firmer number\n",
                    res[k].format, res[k].test, 100 * res[k].sd / res[k].tokens_per_s);
    if (rc == 0 && output == 1) {
        printf("{\"model\": ");
        tern_json_write_string(stdout, o.model, strlen(o.model));
        printf(", \"bandwidth_gbs\": %.3f, \"threads\": %d, \"gemm\": \"%s\", \"omp_wait\": \"%s\", \"results\": [", bw,
               tern_get_threads(), tern_gemm_backend(), omp_wait_str());
        for (int k = 0; k < n_res; k++) {
            printf("%s{\"format\": \"%s\", \"test\": \"%s\", \"tokens_per_s\": %.4f, \"sd\": %.4f, "
                   "\"bytes_per_token\": %.0f, \"file_bytes\": %lld",
                   k ? ", " : "", res[k].format, res[k].test, res[k].tokens_per_s, res[k].sd, res[k].bytes_per_token,
                   (long long)res[k].file_bytes);
            if (b.profile && res[k].test[0] == 't') {
                printf(", \"profile_us_per_token\": {");
                for (int ph = 0; ph < TERN_PH_COUNT; ph++)
                    printf("%s\"%s\": %.2f", ph ? ", " : "", tern_phase_names[ph], res[k].phase_us[ph]);
                printf("}");
            }
            printf("}");
        }
        printf("]}\n");
    } else if (rc == 0) {
        // Bandwidth matters for generation only (pp is compute-bound): pp rows leave it blank.
        static const char *head[] = {"format", "test", "tokens/s", "sd", "file MB", "MB/token", "GB/s", "% bw"};
        if (output == 0)
            printf("model %s, %d threads (waiting: %s), FP32 GEMM: %s, read bandwidth %.2f GB/s\n%-7s %-6s %18s %10s %10s %8s %8s\n",
                   o.model, tern_get_threads(), omp_wait_str(), tern_gemm_backend(), bw, head[0], head[1], head[2], head[4], head[5],
                   head[6], head[7]);
        else if (output == 2)
            printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n|---|---|---:|---:|---:|---:|---:|---:|\n", head[0],
                   head[1], head[2], head[3], head[4], head[5], head[6], head[7]);
        else printf("format,test,tokens_per_s,sd,file_mb,mb_per_token,gbs,pct_bw\n");
        for (int k = 0; k < n_res; k++) {
            const tern_bench_result *r = &res[k];
            double gbs = r->tokens_per_s * r->bytes_per_token / 1e9;
            char gb[16] = "", pct[16] = "";
            if (r->test[0] == 't') snprintf(gb, sizeof gb, "%.2f", gbs), snprintf(pct, sizeof pct, "%.1f%%", 100 * gbs / bw);
            if (output == 0)
                printf("%-7s %-6s %10.2f ± %-6.2f %10.1f %10.2f %8s %8s\n", r->format, r->test, r->tokens_per_s, r->sd,
                       r->file_bytes / 1e6, r->bytes_per_token / 1e6, gb, pct);
            else if (output == 2)
                printf("| %s | %s | %.2f | %.2f | %.1f | %.2f | %s | %s |\n", r->format, r->test, r->tokens_per_s,
                       r->sd, r->file_bytes / 1e6, r->bytes_per_token / 1e6, gb, pct);
            else
                printf("%s,%s,%.4f,%.4f,%.3f,%.4f,%s,%s\n", r->format, r->test, r->tokens_per_s, r->sd,
                       r->file_bytes / 1e6, r->bytes_per_token / 1e6, gb, pct[0] ? (pct[strlen(pct) - 1] = 0, pct) : "");
        }
        for (int k = 0; k < n_res && b.profile; k++) {
            if (res[k].test[0] != 't') continue;
            double total = 0;
            for (int ph = 0; ph < TERN_PH_COUNT; ph++) total += res[k].phase_us[ph];
            printf("%s %s, us per token:", res[k].format, res[k].test);
            for (int ph = 0; ph < TERN_PH_COUNT; ph++) printf(" %s %.1f", tern_phase_names[ph], res[k].phase_us[ph]);
            printf(" (sum %.1f)\n", total);
        }
    }
    tern_model_free(&m);
    return rc ? die() : 0;
}

// The training options tern train and tern quantize share, as option-table
// entries on a tern_train_opts `t`; `sched` receives --schedule's name (parsed
// after) and the *_seen flags say which were given.
typedef struct {
    int steps, ce, off, calib_seqs;
    const char *sched;
} train_seen;

#define TRAIN_OPTS(t, seen, lr_def)                                                                                   \
    {"--steps", CLI_INT, &(t).steps, 0, 1 << 30, NULL, "N", "100",                                                   \
     "optimizer steps of --batch x --seq x --grad-accum tokens", &(seen).steps},                                     \
    {"--batch|-b|--batch-size", CLI_INT, &(t).batch, 1, 4096, NULL, "B", "4", "sequences per step", NULL},            \
    {"--seq", CLI_INT, &(t).seq_len, 2, 1 << 16, NULL, "L", "256", "tokens per sequence", NULL},                     \
    {"--grad-accum", CLI_INT, &(t).grad_accum, 1, 4096, NULL, "K", "1", "micro-batches per step", NULL},              \
    {"--lr", CLI_FLOAT, &(t).lr, 0, 10, NULL, "LR", lr_def, "AdamW learning rate", NULL},                             \
    {"--lr-quant", CLI_FLOAT, &(t).lr_method, 0, 10, NULL, "LR", "1e-3",                                             \
     "lr of the method's own parameters (DLT alpha/gamma, TEQ s, uniform s/z)", NULL},                               \
    {"--beta1", CLI_FLOAT, &(t).beta1, 0, 0.999999, NULL, "B", "0.9", "AdamW beta1", NULL},                          \
    {"--beta2", CLI_FLOAT, &(t).beta2, 0, 0.999999, NULL, "B", "0.95", "AdamW beta2", NULL},                         \
    {"--weight-decay", CLI_FLOAT, &(t).weight_decay, 0, 10, NULL, "W", "0", "AdamW decoupled weight decay", NULL},    \
    {"--clip", CLI_FLOAT, &(t).clip, 0, 1e9, NULL, "C", "1.0", "gradient-norm clip", NULL},                          \
    {"--schedule", CLI_STR, &(seen).sched, 0, 0, NULL, "S", "cosine", "constant | cosine | linear | wsd", NULL},     \
    {"--warmup", CLI_INT, &(t).sched.warmup_steps, 0, 1 << 30, NULL, "N", NULL, "warm-up steps", NULL},             \
    {"--min-lr-ratio", CLI_FLOAT, &(t).sched.min_lr_ratio, 0, 1, NULL, "R", "0.1", "final lr / lr", NULL},           \
    {"--ce-weight", CLI_FLOAT, &(t).ce_weight, 0, 1e6, NULL, "W", "1", "next-token cross-entropy", &(seen).ce},       \
    {"--kd-weight", CLI_FLOAT, &(t).kd_weight, 0, 1e6, NULL, "W", "0",                                               \
     "logit distillation KL(teacher || student); teacher = the input model", NULL},                                  \
    {"--kd-temp", CLI_FLOAT, &(t).kd_tau, 1e-3, 100, NULL, "T", "1", "distillation temperature", NULL},              \
    {"--off-weight", CLI_FLOAT, &(t).off_weight, 0, 1e6, NULL, "W", "0",                                             \
     "1 - cosine(student, teacher) of every block output (TernaryLLM OFF)", &(seen).off},                            \
    {"--val-frac", CLI_DOUBLE, &(t).val_frac, 0, 0.5, NULL, "F", "0.05", "held-out tail of the data", NULL},          \
    {"--val-every", CLI_INT, &(t).val_every, 0, 1 << 30, NULL, "N", "50", "validation every N steps (0: at the end)", \
     NULL},                                                                                                          \
    {"--val-batches", CLI_INT, &(t).val_batches, 1, 1 << 20, NULL, "N", "4", "batches per validation", NULL},         \
    {"--seed|-s", CLI_U64, &(t).seed, 0, 2147483647, NULL, "S", "1", "data shuffle", NULL},                         \
    {"--mode", CLI_ENUM, &(t).mode, 0, 0, "e2e|blockwise", NULL, "e2e",                                             \
     "blockwise: one block at a time (its linears, norms and quantizer) against the FP block\n"                       \
     "output on a pool of --calib-seqs sequences (quantize only)", NULL},                                            \
    {"--calib-seqs", CLI_INT, &(t).calib_seqs, 1, 1 << 20, NULL, "N", "128",                                         \
     "calibration sequences (block-wise pool, GPTQ)", &(seen).calib_seqs},                                           \
    {"--epochs", CLI_INT, &(t).epochs, 0, 1 << 20, NULL, "E", "--steps split over the blocks",                      \
     "block-wise passes over the pool per block", NULL},                                                             \
    {"--block-loss", CLI_ENUM, &(t).block_loss, 0, 0, "mse|cos", NULL, "mse", "block-wise loss (cos: 1 - cosine)",   \
     NULL},                                                                                                          \
    {"--qp-steps", CLI_INT, &(t).qp_steps, 0, 1 << 30, NULL, "N", "0",                                               \
     "after block-wise: E2E-QP, logit KD training only the quantizer's parameters\n"                                  \
     "(--lr-quant) and the norms (--qp-lr)", NULL},                                                                  \
    {"--qp-lr", CLI_FLOAT, &(t).qp_lr, 0, 10, NULL, "LR", "1e-4", "E2E-QP lr of the norms", NULL},                   \
    {"--e2e-steps", CLI_INT, &(t).e2e_steps, 0, 1 << 30, NULL, "N", "0",                                             \
     "or after block-wise: end-to-end training (CE + KD) of everything the method trains", NULL},                    \
    {"--checkpoint", CLI_STR, &(t).checkpoint_path, 0, 0, NULL, "FILE", "OUT.ckpt",                                  \
     "training state, written every --checkpoint-every steps", NULL},                                                \
    {"--checkpoint-every", CLI_INT, &(t).checkpoint_every, 0, 1 << 30, NULL, "N", "100", "0: only at the end", NULL}, \
    {"--resume", CLI_FLAG, &(t).resume, 0, 0, NULL, NULL, NULL, "continue from --checkpoint", NULL},                  \
    {"--keep-checkpoint", CLI_FLAG, &(t).keep_checkpoint, 0, 0, NULL, NULL, NULL,                                    \
     "keep the checkpoint after success (it is removed once the output is written)", NULL},                          \
    {"--log", CLI_STR, &(t).log_path, 0, 0, NULL, "FILE", "OUT.log.jsonl", "JSONL log of every step", NULL},        \
    {"--check-sync", CLI_INT, &(t).sync_check_every, 0, 1 << 30, NULL, "K", "never",                                \
     "under mpirun: compare a checksum of the parameters across ranks every K steps, stop\n"                         \
     "on a mismatch", NULL}

// What the tables cannot check alone: --schedule's name.
static int finish_train_opts(const char *cmd, tern_train_opts *t, const train_seen *seen) {
    if (seen->sched && tern_schedule_parse(&t->sched, seen->sched)) {
        fprintf(stderr, "tern %s: %s\n", cmd, tern_last_error());
        return 2;
    }
    return 0;
}

// A data-parallel run's ranks and time spent exchanging ("" for one process).
static const char *ranks_str(const tern_train_report *r, char *buf, size_t cap) {
    if (r->ranks > 1)
        snprintf(buf, cap, ", %d ranks, %.1f s exchanging %.1f MB", r->ranks, r->comm_seconds, r->comm_bytes / 1e6);
    return buf;
}

static int cmd_train(int argc, char **argv) {
    common_opts o = {0};
    tern_train_opts t;
    tern_train_opts_defaults(&t);
    const char *out = NULL;
    train_seen seen = {0};
    const cli_opt opts[] = {
        OPT_MODEL(o),
        OPT_TOKENIZER(o),
        {"--data|--calib", CLI_STR, &t.data_path, 0, 0, NULL, "TEXT", NULL,
         "training text (plain UTF-8; tokenized once and cached)", NULL},
        {"--out|-o", CLI_STR, &out, 0, 0, NULL, "OUT.gguf", NULL, "the trained model (self-contained GGUF)", NULL},
        TRAIN_OPTS(t, seen, "1e-4"),
        OPT_THREADS(o),
    };
    int rc = parse_opts("train",
                        "usage: tern train --model M --data TEXT --out OUT.gguf [options]\n"
                        "Full-precision fine-tuning with the training engine; writes a self-contained GGUF.\n",
                        opts, N_OPTS(opts), argc, argv, NULL);
    if (rc >= 0) return rc;
    if ((rc = finish_train_opts("train", &t, &seen))) return rc;
    if (!t.data_path) return bad_usage("train", "%s", "--data is required");
    if (!out) return bad_usage("train", "%s", "--out is required");
    char ckpt[1100], log[1100];
    if (!t.checkpoint_path) {
        snprintf(ckpt, sizeof ckpt, "%s.ckpt", out);
        t.checkpoint_path = ckpt;
    }
    if (!t.log_path) {
        snprintf(log, sizeof log, "%s.log.jsonl", out);
        t.log_path = log;
    }
    if (t.mode == TERN_TRAIN_BLOCKWISE)
        return bad_usage("train", "%s",
                         "--mode blockwise reconstructs quantized blocks against the FP model, and train has no "
                         "quantizer: use tern quantize --mode blockwise");
    const char *outs[] = {out, t.checkpoint_path, t.log_path}, *ins[] = {o.model, o.tokenizer, t.data_path};
    if ((rc = clobbers_input("train", outs, 3, ins, 3))) return rc;
    if (t.resume && !tern_file_exists(t.checkpoint_path)) {
        fprintf(stderr, "tern train: --resume: %s does not exist\n", t.checkpoint_path);
        return 1;
    }
    tern_model m;
    tern_tokenizer *tok;
    if ((rc = load_model_and_tokenizer(&o, &m, &tok, "train", LOAD_ANNOUNCE))) return rc;
    static char cache[1024];
    t.cache_dir = tern_cache_dir(cache, sizeof cache);
    tern_train_report rep;
    rc = tern_train_run(&m, tok, &t, NULL, &rep);
    int writer = tern_dist_rank() == 0; // under mpirun, rank 0 writes the output
    if (rc == 0 && writer) rc = tern_gguf_write_model(&m, out);
    if (rc == 0 && writer && !t.keep_checkpoint) remove(t.checkpoint_path); // the output holds the result
    if (rc == 0)
        fprintf(stderr, "trained %d steps, %lld tokens in %.1f s (%.0f tok/s%s); final loss %.4f, val %.4f; peak RSS %.0f MiB; wrote %s\n",
                rep.steps_done, (long long)rep.tokens, rep.seconds, rep.tokens / (rep.seconds + 1e-9),
                ranks_str(&rep, (char[96]){0}, 96), rep.final_loss, rep.final_val_loss, rep.peak_rss_kb / 1024.0, out);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    return rc ? die() : 0;
}

#define EVAL_MAX_TASKS 64

// Evaluates one task (already read); prints its table row unless --json.
static int eval_one(const tern_model *m, const tern_tokenizer *tok, int json, tern_zs_task *task,
                    tern_zs_result *res) {
    int rc = tern_zs_task_tokenize(task, tok);
    if (rc == 0) rc = tern_zs_evaluate(m, task, res);
    if (rc == 0 && res->truncated)
        fprintf(stderr, "tern eval: %s: %d choices longer than the context: only their last tokens were scored\n",
                task->name, res->truncated);
    if (rc == 0 && !json) {
        if (res->lambada) // no acc_norm: its column shows the continuations' perplexity
            printf("%-16s %6d   %.4f ± %.4f   ppl %-11.4f %9.1f %9.2f\n", task->name, res->n, res->acc, res->acc_se,
                   res->ppl, res->seconds, res->items_per_s);
        else
            printf("%-16s %6d   %.4f ± %.4f   %.4f ± %.4f %9.1f %9.2f\n", task->name, res->n, res->acc, res->acc_se,
                   res->acc_norm, res->acc_norm_se, res->seconds, res->items_per_s);
        fflush(stdout);
    }
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    common_opts o = {0};
    tern_zs_opts zo = {0};
    const char *tasks[EVAL_MAX_TASKS];
    int n_tasks = 0;
    const cli_opt opts[] = {
        OPT_MODEL(o),
        OPT_TOKENIZER(o),
        {"--task", CLI_LIST, tasks, 0, EVAL_MAX_TASKS, NULL, "FILE", NULL, "a task file (JSONL); repeat for more",
         &n_tasks},
        {"--limit", CLI_INT, &zo.limit, 0, 1 << 30, NULL, "N", "all", "first N items of each task", NULL},
        {"--skip-bad", CLI_FLAG, &zo.skip_bad, 0, 0, NULL, NULL, NULL,
         "skip lines that are not valid JSON objects (default: error)", NULL},
        {"--fields", CLI_STR, &zo.fields, 0, 0, NULL, "MAP", NULL,
         "field names of other exports, e.g. query=ctx,choices=endings,gold=label; dotted\n"
         "paths (choices=choices.text) and string fields joined by '|' (choices=sol1|sol2);\n"
         "gold may be a string of digits", NULL},
        {"--delimiter", CLI_STR, &zo.delimiter, 0, 0, NULL, "STR", "\" \"",
         "text between context and choice (none when the context ends or the choice starts\n"
         "with whitespace)", NULL},
        OPT_THREADS(o),
        OPT_JSON(o),
    };
    int rc = parse_opts("eval",
                        "usage: tern eval --model M [--tokenizer T] --task FILE [--task FILE ...] [--limit N] [--json]\n"
                        "Zero-shot multiple-choice accuracy as lm-evaluation-harness scores it: acc (argmax of the\n"
                        "continuation's log-likelihood) and acc_norm (log-likelihood per character of the choice),\n"
                        "each with its standard error. Task files are JSONL: {\"query\", \"choices\", \"gold\"} (ARC,\n"
                        "PIQA, BoolQ, HellaSwag) or {\"context_options\", \"continuation\", \"gold\"} (WinoGrande,\n"
                        "partial scoring) or {\"context\", \"continuation\"} (LAMBADA: acc = the continuation is the\n"
                        "greedy one, and its perplexity). A choice longer than the context is scored on its last\n"
                        "tokens (counted).\n",
                        opts, N_OPTS(opts), argc, argv, NULL);
    if (rc >= 0) return rc;
    rc = 0;
    if (n_tasks == 0) return bad_usage("eval", "%s", "--task is required");
    // Every task file is read before the model loads: a bad one fails at once.
    static tern_zs_task task[EVAL_MAX_TASKS];
    int n_read = 0;
    while (n_read < n_tasks && tern_zs_task_read(&task[n_read], tasks[n_read], &zo) == 0) n_read++;
    tern_model m;
    tern_tokenizer *tok = NULL;
    if (n_read < n_tasks) rc = die();
    else rc = load_model_and_tokenizer(&o, &m, &tok, "eval", LOAD_PACKED);
    if (rc) {
        for (int k = 0; k < n_read; k++) tern_zs_task_free(&task[k]);
        return rc;
    }
    if (!o.json)
        printf("%-16s %6s   %-15s   %-15s %9s %9s\n", "task", "n", "acc ± se", "acc_norm ± se", "seconds", "items/s");
    tern_zs_result res[EVAL_MAX_TASKS];
    for (int k = 0; k < n_tasks && rc == 0; k++) rc = eval_one(&m, tok, o.json, &task[k], &res[k]);
    if (rc == 0 && o.json) {
        printf("{\"model\": ");
        tern_json_write_string(stdout, o.model, strlen(o.model));
        printf(", \"tasks\": [");
        for (int k = 0; k < n_tasks; k++) {
            printf("%s{\"task\": ", k ? ", " : "");
            tern_json_write_string(stdout, task[k].name, strlen(task[k].name));
            printf(", \"n\": %d, \"acc\": %.6f, \"acc_se\": %.6f, \"acc_norm\": %.6f, \"acc_norm_se\": %.6f, "
                   "\"seconds\": %.3f, \"items_per_s\": %.4f, \"tokens\": %lld, \"truncated\": %d",
                   res[k].n, res[k].acc, res[k].acc_se, res[k].acc_norm, res[k].acc_norm_se, res[k].seconds,
                   res[k].items_per_s, (long long)res[k].tokens, res[k].truncated);
            if (res[k].lambada) printf(", \"ppl\": %.6f}", res[k].ppl);
            else printf("}");
        }
        printf("]}\n");
    }
    for (int k = 0; k < n_tasks; k++) tern_zs_task_free(&task[k]);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    return rc ? die() : 0;
}

// `tern quantize`: QAT (or PTQ with --steps 0) of the block linears with one
// of the methods in src/quant; writes a fake-quant GGUF with tern.* metadata.
static int cmd_quantize(int argc, char **argv) {
    common_opts o = {0};
    tern_train_opts t;
    tern_train_opts_defaults(&t);
    tern_quant_opts q;
    tern_quant_opts_defaults(&q);
    const char *out = NULL, *method_name = NULL, *save_latent = NULL, *recipe_name = NULL;
    int init_given = 0, recipe = 0, distill = 0, no_lsq = 0, budget_given = 0;
    float budget_min = 0;
    train_seen seen = {0};
    t.lr = 1e-3f; // measured better than 1e-4 for QAT on both models (docs/methods.md, "Learning rate")
    // A recipe's defaults go in first, so that every option given overrides them.
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--recipe")) {
            if (tern_quant_recipe(argv[i + 1], &q, &t, &method_name)) {
                fprintf(stderr, "tern quantize: %s\n", tern_last_error());
                return 2;
            }
            recipe = 1;
        }
    char method_help[256];
    snprintf(method_help, sizeof method_help, "%s", tern_quant_names());
    const cli_opt opts[] = {
        OPT_MODEL(o),
        OPT_TOKENIZER(o),
        {"--calib|--data", CLI_STR, &t.data_path, 0, 0, NULL, "TEXT", NULL,
         "calibration text (plain UTF-8; tokenized once and cached)", NULL},
        {"--out|-o", CLI_STR, &out, 0, 0, NULL, "OUT", NULL,
         "OUT.tern (any name not ending in .gguf): the packed model, as tern export writes it;\n"
         "OUT.gguf: the latent fake-quant FP32 GGUF (tern export packs it; train/quantize continue it)", NULL},
        {"--save-latent", CLI_STR, &save_latent, 0, 0, NULL, "FILE", NULL, "with a packed --out, also keep the latent GGUF",
         NULL},
        {"--method", CLI_STR, &method_name, 0, 0, NULL, "M", NULL, method_help, NULL},
        {"--recipe", CLI_STR, &recipe_name, 0, 0, NULL, "cpu", NULL,
         "GPTQ init, then end-to-end QAT with CE + logit KD at lr 1e-3 (method dlt unless given;\n"
         "docs/methods.md); options given override it", NULL},
        {"--budget", CLI_FLOAT, &budget_min, 0, 1e6, NULL, "MINUTES", NULL,
         "size the training steps to a wall-clock budget for the whole run (step times measured\n"
         "before training)", &budget_given},
        {"--bits", CLI_INT, &q.bits, 2, 8, NULL, "B", "4", "rtn / teq / uniform grid bits", NULL},
        {"--sym", CLI_FLAG, &q.sym, 0, 0, NULL, NULL, NULL, "rtn / teq: symmetric grid", NULL},
        {"--group", CLI_INT, &q.group, -1, 1 << 20, NULL, "G", "128",
         "input columns per group, -1 = whole row; a narrower row is one group", NULL},
        {"--lambda", CLI_FLOAT, &q.lambda, 0, 1, NULL, "L", "1e-3", "tequila dead-zone bias weight", NULL},
        {"--inner", CLI_STR, &q.inner, 0, 0, NULL, "Q", "rtn", "teq's quantizer: rtn | absmean | twn", NULL},
        {"--lsq-scale", CLI_FLAG, &q.lsq_scale, 0, 0, NULL, NULL, NULL,
         "dlt: scale the alpha/gamma gradients by 1/sqrt(group) (LSQ; docs/methods.md)", NULL},
        {"--no-lsq-scale", CLI_FLAG, &no_lsq, 0, 0, NULL, NULL, NULL, "the default", NULL},
        {"--dlt-init", CLI_ENUM, &q.dlt_absmean_init, 0, 0, "twn|absmean", NULL, "twn",
         "dlt init: gamma = group mean and TWN alpha of the centred group | alpha = mean|w|,\n"
         "gamma = 0 (ablation)", NULL},
        {"--init", CLI_ENUM, &q.init_gptq, 0, 0, "rtn|gptq", NULL, "gptq where it applies",
         "gptq (absmean, twn, tequila, dlt, uniform): GPTQ on --calib-seqs (128; fewer when the\n"
         "text is short and none is given) sequences of --seq tokens, layer by layer with error\n"
         "feedback | rtn: the method's own rule on the FP weights", &init_given},
        {"--damp", CLI_FLOAT, &q.damp, 1e-6, 1, NULL, "D", "0.01", "GPTQ damping, times the mean of diag(H)", NULL},
        {"--keep", CLI_STR, &q.keep, 0, 0, NULL, "P[:B],...", NULL,
         "linears whose name matches a glob (blk.0.*, blk.*.ffn_down.weight) stay at B bits (4)\n"
         "on a learnable uniform grid (mixed precision)", NULL},
        {"--target-bits", CLI_FLOAT, &q.target_bits, 1.6, 8, NULL, "B", NULL,
         "hold the linears whose ternarization costs the most (leave-one-out KL) at 4 bits while\n"
         "the average storage (ternary as tern-t1.6) stays <= B bits per weight", NULL},
        {"--distill", CLI_ENUM, &distill, 0, 0, "none|kd|off", NULL, "none",
         "kd: KL to the FP model (CE weight 0 unless given) | off: cosine of block outputs\n"
         "(--off-weight, default 1)", NULL},
        {"--diag-window", CLI_INT, &q.diag_window, 1, 65535, NULL, "K", "20", "dead-zone diagnostics window", NULL},
        {"--diag-every", CLI_INT, &q.diag_every, 0, 1 << 30, NULL, "N", "50", "per-layer dead-zone arrays every N steps",
         NULL},
        TRAIN_OPTS(t, seen, "1e-3"),
        OPT_THREADS(o),
    };
    int rc = parse_opts("quantize",
                        "usage: tern quantize --model M --method METHOD --calib TEXT --out OUT.tern|OUT.gguf [options]\n"
                        "       tern quantize --model M --recipe cpu --calib TEXT --out OUT.tern [--budget MINUTES]\n"
                        "Quantizes every decoder-block linear (q k v o gate up down) by post-training quantization\n"
                        "(--steps 0) or quantization-aware training. --steps defaults to 100 (0 for rtn).\n",
                        opts, N_OPTS(opts), argc, argv, NULL);
    if (rc >= 0) return rc;
    if ((rc = finish_train_opts("quantize", &t, &seen))) return rc;
    if (no_lsq) q.lsq_scale = 0;
    if (budget_given && !(budget_min > 0)) return bad_usage("quantize", "%s", "--budget must be more than 0 minutes");
    t.budget_s = 60.0 * budget_min;
    int steps_given = seen.steps, ce_given = seen.ce, off_given = seen.off, seqs_given = seen.calib_seqs;
    const tern_quant_method *method = tern_quant_find(method_name);
    if (!method_name) return bad_usage("quantize", "%s", "--method is required");
    if (!method) {
        fprintf(stderr, "tern quantize: unknown method '%s' (known: %s)\n", method_name, tern_quant_names());
        return 2;
    }
    if (tern_quant_apply_defaults(method, &q, &t, init_given, recipe, seqs_given, steps_given))
        return bad_usage("quantize", "%s", tern_last_error());
    if (q.group == 0) return bad_usage("quantize", "%s", "--group must be -1 or at least 1");
    if (!t.data_path) return bad_usage("quantize", "%s", "--calib is required");
    if (!out) return bad_usage("quantize", "%s", "--out is required");
    // --out X.gguf: the fake-quant ("latent") GGUF that train/quantize can
    // continue from; any other name: the packed model (what tern export writes).
    int packed_out = !tern_quantize_out_is_latent(out);
    if (save_latent && !packed_out)
        return bad_usage("quantize", "%s", "--save-latent goes with a packed --out (an --out ending in .gguf is the "
                                           "latent model itself)");
    tern_quantize_files files = {o.model, o.tokenizer, out, save_latent};
    char latent_tmp[1100];
    const char *latent = tern_quantize_latent_path(&files, latent_tmp, sizeof latent_tmp);
    if (distill == 1) { // kd
        t.kd_weight = 1.0f;
        if (!ce_given) t.ce_weight = 0.0f;
    } else if (distill == 2) { // off
        if (!off_given) t.off_weight = 1.0f;
    }
    if (!method->trains && t.steps > 0)
        return bad_usage("quantize", "%s", "this method does not train: use --steps 0");
    if (q.inner && strcmp(q.inner, "rtn") && strcmp(q.inner, "absmean") && strcmp(q.inner, "twn"))
        return bad_usage("quantize", "--inner must be rtn, absmean or twn, got '%s'", q.inner);
    char ckpt[1100], log[1100];
    if (!t.checkpoint_path) snprintf(ckpt, sizeof ckpt, "%s.ckpt", out), t.checkpoint_path = ckpt;
    if (!t.log_path) snprintf(log, sizeof log, "%s.log.jsonl", out), t.log_path = log;
    const char *outs[] = {out, t.checkpoint_path, t.log_path, latent}, *ins[] = {o.model, o.tokenizer, t.data_path};
    if ((rc = clobbers_input("quantize", outs, 4, ins, 3))) return rc;
    if (t.resume && !tern_file_exists(t.checkpoint_path)) {
        fprintf(stderr, "tern quantize: --resume: %s does not exist\n", t.checkpoint_path);
        return 1;
    }
    if ((rc = model_given(&o, "quantize", LOAD_ANNOUNCE))) return rc; // tern_quantize_file loads it
    tern_quantize_result res;
    rc = tern_quantize_file(&files, method, &q, &t, &res);
    tern_train_report rep = res.train;
    const double *frac = res.code_frac;
    tern_export_info info = res.info;
    if (rc == 0) {
        fprintf(stderr, "quantized with %s: %d steps, %lld tokens in %.1f s%s; final loss %.4f, val %.4f", method->name,
                rep.steps_done, (long long)rep.tokens, rep.seconds, ranks_str(&rep, (char[96]){0}, 96), rep.final_loss,
                rep.final_val_loss);
        if (method->ternary) fprintf(stderr, "; codes -1/0/+1: %.3f/%.3f/%.3f", frac[0], frac[1], frac[2]);
        if (packed_out)
            fprintf(stderr, "; wrote %s (%s, %s)%s%s\n", out, info.format, size_str(info.bytes, (char[32]){0}, 32),
                    save_latent ? " and the latent model " : "", save_latent ? save_latent : "");
        else fprintf(stderr, "; wrote %s (latent fake-quant GGUF; tern export packs it)\n", out);
    }
    return rc ? die() : 0;
}

static int cmd_export(int argc, char **argv) {
    common_opts o = {0};
    const char *out = NULL, *format = "tern";
    tern_export_opts e = {0};
    tern_export_tq_opts q = {.check.max_change = TERN_EXPORT_TQ_MAX_PPL_CHANGE};
    float max_change = (float)TERN_EXPORT_TQ_MAX_PPL_CHANGE;
    int tq_seen[7] = {0}, format_k = 0; // tq_seen: the options that go with --format gguf-*
    static const char *format_names[] = {"tern", "gguf-tq2", "gguf-tq1", "gguf-q2_0"};
    const cli_opt opts[] = {
        OPT_MODEL(o),
        OPT_TOKENIZER(o),
        {"--out|-o", CLI_STR, &out, 0, 0, NULL, "FILE", NULL, "the file to write (atomically)", NULL},
        {"--format", CLI_ENUM, &format_k, 0, 0, "tern|gguf-tq2|gguf-tq1|gguf-q2_0", NULL, "tern",
         "tern: packed .tern; gguf-tq2 / gguf-tq1 / gguf-q2_0: a llama.cpp GGUF", NULL},
        {"--pack", CLI_STR, &e.pack, 0, 0, NULL, "2|1.6", "2", "ternary storage of a .tern: tern-t2 or tern-t1.6", NULL},
        {"--group", CLI_INT, &e.group, 1, 1 << 16, NULL, "G", "the input's, else 128", "absmean PTQ group of an FP input",
         NULL},
        {"--fallback", CLI_STR, &q.fallback, 0, 0, NULL, "none|q4_0", "none",
         "gguf-tq*: linears whose rows are not a multiple of 256 as Q4_0 (same codes)", &tq_seen[0]},
        {"--check-text", CLI_STR, &q.check.text, 0, 0, NULL, "FILE", NULL,
         "measure the perplexity of the source and of the written file", &tq_seen[1]},
        {"--check-chunks", CLI_INT, &q.check.chunks, 1, 1 << 20, NULL, "N", "8", "chunks of the check", &tq_seen[2]},
        {"--check-ctx", CLI_INT, &q.check.ctx, 4, 1 << 20, NULL, "N", "512", "tokens per chunk of the check",
         &tq_seen[3]},
        {"--max-ppl-change", CLI_FLOAT, &max_change, 0, 1e9, NULL, "PCT", "10",
         "fail (write nothing) when the perplexity rises by more", &tq_seen[4]},
        {"--force", CLI_FLAG, &q.check.force, 0, 0, NULL, NULL, NULL, "write even when it rises by more", &tq_seen[5]},
        {"--allow-lossy", CLI_FLAG, &q.allow_lossy, 0, 0, NULL, NULL, NULL,
         "gguf-*: write even when DLT shifts are dropped (refused otherwise)", &tq_seen[6]},
        OPT_THREADS(o),
    };
    int rc = parse_opts("export",
                        "usage: tern export --model M --out MODEL.tern [--pack 2|1.6] [--group G] [--check-text FILE ...]\n"
                        "       tern export --model M --format gguf-tq2|gguf-tq1|gguf-q2_0 --out MODEL.gguf [--group G]\n"
                        "                   [--fallback none|q4_0] [--check-text FILE [--check-chunks 8]\n"
                        "                   [--check-ctx 512]] [--max-ppl-change 10] [--force] [--allow-lossy]\n"
                        "Writes a packed .tern file (a GGUF container, docs/format.md): decoder linears ternary\n"
                        "(2 bits or 1.6 bits per weight, fp16 scale per group of G, DLT shifts), biases and norms\n"
                        "F32, embedding and LM head q8. From a `tern quantize` output the ternary codes are\n"
                        "recovered exactly (G = its group); from a llama.cpp ternary GGUF (TQ1_0, TQ2_0, Q2_0,\n"
                        "Q1_0) or a .tern they are kept exactly too (G = the smallest block unless --group; a\n"
                        "lossy conversion prints its weight error); from an FP model they are absmean per group\n"
                        "(PTQ, --group default 128). A 2/3/4-bit rtn or teq output is stored as q2g/q3g/q4g instead\n"
                        "(its grid s*(c - z) recovered per group: fp16 scale, u8 zero point; TEQ's scales are\n"
                        "already folded into the norms). Every command runs the .tern file with the packed kernels.\n"
                        "\n"
                        "--format gguf-tq2 / gguf-tq1 / gguf-q2_0 writes a standard llama GGUF for llama.cpp\n"
                        "instead: decoder linears TQ2_0 / TQ1_0 (blocks of 256) or Q2_0 (blocks of 64, ternary\n"
                        "codes only): the same ternary codes, one fp16 scale per block fitted by least squares\n"
                        "(biases kept; dropping DLT shifts is refused unless --allow-lossy), embedding and output\n"
                        "Q8_0, norms F32. Every linear row must be a whole number of blocks, or --fallback q4_0\n"
                        "(an FP model is quantized per block of 64 for gguf-q2_0, 128 otherwise). This changes the\n"
                        "model: with --check-text the export fails, writing nothing, when the perplexity rises by\n"
                        "more than --max-ppl-change percent unless --force. Without --check-text nothing is\n"
                        "measured (a note says so). --check-text works the same for a .tern export (a lossy\n"
                        "re-blocking of exact codes).\n",
                        opts, N_OPTS(opts), argc, argv, NULL);
    if (rc >= 0) return rc;
    rc = 0;
    format = format_names[format_k];
    int tq_only = 0;
    tq_only = tq_seen[0] || tq_seen[6]; // the check options go with every format
    if (!out) return bad_usage("export", "%s", "--out is required");
    static const char *packs[] = {"2", "t2", "tern-t2", "1.6", "t1.6", "tern-t1.6"};
    int pack_ok = !e.pack;
    for (size_t k = 0; k < sizeof packs / sizeof packs[0]; k++) pack_ok |= e.pack && !strcmp(e.pack, packs[k]);
    if (!pack_ok) return bad_usage("export", "unknown --pack '%s' (2 or 1.6)", e.pack);
    int tq = !strncmp(format, "gguf-", 5);
    if (!tq && tq_only)
        return bad_usage("export", "%s", "--fallback and --allow-lossy go with --format gguf-tq2/gguf-tq1/gguf-q2_0");
    if (tq && e.pack) return bad_usage("export", "%s", "--pack is for --format tern");
    if (!q.check.text && (q.check.chunks || q.check.ctx))
        return bad_usage("export", "%s", "--check-chunks and --check-ctx need --check-text");
    const char *ins[] = {o.model, o.tokenizer, q.check.text};
    if ((rc = clobbers_input("export", &out, 1, ins, 3))) return rc;
    tern_model m;
    if ((rc = load_model(&o, &m, "export", 0))) return rc;
    if (tq) {
        q.format = format;
        q.group = e.group;
        q.check.max_change = max_change;
        tern_export_tq_info ti;
        rc = tern_export_gguf_tq(&m, o.model, &q, out, &ti);
        if (rc == 0) {
            const char *ty = !strcmp(format, "gguf-tq1") ? "TQ1_0" : !strcmp(format, "gguf-q2_0") ? "Q2_0" : "TQ2_0";
            fprintf(stderr, "tern export: %s: codes %s%s%s (G=%d)%s; %d linears as %s, %d as Q4_0 (fallback); "
                            "%d biases kept; weight rel. RMSE %.4f (%s), %.4f (Q4_0)\n",
                    format, ti.source, ti.method[0] ? ", tern.method " : "", ti.method, ti.group,
                    ti.dropped_shift ? ", DLT shifts dropped" : "", ti.linears - ti.fallback_linears, ty,
                    ti.fallback_linears, ti.biases, ti.weight_rel_rmse, ty, ti.fallback_rel_rmse);
            if (ti.lossy_linears)
                fprintf(stderr, "tern export: warning: %d linears held codes that are not ternary (Q2_0 code 2); "
                                "re-ternarized by absmean (lossy, error above)\n", ti.lossy_linears);
            if (ti.check.checked)
                fprintf(stderr, "tern export: ppl on %s (%d chunks of %d): source %.4f, %s %.4f (%+.2f%%)\n",
                        q.check.text, ti.check.chunks, ti.check.ctx, ti.check.ppl_source, format, ti.check.ppl_export, ti.check.change_pct);
            else
                fprintf(stderr, "tern export: note: no --check-text, so the perplexity change of re-blocking was "
                                "not measured\n");
            if (ti.check.forced)
                fprintf(stderr, "tern export: warning: perplexity rose by %+.2f%%, more than --max-ppl-change %g%%; "
                                "written anyway (--force)\n", ti.check.change_pct, (double)max_change);
            fprintf(stderr, "tern export: wrote %s (%s)\n", out, size_str(ti.bytes, (char[32]){0}, 32));
        }
        tern_model_free(&m);
        return rc ? die() : 0;
    }
    tern_export_info info;
    e.check = q.check;
    e.check.max_change = max_change;
    rc = tern_export_tern(&m, o.model, &e, out, &info);
    if (rc == 0 && (info.exact_linears || info.lossy_linears))
        fprintf(stderr, "tern export: %d linears kept their codes and scales exactly%s", info.exact_linears,
                info.lossy_linears ? "" : "\n");
    if (rc == 0 && info.lossy_linears)
        fprintf(stderr, "; %d loaded with exact codes re-blocked to G=%d (codes kept, least-squares scales; lossy), "
                        "weight rel. RMSE %.4f\n", info.lossy_linears, info.group, info.lossy_rel_rmse);
    if (rc == 0 && info.check.checked)
        fprintf(stderr, "tern export: ppl on %s (%d chunks of %d): source %.4f, .tern %.4f (%+.2f%%)%s\n", e.check.text,
                info.check.chunks, info.check.ctx, info.check.ppl_source, info.check.ppl_export, info.check.change_pct,
                info.check.forced ? "; more than --max-ppl-change, written anyway (--force)" : "");
    if (rc == 0)
        fprintf(stderr, "tern export: %s, G=%d%s, %s: wrote %s (%s)\n",
                info.method[0] ? info.method : info.exact_linears ? "exact codes" : "absmean PTQ", info.group,
                info.has_shift ? " with shifts" : "", info.format, out, size_str(info.bytes, (char[32]){0}, 32));
    tern_model_free(&m);
    return rc ? die() : 0;
}

// `tern report`: plots JSONL training logs (loss, val loss, dead-zone stats,
// block errors), or a table of quantized models as PPL against bits per weight.
static int report_points(const char *rows_path, const char *title, const char *out, int json) {
    tern_report_row *rows;
    int n, rc = tern_report_rows_load(rows_path, &rows, &n);
    if (rc == 0 && out) rc = tern_report_rows_save(out, rows, n, title);
    if (rc == 0 && out) fprintf(stderr, "tern report: wrote %s (%d models)\n", out, n);
    if (rc == 0 && json) {
        fputs("{\"rows\": [", stdout);
        for (int i = 0; i < n; i++) {
            fputs(i ? ", {\"label\": " : "{\"label\": ", stdout);
            tern_json_write_string(stdout, rows[i].label, strlen(rows[i].label));
            fprintf(stdout, ", \"bits\": %.6g, \"ppl\": %.6g, \"se\": ", rows[i].bits, rows[i].ppl);
            tern_json_write_number(stdout, rows[i].se);
            fputc('}', stdout);
        }
        fputs("]}\n", stdout);
    }
    if (rc == 0) free(rows);
    return rc ? die() : 0;
}

static int cmd_report(int argc, char **argv) {
    const char *out = NULL, *paths[64], *labels[64], *rows = NULL, *title = NULL;
    int n = 0, json = 0, rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            printf("usage: tern report LOG [--label NAME] [LOG [--label NAME] ...] [--out report.svg|.html] [--json]\n"
                   "       tern report --points TABLE [--title TEXT] [--out plot.svg] [--json]\n"
                   "Draws the loss, validation loss and dead-zone statistics (dz_frac, dz_crossed,\n"
                   "dz_trapped) of JSONL training logs over steps, one series per log, and for\n"
                   "block-wise logs each block's output error after init and after reconstruction,\n"
                   "as a self-contained SVG (or an HTML page embedding it when OUT ends in .html).\n"
                   "--label names the preceding log in the legend (default: its file name).\n"
                   "--json prints per log: records, steps, final loss and val loss, last dz stats,\n"
                   "block errors.\n"
                   "--points TABLE plots models as perplexity (log scale) against bits per weight;\n"
                   "TABLE has one LABEL<TAB>BITS<TAB>PPL[<TAB>SE] line per model, '#' comments.\n");
            return 0;
        }
        if (!strcmp(a, "--out") || !strcmp(a, "-o")) rc = need_value(argc, argv, &i, "report", &out);
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--points")) rc = need_value(argc, argv, &i, "report", &rows);
        else if (!strcmp(a, "--title")) rc = need_value(argc, argv, &i, "report", &title);
        else if (!strcmp(a, "--label")) {
            if (n == 0) return bad_usage("report", "%s must follow a log file", a);
            rc = need_value(argc, argv, &i, "report", &labels[n - 1]);
        } else if (a[0] == '-' && a[1]) return bad_usage("report", "unknown option %s", a);
        else if (n == 64) return bad_usage("report", "%s", "at most 64 logs");
        else paths[n] = a, labels[n++] = NULL;
    }
    if (rc) return rc;
    if (!out && !json) return bad_usage("report", "%s", "give --out FILE and/or --json");
    if (rows && n) return bad_usage("report", "%s", "--points takes no training logs");
    if (title && !rows) return bad_usage("report", "%s", "--title goes with --points");
    if (rows && (rc = clobbers_input("report", &out, 1, &rows, 1))) return rc;
    if (rc == 0 && (rc = clobbers_input("report", &out, 1, paths, n))) return rc;
    if (rows) return report_points(rows, title, out, json);
    if (n == 0) return bad_usage("report", "%s", "no log given");
    tern_report_log logs[64];
    int loaded = 0;
    while (loaded < n && tern_report_load(&logs[loaded], paths[loaded], labels[loaded]) == 0) loaded++;
    rc = loaded < n ? -1 : 0;
    if (rc == 0 && out) rc = tern_report_save(out, logs, n);
    if (rc == 0 && out) fprintf(stderr, "tern report: wrote %s (%d logs)\n", out, n);
    if (rc == 0 && json) tern_report_write_json(stdout, logs, n);
    for (int k = 0; k < loaded; k++) tern_report_log_free(&logs[k]);
    return rc ? die() : 0;
}

// OpenMP's waiting policy. Spinning through whole time slices (libgomp's
// default spins ~300,000 times, libomp's 200 ms) made generation 10-15x
// slower on a machine busy with other work; sleeping at once (passive) made
// it 4x slower on an idle one. A short spin is the best compromise measured
// (docs/PERFORMANCE.md, "Waiting threads"). The policy is named "active" with
// the spin count given: libgomp then spins that long also when it manages
// more threads than there are CPUs (a server's connection threads each start
// a team), where with no policy named it would cut the spins to 100 (the
// server decoded 12-25% slower). The runtimes read these settings when they
// load, before main, so tern runs itself again once with them set. A user's
// own OMP_WAIT_POLICY / GOMP_SPINCOUNT / KMP_BLOCKTIME is kept.
static void bounded_spin_wait(char **argv) {
#ifdef __linux__
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("KMP_BLOCKTIME")) return;
    setenv("OMP_WAIT_POLICY", "active", 1);
    setenv("GOMP_SPINCOUNT", TERN_SPINCOUNT, 1);
    setenv("KMP_BLOCKTIME", "1", 1); // ms (clang's OpenMP)
    execv("/proc/self/exe", argv);
    // Could not run again: go on with the runtime's default.
#else
    (void)argv;
#endif
}

int main(int argc, char **argv) {
    bounded_spin_wait(argv);

    if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))) {
        printf("tern %s\n", tern_version());
        return 0;
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        int parallel; // data-parallel under mpirun (docs/SCALING.md)
    } commands[] = {
        {"info", cmd_info, 0},
        {"generate", cmd_generate, 0},
        {"serve", cmd_serve, 0},
        {"chat", cmd_chat, 0},
        {"ppl", cmd_ppl, 0},
        {"bench", cmd_bench, 0},
        {"train", cmd_train, 1},
        {"quantize", cmd_quantize, 1},
        {"eval", cmd_eval, 0},
        {"report", cmd_report, 0},
        {"export", cmd_export, 0},
    };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            if (commands[i].parallel && tern_dist_init(&argc, &argv)) return die();
            // Every rank leaves through tern_dist_finish: together, or by
            // aborting the job when a rank failed alone (no rank hangs).
            int rc = tern_dist_finish(commands[i].fn(argc - 1, argv + 1));
            // Output that did not reach stdout (a full disk, a closed pipe) is a failure.
            if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0) {
                fprintf(stderr, "tern %s: error writing to standard output: %s\n", argv[1], strerror(errno));
                return rc ? rc : 1;
            }
            return rc;
        }
    fprintf(stderr, "tern: unknown command '%s'\n%s", argv[1], usage_text);
    return 2;
}

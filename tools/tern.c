// tern: command-line front end. Subcommands only parse arguments and call libtern.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <time.h>

#include "core/error.h"
#include "core/file.h"
#include "core/jsonw.h"
#include "core/progress.h"
#include "core/threads.h"
#include "eval/ppl.h"
#include "infer/bench.h"
#include "infer/generate.h"
#include "io/gguf_write.h"
#include "io/info.h"
#include "io/model.h"
#include "nn/matmul.h"
#include "tok/tokenizer.h"
#include "train/trainer.h"

static const char *usage_text =
    "usage: tern COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  info      --model M [--json]                        describe a model\n"
    "  generate  --model M --prompt TEXT [--n-predict N]    generate text\n"
    "  ppl       --model M --file TEXT [--ctx 512]          perplexity\n"
    "  bench     --model M [--threads N] [--json]           throughput (pp512, tg128)\n"
    "  train     --model M --data TEXT --out OUT.gguf       full-precision fine-tuning\n"
    "\n"
    "Models: a Hugging Face directory, a GGUF file, or a llama2.c checkpoint\n"
    "(llama2.c needs --tokenizer tokenizer.bin). Every command takes --model,\n"
    "--tokenizer (overrides the embedded tokenizer) and --threads N.\n"
    "Run `tern COMMAND --help` for details.\n";

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

// Option values: each returns 0 or prints a usage error (and returns 2).
static int need_value(int argc, char **argv, int *i, const char *cmd, const char **out) {
    if (*i + 1 >= argc) return bad_usage(cmd, "%s needs a value", argv[*i]);
    *out = argv[++*i];
    return 0;
}

static int int_value(int argc, char **argv, int *i, const char *cmd, int lo, int hi, int *out) {
    const char *v;
    if (need_value(argc, argv, i, cmd, &v)) return 2;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || end == v || x < lo || x > hi) {
        fprintf(stderr, "tern %s: %s must be an integer in [%d, %d], got '%s'\n", cmd, argv[*i - 1], lo, hi, v);
        return 2;
    }
    *out = (int)x;
    return 0;
}

static int float_value(int argc, char **argv, int *i, const char *cmd, double lo, double hi, float *out) {
    const char *v;
    if (need_value(argc, argv, i, cmd, &v)) return 2;
    char *end;
    double x = strtod(v, &end);
    if (*end || end == v || !(x >= lo && x <= hi)) {
        fprintf(stderr, "tern %s: %s must be a number in [%g, %g], got '%s'\n", cmd, argv[*i - 1], lo, hi, v);
        return 2;
    }
    *out = (float)x;
    return 0;
}

static int is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

static int load_model_and_tokenizer(const common_opts *o, tern_model *m, tern_tokenizer **tok, const char *cmd) {
    int rc = load_model(o, m, cmd);
    if (rc) return rc;
    if (tern_tokenizer_init(tok, &m->vocab)) {
        tern_model_free(m);
        return die();
    }
    return 0;
}

static int cmd_generate(int argc, char **argv) {
    common_opts o = {0};
    const char *prompt = NULL;
    tern_gen_opts g = {.n_predict = 128, .temp = 0.8f, .top_p = 0.95f, .seed = (uint64_t)time(NULL), .ctx = 0};
    int seed = -1, rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            printf("usage: tern generate --model M [--tokenizer T] --prompt TEXT [--n-predict N] [--temp T]\n"
                   "                     [--top-p P] [--seed S] [--ctx N] [--threads N]\n"
                   "Writes only the generated text to stdout (timings go to stderr); stops at end of text.\n"
                   "Defaults: --n-predict 128 --temp 0.8 --top-p 0.95, random seed; --temp 0 is greedy.\n");
            return 0;
        }
        int r = parse_common(&o, argc, argv, &i);
        if (r < 0) return bad_usage("generate", "%s needs a value", a);
        if (r > 0) continue;
        if (!strcmp(a, "--prompt") || !strcmp(a, "-p")) rc = need_value(argc, argv, &i, "generate", &prompt);
        else if (!strcmp(a, "--n-predict") || !strcmp(a, "-n")) rc = int_value(argc, argv, &i, "generate", 0, 1 << 24, &g.n_predict);
        else if (!strcmp(a, "--temp")) rc = float_value(argc, argv, &i, "generate", 0, 100, &g.temp);
        else if (!strcmp(a, "--top-p")) rc = float_value(argc, argv, &i, "generate", 1e-6, 1, &g.top_p);
        else if (!strcmp(a, "--seed")) rc = int_value(argc, argv, &i, "generate", 0, 2147483647, &seed);
        else if (!strcmp(a, "--ctx")) rc = int_value(argc, argv, &i, "generate", 1, 1 << 20, &g.ctx);
        else return bad_usage("generate", "unknown option %s", a);
    }
    if (rc) return rc;
    if (!prompt) return bad_usage("generate", "%s", "--prompt is required (use --prompt \\\"\\\" to start from BOS)");
    if (seed >= 0) g.seed = (uint64_t)seed;
    tern_model m;
    tern_tokenizer *tok;
    if ((rc = load_model_and_tokenizer(&o, &m, &tok, "generate"))) return rc;
    tern_gen_stats st;
    rc = tern_generate(&m, tok, prompt, &g, stdout, &st);
    printf("\n");
    fflush(stdout); // the timing line on stderr must follow the text, also through pipes
    if (rc == 0)
        fprintf(stderr, "prompt: %d tokens in %.2f s (%.1f tok/s); generated: %d tokens in %.2f s (%.1f tok/s)\n",
                st.prompt_tokens, st.prompt_sec, st.prompt_tokens / (st.prompt_sec + 1e-9), st.generated,
                st.gen_sec, st.generated / (st.gen_sec + 1e-9));
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    return rc ? die() : 0;
}

static int cmd_ppl(int argc, char **argv) {
    common_opts o = {0};
    const char *file = NULL;
    int ctx = 512, chunks = 0, rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            printf("usage: tern ppl --model M [--tokenizer T] --file TEXT [--ctx 512] [--chunks K] [--json]\n"
                   "Perplexity as llama.cpp's llama-perplexity computes it: non-overlapping chunks of --ctx\n"
                   "tokens, BOS at each chunk start when the vocabulary adds BOS, the second half of each\n"
                   "chunk scored. --chunks limits the number of chunks (default: all).\n");
            return 0;
        }
        int r = parse_common(&o, argc, argv, &i);
        if (r < 0) return bad_usage("ppl", "%s needs a value", a);
        if (r > 0) continue;
        if (!strcmp(a, "--file") || !strcmp(a, "-f")) rc = need_value(argc, argv, &i, "ppl", &file);
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) rc = int_value(argc, argv, &i, "ppl", 4, 1 << 20, &ctx);
        else if (!strcmp(a, "--chunks")) rc = int_value(argc, argv, &i, "ppl", 0, 1 << 30, &chunks);
        else return bad_usage("ppl", "unknown option %s", a);
    }
    if (rc) return rc;
    if (!file) return bad_usage("ppl", "%s", "--file is required");
    char *text;
    size_t len;
    if (tern_read_file(file, &text, &len)) return die();
    tern_model m;
    tern_tokenizer *tok;
    if ((rc = load_model_and_tokenizer(&o, &m, &tok, "ppl"))) {
        free(text);
        return rc;
    }
    if (ctx > m.cfg.max_seq)
        fprintf(stderr, "tern ppl: warning: --ctx %d exceeds the model's training context %d\n", ctx, m.cfg.max_seq);
    tern_ppl_result r;
    rc = tern_perplexity_text(&m, tok, text, len, ctx, chunks, &r);
    if (rc == 0) {
        if (o.json)
            printf("{\"ppl\": %.6f, \"ppl_se\": %.6f, \"nll\": %.6f, \"tokens\": %lld, \"chunks\": %d, \"ctx\": %d, "
                   "\"seconds\": %.3f}\n",
                   r.ppl, r.ppl_se, r.nll, (long long)r.tokens, r.chunks, r.ctx, r.seconds);
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

static int64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
}

static int cmd_bench(int argc, char **argv) {
    common_opts o = {0};
    tern_bench_opts b = {.n_prompt = 512, .n_gen = 128, .reps = 3};
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            printf("usage: tern bench --model M [--threads N] [--reps 3] [--n-prompt 512] [--n-gen 128] [--json]\n"
                   "Prompt processing (ppN) and generation (tgN) tokens/s, mean +/- sd over repetitions after a\n"
                   "warm-up, bytes streamed per token, and the fraction of the measured read bandwidth reached.\n");
            return 0;
        }
        int r = parse_common(&o, argc, argv, &i);
        if (r < 0) return bad_usage("bench", "%s needs a value", a);
        if (r > 0) continue;
        if (!strcmp(a, "--reps") || !strcmp(a, "-r")) rc = int_value(argc, argv, &i, "bench", 1, 1000, &b.reps);
        else if (!strcmp(a, "--n-prompt")) rc = int_value(argc, argv, &i, "bench", 1, 1 << 16, &b.n_prompt);
        else if (!strcmp(a, "--n-gen")) rc = int_value(argc, argv, &i, "bench", 1, 1 << 16, &b.n_gen);
        else return bad_usage("bench", "unknown option %s", a);
    }
    if (rc) return rc;
    tern_model m;
    if ((rc = load_model(&o, &m, "bench"))) return rc;
    double bw = tern_bench_read_bandwidth();
    tern_bench_result res[2];
    // Models are benchmarked in the FP32 form they are held in after loading.
    int64_t f32_bytes = tern_model_param_count(&m) * 4;
    rc = tern_bench_run(&m, "f32", f32_bytes, &b, res);
    if (rc == 0) {
        if (o.json) {
            printf("{\"model\": ");
            tern_json_write_string(stdout, o.model, strlen(o.model));
            printf(", \"source_bytes\": %lld, \"bandwidth_gbs\": %.3f, \"threads\": %d, \"gemm\": \"%s\", \"results\": [",
                   (long long)file_size(o.model), bw, tern_get_threads(), tern_gemm_backend());
            for (int k = 0; k < 2; k++)
                printf("%s{\"format\": \"%s\", \"test\": \"%s\", \"tokens_per_s\": %.4f, \"sd\": %.4f, "
                       "\"bytes_per_token\": %.0f, \"file_bytes\": %lld, \"gbs\": %.3f}",
                       k ? ", " : "", res[k].format, res[k].test, res[k].tokens_per_s, res[k].sd,
                       res[k].bytes_per_token, (long long)res[k].file_bytes,
                       res[k].tokens_per_s * res[k].bytes_per_token / 1e9);
            printf("]}\n");
        } else {
            printf("model %s, %d threads, GEMM: %s, read bandwidth %.2f GB/s\n", o.model, tern_get_threads(),
                   tern_gemm_backend(), bw);
            printf("%-8s %-7s %14s %12s %10s %10s\n", "format", "test", "tokens/s", "MB/token", "GB/s", "% of bw");
            for (int k = 0; k < 2; k++) {
                double gbs = res[k].tokens_per_s * res[k].bytes_per_token / 1e9;
                printf("%-8s %-7s %8.2f ± %-5.2f %10.2f %10.2f %9.1f%%\n", res[k].format, res[k].test,
                       res[k].tokens_per_s, res[k].sd, res[k].bytes_per_token / 1e6, gbs, 100 * gbs / bw);
            }
        }
    }
    tern_model_free(&m);
    return rc ? die() : 0;
}

// Training options shared by `tern train` and (later) `tern quantize`.
// Returns 1 when argv[*i] was a training option, 0 if not, 2 on a bad value.
static int parse_train_opt(tern_train_opts *t, int argc, char **argv, int *i, const char *cmd) {
    const char *a = argv[*i];
    int rc = -1;
    if (!strcmp(a, "--data") || !strcmp(a, "--calib")) rc = need_value(argc, argv, i, cmd, &t->data_path);
    else if (!strcmp(a, "--steps")) rc = int_value(argc, argv, i, cmd, 0, 1 << 30, &t->steps);
    else if (!strcmp(a, "--batch")) rc = int_value(argc, argv, i, cmd, 1, 4096, &t->batch);
    else if (!strcmp(a, "--seq")) rc = int_value(argc, argv, i, cmd, 2, 1 << 16, &t->seq_len);
    else if (!strcmp(a, "--grad-accum")) rc = int_value(argc, argv, i, cmd, 1, 4096, &t->grad_accum);
    else if (!strcmp(a, "--lr")) rc = float_value(argc, argv, i, cmd, 0, 10, &t->lr);
    else if (!strcmp(a, "--lr-quant")) rc = float_value(argc, argv, i, cmd, 0, 10, &t->lr_method);
    else if (!strcmp(a, "--beta1")) rc = float_value(argc, argv, i, cmd, 0, 0.999999, &t->beta1);
    else if (!strcmp(a, "--beta2")) rc = float_value(argc, argv, i, cmd, 0, 0.999999, &t->beta2);
    else if (!strcmp(a, "--weight-decay")) rc = float_value(argc, argv, i, cmd, 0, 10, &t->weight_decay);
    else if (!strcmp(a, "--clip")) rc = float_value(argc, argv, i, cmd, 0, 1e9, &t->clip);
    else if (!strcmp(a, "--warmup")) rc = int_value(argc, argv, i, cmd, 0, 1 << 30, &t->sched.warmup_steps);
    else if (!strcmp(a, "--min-lr-ratio")) rc = float_value(argc, argv, i, cmd, 0, 1, &t->sched.min_lr_ratio);
    else if (!strcmp(a, "--schedule")) {
        const char *v;
        rc = need_value(argc, argv, i, cmd, &v);
        if (rc == 0 && tern_schedule_parse(&t->sched, v)) {
            fprintf(stderr, "tern %s: %s\n", cmd, tern_last_error());
            rc = 2;
        }
    } else if (!strcmp(a, "--ce-weight")) rc = float_value(argc, argv, i, cmd, 0, 1e6, &t->ce_weight);
    else if (!strcmp(a, "--kd-weight")) rc = float_value(argc, argv, i, cmd, 0, 1e6, &t->kd_weight);
    else if (!strcmp(a, "--kd-temp")) rc = float_value(argc, argv, i, cmd, 1e-3, 100, &t->kd_tau);
    else if (!strcmp(a, "--off-weight")) rc = float_value(argc, argv, i, cmd, 0, 1e6, &t->off_weight);
    else if (!strcmp(a, "--val-every")) rc = int_value(argc, argv, i, cmd, 0, 1 << 30, &t->val_every);
    else if (!strcmp(a, "--val-batches")) rc = int_value(argc, argv, i, cmd, 1, 1 << 20, &t->val_batches);
    else if (!strcmp(a, "--val-frac")) {
        float f;
        rc = float_value(argc, argv, i, cmd, 0, 0.5, &f);
        t->val_frac = f;
    } else if (!strcmp(a, "--seed")) {
        int s;
        rc = int_value(argc, argv, i, cmd, 0, 2147483647, &s);
        t->seed = (uint64_t)s;
    } else if (!strcmp(a, "--checkpoint")) rc = need_value(argc, argv, i, cmd, &t->checkpoint_path);
    else if (!strcmp(a, "--checkpoint-every")) rc = int_value(argc, argv, i, cmd, 0, 1 << 30, &t->checkpoint_every);
    else if (!strcmp(a, "--resume")) {
        t->resume = 1;
        rc = 0;
    } else if (!strcmp(a, "--log")) rc = need_value(argc, argv, i, cmd, &t->log_path);
    else if (!strcmp(a, "--calib-seqs")) rc = int_value(argc, argv, i, cmd, 1, 1 << 20, &t->calib_seqs);
    else if (!strcmp(a, "--mode")) {
        const char *v;
        rc = need_value(argc, argv, i, cmd, &v);
        if (rc == 0 && !strcmp(v, "e2e")) t->mode = TERN_TRAIN_E2E;
        else if (rc == 0 && !strcmp(v, "blockwise")) t->mode = TERN_TRAIN_BLOCKWISE;
        else if (rc == 0) {
            fprintf(stderr, "tern %s: --mode must be e2e or blockwise, got '%s'\n", cmd, v);
            rc = 2;
        }
    } else return 0;
    return rc ? 2 : 1;
}

static const char *train_options_help =
    "  --data TEXT            training text (plain UTF-8; tokenized once and cached)\n"
    "  --steps N (100)        optimizer steps; --batch B (4) x --seq L (256) x --grad-accum K (1) tokens each\n"
    "  --lr LR (1e-4)         AdamW lr; --beta1 (0.9) --beta2 (0.95) --weight-decay (0) --clip (1.0)\n"
    "  --schedule S           constant | cosine (default) | linear | wsd; --warmup N; --min-lr-ratio R (0.1)\n"
    "  --ce-weight W (1)      next-token cross-entropy\n"
    "  --kd-weight W (0)      logit distillation KL(teacher||student), teacher = the input model; --kd-temp T\n"
    "  --off-weight W (0)     1 - cosine(student, teacher) of every block output (TernaryLLM OFF)\n"
    "  --val-frac F (0.05)    held-out tail of the data; --val-every N (50) --val-batches N (4)\n"
    "  --seed S (1)           data shuffle\n"
    "  --mode M (e2e)         e2e | blockwise: one block at a time, MSE to the FP block output on a pool of\n"
    "                         --calib-seqs N (128) sequences; --steps is split evenly over the blocks\n"
    "  --checkpoint FILE      (default OUT.ckpt) --checkpoint-every N (100); --resume continues from FILE\n"
    "  --log FILE             JSONL log of every step (default OUT.log.jsonl)\n";

static int cmd_train(int argc, char **argv) {
    common_opts o = {0};
    tern_train_opts t;
    tern_train_opts_defaults(&t);
    const char *out = NULL;
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            printf("usage: tern train --model M --data TEXT --out OUT.gguf [options]\n"
                   "Full-precision fine-tuning with the training engine; writes a self-contained GGUF.\n%s",
                   train_options_help);
            return 0;
        }
        int r = parse_common(&o, argc, argv, &i);
        if (r < 0) return bad_usage("train", "%s needs a value", a);
        if (r > 0) continue;
        r = parse_train_opt(&t, argc, argv, &i, "train");
        if (r == 2) return 2;
        if (r == 1) continue;
        if (!strcmp(a, "--out") || !strcmp(a, "-o")) rc = need_value(argc, argv, &i, "train", &out);
        else return bad_usage("train", "unknown option %s", a);
    }
    if (rc) return rc;
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
    if (t.resume && !tern_file_exists(t.checkpoint_path)) {
        fprintf(stderr, "tern train: --resume: %s does not exist\n", t.checkpoint_path);
        return 1;
    }
    tern_model m;
    tern_tokenizer *tok;
    if ((rc = load_model_and_tokenizer(&o, &m, &tok, "train"))) return rc;
    static char cache[1024];
    const char *home = getenv("HOME");
    snprintf(cache, sizeof cache, "%s", getenv("TERN_CACHE") ? getenv("TERN_CACHE") : home ? home : "/tmp");
    if (!getenv("TERN_CACHE")) strncat(cache, "/.cache/tern", sizeof cache - strlen(cache) - 1);
    mkdir(cache, 0755);
    t.cache_dir = tern_is_dir(cache) ? cache : NULL;
    tern_train_report rep;
    rc = tern_train_run(&m, tok, &t, NULL, &rep);
    if (rc == 0) rc = tern_gguf_write_model(&m, out);
    if (rc == 0)
        fprintf(stderr, "trained %d steps, %lld tokens in %.1f s (%.0f tok/s); final loss %.4f, val %.4f; peak RSS %.0f MiB; wrote %s\n",
                rep.steps_done, (long long)rep.tokens, rep.seconds, rep.tokens / (rep.seconds + 1e-9), rep.final_loss,
                rep.final_val_loss, rep.peak_rss_kb / 1024.0, out);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    return rc ? die() : 0;
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
        {"generate", cmd_generate},
        {"ppl", cmd_ppl},
        {"bench", cmd_bench},
        {"train", cmd_train},
    };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "tern: unknown command '%s'\n%s", argv[1], usage_text);
    return 2;
}

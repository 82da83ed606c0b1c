// tern: command-line front end. Subcommands only parse arguments and call libtern.
#include <errno.h>
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
#include "eval/report.h"
#include "eval/zeroshot.h"
#include "infer/bench.h"
#include "infer/export.h"
#include "infer/generate.h"
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
    if (!prompt) return bad_usage("generate", "%s", "--prompt is required (use --prompt '' to start from BOS)");
    if (seed >= 0) g.seed = (uint64_t)seed;
    tern_model m;
    tern_tokenizer *tok;
    if ((rc = load_model_and_tokenizer(&o, &m, &tok, "generate"))) return rc;
    if (g.ctx > m.cfg.max_seq)
        fprintf(stderr, "tern generate: warning: --ctx %d exceeds the model's training context %d\n", g.ctx,
                m.cfg.max_seq);
    else if (!g.ctx && m.cfg.max_seq > 4096)
        fprintf(stderr, "tern generate: note: context capped at 4096 of the model's %d tokens (raise it with --ctx)\n",
                m.cfg.max_seq);
    fprintf(stderr, "tern generate: seed %llu\n", (unsigned long long)g.seed);
    tern_gen_stats st;
    rc = tern_generate(&m, tok, prompt, &g, stdout, &st);
    printf("\n");
    fflush(stdout); // the timing line on stderr must follow the text, also through pipes
    if (rc == 0 && st.stopped_ctx)
        fprintf(stderr, "tern generate: stopped at the context limit of %d tokens after %d of --n-predict %d tokens "
                        "(--ctx sets it)\n", st.ctx, st.generated, g.n_predict);
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
    const char *file = NULL, *format = "native";
    int ctx = 512, chunks = 0, rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            printf("usage: tern ppl --model M [--tokenizer T] --file TEXT [--ctx 512] [--chunks K] [--format F] [--json]\n"
                   "Perplexity as llama.cpp's llama-perplexity computes it: non-overlapping chunks of --ctx\n"
                   "tokens, BOS at each chunk start when the vocabulary adds BOS, the second half of each\n"
                   "chunk scored. --chunks limits the number of chunks (default: all). --format runs the linear\n"
                   "layers in another storage (bf16, t2, t1.6, q8; see tern bench --help).\n");
            return 0;
        }
        int r = parse_common(&o, argc, argv, &i);
        if (r < 0) return bad_usage("ppl", "%s needs a value", a);
        if (r > 0) continue;
        if (!strcmp(a, "--file") || !strcmp(a, "-f")) rc = need_value(argc, argv, &i, "ppl", &file);
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) rc = int_value(argc, argv, &i, "ppl", 4, 1 << 20, &ctx);
        else if (!strcmp(a, "--chunks")) rc = int_value(argc, argv, &i, "ppl", 0, 1 << 30, &chunks);
        else if (!strcmp(a, "--format")) rc = need_value(argc, argv, &i, "ppl", &format);
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
    rc = tern_perplexity_text(&m, tok, text, len, ctx, chunks, format, &r);
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

static int cmd_bench(int argc, char **argv) {
    common_opts o = {0};
    tern_bench_opts b = {.n_prompt = 512, .n_gen = 128, .reps = 3};
    const char *compare = "native";
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            printf("usage: tern bench --model M [--compare f32,bf16,t2,t1.6,q8] [--threads N] [--reps 3]\n"
                   "                  [--n-prompt 512] [--n-gen 128] [--profile] [--json]\n"
                   "For each format: prompt processing (ppN) and generation (tgN) tokens/s, mean +/- sd over\n"
                   "repetitions after a warm-up, the bytes streamed per token, the file size in that format, and\n"
                   "the fraction of the measured read bandwidth reached. Formats other than f32 are made from\n"
                   "the loaded model: bf16 rounds the weights; t2/t1.6 ternarize every linear layer with\n"
                   "absmean per group of 128 (LM head at 8 bits); q8 is int8 per block of 128.\n"
                   "--profile adds where a generated token's time goes: wall-clock us per token in each\n"
                   "phase of the forward (norms, q/k/v, RoPE, attention, o, gate/up, SwiGLU, down, head).\n");
            return 0;
        }
        int r = parse_common(&o, argc, argv, &i);
        if (r < 0) return bad_usage("bench", "%s needs a value", a);
        if (r > 0) continue;
        if (!strcmp(a, "--reps") || !strcmp(a, "-r")) rc = int_value(argc, argv, &i, "bench", 1, 1000, &b.reps);
        else if (!strcmp(a, "--n-prompt")) rc = int_value(argc, argv, &i, "bench", 1, 1 << 16, &b.n_prompt);
        else if (!strcmp(a, "--n-gen")) rc = int_value(argc, argv, &i, "bench", 1, 1 << 16, &b.n_gen);
        else if (!strcmp(a, "--compare")) rc = need_value(argc, argv, &i, "bench", &compare);
        else if (!strcmp(a, "--profile")) b.profile = 1;
        else return bad_usage("bench", "unknown option %s", a);
    }
    if (rc) return rc;
    tern_model m;
    if ((rc = load_model(&o, &m, "bench"))) return rc;
    double bw = tern_bench_read_bandwidth();
    char formats[256];
    snprintf(formats, sizeof formats, "%s", compare);
    tern_bench_result res[32];
    int n_res = 0;
    for (char *save = NULL, *f = strtok_r(formats, ",", &save); f && rc == 0 && n_res + 2 <= 32;
         f = strtok_r(NULL, ",", &save)) {
        rc = tern_bench_run(&m, f, &b, res + n_res);
        n_res += 2;
    }
    if (rc == 0 && o.json) {
        printf("{\"model\": ");
        tern_json_write_string(stdout, o.model, strlen(o.model));
        printf(", \"bandwidth_gbs\": %.3f, \"threads\": %d, \"gemm\": \"%s\", \"results\": [", bw, tern_get_threads(),
               tern_gemm_backend());
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
        printf("model %s, %d threads, FP32 GEMM: %s, read bandwidth %.2f GB/s\n", o.model, tern_get_threads(),
               tern_gemm_backend(), bw);
        printf("%-7s %-6s %18s %10s %10s %8s %8s\n", "format", "test", "tokens/s", "file MB", "MB/token", "GB/s", "% bw");
        for (int k = 0; k < n_res; k++) {
            double gbs = res[k].tokens_per_s * res[k].bytes_per_token / 1e9;
            int tg = res[k].test[0] == 't'; // bandwidth matters for generation; pp is compute-bound
            printf("%-7s %-6s %10.2f ± %-6.2f %10.1f %10.2f %8.2f %7.1f%%\n", res[k].format, res[k].test,
                   res[k].tokens_per_s, res[k].sd, res[k].file_bytes / 1e6, res[k].bytes_per_token / 1e6,
                   tg ? gbs : 0.0, tg ? 100 * gbs / bw : 0.0);
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
    } else if (!strcmp(a, "--keep-checkpoint")) {
        t->keep_checkpoint = 1;
        rc = 0;
    } else if (!strcmp(a, "--log")) rc = need_value(argc, argv, i, cmd, &t->log_path);
    else if (!strcmp(a, "--calib-seqs")) rc = int_value(argc, argv, i, cmd, 1, 1 << 20, &t->calib_seqs);
    else if (!strcmp(a, "--epochs")) rc = int_value(argc, argv, i, cmd, 0, 1 << 20, &t->epochs);
    else if (!strcmp(a, "--qp-steps")) rc = int_value(argc, argv, i, cmd, 0, 1 << 30, &t->qp_steps);
    else if (!strcmp(a, "--qp-lr")) rc = float_value(argc, argv, i, cmd, 0, 10, &t->qp_lr);
    else if (!strcmp(a, "--e2e-steps")) rc = int_value(argc, argv, i, cmd, 0, 1 << 30, &t->e2e_steps);
    else if (!strcmp(a, "--block-loss")) {
        const char *v;
        rc = need_value(argc, argv, i, cmd, &v);
        if (rc == 0 && !strcmp(v, "mse")) t->block_loss = TERN_BLOCK_LOSS_MSE;
        else if (rc == 0 && !strcmp(v, "cos")) t->block_loss = TERN_BLOCK_LOSS_COS;
        else if (rc == 0) {
            fprintf(stderr, "tern %s: --block-loss must be mse or cos, got '%s'\n", cmd, v);
            rc = 2;
        }
    }
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

// The options tern train and tern quantize share; `%s` is the --lr default.
// tern train's data and step lines; tern quantize prints its own (--calib, rtn's 0 steps).
static const char *train_data_help =
    "  --data TEXT            training text (plain UTF-8; tokenized once and cached); alias --calib\n"
    "  --steps N (100)        optimizer steps; --batch B (4) x --seq L (256) x --grad-accum K (1) tokens each\n";

// Options train and quantize share (printf format: %s is the default lr).
static const char *train_options_help =
    "  --lr LR (%s)         AdamW lr; --beta1 (0.9) --beta2 (0.95) --weight-decay (0) --clip (1.0)\n"
    "  --schedule S           constant | cosine (default) | linear | wsd; --warmup N; --min-lr-ratio R (0.1)\n"
    "  --ce-weight W (1)      next-token cross-entropy\n"
    "  --kd-weight W (0)      logit distillation KL(teacher||student), teacher = the input model; --kd-temp T\n"
    "  --off-weight W (0)     1 - cosine(student, teacher) of every block output (TernaryLLM OFF)\n"
    "  --val-frac F (0.05)    held-out tail of the data; --val-every N (50) --val-batches N (4)\n"
    "  --seed S (1)           data shuffle\n"
    "  --mode M (e2e)         e2e | blockwise: one block at a time (its linears, norms and quantizer)\n"
    "                         against the FP block output on a pool of --calib-seqs N (128) sequences,\n"
    "                         --epochs E passes over the pool per block (default: --steps split evenly\n"
    "                         over the blocks); --block-loss mse (default) | cos (1 - cosine)\n"
    "  --qp-steps N (0)       blockwise, then N steps of E2E-QP: logit KD against the FP model training\n"
    "                         only the quantizer's parameters (--lr-quant) and the norms (--qp-lr 1e-4)\n"
    "  --e2e-steps N (0)      or blockwise, then N steps of end-to-end training (CE + logit KD, --kd-weight\n"
    "                         1 unless given) of everything the method trains\n"
    "  --checkpoint FILE      (default OUT.ckpt) --checkpoint-every N (100); --resume continues from FILE;\n"
    "                         removed once the output is written unless --keep-checkpoint\n"
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
                   "Full-precision fine-tuning with the training engine; writes a self-contained GGUF.\n");
            fputs(train_data_help, stdout);
            printf(train_options_help, "1e-4");
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
    if (rc == 0 && !t.keep_checkpoint) remove(t.checkpoint_path); // the output holds the result
    if (rc == 0)
        fprintf(stderr, "trained %d steps, %lld tokens in %.1f s (%.0f tok/s); final loss %.4f, val %.4f; peak RSS %.0f MiB; wrote %s\n",
                rep.steps_done, (long long)rep.tokens, rep.seconds, rep.tokens / (rep.seconds + 1e-9), rep.final_loss,
                rep.final_val_loss, rep.peak_rss_kb / 1024.0, out);
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
    int n_tasks = 0, rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            printf("usage: tern eval --model M [--tokenizer T] --task FILE [--task FILE ...] [--limit N] [--json]\n"
                   "                 [--skip-bad] [--fields MAP] [--delimiter STR] [--threads N]\n"
                   "Zero-shot multiple-choice accuracy as lm-evaluation-harness scores it: acc (argmax of the\n"
                   "continuation's log-likelihood) and acc_norm (log-likelihood per character of the choice), each with\n"
                   "its standard error. Task files are JSONL: {\"query\", \"choices\", \"gold\"} (ARC, PIQA, BoolQ,\n"
                   "HellaSwag) or {\"context_options\", \"continuation\", \"gold\"} (WinoGrande, partial scoring).\n"
                   "  --limit N        first N items of each task\n"
                   "  --skip-bad       skip lines that are not valid JSON objects (default: error)\n"
                   "  --fields MAP     field names of other exports, e.g. query=ctx,choices=endings,gold=label;\n"
                   "                   dotted paths (choices=choices.text) and string fields joined by '|'\n"
                   "                   (choices=sol1|sol2) are accepted; gold may be a string of digits\n"
                   "  --delimiter STR  text between context and choice (default: \" \", none when the context\n"
                   "                   ends or the choice starts with whitespace)\n");
            return 0;
        }
        int r = parse_common(&o, argc, argv, &i);
        if (r < 0) return bad_usage("eval", "%s needs a value", a);
        if (r > 0) continue;
        if (!strcmp(a, "--task")) {
            if (n_tasks == EVAL_MAX_TASKS) return bad_usage("eval", "%s", "too many --task files");
            rc = need_value(argc, argv, &i, "eval", &tasks[n_tasks++]);
        } else if (!strcmp(a, "--limit")) rc = int_value(argc, argv, &i, "eval", 0, 1 << 30, &zo.limit);
        else if (!strcmp(a, "--skip-bad")) zo.skip_bad = 1;
        else if (!strcmp(a, "--fields")) rc = need_value(argc, argv, &i, "eval", &zo.fields);
        else if (!strcmp(a, "--delimiter")) rc = need_value(argc, argv, &i, "eval", &zo.delimiter);
        else return bad_usage("eval", "unknown option %s", a);
    }
    if (rc) return rc;
    if (n_tasks == 0) return bad_usage("eval", "%s", "--task is required");
    // Every task file is read before the model loads: a bad one fails at once.
    static tern_zs_task task[EVAL_MAX_TASKS];
    int n_read = 0;
    while (n_read < n_tasks && tern_zs_task_read(&task[n_read], tasks[n_read], &zo) == 0) n_read++;
    tern_model m;
    tern_tokenizer *tok = NULL;
    if (n_read < n_tasks) rc = die();
    else rc = load_model_and_tokenizer(&o, &m, &tok, "eval");
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
                   "\"seconds\": %.3f, \"items_per_s\": %.4f, \"tokens\": %lld, \"truncated\": %d}",
                   res[k].n, res[k].acc, res[k].acc_se, res[k].acc_norm, res[k].acc_norm_se, res[k].seconds,
                   res[k].items_per_s, (long long)res[k].tokens, res[k].truncated);
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
    const char *out = NULL, *method_name = NULL, *distill = "none", *save_latent = NULL;
    int rc = 0, steps_given = 0, ce_given = 0, off_given = 0, init_given = 0, seqs_given = 0, recipe = 0;
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
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            printf("usage: tern quantize --model M --method METHOD --calib TEXT --out OUT.tern|OUT.gguf [options]\n"
                   "       tern quantize --model M --recipe cpu --calib TEXT --out OUT.tern [--budget MINUTES]\n"
                   "Quantizes every decoder-block linear (q k v o gate up down). --out X.tern (any name not\n"
                   "ending in .gguf) writes the packed model, as tern export does; --out X.gguf writes the\n"
                   "latent model instead: effective (dequantized) weights as a self-contained FP32 GGUF with\n"
                   "tern.* metadata, which tern export packs and quantize/train can continue from.\n"
                   "  --save-latent FILE     with a packed --out, also keep the latent GGUF\n"
                   "  --method M             %s\n"
                   "  --bits B (4)           rtn / teq grid bits, 2..8; --sym for a symmetric grid\n"
                   "  --group G (128)        input columns per group, -1 = whole row\n"
                   "  --lambda L (1e-3)      tequila dead-zone bias weight\n"
                   "  --inner Q (rtn)        teq's quantizer: rtn | absmean | twn\n"
                   "  --lsq-scale            dlt: scale the alpha/gamma gradients by 1/sqrt(group) (LSQ;\n"
                   "                         off by default, see docs/methods.md); --no-lsq-scale: off\n"
                   "  --dlt-init I (twn)     dlt init: twn (gamma = group mean, TWN alpha of the centred\n"
                   "                         group) | absmean (alpha = mean|w|, gamma = 0; ablation)\n"
                   "  --init I               gptq (default where the method has a grid GPTQ fits: absmean,\n"
                   "                         twn, tequila, dlt, uniform): GPTQ on --calib-seqs N (128; fewer\n"
                   "                         when the text is short and N is not given) sequences of --seq\n"
                   "                         tokens, layer by layer with error feedback (docs/methods.md);\n"
                   "                         --damp D (0.01) | rtn: the method's own rule on the FP weights\n"
                   "  --keep P[:B],...       linears whose name matches a glob (blk.0.*, blk.*.ffn_down.weight)\n"
                   "                         stay at B bits (4) on a learnable uniform grid (mixed precision)\n"
                   "  --recipe cpu           GPTQ init, then end-to-end QAT with CE + logit KD at lr 1e-3\n"
                   "                         (method dlt unless given; docs/methods.md); options given override\n"
                   "  --budget MINUTES       size the training steps to a wall-clock budget for the whole run,\n"
                   "                         from step times measured on the fly\n"
                   "  --target-bits B        hold the linears whose ternarization costs the most (KL to the FP\n"
                   "                         model, measured per linear) at 4 bits while the average storage\n"
                   "                         (ternary as tern-t1.6) stays <= B bits per weight; B in [1.6, 8]\n"
                   "  --distill D (none)     none | kd (KL to the FP model; CE weight 0 unless given) |\n"
                   "                         off (cosine of block outputs, weight --off-weight, default 1)\n"
                   "  --diag-window K (20)   dead-zone diagnostics window; --diag-every N (50) per-layer arrays\n"
                   "  --calib TEXT           calibration text (plain UTF-8; tokenized once and cached); alias --data\n"
                   "  --steps N (100; rtn 0) QAT steps, 0 = post-training quantization; --batch B (4) x --seq L\n"
                   "                         (256) x --grad-accum K (1) tokens each\n"
                   "  --lr-quant LR (1e-3)   lr of the method's own parameters (dlt alpha/gamma, teq s)\n",
                   tern_quant_names());
            printf(train_options_help, "1e-3");
            return 0;
        }
        int r = parse_common(&o, argc, argv, &i);
        if (r < 0) return bad_usage("quantize", "%s needs a value", a);
        if (r > 0) continue;
        steps_given |= !strcmp(a, "--steps");
        ce_given |= !strcmp(a, "--ce-weight");
        off_given |= !strcmp(a, "--off-weight");
        init_given |= !strcmp(a, "--init");
        seqs_given |= !strcmp(a, "--calib-seqs");
        r = parse_train_opt(&t, argc, argv, &i, "quantize");
        if (r == 2) return 2;
        if (r == 1) continue;
        if (!strcmp(a, "--out") || !strcmp(a, "-o")) rc = need_value(argc, argv, &i, "quantize", &out);
        else if (!strcmp(a, "--method")) rc = need_value(argc, argv, &i, "quantize", &method_name);
        else if (!strcmp(a, "--bits")) rc = int_value(argc, argv, &i, "quantize", 2, 8, &q.bits);
        else if (!strcmp(a, "--group")) rc = int_value(argc, argv, &i, "quantize", -1, 1 << 20, &q.group);
        else if (!strcmp(a, "--lambda")) rc = float_value(argc, argv, &i, "quantize", 0, 1, &q.lambda);
        else if (!strcmp(a, "--sym")) q.sym = 1;
        else if (!strcmp(a, "--inner")) rc = need_value(argc, argv, &i, "quantize", &q.inner);
        else if (!strcmp(a, "--no-lsq-scale")) q.lsq_scale = 0;
        else if (!strcmp(a, "--lsq-scale")) q.lsq_scale = 1;
        else if (!strcmp(a, "--dlt-init")) {
            const char *v = NULL;
            if ((rc = need_value(argc, argv, &i, "quantize", &v)) == 0) {
                if (!strcmp(v, "twn")) q.dlt_absmean_init = 0;
                else if (!strcmp(v, "absmean")) q.dlt_absmean_init = 1;
                else return bad_usage("quantize", "--dlt-init %s: expected twn or absmean", v);
            }
        }
        else if (!strcmp(a, "--init")) {
            const char *v = NULL;
            if ((rc = need_value(argc, argv, &i, "quantize", &v)) == 0) {
                if (!strcmp(v, "rtn")) q.init_gptq = 0;
                else if (!strcmp(v, "gptq")) q.init_gptq = 1;
                else return bad_usage("quantize", "--init %s: expected rtn or gptq", v);
            }
        }
        else if (!strcmp(a, "--damp")) rc = float_value(argc, argv, &i, "quantize", 1e-6, 1, &q.damp);
        else if (!strcmp(a, "--keep")) rc = need_value(argc, argv, &i, "quantize", &q.keep);
        else if (!strcmp(a, "--save-latent")) rc = need_value(argc, argv, &i, "quantize", &save_latent);
        else if (!strcmp(a, "--recipe")) rc = need_value(argc, argv, &i, "quantize", &(const char *){NULL});
        else if (!strcmp(a, "--budget")) {
            float minutes;
            rc = float_value(argc, argv, &i, "quantize", 0, 1e6, &minutes);
            if (rc == 0 && !(minutes > 0)) return bad_usage("quantize", "%s", "--budget must be more than 0 minutes");
            t.budget_s = 60.0 * minutes;
        }
        else if (!strcmp(a, "--target-bits")) rc = float_value(argc, argv, &i, "quantize", 1.6, 8, &q.target_bits);
        else if (!strcmp(a, "--distill")) rc = need_value(argc, argv, &i, "quantize", &distill);
        else if (!strcmp(a, "--diag-window")) rc = int_value(argc, argv, &i, "quantize", 1, 65535, &q.diag_window);
        else if (!strcmp(a, "--diag-every")) rc = int_value(argc, argv, &i, "quantize", 0, 1 << 30, &q.diag_every);
        else return bad_usage("quantize", "unknown option %s", a);
    }
    if (rc) return rc;
    const tern_quant_method *method = tern_quant_find(method_name);
    if (!method_name) return bad_usage("quantize", "%s", "--method is required");
    if (!method) {
        fprintf(stderr, "tern quantize: unknown method '%s' (known: %s)\n", method_name, tern_quant_names());
        return 2;
    }
    int fits = method->grid != TERN_GRID_NONE && method->adopt; // GPTQ can initialize it
    if (init_given && q.init_gptq && !fits)
        return bad_usage("quantize", "--init gptq: method %s has no grid GPTQ can fit (use --init rtn)", method->name);
    if (!init_given && !recipe) { // GPTQ by default where it applies (docs/methods.md, "GPTQ initialization")
        q.init_gptq = fits;
        if (fits && !seqs_given) q.calib_up_to = 1;
    } else if (!init_given && !fits) q.init_gptq = 0; // a recipe with rtn / teq
    if (q.group == 0) return bad_usage("quantize", "%s", "--group must be -1 or at least 1");
    if (!t.data_path) return bad_usage("quantize", "%s", "--calib is required");
    if (!out) return bad_usage("quantize", "%s", "--out is required");
    // --out X.gguf: the fake-quant ("latent") GGUF that train/quantize can
    // continue from; any other name: the packed model (what tern export writes).
    size_t out_len = strlen(out);
    int packed_out = !(out_len >= 5 && !strcmp(out + out_len - 5, ".gguf"));
    if (save_latent && !packed_out)
        return bad_usage("quantize", "%s", "--save-latent goes with a packed --out (an --out ending in .gguf is the "
                                           "latent model itself)");
    char latent_tmp[1100];
    const char *latent = out;
    if (packed_out) {
        snprintf(latent_tmp, sizeof latent_tmp, "%s.latent.tmp.gguf", out);
        latent = save_latent ? save_latent : latent_tmp;
    }
    if (!strcmp(distill, "kd")) {
        t.kd_weight = 1.0f;
        if (!ce_given) t.ce_weight = 0.0f;
    } else if (!strcmp(distill, "off")) {
        if (!off_given) t.off_weight = 1.0f;
    } else if (strcmp(distill, "none"))
        return bad_usage("quantize", "--distill must be none, kd or off, got '%s'", distill);
    if (!steps_given && !method->trains) t.steps = 0;
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
    char *text;
    size_t len;
    if (tern_read_file(t.data_path, &text, &len)) return die();
    free(text);
    if (len == 0) {
        fprintf(stderr, "tern quantize: %s: the calibration text is empty\n", t.data_path);
        return 1;
    }
    if (o.model && tern_quant_check_unquantized(o.model)) return die();
    tern_model m;
    tern_tokenizer *tok;
    if ((rc = load_model_and_tokenizer(&o, &m, &tok, "quantize"))) return rc;
    static char cache[1024];
    const char *home = getenv("HOME");
    snprintf(cache, sizeof cache, "%s", getenv("TERN_CACHE") ? getenv("TERN_CACHE") : home ? home : "/tmp");
    if (!getenv("TERN_CACHE")) strncat(cache, "/.cache/tern", sizeof cache - strlen(cache) - 1);
    mkdir(cache, 0755);
    t.cache_dir = tern_is_dir(cache) ? cache : NULL;
    tern_train_report rep;
    double frac[3];
    rc = tern_quantize_model(&m, tok, method, &q, &t, latent, &rep, frac);
    tern_tokenizer_free(tok);
    tern_model_free(&m);
    tern_export_info info = {0};
    if (rc == 0 && packed_out) { // pack the latent model, as tern export does
        tern_model lm;
        rc = tern_model_load(&lm, latent, NULL);
        if (rc == 0) {
            rc = tern_export_tern(&lm, latent, &(tern_export_opts){0}, out, &info);
            tern_model_free(&lm);
        }
    }
    if (packed_out && !save_latent) remove(latent_tmp);
    if (rc == 0 && !t.keep_checkpoint) remove(t.checkpoint_path); // the output holds the result
    if (rc == 0) {
        fprintf(stderr, "quantized with %s: %d steps, %lld tokens in %.1f s; final loss %.4f, val %.4f", method->name,
                rep.steps_done, (long long)rep.tokens, rep.seconds, rep.final_loss, rep.final_val_loss);
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
    tern_export_tq_opts q = {.max_ppl_change = TERN_EXPORT_TQ_MAX_PPL_CHANGE};
    float max_change = (float)TERN_EXPORT_TQ_MAX_PPL_CHANGE;
    int rc = 0, tq_only = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            printf("usage: tern export --model M --out MODEL.tern [--pack 2|1.6] [--group G]\n"
                   "       tern export --model M --format gguf-tq2|gguf-tq1 --out MODEL.gguf [--group G]\n"
                   "                   [--fallback none|q4_0]\n"
                   "                   [--check-text FILE [--check-chunks 8] [--check-ctx 512]]\n"
                   "                   [--max-ppl-change 10] [--force]\n"
                   "Writes a packed .tern file (a GGUF container, docs/format.md): decoder linears ternary\n"
                   "(2 bits or 1.6 bits per weight, fp16 scale per group of G, DLT shifts), biases and norms\n"
                   "F32, embedding and LM head q8. From a `tern quantize` output the ternary codes are\n"
                   "recovered exactly (G = its group); from an FP model they are absmean per group (PTQ,\n"
                   "--group default 128). A 2/3/4-bit rtn or teq output is stored as q2g/q3g/q4g instead\n"
                   "(its grid s*(c - z) recovered per group: fp16 scale, u8 zero point; TEQ's scales are\n"
                   "already folded into the norms). Every command runs the .tern file with the packed kernels.\n"
                   "\n"
                   "--format gguf-tq2 / gguf-tq1 writes a standard llama GGUF for llama.cpp instead: decoder\n"
                   "linears TQ2_0 / TQ1_0 (the same ternary codes, one fp16 scale per block of 256 fitted by\n"
                   "least squares; DLT shifts dropped, biases kept), embedding and output Q8_0, norms F32.\n"
                   "Every linear row must be a multiple of 256 long; --fallback q4_0 writes the other\n"
                   "linears as Q4_0 with the same codes (like llama-quantize). This changes the model: with\n"
                   "--check-text the perplexity of the source ternary model and of the written file (read\n"
                   "back) are measured on --check-chunks chunks of --check-ctx tokens and the export fails,\n"
                   "writing nothing, when it rises by more than --max-ppl-change percent (default 10)\n"
                   "unless --force. Without --check-text nothing is measured (a note says so).\n");
            return 0;
        }
        int r = parse_common(&o, argc, argv, &i);
        if (r < 0) return bad_usage("export", "%s needs a value", a);
        if (r > 0) continue;
        if (!strcmp(a, "--out") || !strcmp(a, "-o")) rc = need_value(argc, argv, &i, "export", &out);
        else if (!strcmp(a, "--pack")) rc = need_value(argc, argv, &i, "export", &e.pack);
        else if (!strcmp(a, "--group")) rc = int_value(argc, argv, &i, "export", 1, 1 << 16, &e.group);
        else if (!strcmp(a, "--format")) rc = need_value(argc, argv, &i, "export", &format);
        else if (!strcmp(a, "--check-text")) rc = need_value(argc, argv, &i, "export", &q.check_text), tq_only = 1;
        else if (!strcmp(a, "--check-chunks"))
            rc = int_value(argc, argv, &i, "export", 1, 1 << 20, &q.check_chunks), tq_only = 1;
        else if (!strcmp(a, "--check-ctx")) rc = int_value(argc, argv, &i, "export", 4, 1 << 20, &q.check_ctx), tq_only = 1;
        else if (!strcmp(a, "--max-ppl-change"))
            rc = float_value(argc, argv, &i, "export", 0, 1e9, &max_change), tq_only = 1;
        else if (!strcmp(a, "--force")) q.force = 1, tq_only = 1;
        else if (!strcmp(a, "--fallback")) rc = need_value(argc, argv, &i, "export", &q.fallback), tq_only = 1;
        else return bad_usage("export", "unknown option %s", a);
    }
    if (rc) return rc;
    if (!out) return bad_usage("export", "%s", "--out is required");
    static const char *packs[] = {"2", "t2", "tern-t2", "1.6", "t1.6", "tern-t1.6"};
    int pack_ok = !e.pack;
    for (size_t k = 0; k < sizeof packs / sizeof packs[0]; k++) pack_ok |= e.pack && !strcmp(e.pack, packs[k]);
    if (!pack_ok) return bad_usage("export", "unknown --pack '%s' (2 or 1.6)", e.pack);
    int tq = !strcmp(format, "gguf-tq2") || !strcmp(format, "gguf-tq1");
    if (!tq && strcmp(format, "tern"))
        return bad_usage("export", "unknown --format %s (tern, gguf-tq2 or gguf-tq1)", format);
    if (!tq && tq_only)
        return bad_usage("export", "%s", "--check-*, --max-ppl-change, --force and --fallback go with --format gguf-tq2/gguf-tq1");
    if (tq && e.pack) return bad_usage("export", "%s", "--pack is for --format tern");
    if (!q.check_text && (q.check_chunks || q.check_ctx))
        return bad_usage("export", "%s", "--check-chunks and --check-ctx need --check-text");
    const char *ins[] = {o.model, o.tokenizer, q.check_text};
    if ((rc = clobbers_input("export", &out, 1, ins, 3))) return rc;
    tern_model m;
    if ((rc = load_model(&o, &m, "export"))) return rc;
    if (tq) {
        q.format = format;
        q.group = e.group;
        q.max_ppl_change = max_change;
        tern_export_tq_info ti;
        rc = tern_export_gguf_tq(&m, o.model, &q, out, &ti);
        if (rc == 0) {
            fprintf(stderr, "tern export: %s: codes %s%s%s (G=%d)%s; %d linears as %s, %d as Q4_0 (fallback); "
                            "%d biases kept; weight rel. RMSE %.4f (TQ), %.4f (Q4_0)\n",
                    format, ti.source, ti.method[0] ? ", tern.method " : "", ti.method, ti.group,
                    ti.dropped_shift ? ", DLT shifts dropped" : "", ti.linears - ti.fallback_linears,
                    strcmp(format, "gguf-tq1") ? "TQ2_0" : "TQ1_0", ti.fallback_linears, ti.biases,
                    ti.weight_rel_rmse, ti.fallback_rel_rmse);
            if (ti.checked)
                fprintf(stderr, "tern export: ppl on %s (%d chunks of %d): source %.4f, %s %.4f (%+.2f%%)\n",
                        q.check_text, ti.chunks, ti.ctx, ti.ppl_source, format, ti.ppl_export, ti.change_pct);
            else
                fprintf(stderr, "tern export: note: no --check-text, so the perplexity change of re-blocking was "
                                "not measured\n");
            if (ti.forced)
                fprintf(stderr, "tern export: warning: perplexity rose by %+.2f%%, more than --max-ppl-change %g%%; "
                                "written anyway (--force)\n", ti.change_pct, (double)max_change);
            fprintf(stderr, "tern export: wrote %s (%s)\n", out, size_str(ti.bytes, (char[32]){0}, 32));
        }
        tern_model_free(&m);
        return rc ? die() : 0;
    }
    tern_export_info info;
    rc = tern_export_tern(&m, o.model, &e, out, &info);
    if (rc == 0)
        fprintf(stderr, "tern export: %s, G=%d%s, %s: wrote %s (%s)\n",
                info.method[0] ? info.method : "absmean PTQ", info.group, info.has_shift ? " with shifts" : "",
                info.format, out, size_str(info.bytes, (char[32]){0}, 32));
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
        {"quantize", cmd_quantize},
        {"eval", cmd_eval},
        {"report", cmd_report},
        {"export", cmd_export},
    };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            int rc = commands[i].fn(argc - 1, argv + 1);
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

// `tern quantize` end to end on the real stories260K: PTQ (0 steps) with every
// method, then `tern ppl` on the written GGUF; a short QAT run with each
// ternary method lowers the perplexity on the calibration text below its PTQ
// value; bad input ends with one line on stderr, a non-zero exit and no output.
#include <sys/wait.h>
#include <unistd.h>

#include "io/gguf.h"
#include "test.h"

static const char *tern_bin(void) {
    const char *b = getenv("TERN_BIN");
    return b && *b ? b : "build/tern";
}

static char model_args[2048], calib[1024];
#define ERR_FILE test_tmp_path("tern_quant_cli.err")

// Runs `tern ARGS` (stdout into out_file or /dev/null, stderr into ERR_FILE); returns the exit status.
static int run(const char *args, const char *out_file) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s > %s 2> %s", tern_bin(), args, out_file ? out_file : "/dev/null", ERR_FILE);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static void show_err(void) {
    char line[1024] = "";
    FILE *f = fopen(ERR_FILE, "r");
    if (f && fgets(line, sizeof line, f)) fprintf(stderr, "  stderr: %s", line);
    if (f) fclose(f);
}

// Perplexity of a model file on the calibration text (first 4 chunks of 128).
static double ppl_of(const char *model_opts) {
    char args[4096];
    snprintf(args, sizeof args, "ppl %s --file %s --ctx 128 --chunks 4 --json --threads 1", model_opts, calib);
    if (run(args, test_tmp_path("tern_quant_cli.out"))) {
        show_err();
        return NAN;
    }
    char buf[512] = "";
    FILE *f = fopen(test_tmp_path("tern_quant_cli.out"), "r");
    if (f && !fgets(buf, sizeof buf, f)) buf[0] = 0;
    if (f) fclose(f);
    const char *p = strstr(buf, "\"ppl\": ");
    return p ? atof(p + 7) : NAN;
}

static void remove_outputs(const char *out) {
    char p[1100];
    unlink(out);
    snprintf(p, sizeof p, "%s.ckpt", out), unlink(p);
    snprintf(p, sizeof p, "%s.log.jsonl", out), unlink(p);
}

static int quantize(const char *method, const char *extra, int steps, const char *out) {
    char args[4096];
    remove_outputs(out);
    snprintf(args, sizeof args,
             "quantize %s --method %s --group 32 --calib %s --steps %d --batch 4 --seq 64 --lr 1e-3 --val-every 0 "
             "--seed 2 --threads 1 --out %s %s",
             model_args, method, calib, steps, out, extra);
    int rc = run(args, NULL);
    if (rc) show_err();
    return rc;
}

// The GGUF's tern.method string (empty when absent).
static void gguf_method(const char *path, char *buf, size_t cap, int *group) {
    buf[0] = 0, *group = 0;
    tern_gguf g;
    if (tern_gguf_open(&g, path) == 0) {
        const tern_gguf_kv *kv = tern_gguf_find_kv(&g, "tern.method");
        if (kv && kv->type == TERN_GGUF_STRING && kv->str_len < cap) memcpy(buf, kv->str, kv->str_len), buf[kv->str_len] = 0;
        kv = tern_gguf_find_kv(&g, "tern.group_size");
        if (kv) *group = (int)kv->i;
    }
    tern_gguf_close(&g);
}

static const char *methods[] = {"absmean", "twn", "tequila", "dlt", "teq", "rtn"};
static double ptq_ppl[6];

static void test_ptq(double fp) {
    for (int k = 0; k < 6; k++) {
        char out[256], opts[300], name[32];
        snprintf(out, sizeof out, "%s/tern_quant_cli_%s.gguf", test_tmp_dir(), methods[k]);
        CHECK_MSG(quantize(methods[k], "", 0, out) == 0, "PTQ %s", methods[k]);
        snprintf(opts, sizeof opts, "--model %s", out);
        ptq_ppl[k] = ppl_of(opts);
        int group;
        gguf_method(out, name, sizeof name, &group);
        printf("PTQ %-8s ppl %.3f (FP %.3f)\n", methods[k], ptq_ppl[k], fp);
        CHECK_MSG(ptq_ppl[k] == ptq_ppl[k] && ptq_ppl[k] > 1, "%s: ppl %g", methods[k], ptq_ppl[k]);
        CHECK(!strcmp(name, methods[k]) && group == 32);
        // Quantization costs accuracy: above FP, and 4-bit RTN stays close to FP.
        CHECK(ptq_ppl[k] > fp * 0.999);
        if (!strcmp(methods[k], "rtn")) CHECK(ptq_ppl[k] < fp * 1.5);
    }
}

static void test_qat(void) {
    for (int k = 0; k < 5; k++) {
        char out[256], opts[300], log[300];
        snprintf(out, sizeof out, "%s/tern_quant_cli_qat_%s.gguf", test_tmp_dir(), methods[k]);
        CHECK_MSG(quantize(methods[k], "--diag-every 10", 20, out) == 0, "QAT %s", methods[k]);
        snprintf(opts, sizeof opts, "--model %s", out);
        double p = ppl_of(opts);
        printf("QAT %-8s 20 steps: ppl %.3f (PTQ %.3f)\n", methods[k], p, ptq_ppl[k]);
        CHECK_MSG(p < ptq_ppl[k], "%s: QAT ppl %g not below PTQ %g", methods[k], p, ptq_ppl[k]);
        snprintf(log, sizeof log, "%s.log.jsonl", out);
        CHECK(count_lines(log) == 20);
        if (k < 3) {
            // Dead-zone diagnostics in every line, per-layer arrays every 10 steps.
            char line[4096] = "";
            FILE *f = fopen(log, "r");
            for (int i = 0; f && i < 10 && fgets(line, sizeof line, f); i++) {}
            if (f) fclose(f);
            CHECK(strstr(line, "\"dz_frac\": ") && strstr(line, "\"dz_trapped_layers\": ["));
        }
        remove_outputs(out);
    }
}

// One-line error, the expected exit status, no output file.
static void expect_bad(const char *args, int status, const char *needle, const char *out) {
    unlink(out);
    int rc = run(args, NULL);
    char line[1024] = "";
    FILE *f = fopen(ERR_FILE, "r");
    if (f && !fgets(line, sizeof line, f)) line[0] = 0;
    if (f) fclose(f);
    CHECK_MSG(rc == status, "'%s': exit %d, expected %d (%s)", args, rc, status, line);
    CHECK_MSG(count_lines(ERR_FILE) == 1, "'%s': %d lines on stderr", args, count_lines(ERR_FILE));
    CHECK_MSG(strstr(line, needle) != NULL, "'%s': error '%s' lacks '%s'", args, line, needle);
    CHECK_MSG(access(out, F_OK) != 0, "'%s' wrote %s", args, out);
}

static void test_bad_input(void) {
    const char *out = test_tmp_path("tern_quant_cli_bad.gguf");
    char args[8192], base[4200];
    snprintf(base, sizeof base, "quantize %s --calib %s --seq 64 --threads 1 --out %s", model_args, calib, out);
    snprintf(args, sizeof args, "%s --method bogus", base);
    expect_bad(args, 2, "unknown method", out);
    snprintf(args, sizeof args, "%s --method rtn --bits 9", base);
    expect_bad(args, 2, "--bits", out);
    snprintf(args, sizeof args, "%s --method absmean --group 0", base);
    expect_bad(args, 2, "--group", out);
    snprintf(args, sizeof args, "%s --method absmean --group 128 --steps 0", base);
    expect_bad(args, 1, "wider than the rows", out);
    snprintf(args, sizeof args, "%s --method teq --inner bogus --group 32 --steps 0", base);
    expect_bad(args, 1, "--inner", out);
    snprintf(args, sizeof args, "%s --method rtn --group 32 --steps 5", base);
    expect_bad(args, 1, "does not train", out);
    FILE *f = fopen(test_tmp_path("tern_quant_cli_empty.txt"), "w");
    if (f) fclose(f);
    snprintf(args, sizeof args, "quantize %s --method absmean --group 32 --calib %s --out %s", model_args,
             test_tmp_path("tern_quant_cli_empty.txt"), out);
    expect_bad(args, 1, "empty", out);
    snprintf(args, sizeof args,
             "quantize --model %s --method absmean --group 32 --calib %s --steps 0 --seq 64 --out %s",
             test_tmp_path("tern_quant_cli_absmean.gguf"), calib, out);
    expect_bad(args, 1, "already quantized", out);
    // A checkpoint made by tequila cannot continue as absmean.
    const char *tq = test_tmp_path("tern_quant_cli_resume.gguf");
    CHECK(quantize("tequila", "", 2, tq) == 0);
    snprintf(args, sizeof args, "%s --method absmean --group 32 --steps 4 --batch 4 --checkpoint %s.ckpt --resume", base,
             tq);
    expect_bad(args, 1, "another method", out);
    // ... nor with another lambda.
    snprintf(args, sizeof args,
             "%s --method tequila --lambda 0.01 --group 32 --steps 4 --batch 4 --checkpoint %s.ckpt --resume", base, tq);
    expect_bad(args, 1, "another method", out);
    // The same settings continue it.
    snprintf(args, sizeof args,
             "%s --method tequila --group 32 --steps 4 --batch 4 --lr 1e-3 --val-every 0 --seed 2 --checkpoint %s.ckpt "
             "--resume",
             base, tq);
    CHECK_MSG(run(args, NULL) == 0 && access(out, F_OK) == 0, "tequila resume");
    remove_outputs(tq);
    remove_outputs(out);
    unlink(test_tmp_path("tern_quant_cli_empty.txt"));
}

int main(void) {
    snprintf(model_args, sizeof model_args, "--model %s --tokenizer %s",
             test_data_path("models/stories260K/stories260K.bin"), test_data_path("models/stories260K/tok512.bin"));
    snprintf(calib, sizeof calib, "%s", test_data_path("data/tinystories/valid-sample.txt"));
    double fp = ppl_of(model_args);
    CHECK(fp > 1 && fp < 20);
    test_ptq(fp);
    test_qat();
    test_bad_input();
    for (int k = 0; k < 6; k++) {
        char out[256];
        snprintf(out, sizeof out, "%s/tern_quant_cli_%s.gguf", test_tmp_dir(), methods[k]);
        remove_outputs(out);
    }
    unlink(ERR_FILE);
    unlink(test_tmp_path("tern_quant_cli.out"));
    return test_report();
}

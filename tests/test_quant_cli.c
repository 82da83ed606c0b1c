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
    snprintf(args, sizeof args, "%s --method teq --inner bogus --group 32 --steps 0", base);
    expect_bad(args, 2, "--inner", out);
    snprintf(args, sizeof args, "%s --method rtn --group 32 --steps 5", base);
    expect_bad(args, 2, "does not train", out);
    // The default group (128) on 64-wide rows: one group per row, said once.
    snprintf(args, sizeof args, "%s --method absmean --steps 0", base);
    CHECK(run(args, NULL) == 0 && access(out, F_OK) == 0);
    FILE *ef = fopen(ERR_FILE, "r");
    int notes = 0;
    char ln[1024];
    while (ef && fgets(ln, sizeof ln, ef)) notes += strstr(ln, "fewer than --group 128") != NULL;
    if (ef) fclose(ef);
    CHECK(notes == 1);
    remove_outputs(out);
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
    CHECK(quantize("tequila", "--keep-checkpoint", 2, tq) == 0);
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

// The value of "key": in the first line of a file that has it (NAN if none).
static double file_num(const char *path, const char *key, int last) {
    FILE *f = fopen(path, "r");
    char line[8192], pat[64];
    double v = NAN;
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, pat);
        if (!p) continue;
        v = atof(p + strlen(pat));
        if (!last) break;
    }
    if (f) fclose(f);
    return v;
}

// GPTQ init, block reconstruction with E2E-QP, mixed precision and its
// packed export, the recipe under a budget.
static void test_cpu_recipe(void) {
    char out[256], opts[400], args[4096];
    double ppl_rtn, ppl_gptq;
    snprintf(out, sizeof out, "%s/tern_quant_cli_gptq.gguf", test_tmp_dir());
    snprintf(opts, sizeof opts, "--model %s", out);
    CHECK(quantize("dlt", "--init rtn", 0, out) == 0);
    ppl_rtn = ppl_of(opts);
    CHECK(quantize("dlt", "--init gptq --calib-seqs 64", 0, out) == 0);
    ppl_gptq = ppl_of(opts);
    printf("dlt PTQ: round-to-nearest init %.2f, GPTQ init %.2f\n", ppl_rtn, ppl_gptq);
    CHECK_MSG(ppl_gptq < 0.6 * ppl_rtn, "GPTQ %g vs RTN %g", ppl_gptq, ppl_rtn);
    // Block reconstruction, then E2E-QP: every block's error drops, and the model improves on GPTQ.
    CHECK(quantize("dlt", "--init gptq --calib-seqs 64 --mode blockwise --epochs 2 --qp-steps 20 --diag-every 0", 0,
                   out) == 0);
    double ppl_bq = ppl_of(opts);
    char log[300];
    snprintf(log, sizeof log, "%s.log.jsonl", out);
    FILE *f = fopen(log, "r");
    char line[8192];
    int blocks = 0, dropped = 0, qp = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *a = strstr(line, "\"block_mse_init\": "), *b = strstr(line, "\"block_mse_final\": ");
        if (a && b) blocks++, dropped += atof(b + 19) < atof(a + 18);
        qp += strstr(line, "\"kd\": ") != NULL;
    }
    if (f) fclose(f);
    printf("blockwise 2 epochs + 20 E2E-QP steps: %.2f (%d blocks, %d with lower error; %d e2e lines)\n", ppl_bq,
           blocks, dropped, qp);
    CHECK(blocks == 5 && dropped == 5 && qp == 20);
    CHECK_MSG(ppl_bq < ppl_gptq, "blockwise+qp %g vs GPTQ %g", ppl_bq, ppl_gptq);
    // Mixed precision: kept linears on a 4-bit grid, the .tern mixes tern-t2 and q4g and runs within 1%.
    CHECK(quantize("dlt", "--init gptq --calib-seqs 64 --keep 'blk.0.*,blk.4.ffn_down.weight:3'", 0, out) == 0);
    double ppl_keep = ppl_of(opts);
    char tern[300], info[300];
    snprintf(tern, sizeof tern, "%s/tern_quant_cli_mixed.tern", test_tmp_dir());
    snprintf(info, sizeof info, "%s/tern_quant_cli_mixed.info", test_tmp_dir());
    snprintf(args, sizeof args, "export --model %s --out %s", out, tern);
    CHECK(run(args, NULL) == 0);
    snprintf(opts, sizeof opts, "--model %s", tern);
    double ppl_tern = ppl_of(opts);
    snprintf(args, sizeof args, "info --model %s --json", tern);
    CHECK(run(args, info) == 0);
    f = fopen(info, "r");
    char *json = calloc(1, 1 << 20);
    if (f && json && fread(json, 1, (1 << 20) - 1, f) == 0) json[0] = 0;
    if (f) fclose(f);
    int q4 = 0, q3 = 0, t2 = 0;
    for (const char *p = json; p && (p = strstr(p, "\"type\": \"")); p += 9)
        q4 += !strncmp(p + 9, "q4g\"", 4), q3 += !strncmp(p + 9, "q3g\"", 4), t2 += !strncmp(p + 9, "tern-t2\"", 8);
    printf("mixed: fake-quant %.3f, packed %.3f; %d q4g, %d q3g, %d tern-t2 linears, %.3f bits per weight\n", ppl_keep,
           ppl_tern, q4, q3, t2, file_num(info, "linear_bits_per_weight", 0));
    CHECK(q4 == 7 && q3 == 1 && t2 == 27);
    CHECK(ppl_keep < ppl_gptq && fabs(ppl_tern / ppl_keep - 1) < 0.01);
    free(json);
    unlink(tern), unlink(info);
    // --target-bits: the plan is stated and the average stays within the budget.
    snprintf(opts, sizeof opts, "--model %s", out);
    CHECK(quantize("dlt", "--init gptq --calib-seqs 64 --target-bits 3.2", 0, out) == 0);
    char err[8192] = "";
    f = fopen(ERR_FILE, "r");
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "target 3.2 bits")) snprintf(err, sizeof err, "%s", line);
    if (f) fclose(f);
    const char *avg = strstr(err, "held at 4 bits, ");
    printf("%s", err);
    CHECK(avg && atof(avg + 16) <= 3.2 && atoi(strstr(err, "bits per weight: ") + 17) > 0);
    CHECK(ppl_of(opts) < ppl_gptq);
    // The recipe under a budget of 12 s: it runs, sizes its steps and writes.
    remove_outputs(out);
    snprintf(args, sizeof args,
             "quantize %s --recipe cpu --calib %s --seq 64 --calib-seqs 32 --group 32 --budget 0.2 --threads 1 "
             "--out %s",
             model_args, calib, out);
    CHECK(run(args, NULL) == 0 && access(out, F_OK) == 0);
    f = fopen(ERR_FILE, "r");
    int sized = 0;
    // One line sizes the steps; under a sanitizer GPTQ may take the whole
    // budget first, which adds a line of its own ("spent before training").
    // (Re-plans during the run say "measured" and are not counted.)
    while (f && fgets(line, sizeof line, f))
        sized += strstr(line, "budget: ") && strstr(line, " per ") && !strstr(line, "measured");
    if (f) fclose(f);
    CHECK(sized == 1);
    remove_outputs(out);
}

static void test_cpu_recipe_bad_input(void) {
    const char *out = test_tmp_path("tern_quant_cli_bad.gguf");
    char args[8192], base[4200];
    snprintf(base, sizeof base, "quantize %s --calib %s --seq 64 --group 32 --steps 0 --threads 1 --out %s", model_args,
             calib, out);
    snprintf(args, sizeof args, "%s --method dlt --init magic", base);
    expect_bad(args, 2, "--init", out);
    snprintf(args, sizeof args, "%s --method dlt --keep 'blk.9.*'", base);
    expect_bad(args, 1, "matches no linear", out);
    snprintf(args, sizeof args, "%s --method dlt --keep 'blk.0.*:12'", base);
    expect_bad(args, 1, "bits must be", out);
    snprintf(args, sizeof args, "%s --method dlt --target-bits 1.2", base);
    expect_bad(args, 2, "--target-bits", out);
    snprintf(args, sizeof args, "%s --method dlt --target-bits 9", base);
    expect_bad(args, 2, "--target-bits", out);
    snprintf(args, sizeof args, "%s --method dlt --target-bits 1.8 --calib-seqs 8", base);
    expect_bad(args, 1, "below", out);
    snprintf(args, sizeof args, "%s --method dlt --target-bits 3 --keep 'blk.0.*'", base);
    expect_bad(args, 1, "exclude each other", out);
    snprintf(args, sizeof args, "%s --method dlt --budget 0", base);
    expect_bad(args, 2, "--budget", out);
    snprintf(args, sizeof args, "%s --method dlt --budget -3", base);
    expect_bad(args, 2, "--budget", out);
    snprintf(args, sizeof args, "%s --recipe gpu", base);
    expect_bad(args, 2, "--recipe gpu", out);
    snprintf(args, sizeof args, "%s --method dlt --init gptq --calib-seqs 100000", base);
    expect_bad(args, 1, "needs at least", out);
    snprintf(args, sizeof args, "%s --method rtn --init gptq", base);
    expect_bad(args, 2, "no grid", out);
    snprintf(args, sizeof args, "%s --method dlt --epochs 2", base);
    expect_bad(args, 1, "--mode blockwise", out);
    snprintf(args, sizeof args, "%s --method dlt --mode blockwise --qp-steps 2 --e2e-steps 2", base);
    expect_bad(args, 1, "give one", out);
    snprintf(args, sizeof args, "%s --method dlt --block-loss l1", base);
    expect_bad(args, 2, "--block-loss", out);
}

static int same_bytes(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb, ca = 0, cb = 0;
    while (same && (ca = fgetc(fa)) == (cb = fgetc(fb)) && ca != EOF) {}
    same = same && ca == cb;
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

// --out X.tern writes the packed model itself: byte for byte what `tern export`
// makes of the latent GGUF of the same run (kept with --save-latent, or
// written by --out Y.gguf). The checkpoint is removed after success unless
// --keep-checkpoint, and no temporary file is left behind.
static void test_packed_out(void) {
    const char *x = test_tmp_path("tern_qp.tern"), *y = test_tmp_path("tern_qp.gguf"),
               *z = test_tmp_path("tern_qp_latent.gguf"), *yt = test_tmp_path("tern_qp_y.tern");
    char args[8192], extra[1200], p[1200];
    snprintf(extra, sizeof extra, "--save-latent %s", z);
    CHECK(quantize("dlt", extra, 3, x) == 0);
    CHECK(quantize("dlt", "--keep-checkpoint", 3, y) == 0);
    snprintf(args, sizeof args, "export --model %s --out %s", y, yt);
    CHECK(run(args, NULL) == 0);
    CHECK(same_bytes(x, yt) && same_bytes(y, z));
    snprintf(p, sizeof p, "%s.ckpt", x);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s.latent.tmp.gguf", x);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s.ckpt", y);
    CHECK(access(p, F_OK) == 0);
    snprintf(args, sizeof args, "info --model %s --json", x);
    CHECK(run(args, test_tmp_path("tern_qp.json")) == 0);
    CHECK(file_num(test_tmp_path("tern_qp.json"), "linear_bits_per_weight", 0) > 2);
    snprintf(extra, sizeof extra, "--save-latent %s", z);
    CHECK(quantize("dlt", extra, 0, y) == 2); // --save-latent with a latent --out
    remove_outputs(x), remove_outputs(y), unlink(z), unlink(yt), unlink(test_tmp_path("tern_qp.json"));
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
    test_cpu_recipe();
    test_cpu_recipe_bad_input();
    test_packed_out();
    for (int k = 0; k < 6; k++) {
        char out[256];
        snprintf(out, sizeof out, "%s/tern_quant_cli_%s.gguf", test_tmp_dir(), methods[k]);
        remove_outputs(out);
    }
    unlink(ERR_FILE);
    unlink(test_tmp_path("tern_quant_cli.out"));
    return test_report();
}

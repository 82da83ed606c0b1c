// `tern report`: JSONL log parsing, SVG/HTML output, --json summary, errors.
#include "test.h"

#include <sys/wait.h>
#include <unistd.h>

#include "core/file.h"
#include "eval/report.h"

#define FIX(name) test_src_path("tests/fixtures/" name)

static size_t count(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

// Writes through `fn` into a temporary file and returns its contents.
static char *capture_svg(const tern_report_log *logs, int n, int html) {
    char path[] = "/tmp/tern_report_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "w");
    int rc = html ? tern_report_write_html(f, logs, n) : tern_report_write_svg(f, logs, n);
    fclose(f);
    char *text = NULL;
    size_t size;
    if (rc || tern_read_file(path, &text, &size)) text = NULL;
    unlink(path);
    return text;
}

static char *capture_json(const tern_report_log *logs, int n) {
    char path[] = "/tmp/tern_report_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "w");
    tern_report_write_json(f, logs, n);
    fclose(f);
    char *text = NULL;
    size_t size;
    if (tern_read_file(path, &text, &size)) text = NULL;
    unlink(path);
    return text;
}

static void test_load(void) {
    tern_report_log L;
    CHECK_OK(tern_report_load(&L, FIX("report_qat.jsonl"), NULL));
    CHECK(L.n == 3); // the blank line is skipped
    CHECK(!strcmp(L.label, "report_qat.jsonl"));
    CHECK(L.pts[2].step == 3 && L.pts[2].v[TERN_REPORT_LOSS] == 3.875);
    CHECK(isnan(L.pts[0].v[TERN_REPORT_VAL_LOSS]) && L.pts[1].v[TERN_REPORT_VAL_LOSS] == 4.5);
    CHECK(tern_report_last(&L, TERN_REPORT_VAL_LOSS) == 4.5);
    CHECK(tern_report_last(&L, TERN_REPORT_DZ_TRAPPED) == 0.0125);
    tern_report_log_free(&L);

    CHECK_OK(tern_report_load(&L, FIX("report_blockwise.jsonl"), "bw"));
    CHECK(!strcmp(L.label, "bw"));
    // "mse" and "cos" stand in for "loss"; block summaries need no step.
    CHECK(L.n == 3 && L.pts[1].v[TERN_REPORT_LOSS] == 0.25 && tern_report_last(&L, TERN_REPORT_LOSS) == 0.0625);
    CHECK(isnan(tern_report_last(&L, TERN_REPORT_DZ_FRAC)));
    CHECK(L.n_blocks == 2 && L.blocks[1].block == 1 && L.blocks[1].mse_init == 4 && L.blocks[1].mse_final == 0.5);
    CHECK(L.blocks[0].mse_init == 0.75 && L.blocks[0].mse_final == 0.125);
    char *svg = capture_svg(&L, 1, 0);
    // Loss panel, then the block panel: init dashed + final solid.
    CHECK(svg && count(svg, "<polyline") == 1 + 2 && count(svg, "stroke-dasharray") == 1);
    CHECK(svg && strstr(svg, ">block</text>") && strstr(svg, ">Block output MSE"));
    free(svg);
    char *json = capture_json(&L, 1);
    CHECK_MSG(json && strstr(json, "\"blocks\": [{\"block\": 0, \"mse_init\": 0.75, \"mse_final\": 0.125}, "
                                   "{\"block\": 1, \"mse_init\": 4, \"mse_final\": 0.5}]}"),
              "got %s", json ? json : "(null)");
    free(json);
    tern_report_log_free(&L);
}

static void test_errors(void) {
    tern_report_log L;
    CHECK_FAILS(tern_report_load(&L, FIX("report_bad_json.jsonl"), NULL), "report_bad_json.jsonl:3:");
    CHECK(L.pts == NULL && L.path == NULL);
    CHECK_FAILS(tern_report_load(&L, FIX("report_bad_array.jsonl"), NULL), "report_bad_array.jsonl:2: a log record");
    CHECK_FAILS(tern_report_load(&L, FIX("report_bad_nostep.jsonl"), NULL), "report_bad_nostep.jsonl:3: the record");
    // A block number past int (or missing) is refused before any conversion (fuzz_report: UB).
    CHECK_FAILS(tern_report_load(&L, FIX("report_bad_block.jsonl"), NULL), "report_bad_block.jsonl:2: a block summary");
    CHECK_FAILS(tern_report_load(&L, FIX("report_empty.jsonl"), NULL), "no records");
    CHECK_FAILS(tern_report_load(&L, FIX("report_missing.jsonl"), NULL), "report_missing.jsonl");
}

static void test_svg(void) {
    tern_report_log logs[2];
    CHECK_OK(tern_report_load(&logs[0], FIX("report_qat.jsonl"), "tequila <λ=1e-3>"));
    CHECK_OK(tern_report_load(&logs[1], FIX("report_fp.jsonl"), NULL));
    char *svg = capture_svg(logs, 2, 0);
    CHECK(svg != NULL);
    if (svg) {
        CHECK(!strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39));
        CHECK(strstr(svg, "</svg>\n") != NULL);
        // Panels: loss, val loss (both logs), dz_frac, dz_crossed, dz_trapped (qat only).
        CHECK_MSG(count(svg, "<polyline") == 2 + 2 + 3, "%zu polylines", count(svg, "<polyline"));
        CHECK(count(svg, "class=\"title\"") == 5);
        CHECK(strstr(svg, ">Training loss<") && strstr(svg, ">Validation loss<"));
        CHECK(strstr(svg, ">Trapped fraction (dz_trapped)<") != NULL);
        // Legend: one entry per log, labels escaped.
        CHECK(count(svg, "class=\"legend\"") == 2);
        CHECK(strstr(svg, ">tequila &lt;λ=1e-3&gt;<") != NULL);
        CHECK(strstr(svg, ">report_fp.jsonl<") != NULL);
        CHECK(count(svg, "stroke=\"#1f77b4\"") == 1 + 5 && count(svg, "stroke=\"#d62728\"") == 1 + 2);
        // Short series get dots: 3 + 1 + 3 + 3 + 3 (qat) and 4 + 2 (fp).
        CHECK(count(svg, "<circle") == 13 + 6);
    }
    free(svg);

    // A log without dead-zone fields alone: only the two loss panels.
    svg = capture_svg(&logs[1], 1, 0);
    CHECK(svg && count(svg, "<polyline") == 2 && count(svg, "class=\"title\"") == 2);
    free(svg);

    char *html = capture_svg(logs, 2, 1);
    CHECK(html && !strncmp(html, "<!DOCTYPE html>", 15));
    CHECK(html && count(html, "<svg ") == 1 && count(html, "<tr>") == 3);
    free(html);
    tern_report_log_free(&logs[0]);
    tern_report_log_free(&logs[1]);
}

static void test_json(void) {
    tern_report_log logs[2];
    CHECK_OK(tern_report_load(&logs[0], FIX("report_qat.jsonl"), "qat"));
    CHECK_OK(tern_report_load(&logs[1], FIX("report_fp.jsonl"), NULL));
    char *json = capture_json(logs, 2);
    char expected[2048];
    snprintf(expected, sizeof expected,
             "{\"logs\": [{\"file\": \"%s\", \"label\": \"qat\", \"records\": 3, \"steps\": 3, \"final_loss\": 3.875, "
             "\"final_val_loss\": 4.5, \"dz_frac\": 0.305, \"dz_crossed\": 0.015, \"dz_trapped\": 0.0125, \"blocks\": []}, "
             "{\"file\": \"%s\", \"label\": \"report_fp.jsonl\", \"records\": 4, \"steps\": 4, \"final_loss\": 1.75, "
             "\"final_val_loss\": 2.625, \"dz_frac\": null, \"dz_crossed\": null, \"dz_trapped\": null, \"blocks\": []}]}\n",
             logs[0].path, logs[1].path);
    CHECK_MSG(json && !strcmp(json, expected), "got %s", json ? json : "(null)");
    free(json);
    tern_report_log_free(&logs[0]);
    tern_report_log_free(&logs[1]);
}

// The CLI: writes the SVG, exits 1 naming file:line on a bad log, 2 on usage errors.
static void test_cli(void) {
    const char *bin = getenv("TERN_BIN");
    if (!bin) return;
    char cmd[4096], out[] = "/tmp/tern_report_cli_XXXXXX";
    int fd = mkstemp(out);
    CHECK(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s report %s --label a %s --out %s.svg > /dev/null", bin, FIX("report_qat.jsonl"),
             FIX("report_fp.jsonl"), out);
    CHECK(system(cmd) == 0);
    char svg_path[64];
    snprintf(svg_path, sizeof svg_path, "%s.svg", out);
    char *svg = NULL;
    size_t size;
    CHECK_OK(tern_read_file(svg_path, &svg, &size));
    if (svg) CHECK(count(svg, "<polyline") == 7);
    free(svg);
    unlink(svg_path);
    snprintf(cmd, sizeof cmd, "%s report %s --out %s.svg 2> %s", bin, FIX("report_bad_json.jsonl"), out, out);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    char *err = NULL;
    CHECK_OK(tern_read_file(out, &err, &size));
    CHECK_MSG(err && strstr(err, "report_bad_json.jsonl:3:"), "stderr: %s", err ? err : "");
    free(err);
    CHECK(!tern_file_exists(svg_path)); // nothing written on failure
    snprintf(cmd, sizeof cmd, "%s report --out %s.svg 2> /dev/null", bin, out);
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    // --points: the scatter; a bad table is exit 1 and writes nothing; logs with it are a usage error.
    snprintf(cmd, sizeof cmd, "%s report --points %s --out %s.svg > /dev/null", bin, FIX("report_rows.tsv"), out);
    CHECK(system(cmd) == 0 && tern_file_exists(svg_path));
    unlink(svg_path);
    snprintf(cmd, sizeof cmd, "%s report --points %s --out %s.svg 2> /dev/null", bin, FIX("report_rows_bad.tsv"), out);
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && !tern_file_exists(svg_path));
    snprintf(cmd, sizeof cmd, "%s report --points %s %s --out %s.svg 2> /dev/null", bin, FIX("report_rows.tsv"),
             FIX("report_qat.jsonl"), out);
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2 && !tern_file_exists(svg_path));
    unlink(out);
}

// PPL against bits: the table parser, its errors, the scatter.
static void test_rows(void) {
    tern_report_row *rows;
    int n;
    CHECK_OK(tern_report_rows_load(FIX("report_rows.tsv"), &rows, &n));
    CHECK(n == 3);
    if (n == 3) {
        CHECK(!strcmp(rows[0].label, "FP32") && rows[0].bits == 32 && rows[0].ppl == 22.3 && rows[0].se == 0.67);
        CHECK(!strcmp(rows[2].label, "mixed 2.0") && rows[2].bits == 2.0 && isnan(rows[2].se));
        char path[] = "/tmp/tern_rows_XXXXXX";
        int fd = mkstemp(path);
        FILE *f = fd >= 0 ? fdopen(fd, "w+") : NULL;
        CHECK(f != NULL);
        if (f) {
            CHECK_OK(tern_report_write_rows_svg(f, rows, n, "SmolLM2 <40 chunks>"));
            fclose(f);
            char *svg = NULL;
            size_t size;
            CHECK_OK(tern_read_file(path, &svg, &size));
            CHECK(svg && count(svg, "<circle") == 3 && count(svg, "class=\"plab\"") == 3);
            CHECK(svg && strstr(svg, ">SmolLM2 &lt;40 chunks&gt;<") && strstr(svg, ">bits per weight<"));
            // Error bars only where an SE is given; the y axis is in decades (10 .. 1000).
            CHECK(svg && count(svg, "<line stroke=") == 2 && strstr(svg, ">10<") && strstr(svg, ">1000<"));
            free(svg);
        }
        unlink(path);
    }
    free(rows);
    CHECK_FAILS(tern_report_rows_load(FIX("report_rows_bad.tsv"), &rows, &n), "report_rows_bad.tsv:2: wrong number");
    CHECK_FAILS(tern_report_rows_load(FIX("report_rows_nan.tsv"), &rows, &n), "report_rows_nan.tsv:1: a number");
    CHECK_FAILS(tern_report_rows_load(FIX("report_empty.jsonl"), &rows, &n), "no rows");
}

int main(void) {
    test_load();
    test_rows();
    test_errors();
    test_svg();
    test_json();
    test_cli();
    return test_report();
}

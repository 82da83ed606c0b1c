// Training-log reports (`tern report`): reads JSONL logs written by the
// trainer (src/train/trainer.c) and draws loss, validation loss and the
// dead-zone diagnostics (src/quant/diag.c) over steps as a self-contained SVG
// or an HTML page embedding it, one series per log; or summarizes each log.
#ifndef TERN_EVAL_REPORT_H
#define TERN_EVAL_REPORT_H

#include <stddef.h>
#include <stdio.h>

// The metrics drawn, one panel each. A record lacking a metric holds NAN.
typedef enum {
    TERN_REPORT_LOSS = 0,   // "loss" (block-wise logs: "mse")
    TERN_REPORT_VAL_LOSS,   // "val_loss"
    TERN_REPORT_DZ_FRAC,    // "dz_frac"
    TERN_REPORT_DZ_CROSSED, // "dz_crossed"
    TERN_REPORT_DZ_TRAPPED, // "dz_trapped"
    TERN_REPORT_N_METRICS
} tern_report_metric;

typedef struct {
    double step;
    double v[TERN_REPORT_N_METRICS];
} tern_report_point;

// Block reconstruction summary: one per `{"block", "block_mse_init",
// "block_mse_final"}` record of a block-wise log (the MSE of the block's output
// against the FP model's after initialization and after reconstruction).
typedef struct {
    int block;
    double mse_init, mse_final;
} tern_report_block;

typedef struct {
    char *path, *label;      // label: given, or the file name without directories
    tern_report_point *pts;  // one per log line with a "step", in file order
    size_t n, cap;
    tern_report_block *blocks; // block summaries, in file order
    size_t n_blocks, cap_blocks;
} tern_report_log;

// Reads one JSONL log. Blank lines are skipped; a line that is not a JSON
// object with a numeric "step" (or a block summary) is an error
// "PATH:LINE: problem".
// `label` may be NULL. On failure `log` holds nothing to free.
int tern_report_load(tern_report_log *log, const char *path, const char *label);
// The same over text in memory; `path` only names it in errors.
int tern_report_parse(tern_report_log *log, const char *text, size_t size, const char *path, const char *label);
void tern_report_log_free(tern_report_log *log);

// JSON key and panel title of a metric.
const char *tern_report_metric_key(tern_report_metric m);
const char *tern_report_metric_title(tern_report_metric m);

// Last value of metric m in the log (NAN when no line has it).
double tern_report_last(const tern_report_log *log, tern_report_metric m);

// Writes a standalone SVG document: one panel per metric that some log has,
// one polyline per log and panel, a panel of block output errors (init dashed,
// reconstructed solid, log scale) when a log has block summaries, and a legend.
int tern_report_write_svg(FILE *f, const tern_report_log *logs, int n_logs);
// Writes an HTML page embedding the SVG and a summary table.
int tern_report_write_html(FILE *f, const tern_report_log *logs, int n_logs);
// Writes `out` as HTML when it ends in .html/.htm, else as SVG.
int tern_report_save(const char *out, const tern_report_log *logs, int n_logs);
// One JSON object: {"logs": [{"file", "label", "records", "steps", "final_loss",
// "final_val_loss", "dz_frac", "dz_crossed", "dz_trapped", "blocks": [{"block",
// "mse_init", "mse_final"}, ...]}, ...]}; missing = null.
void tern_report_write_json(FILE *f, const tern_report_log *logs, int n_logs);

// Quality against size: rows of "LABEL<TAB>BITS<TAB>PPL[<TAB>SE]" ('#' starts a
// comment line), e.g. one per quantized model, drawn as a scatter of perplexity
// (log scale, ± SE bars) over bits per weight.
typedef struct {
    char label[96];
    double bits, ppl, se; // se: NAN when not given
} tern_report_row;

// Reads such a table; a malformed line is an error "PATH:LINE: problem".
// On success *rows is malloc'd (free it).
int tern_report_rows_load(const char *path, tern_report_row **rows, int *n_rows);
int tern_report_rows_parse(const char *text, size_t size, const char *path, tern_report_row **rows, int *n_rows);
int tern_report_write_rows_svg(FILE *f, const tern_report_row *rows, int n_rows, const char *title);
// Writes the scatter to `out` atomically.
int tern_report_rows_save(const char *out, const tern_report_row *rows, int n_rows, const char *title);

#endif

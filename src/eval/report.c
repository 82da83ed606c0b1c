// Training-log reports: JSONL parsing, hand-written SVG charts, summaries.
#include "eval/report.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "core/jsonw.h"
#include "io/json.h"

static const char *const metric_keys[TERN_REPORT_N_METRICS] = {"loss", "val_loss", "dz_frac", "dz_crossed",
                                                               "dz_trapped"};
static const char *const metric_titles[TERN_REPORT_N_METRICS] = {
    "Training loss", "Validation loss", "Dead-zone fraction (dz_frac)", "Crossed fraction (dz_crossed)",
    "Trapped fraction (dz_trapped)"};

const char *tern_report_metric_key(tern_report_metric m) { return metric_keys[m]; }
const char *tern_report_metric_title(tern_report_metric m) { return metric_titles[m]; }

// ---------------------------------------------------------------- parsing --

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static double num_or_nan(const tern_json *v) { return v && v->type == TERN_JSON_NUMBER ? v->num : NAN; }

static int push_block(tern_report_log *log, const tern_report_block *b) {
    if (log->n_blocks == log->cap_blocks) {
        size_t cap = log->cap_blocks ? 2 * log->cap_blocks : 64;
        tern_report_block *nb = realloc(log->blocks, cap * sizeof *nb);
        if (!nb) return tern_errorf("%s: out of memory", log->path);
        log->blocks = nb, log->cap_blocks = cap;
    }
    log->blocks[log->n_blocks++] = *b;
    return 0;
}

static int push_point(tern_report_log *log, const tern_report_point *p) {
    if (log->n == log->cap) {
        size_t cap = log->cap ? 2 * log->cap : 256;
        tern_report_point *np = realloc(log->pts, cap * sizeof *np);
        if (!np) return tern_errorf("%s: out of memory", log->path);
        log->pts = np, log->cap = cap;
    }
    log->pts[log->n++] = *p;
    return 0;
}

// The parser names errors "NAME:1:COL: problem" for a one-line document;
// this rewrites them to "PATH:LINE:COL: problem".
static int line_error(const char *path, size_t line_no) {
    char msg[TERN_ERR_MAX];
    snprintf(msg, sizeof msg, "%s", tern_last_error());
    const char *rest = strstr(msg, ":1:");
    rest = rest ? rest + 3 : msg;
    return tern_errorf("%s:%zu:%s", path, line_no, rest);
}

static int parse_line(tern_report_log *log, const char *s, size_t len, size_t line_no) {
    tern_json_doc doc;
    if (tern_json_parse(&doc, s, len, "log")) return line_error(log->path, line_no);
    const tern_json *root = doc.root;
    int rc = 0;
    if (root->type != TERN_JSON_OBJECT) {
        rc = tern_errorf("%s:%zu: a log record must be a JSON object, got %s", log->path, line_no,
                         tern_json_type_name(root->type));
    } else if (tern_json_get(root, "block_mse_init")) {
        // Checked before the conversion: a NaN or out-of-range double has no int value.
        double block = num_or_nan(tern_json_get(root, "block"));
        if (!(block >= 0 && block <= INT_MAX)) {
            rc = tern_errorf("%s:%zu: a block summary needs a block number >= 0", log->path, line_no);
        } else {
            tern_report_block b = {(int)block, num_or_nan(tern_json_get(root, "block_mse_init")),
                                   num_or_nan(tern_json_get(root, "block_mse_final"))};
            rc = push_block(log, &b);
        }
    } else if (!isfinite(num_or_nan(tern_json_get(root, "step")))) {
        rc = tern_errorf("%s:%zu: the record has no numeric \"step\"", log->path, line_no);
    } else {
        tern_report_point p;
        p.step = num_or_nan(tern_json_get(root, "step"));
        for (int m = 0; m < TERN_REPORT_N_METRICS; m++) p.v[m] = num_or_nan(tern_json_get(root, metric_keys[m]));
        // Block-wise steps log their loss as "mse" or "cos".
        if (isnan(p.v[TERN_REPORT_LOSS])) p.v[TERN_REPORT_LOSS] = num_or_nan(tern_json_get(root, "mse"));
        if (isnan(p.v[TERN_REPORT_LOSS])) p.v[TERN_REPORT_LOSS] = num_or_nan(tern_json_get(root, "cos"));
        rc = push_point(log, &p);
    }
    tern_json_free(&doc);
    return rc;
}

static int only_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

static const char *base_name(const char *path) {
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

int tern_report_parse(tern_report_log *log, const char *text, size_t size, const char *path, const char *label) {
    memset(log, 0, sizeof *log);
    log->path = dup_str(path);
    log->label = dup_str(label ? label : base_name(path));
    int rc = log->path && log->label ? 0 : tern_errorf("%s: out of memory", path);
    size_t line_no = 0;
    for (size_t pos = 0; pos < size && rc == 0;) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - (text + pos)) : size - pos;
        line_no++;
        if (!only_space(text + pos, len)) rc = parse_line(log, text + pos, len, line_no);
        pos += len + 1;
    }
    if (rc == 0 && log->n == 0) rc = tern_errorf("%s: the log has no records", path);
    if (rc) tern_report_log_free(log);
    return rc;
}

int tern_report_load(tern_report_log *log, const char *path, const char *label) {
    memset(log, 0, sizeof *log);
    char *text;
    size_t size;
    if (tern_read_file(path, &text, &size)) return -1;
    int rc = tern_report_parse(log, text, size, path, label);
    free(text);
    return rc;
}

void tern_report_log_free(tern_report_log *log) {
    free(log->path);
    free(log->label);
    free(log->pts);
    free(log->blocks);
    memset(log, 0, sizeof *log);
}

double tern_report_last(const tern_report_log *log, tern_report_metric m) {
    for (size_t i = log->n; i-- > 0;)
        if (!isnan(log->pts[i].v[m])) return log->pts[i].v[m];
    return NAN;
}

// ---------------------------------------------------------------- summary --

void tern_report_write_json(FILE *f, const tern_report_log *logs, int n_logs) {
    fputs("{\"logs\": [", f);
    for (int k = 0; k < n_logs; k++) {
        const tern_report_log *L = &logs[k];
        fputs(k ? ", {\"file\": " : "{\"file\": ", f);
        tern_json_write_string(f, L->path, strlen(L->path));
        fputs(", \"label\": ", f);
        tern_json_write_string(f, L->label, strlen(L->label));
        fprintf(f, ", \"records\": %zu, \"steps\": ", L->n);
        tern_json_write_number(f, L->pts[L->n - 1].step);
        static const char *const keys[] = {"final_loss", "final_val_loss", "dz_frac", "dz_crossed", "dz_trapped"};
        for (int m = 0; m < TERN_REPORT_N_METRICS; m++) {
            fprintf(f, ", \"%s\": ", keys[m]);
            tern_json_write_number(f, tern_report_last(L, (tern_report_metric)m));
        }
        fputs(", \"blocks\": [", f);
        for (size_t i = 0; i < L->n_blocks; i++) {
            fprintf(f, "%s{\"block\": %d, \"mse_init\": ", i ? ", " : "", L->blocks[i].block);
            tern_json_write_number(f, L->blocks[i].mse_init);
            fputs(", \"mse_final\": ", f);
            tern_json_write_number(f, L->blocks[i].mse_final);
            fputc('}', f);
        }
        fputs("]}", f);
    }
    fputs("]}\n", f);
}

// ------------------------------------------------------------------- SVG --

enum {
    PANEL_W = 330,
    PANEL_H = 250,
    COLS = 3,
    MARGIN_L = 60,
    MARGIN_R = 16,
    MARGIN_T = 30,
    MARGIN_B = 40,
    LEGEND_ROW = 20,
    HEADER = 36,
    MAX_POINTS = 300, // per polyline; longer series are thinned evenly
};

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
#define N_COLORS (sizeof palette / sizeof palette[0])

typedef struct {
    double lo, hi, step; // axis range and tick spacing
} axis;

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

// A tick spacing of 1, 2 or 5 times a power of ten giving about `target` ticks.
static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static axis make_axis(double lo, double hi, int target) {
    if (!(hi > lo)) {
        double pad = fabs(lo) > 0 ? fabs(lo) * 0.1 : 0.5;
        lo -= pad, hi += pad;
    }
    axis a;
    a.step = nice_step(hi - lo, target);
    a.lo = floor(lo / a.step + 1e-9) * a.step;
    a.hi = ceil(hi / a.step - 1e-9) * a.step;
    return a;
}

static void tick_label(char *buf, size_t cap, double v, double step) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) < step * 1e-6) v = 0; // no "-0.00"
    snprintf(buf, cap, "%.*f", dec, v);
}

static int has_metric(const tern_report_log *L, int m) { return !isnan(tern_report_last(L, (tern_report_metric)m)); }

static void data_range(const tern_report_log *logs, int n_logs, int m, double *xlo, double *xhi, double *ylo,
                       double *yhi) {
    *xlo = *ylo = INFINITY, *xhi = *yhi = -INFINITY;
    for (int k = 0; k < n_logs; k++)
        for (size_t i = 0; i < logs[k].n; i++) {
            const tern_report_point *p = &logs[k].pts[i];
            if (!isfinite(p->v[m])) continue;
            if (p->step < *xlo) *xlo = p->step;
            if (p->step > *xhi) *xhi = p->step;
            if (p->v[m] < *ylo) *ylo = p->v[m];
            if (p->v[m] > *yhi) *yhi = p->v[m];
        }
}

typedef struct {
    double x0, y0, w, h; // plot area in SVG coordinates
    axis ax, ay;
} frame;

static double px(const frame *fr, double x) { return fr->x0 + (x - fr->ax.lo) / (fr->ax.hi - fr->ax.lo) * fr->w; }
static double py(const frame *fr, double y) {
    return fr->y0 + fr->h - (y - fr->ay.lo) / (fr->ay.hi - fr->ay.lo) * fr->h;
}

static void draw_axes(FILE *f, const frame *fr, const char *title, const char *xlabel, int log_y) {
    char lab[64];
    fprintf(f, "<text class=\"title\" x=\"%.1f\" y=\"%.1f\">", fr->x0 + fr->w / 2, fr->y0 - 10);
    xml_text(f, title);
    fputs("</text>\n", f);
    for (double y = fr->ay.lo; y <= fr->ay.hi + fr->ay.step * 1e-6; y += fr->ay.step) {
        double yy = py(fr, y);
        if (log_y) snprintf(lab, sizeof lab, "%g", pow(10, y));
        else tick_label(lab, sizeof lab, y, fr->ay.step);
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", fr->x0, yy,
                fr->x0 + fr->w, yy);
        fprintf(f, "<text class=\"yt\" x=\"%.1f\" y=\"%.1f\">%s</text>\n", fr->x0 - 5, yy + 4, lab);
    }
    for (double x = fr->ax.lo; x <= fr->ax.hi + fr->ax.step * 1e-6; x += fr->ax.step) {
        double xx = px(fr, x);
        tick_label(lab, sizeof lab, x, fr->ax.step);
        fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", xx, fr->y0 + fr->h, xx,
                fr->y0 + fr->h + 4);
        fprintf(f, "<text class=\"xt\" x=\"%.1f\" y=\"%.1f\">%s</text>\n", xx, fr->y0 + fr->h + 16, lab);
    }
    fprintf(f, "<rect class=\"frame\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>\n", fr->x0, fr->y0, fr->w,
            fr->h);
    fprintf(f, "<text class=\"xl\" x=\"%.1f\" y=\"%.1f\">%s</text>\n", fr->x0 + fr->w / 2, fr->y0 + fr->h + 32,
            xlabel);
}

// One series: a polyline through its finite points (thinned to MAX_POINTS),
// plus dots when the series is short (sparse validation losses stay visible).
static void draw_series(FILE *f, const frame *fr, const tern_report_log *L, int m, const char *color) {
    size_t count = 0;
    for (size_t i = 0; i < L->n; i++) count += isfinite(L->pts[i].v[m]) != 0;
    if (count == 0) return;
    size_t stride = (count + MAX_POINTS - 1) / MAX_POINTS, seen = 0;
    fprintf(f, "<polyline class=\"series\" stroke=\"%s\" points=\"", color);
    for (size_t i = 0; i < L->n; i++) {
        if (!isfinite(L->pts[i].v[m])) continue;
        if (seen++ % stride && seen != count) continue;
        fprintf(f, "%.1f,%.1f ", px(fr, L->pts[i].step), py(fr, L->pts[i].v[m]));
    }
    fputs("\"/>\n", f);
    if (count > 40) return;
    for (size_t i = 0; i < L->n; i++)
        if (isfinite(L->pts[i].v[m]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>", px(fr, L->pts[i].step),
                    py(fr, L->pts[i].v[m]), color);
    fputc('\n', f);
}

static void draw_panel(FILE *f, const tern_report_log *logs, int n_logs, int m, double ox, double oy) {
    double xlo, xhi, ylo, yhi;
    data_range(logs, n_logs, m, &xlo, &xhi, &ylo, &yhi);
    if (xlo > 0 && xlo <= (xhi - xlo) * 0.2) xlo = 0; // start at 0 when the run does
    frame fr = {ox + MARGIN_L, oy + MARGIN_T, PANEL_W - MARGIN_L - MARGIN_R, PANEL_H - MARGIN_T - MARGIN_B,
                make_axis(xlo, xhi, 5), make_axis(ylo, yhi, 5)};
    draw_axes(f, &fr, metric_titles[m], "step", 0);
    for (int k = 0; k < n_logs; k++)
        if (has_metric(&logs[k], m)) draw_series(f, &fr, &logs[k], m, palette[k % N_COLORS]);
}

// A log10 axis over [lo, hi] (positive values) with a tick per decade.
static axis log_axis(double lo, double hi) {
    axis a = {floor(log10(lo)), ceil(log10(hi)), 1};
    if (a.hi <= a.lo) a.hi = a.lo + 1;
    return a;
}

static int has_blocks(const tern_report_log *logs, int n_logs) {
    for (int k = 0; k < n_logs; k++)
        if (logs[k].n_blocks) return 1;
    return 0;
}

// Block output error per block: after initialization (dashed) and after
// reconstruction (solid), log scale; non-positive values are left out.
static void draw_block_panel(FILE *f, const tern_report_log *logs, int n_logs, double ox, double oy) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int k = 0; k < n_logs; k++)
        for (size_t i = 0; i < logs[k].n_blocks; i++) {
            const tern_report_block *b = &logs[k].blocks[i];
            double v[2] = {b->mse_init, b->mse_final};
            for (int j = 0; j < 2; j++)
                if (isfinite(v[j]) && v[j] > 0) {
                    if (b->block < xlo) xlo = b->block;
                    if (b->block > xhi) xhi = b->block;
                    if (v[j] < ylo) ylo = v[j];
                    if (v[j] > yhi) yhi = v[j];
                }
        }
    if (!(xhi >= xlo)) xlo = 0, xhi = 1, ylo = 1e-3, yhi = 1;
    frame fr = {ox + MARGIN_L, oy + MARGIN_T, PANEL_W - MARGIN_L - MARGIN_R, PANEL_H - MARGIN_T - MARGIN_B,
                make_axis(xlo, xhi, 5), log_axis(ylo, yhi)};
    draw_axes(f, &fr, "Block output MSE: init - - / trained ---", "block", 1);
    for (int k = 0; k < n_logs; k++)
        for (int j = 0; j < 2; j++) {
            const tern_report_log *L = &logs[k];
            if (!L->n_blocks) continue;
            fprintf(f, "<polyline class=\"series\" stroke=\"%s\"%s points=\"", palette[k % N_COLORS],
                    j ? "" : " stroke-dasharray=\"4 3\"");
            for (size_t i = 0; i < L->n_blocks; i++) {
                double v = j ? L->blocks[i].mse_final : L->blocks[i].mse_init;
                if (isfinite(v) && v > 0) fprintf(f, "%.1f,%.1f ", px(&fr, L->blocks[i].block), py(&fr, log10(v)));
            }
            fputs("\"/>\n", f);
        }
}

static void draw_legend(FILE *f, const tern_report_log *logs, int n_logs, double y0) {
    for (int k = 0; k < n_logs; k++) {
        double x = 20 + (k % COLS) * PANEL_W, y = y0 + (k / COLS) * LEGEND_ROW;
        fprintf(f, "<line class=\"series\" stroke=\"%s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>",
                palette[k % N_COLORS], x, y - 4, x + 24, y - 4);
        fprintf(f, "<text class=\"legend\" x=\"%.1f\" y=\"%.1f\">", x + 30, y);
        xml_text(f, logs[k].label);
        fputs("</text>\n", f);
    }
}

// The SVG root element, the shared style sheet and a white background.
static void svg_begin(FILE *f, int width, int height) {
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"Helvetica, Arial, sans-serif\">\n",
            width, height, width, height);
    fputs("<style>.title{font-size:13px;font-weight:bold;text-anchor:middle;fill:#222}"
          ".xt{font-size:11px;text-anchor:middle;fill:#444}.yt{font-size:11px;text-anchor:end;fill:#444}"
          ".xl{font-size:11px;text-anchor:middle;fill:#444}.legend{font-size:12px;fill:#222}"
          ".grid{stroke:#e4e4e4;stroke-width:1}.axis{stroke:#666;stroke-width:1}"
          ".frame{fill:none;stroke:#666;stroke-width:1}"
          ".series{fill:none;stroke-width:1.5;stroke-linejoin:round}"
          ".head{font-size:15px;font-weight:bold;fill:#111}.plab{font-size:10px;fill:#333}</style>\n",
          f);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height);
}

int tern_report_write_svg(FILE *f, const tern_report_log *logs, int n_logs) {
    int metrics[TERN_REPORT_N_METRICS], n_panels = 0;
    for (int m = 0; m < TERN_REPORT_N_METRICS; m++)
        for (int k = 0; k < n_logs; k++)
            if (has_metric(&logs[k], m)) {
                metrics[n_panels++] = m;
                break;
            }
    int blocks = has_blocks(logs, n_logs), n_drawn = n_panels + blocks;
    int legend_rows = (n_logs + COLS - 1) / COLS, panel_rows = (n_drawn + COLS - 1) / COLS;
    double top = HEADER + legend_rows * LEGEND_ROW + 8;
    int width = COLS * PANEL_W, height = (int)top + panel_rows * PANEL_H + 8;
    svg_begin(f, width, height);
    fputs("<text class=\"head\" x=\"20\" y=\"24\">tern report</text>\n", f);
    draw_legend(f, logs, n_logs, HEADER + 14);
    for (int p = 0; p < n_panels; p++)
        draw_panel(f, logs, n_logs, metrics[p], (p % COLS) * PANEL_W, top + (p / COLS) * PANEL_H);
    if (blocks) draw_block_panel(f, logs, n_logs, (n_panels % COLS) * PANEL_W, top + (n_panels / COLS) * PANEL_H);
    fputs("</svg>\n", f);
    return ferror(f) ? tern_errorf("report: write error") : 0;
}

// ------------------------------------------------------------------ HTML --

static void html_cell(FILE *f, double v) {
    if (isnan(v)) fputs("<td>—</td>", f);
    else fprintf(f, "<td>%.6g</td>", v);
}

int tern_report_write_html(FILE *f, const tern_report_log *logs, int n_logs) {
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tern report</title>\n"
          "<style>body{font-family:Helvetica,Arial,sans-serif;margin:20px}"
          "table{border-collapse:collapse;margin-top:16px}td,th{border:1px solid #ccc;padding:3px 8px;"
          "text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}</style>\n"
          "</head><body>\n",
          f);
    if (tern_report_write_svg(f, logs, n_logs)) return -1;
    fputs("<table><tr><th>log</th><th>records</th><th>last step</th><th>loss</th><th>val loss</th>"
          "<th>dz_frac</th><th>dz_crossed</th><th>dz_trapped</th></tr>\n",
          f);
    for (int k = 0; k < n_logs; k++) {
        const tern_report_log *L = &logs[k];
        fputs("<tr><td>", f);
        xml_text(f, L->label);
        fprintf(f, "</td><td>%zu</td><td>%.0f</td>", L->n, L->pts[L->n - 1].step);
        for (int m = 0; m < TERN_REPORT_N_METRICS; m++) html_cell(f, tern_report_last(L, (tern_report_metric)m));
        fputs("</tr>\n", f);
    }
    fputs("</table>\n</body></html>\n", f);
    return ferror(f) ? tern_errorf("report: write error") : 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int tern_report_save(const char *out, const tern_report_log *logs, int n_logs) {
    tern_atomic_file af;
    if (tern_atomic_open(&af, out)) return -1;
    int html = ends_with(out, ".html") || ends_with(out, ".htm");
    int rc = html ? tern_report_write_html(af.f, logs, n_logs) : tern_report_write_svg(af.f, logs, n_logs);
    if (rc) {
        tern_atomic_abort(&af);
        return tern_error_prefix("%s", out);
    }
    return tern_atomic_commit(&af);
}

// ------------------------------------------------------- PPL against bits --

static int row_error(const char *path, size_t line, const char *what) {
    return tern_errorf("%s:%zu: %s (expected LABEL<TAB>BITS<TAB>PPL[<TAB>SE])", path, line, what);
}

static int parse_row(tern_report_row *r, char *line, const char *path, size_t line_no) {
    char *field[5];
    int n = 0;
    for (char *p = line; n < 5;) {
        field[n++] = p;
        char *tab = strchr(p, '\t');
        if (!tab) break;
        *tab = 0, p = tab + 1;
    }
    if (n < 3 || n > 4) return row_error(path, line_no, "wrong number of tab-separated fields");
    if (!field[0][0] || strlen(field[0]) >= sizeof r->label) return row_error(path, line_no, "bad label");
    snprintf(r->label, sizeof r->label, "%s", field[0]);
    double v[3] = {0, 0, NAN};
    for (int i = 1; i < n; i++) {
        char *end;
        v[i - 1] = strtod(field[i], &end);
        if (end == field[i] || *end || !isfinite(v[i - 1]) || v[i - 1] < 0)
            return row_error(path, line_no, "a number field is not a finite non-negative number");
    }
    if (!(v[0] > 0 && v[0] <= 64) || !(v[1] > 0)) return row_error(path, line_no, "bits must be in (0, 64], ppl > 0");
    r->bits = v[0], r->ppl = v[1], r->se = v[2];
    return 0;
}

int tern_report_rows_parse(const char *data, size_t size, const char *path, tern_report_row **rows, int *n_rows) {
    *rows = NULL, *n_rows = 0;
    char *text = malloc(size + 1); // a writable, NUL-terminated copy the fields are cut from
    if (!text) return tern_errorf("%s: out of memory", path);
    memcpy(text, data, size);
    text[size] = 0;
    int rc = 0, n = 0, cap = 0;
    tern_report_row *r = NULL;
    size_t line_no = 0;
    for (size_t pos = 0; pos < size && rc == 0;) {
        char *line = text + pos, *nl = memchr(line, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - line) : size - pos;
        pos += len + 1, line_no++;
        line[len] = 0;
        if (len && line[len - 1] == '\r') line[--len] = 0;
        if (only_space(line, len) || line[0] == '#') continue;
        if (memchr(line, 0, len)) {
            rc = row_error(path, line_no, "a NUL byte in the line");
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            tern_report_row *nr = realloc(r, (size_t)cap * sizeof *nr);
            if (!nr) {
                rc = tern_errorf("%s: out of memory", path);
                break;
            }
            r = nr;
        }
        rc = parse_row(&r[n], line, path, line_no);
        n += rc == 0;
    }
    free(text);
    if (rc == 0 && n == 0) rc = tern_errorf("%s: no rows", path);
    if (rc) {
        free(r);
        return rc;
    }
    *rows = r, *n_rows = n;
    return 0;
}

int tern_report_rows_load(const char *path, tern_report_row **rows, int *n_rows) {
    *rows = NULL, *n_rows = 0;
    char *text;
    size_t size;
    if (tern_read_file(path, &text, &size)) return -1;
    int rc = tern_report_rows_parse(text, size, path, rows, n_rows);
    free(text);
    return rc;
}

int tern_report_write_rows_svg(FILE *f, const tern_report_row *rows, int n_rows, const char *title) {
    enum { W = 720, H = 480, ML = 70, MR = 30, MT = 50, MB = 50 };
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < n_rows; i++) {
        const tern_report_row *r = &rows[i];
        double lo = isfinite(r->se) && r->ppl - r->se > 0 ? r->ppl - r->se : r->ppl;
        double hi = isfinite(r->se) ? r->ppl + r->se : r->ppl;
        xlo = fmin(xlo, r->bits), xhi = fmax(xhi, r->bits), ylo = fmin(ylo, lo), yhi = fmax(yhi, hi);
    }
    axis ax = make_axis(xlo - 0.1, xhi + 0.1, 6);
    frame fr = {ML, MT, W - ML - MR, H - MT - MB, ax, log_axis(ylo, yhi)};
    svg_begin(f, W, H);
    draw_axes(f, &fr, title ? title : "Perplexity against bits per weight", "bits per weight", 1);
    for (int i = 0; i < n_rows; i++) {
        const tern_report_row *r = &rows[i];
        double x = px(&fr, r->bits), y = py(&fr, log10(r->ppl));
        const char *color = palette[i % N_COLORS];
        if (isfinite(r->se) && r->se > 0) {
            double lo = r->ppl - r->se > 0 ? r->ppl - r->se : r->ppl;
            fprintf(f, "<line stroke=\"%s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", color, x,
                    py(&fr, log10(lo)), x, py(&fr, log10(r->ppl + r->se)));
        }
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>", x, y, color);
        fprintf(f, "<text class=\"plab\" x=\"%.1f\" y=\"%.1f\">", x + 6, y + 3);
        xml_text(f, r->label);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
    return ferror(f) ? tern_errorf("report: write error") : 0;
}

int tern_report_rows_save(const char *out, const tern_report_row *rows, int n_rows, const char *title) {
    tern_atomic_file af;
    if (tern_atomic_open(&af, out)) return -1;
    if (tern_report_write_rows_svg(af.f, rows, n_rows, title)) {
        tern_atomic_abort(&af);
        return tern_error_prefix("%s", out);
    }
    return tern_atomic_commit(&af);
}

// Training-log reports: JSONL parsing, hand-written SVG charts, summaries.
#include "eval/report.h"

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
    } else if (!isfinite(num_or_nan(tern_json_get(root, "step")))) {
        rc = tern_errorf("%s:%zu: the record has no numeric \"step\"", log->path, line_no);
    } else {
        tern_report_point p;
        p.step = num_or_nan(tern_json_get(root, "step"));
        for (int m = 0; m < TERN_REPORT_N_METRICS; m++) p.v[m] = num_or_nan(tern_json_get(root, metric_keys[m]));
        if (isnan(p.v[TERN_REPORT_LOSS])) p.v[TERN_REPORT_LOSS] = num_or_nan(tern_json_get(root, "mse"));
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

int tern_report_load(tern_report_log *log, const char *path, const char *label) {
    memset(log, 0, sizeof *log);
    char *text;
    size_t size;
    if (tern_read_file(path, &text, &size)) return -1;
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
    free(text);
    if (rc == 0 && log->n == 0) rc = tern_errorf("%s: the log has no records", path);
    if (rc) tern_report_log_free(log);
    return rc;
}

void tern_report_log_free(tern_report_log *log) {
    free(log->path);
    free(log->label);
    free(log->pts);
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
        fputc('}', f);
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

static void draw_axes(FILE *f, const frame *fr, const char *title) {
    char lab[64];
    fprintf(f, "<text class=\"title\" x=\"%.1f\" y=\"%.1f\">", fr->x0 + fr->w / 2, fr->y0 - 10);
    xml_text(f, title);
    fputs("</text>\n", f);
    for (double y = fr->ay.lo; y <= fr->ay.hi + fr->ay.step * 1e-6; y += fr->ay.step) {
        double yy = py(fr, y);
        tick_label(lab, sizeof lab, y, fr->ay.step);
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
    fprintf(f, "<text class=\"xl\" x=\"%.1f\" y=\"%.1f\">step</text>\n", fr->x0 + fr->w / 2, fr->y0 + fr->h + 32);
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
    draw_axes(f, &fr, metric_titles[m]);
    for (int k = 0; k < n_logs; k++)
        if (has_metric(&logs[k], m)) draw_series(f, &fr, &logs[k], m, palette[k % N_COLORS]);
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

int tern_report_write_svg(FILE *f, const tern_report_log *logs, int n_logs) {
    int metrics[TERN_REPORT_N_METRICS], n_panels = 0;
    for (int m = 0; m < TERN_REPORT_N_METRICS; m++)
        for (int k = 0; k < n_logs; k++)
            if (has_metric(&logs[k], m)) {
                metrics[n_panels++] = m;
                break;
            }
    int legend_rows = (n_logs + COLS - 1) / COLS, panel_rows = (n_panels + COLS - 1) / COLS;
    double top = HEADER + legend_rows * LEGEND_ROW + 8;
    int width = COLS * PANEL_W, height = (int)top + panel_rows * PANEL_H + 8;
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
          ".head{font-size:15px;font-weight:bold;fill:#111}</style>\n",
          f);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height);
    fputs("<text class=\"head\" x=\"20\" y=\"24\">tern report</text>\n", f);
    draw_legend(f, logs, n_logs, HEADER + 14);
    for (int p = 0; p < n_panels; p++)
        draw_panel(f, logs, n_logs, metrics[p], (p % COLS) * PANEL_W, top + (p / COLS) * PANEL_H);
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

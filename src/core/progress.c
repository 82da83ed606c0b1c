#include "core/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "core/threads.h"

static int progress_on = 1;

void tern_progress_set_enabled(int on) { progress_on = on; }

void tern_progress_begin(tern_progress *p, const char *label, const char *unit, int64_t total) {
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->start = p->last_draw = tern_now_sec();
    p->tty = isatty(2);
    p->enabled = progress_on;
}

static void format_eta(char *buf, size_t cap, double s) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, cap, "--:--");
        return;
    }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%02d:%02d", t / 60, t % 60);
}

void tern_progress_update(tern_progress *p, int64_t done, const char *extra) {
    if (!p->enabled) return;
    double now = tern_now_sec();
    int final = done >= p->total;
    if (!final && now - p->last_draw < (p->tty ? 0.1 : 5.0)) return;
    p->last_draw = now;
    double elapsed = now - p->start;
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    double eta = rate > 0 ? (double)(p->total - done) / rate : -1;
    char eta_s[32];
    format_eta(eta_s, sizeof eta_s, eta);
    const int width = 24;
    int filled = p->total > 0 ? (int)((double)width * (double)done / (double)p->total) : 0;
    if (filled > width) filled = width;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "%s%s [%s] %lld/%lld %.1f %s/s ETA %s%s%s%s", p->tty ? "\r" : "", p->label, bar,
            (long long)done, (long long)p->total, rate, p->unit, eta_s, extra ? "  " : "",
            extra ? extra : "", p->tty ? "\033[K" : "\n");
    fflush(stderr);
}

void tern_progress_end(tern_progress *p) {
    if (p->enabled && p->tty) fputc('\n', stderr);
}

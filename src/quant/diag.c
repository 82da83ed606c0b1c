// Dead-zone diagnostics (Tequila's premise: weights stuck at T = 0 near the
// threshold get no useful gradient under plain straight-through ternarization).
// Per step and layer: the fraction of weights with T = 0, the fraction whose
// code changed within the last K steps, and the fraction "trapped": T = 0 for
// the whole window while |w| is within 10% of Δ of the threshold.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

typedef struct {
    int64_t n, dead, crossed, trapped, trap_known;
} diag_counts;

// Updates the codes/ages of one linear from its weights w and counts it.
static void update_linear(tern_quant *q, int id, const float *w, int8_t *T_new, diag_counts *c) {
    tern_quant_diag *d = &q->diag;
    const tern_quant_linear *L = &q->lin[id];
    int K = q->opt.diag_window;
    L->m->codes(q, id, w, T_new, d->delta);
    int8_t *T = d->T + q->w_off[id];
    uint16_t *age = d->age + q->w_off[id];
    int window_full = d->observed >= K;
    for (int r = 0; r < L->out; r++)
        for (int g = 0; g < L->n_groups; g++) {
            float delta = d->delta[(size_t)r * L->n_groups + g];
            size_t o = (size_t)r * L->in + (size_t)g * L->G;
            int n = tern_group_len(L, g);
            for (size_t i = o; i < o + (size_t)n; i++) {
                if (T_new[i] != T[i]) age[i] = 0, T[i] = T_new[i];
                else if (age[i] < UINT16_MAX) age[i]++;
                int dead = T[i] == 0;
                c->dead += dead;
                c->crossed += age[i] < K;
                // age >= K: no crossing for K steps, so dead during the whole window.
                if (dead && window_full && age[i] >= K && fabsf(w[i]) >= 0.9f * delta) c->trapped++;
            }
            c->trap_known += isnan(delta) ? 0 : n;
        }
    c->n += (int64_t)L->out * L->in;
}

// Appends `text` only when it fits whole (the log line must stay valid JSON).
static void append(char *buf, size_t cap, const char *text) {
    size_t len = strlen(buf), add = strlen(text);
    if (len + add + 1 <= cap) memcpy(buf + len, text, add + 1);
}

static double frac(int64_t a, int64_t n) { return n ? (double)a / (double)n : 0.0; }

static void append_array(char *buf, size_t cap, const char *key, const diag_counts *per, int n_layers, int which) {
    char tmp[4096];
    size_t len = (size_t)snprintf(tmp, sizeof tmp, ", \"%s\": [", key);
    for (int l = 0; l < n_layers && len < sizeof tmp - 16; l++) {
        int64_t a = which == 0 ? per[l].dead : which == 1 ? per[l].crossed : per[l].trapped;
        int64_t den = which == 2 ? per[l].trap_known : per[l].n;
        len += (size_t)snprintf(tmp + len, sizeof tmp - len, "%s%.4g", l ? ", " : "", frac(a, den));
    }
    if (len >= sizeof tmp - 16) return; // too many layers for one log line
    snprintf(tmp + len, sizeof tmp - len, "]");
    append(buf, cap, tmp);
}

void tern_quant_diag_update(tern_quant *q, tern_quant_weights_fn get, void *ctx, int step, char *buf, size_t cap) {
    tern_quant_diag *d = &q->diag;
    if (!d->T) return;
    int n_layers = q->cfg.n_layers;
    size_t max_w = 1;
    for (int id = 0; id < q->n_lin; id++)
        if ((size_t)q->lin[id].out * q->lin[id].in > max_w) max_w = (size_t)q->lin[id].out * q->lin[id].in;
    int8_t *T_new = malloc(max_w);
    diag_counts *per = calloc((size_t)n_layers, sizeof *per);
    if (!T_new || !per) {
        free(T_new), free(per);
        return; // diagnostics are best effort; training goes on
    }
    d->observed++;
    diag_counts all = {0};
    for (int id = 0; id < q->n_lin; id++) {
        const float *w = q->lin[id].m->codes ? get(ctx, id) : NULL; // kept b-bit linears have no codes
        if (!w) continue;
        update_linear(q, id, w, T_new, &per[id / TERN_LIN_COUNT]);
    }
    for (int l = 0; l < n_layers; l++) {
        all.n += per[l].n, all.dead += per[l].dead, all.crossed += per[l].crossed;
        all.trapped += per[l].trapped, all.trap_known += per[l].trap_known;
    }
    // Mean over layers, so that wide and narrow layers weigh the same.
    double m[3] = {0, 0, 0};
    for (int l = 0; l < n_layers; l++) {
        m[0] += frac(per[l].dead, per[l].n) / n_layers;
        m[1] += frac(per[l].crossed, per[l].n) / n_layers;
        m[2] += frac(per[l].trapped, per[l].trap_known) / n_layers;
    }
    char tmp[256];
    snprintf(tmp, sizeof tmp, ", \"dz_frac\": %.6f, \"dz_crossed\": %.6f, \"dz_trapped\": %.6f", m[0], m[1], m[2]);
    append(buf, cap, tmp);
    if (q->opt.diag_every > 0 && (step + 1) % q->opt.diag_every == 0) {
        append_array(buf, cap, "dz_frac_layers", per, n_layers, 0);
        append_array(buf, cap, "dz_crossed_layers", per, n_layers, 1);
        append_array(buf, cap, "dz_trapped_layers", per, n_layers, 2);
    }
    free(T_new);
    free(per);
}

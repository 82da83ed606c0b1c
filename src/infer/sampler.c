#include "infer/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"

int tern_sampler_init(tern_sampler *s, int vocab, float temp, float top_p, uint64_t seed) {
    if (!(temp >= 0) || !(top_p > 0 && top_p <= 1))
        return tern_errorf("invalid sampling settings: temp %g, top-p %g", temp, top_p);
    s->temp = temp;
    s->top_p = top_p;
    s->top_k = 0, s->min_p = 0, s->repeat_penalty = 1, s->repeat_last_n = 0;
    s->history = NULL, s->n_history = 0;
    s->vocab = vocab;
    // splitmix64 scrambles the seed so nearby seeds give unrelated streams.
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s->rng = (z ^ (z >> 31)) | 1;
    s->order = tern_alloc((size_t)vocab * sizeof(int));
    s->probs = tern_alloc((size_t)vocab * sizeof(float));
    s->adj = tern_alloc((size_t)vocab * sizeof(float));
    if (!s->order || !s->probs || !s->adj) {
        tern_sampler_free(s);
        return -1;
    }
    return 0;
}

void tern_sampler_free(tern_sampler *s) {
    tern_free(s->order);
    tern_free(s->probs);
    tern_free(s->adj);
    free(s->history);
    s->order = NULL;
    s->probs = NULL;
    s->adj = NULL;
    s->history = NULL;
}

int tern_sampler_set_filters(tern_sampler *s, int top_k, float min_p, float repeat_penalty, int repeat_last_n) {
    if (top_k < 0 || !(min_p >= 0 && min_p <= 1) || !(repeat_penalty > 0) || repeat_last_n < 0)
        return tern_errorf("invalid sampling settings: top-k %d, min-p %g, repeat-penalty %g, repeat-last-n %d", top_k,
                           min_p, repeat_penalty, repeat_last_n);
    free(s->history);
    s->history = repeat_last_n ? calloc((size_t)repeat_last_n, sizeof(int)) : NULL;
    if (repeat_last_n && !s->history) return tern_errorf("out of memory");
    s->top_k = top_k, s->min_p = min_p, s->repeat_penalty = repeat_penalty, s->repeat_last_n = repeat_last_n;
    s->n_history = 0;
    return 0;
}

void tern_sampler_accept(tern_sampler *s, int token) {
    if (!s->repeat_last_n) return;
    s->history[s->n_history % s->repeat_last_n] = token;
    s->n_history++;
}

// The k-th largest of x[0..n) (1 <= k <= n); x is reordered (quickselect).
static float kth_largest(float *x, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = x[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (x[i] > pivot) i++;
            while (x[j] < pivot) j--;
            if (i <= j) {
                float t = x[i];
                x[i++] = x[j];
                x[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return x[want];
    }
    return x[want];
}

static float uniform01(tern_sampler *s) {
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (float)((s->rng * 0x2545f4914f6cdd1dull) >> 40) / 16777216.0f;
}

int tern_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static const float *sort_probs;
static int by_prob_desc(const void *a, const void *b) {
    float pa = sort_probs[*(const int *)a], pb = sort_probs[*(const int *)b];
    return pa < pb ? 1 : pa > pb ? -1 : (*(const int *)a - *(const int *)b);
}

int tern_sample(tern_sampler *s, const float *logits) {
    if (s->repeat_penalty != 1 && s->n_history) { // on a copy: the caller's logits stay as they are
        memcpy(s->adj, logits, (size_t)s->vocab * sizeof(float));
        int n = s->n_history < s->repeat_last_n ? s->n_history : s->repeat_last_n;
        for (int i = 0; i < n; i++) s->order[s->history[i]] = 0;
        for (int i = 0; i < n; i++) { // each distinct token once
            int t = s->history[i];
            if (t < 0 || t >= s->vocab || s->order[t]) continue;
            s->order[t] = 1;
            s->adj[t] = s->adj[t] > 0 ? s->adj[t] / s->repeat_penalty : s->adj[t] * s->repeat_penalty;
        }
        logits = s->adj;
    }
    if (s->temp == 0) return tern_argmax(logits, s->vocab);
    float max = logits[tern_argmax(logits, s->vocab)];
    // Top-k and min-p as a floor on the logits (both at temperature 1).
    float floor = -INFINITY;
    if (s->top_k > 0 && s->top_k < s->vocab) {
        memcpy(s->probs, logits, (size_t)s->vocab * sizeof(float));
        floor = kth_largest(s->probs, s->vocab, s->top_k);
    }
    if (s->min_p > 0 && max + logf(s->min_p) > floor) floor = max + logf(s->min_p);
    double sum = 0;
    for (int i = 0; i < s->vocab; i++) {
        s->probs[i] = logits[i] >= floor ? expf((logits[i] - max) / s->temp) : 0.0f;
        sum += s->probs[i];
    }
    for (int i = 0; i < s->vocab; i++) s->probs[i] = (float)(s->probs[i] / sum);
    float r = uniform01(s);
    if (s->top_p >= 1) {
        float cdf = 0;
        for (int i = 0; i < s->vocab; i++) {
            cdf += s->probs[i];
            if (r < cdf) return i;
        }
        return s->vocab - 1;
    }
    // Nucleus: tokens below (1 - top_p) / (vocab - 1) can never be inside the
    // nucleus, so only the survivors are sorted.
    float cutoff = (1.0f - s->top_p) / (float)(s->vocab - 1);
    int n = 0;
    for (int i = 0; i < s->vocab; i++)
        if (s->probs[i] >= cutoff) s->order[n++] = i;
    sort_probs = s->probs;
    qsort(s->order, (size_t)n, sizeof(int), by_prob_desc);
    float cum = 0;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        cum += s->probs[s->order[i]];
        if (cum > s->top_p) {
            last = i;
            break;
        }
    }
    float target = r * cum, acc = 0;
    for (int i = 0; i <= last; i++) {
        acc += s->probs[s->order[i]];
        if (target < acc) return s->order[i];
    }
    return s->order[last];
}

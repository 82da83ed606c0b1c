#include "infer/sampler.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/mem.h"

int tern_sampler_init(tern_sampler *s, int vocab, float temp, float top_p, uint64_t seed) {
    if (!(temp >= 0) || !(top_p > 0 && top_p <= 1))
        return tern_errorf("invalid sampling settings: temp %g, top-p %g", temp, top_p);
    s->temp = temp;
    s->top_p = top_p;
    s->vocab = vocab;
    // splitmix64 scrambles the seed so nearby seeds give unrelated streams.
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s->rng = (z ^ (z >> 31)) | 1;
    s->order = tern_alloc((size_t)vocab * sizeof(int));
    s->probs = tern_alloc((size_t)vocab * sizeof(float));
    if (!s->order || !s->probs) {
        tern_sampler_free(s);
        return -1;
    }
    return 0;
}

void tern_sampler_free(tern_sampler *s) {
    tern_free(s->order);
    tern_free(s->probs);
    s->order = NULL;
    s->probs = NULL;
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
    if (s->temp == 0) return tern_argmax(logits, s->vocab);
    float max = logits[tern_argmax(logits, s->vocab)];
    double sum = 0;
    for (int i = 0; i < s->vocab; i++) {
        s->probs[i] = expf((logits[i] - max) / s->temp);
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

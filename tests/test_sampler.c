// Sampling: greedy picks the argmax; temperature sampling follows softmax
// frequencies; top-p never leaves the nucleus; seeds make runs repeatable.
#include "infer/sampler.h"
#include "test.h"

int main(void) {
    float logits[5] = {1.0f, 3.0f, 2.0f, 0.5f, 2.9f};
    tern_sampler s;
    CHECK_OK(tern_sampler_init(&s, 5, 0.0f, 1.0f, 1));
    CHECK(tern_sample(&s, logits) == 1);
    tern_sampler_free(&s);

    // temp 1, no top-p: empirical frequencies match softmax within 4 sigma.
    CHECK_OK(tern_sampler_init(&s, 5, 1.0f, 1.0f, 7));
    int counts[5] = {0}, N = 200000;
    for (int i = 0; i < N; i++) counts[tern_sample(&s, logits)]++;
    double z = 0;
    for (int i = 0; i < 5; i++) z += exp(logits[i]);
    for (int i = 0; i < 5; i++) {
        double p = exp(logits[i]) / z, sigma = sqrt(p * (1 - p) / N);
        CHECK_MSG(fabs((double)counts[i] / N - p) < 4 * sigma, "token %d: %.4f vs %.4f", i, (double)counts[i] / N, p);
    }
    tern_sampler_free(&s);

    // top-p 0.5: tokens 1 (p=.39) and 4 (p=.35) form the nucleus; nothing else appears.
    CHECK_OK(tern_sampler_init(&s, 5, 1.0f, 0.5f, 3));
    int seen[5] = {0};
    for (int i = 0; i < 20000; i++) seen[tern_sample(&s, logits)]++;
    CHECK(seen[0] == 0 && seen[2] == 0 && seen[3] == 0 && seen[1] > 0 && seen[4] > 0);
    tern_sampler_free(&s);

    // Same seed, same stream; different seed, different stream.
    tern_sampler a, b, c;
    CHECK_OK(tern_sampler_init(&a, 5, 1.0f, 1.0f, 11));
    CHECK_OK(tern_sampler_init(&b, 5, 1.0f, 1.0f, 11));
    CHECK_OK(tern_sampler_init(&c, 5, 1.0f, 1.0f, 12));
    int same = 1, differ = 0;
    for (int i = 0; i < 100; i++) {
        int x = tern_sample(&a, logits), y = tern_sample(&b, logits), w = tern_sample(&c, logits);
        same &= x == y;
        differ |= x != w;
    }
    CHECK(same && differ);
    tern_sampler_free(&a), tern_sampler_free(&b), tern_sampler_free(&c);
    CHECK_FAILS(tern_sampler_init(&s, 5, -1.0f, 1.0f, 1), "invalid sampling");
    CHECK_FAILS(tern_sampler_init(&s, 5, 1.0f, 0.0f, 1), "invalid sampling");
    return test_report();
}

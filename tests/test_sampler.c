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

    // llama.cpp's filters. top-k 2 at temperature 1: only the two best, in the
    // ratio of their probabilities (e^0 : e^-0.5 = 0.62 : 0.38).
    const float lg[6] = {-0.5f, 0.0f, -3.0f, -1.0f, -8.0f, -2.0f};
    float copy[6];
    memcpy(copy, lg, sizeof lg);
    CHECK_OK(tern_sampler_init(&s, 6, 1.0f, 1.0f, 5));
    CHECK_OK(tern_sampler_set_filters(&s, 2, 0, 1, 0));
    int count[6] = {0};
    for (int i = 0; i < 20000; i++) count[tern_sample(&s, lg)]++;
    CHECK_MSG(count[0] + count[1] == 20000 && fabs(count[1] / 20000.0 - 1 / (1 + exp(-0.5))) < 0.015, "%d %d",
              count[0], count[1]);
    // min-p 0.3: p_i >= 0.3 p_max at temperature 1, i.e. logit >= ln 0.3 = -1.20: tokens 0, 1, 3,
    // even at temperature 5 (the floor is taken before temperature, as in llama.cpp).
    tern_sampler_free(&s);
    CHECK_OK(tern_sampler_init(&s, 6, 5.0f, 1.0f, 6));
    CHECK_OK(tern_sampler_set_filters(&s, 0, 0.3f, 1, 0));
    memset(count, 0, sizeof count);
    for (int i = 0; i < 5000; i++) count[tern_sample(&s, lg)]++;
    CHECK(count[0] > 0 && count[1] > 0 && count[3] > 0 && count[0] + count[1] + count[3] == 5000);
    tern_sampler_free(&s);
    // Repetition penalty 1.1 over the last 2 tokens, greedy (logit / p when positive,
    // * p otherwise).
    const float pos[4] = {2.0f, 1.9f, -1.0f, 0.5f};
    CHECK_OK(tern_sampler_init(&s, 4, 0.0f, 1.0f, 1));
    CHECK_OK(tern_sampler_set_filters(&s, 0, 0, 1.1f, 2));
    CHECK(tern_sample(&s, pos) == 0);
    tern_sampler_accept(&s, 0); // 2.0 / 1.1 = 1.82 < 1.9
    CHECK(tern_sample(&s, pos) == 1);
    tern_sampler_accept(&s, 1); // both penalized: 1.82 vs 1.73
    CHECK(tern_sample(&s, pos) == 0);
    tern_sampler_accept(&s, 3), tern_sampler_accept(&s, 3); // the window (2) forgets 0 and 1
    CHECK(tern_sample(&s, pos) == 0 && pos[0] == 2.0f);
    tern_sampler_free(&s);
    CHECK_OK(tern_sampler_init(&s, 6, 0.0f, 1.0f, 1));
    CHECK_OK(tern_sampler_set_filters(&s, 0, 0, 2.0f, 4));
    tern_sampler_accept(&s, 1);
    // A zero logit stays zero (0 * 2): token 1 still beats -0.5; the caller's logits are untouched.
    CHECK(tern_sample(&s, lg) == 1 && memcmp(copy, lg, sizeof lg) == 0);
    tern_sampler_accept(&s, 0); // -0.5 * 2 = -1: further behind
    CHECK(tern_sample(&s, lg) == 1);
    CHECK_FAILS(tern_sampler_set_filters(&s, -1, 0, 1, 0), "invalid sampling");
    CHECK_FAILS(tern_sampler_set_filters(&s, 0, 0, 0, 0), "invalid sampling");
    tern_sampler_free(&s);
    return test_report();
}

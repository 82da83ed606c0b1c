#include "nn/transformer.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/threads.h"
#include "nn/matmul.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define TRANSFORMER_AVX2 1
#endif
// Tokens of one head a prompt's attention runs together (see scores_rows).
#if defined(TRANSFORMER_AVX2) && defined(__AVX512VL__)
#define ATT_ROWS 4 // 16 accumulators: ymm16-31 hold them
#elif defined(TRANSFORMER_AVX2)
#define ATT_ROWS 2
#else
#define ATT_ROWS 1
#endif

const char *const tern_linear_names[TERN_L_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                      "ffn_gate", "ffn_up", "ffn_down"};
const char *const tern_phase_names[TERN_PH_COUNT] = {"attn_norm", "qkv", "rope", "attention", "o",
                                                      "ffn_norm", "gate_up", "swiglu", "down", "head"};

// Adds the time since *t to phase ph of the profile and restarts *t (when profiling).
static void phase_end(tern_session *s, int ph, double *t) {
    if (!s->profile) return;
    double now = tern_now_sec();
    s->profile[ph] += now - *t;
    *t = now;
}

static int q_dim(const tern_config *c) { return c->n_heads * c->head_dim; }
static int kv_dim(const tern_config *c) { return c->n_kv_heads * c->head_dim; }

static tern_linear fp32_linear(int rows, int cols, const float *w, const float *bias) {
    return (tern_linear){.rows = rows, .cols = cols, .w = w, .bias = bias, .bytes = 4LL * rows * cols};
}

int tern_session_init(tern_session *s, const tern_model *m, int max_seq, int max_batch) {
    memset(s, 0, sizeof *s);
    s->model = m;
    s->cfg = m->cfg;
    const tern_config *c = &s->cfg;
    if (tern_model_bind(m, &s->w)) return -1;
    s->embd = tern_model_find(m, "token_embd.weight");
    s->lin = calloc((size_t)c->n_layers * TERN_L_COUNT, sizeof *s->lin);
    if (!s->lin) {
        tern_weights_free(&s->w);
        return tern_errorf("out of memory");
    }
    for (int l = 0; l < c->n_layers; l++) {
        const tern_layer_weights *L = &s->w.layers[l];
        tern_linear *lin = s->lin + (size_t)l * TERN_L_COUNT;
        int qd = q_dim(c), kvd = kv_dim(c), D = c->dim, H = c->hidden_dim;
        lin[TERN_L_Q] = fp32_linear(qd, D, L->wq, L->bq);
        lin[TERN_L_K] = fp32_linear(kvd, D, L->wk, L->bk);
        lin[TERN_L_V] = fp32_linear(kvd, D, L->wv, L->bv);
        lin[TERN_L_O] = fp32_linear(D, qd, L->wo, L->bo);
        lin[TERN_L_GATE] = fp32_linear(H, D, L->w_gate, L->b_gate);
        lin[TERN_L_UP] = fp32_linear(H, D, L->w_up, L->b_up);
        lin[TERN_L_DOWN] = fp32_linear(D, H, L->w_down, L->b_down);
    }
    s->head = fp32_linear(c->vocab_size, c->dim, s->w.output, NULL);
    if (max_seq <= 0) max_seq = c->max_seq < 4096 ? c->max_seq : 4096;
    if (max_batch <= 0) max_batch = 1;
    if (max_batch > max_seq) max_batch = max_seq;
    s->max_seq = max_seq;
    s->max_batch = max_batch;
    s->att_threads = tern_get_threads();
    size_t B = (size_t)max_batch, wide = (size_t)(q_dim(c) > c->dim ? q_dim(c) : c->dim);
    size_t cache = (size_t)c->n_layers * (size_t)max_seq * (size_t)kv_dim(c) * sizeof(float);
    // Not zeroed: attention reads only positions already written, so the
    // pages of a long context cost memory only as the conversation fills them
    // (a 1B model's 4096-token cache is 1 GB).
    s->key_cache = tern_alloc(cache);
    s->value_cache = tern_alloc(cache);
    s->x = tern_alloc(B * c->dim * 4);
    s->xb = tern_alloc(B * wide * 4);
    s->xb2 = tern_alloc(B * c->dim * 4);
    s->q = tern_alloc(B * q_dim(c) * 4);
    s->hb = tern_alloc(B * c->hidden_dim * 4);
    s->hb2 = tern_alloc(B * c->hidden_dim * 4);
    s->att = tern_alloc((size_t)s->att_threads * (max_batch > 1 ? ATT_ROWS : 1) * max_seq * 4);
    s->logits = tern_alloc(B * c->vocab_size * 4);
    s->pos = tern_alloc(B * sizeof(int));
    if (!s->key_cache || !s->value_cache || !s->x || !s->xb || !s->xb2 || !s->q || !s->hb || !s->hb2 ||
        !s->att || !s->logits || !s->pos ||
        tern_rope_init(&s->rope, c->head_dim, max_seq, c->rope_theta, c->rope_scaling, c->rope_factor,
                       c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_orig_max_seq)) {
        tern_session_free(s);
        return tern_errorf("%s: cannot allocate the inference state (context %d)", m->path, max_seq);
    }
    return 0;
}

void tern_session_free(tern_session *s) {
    tern_weights_free(&s->w);
    free(s->lin);
    tern_rope_free(&s->rope);
    void *bufs[] = {s->key_cache, s->value_cache, s->x, s->xb, s->xb2, s->q,
                    s->hb, s->hb2, s->att, s->logits, s->pos};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) tern_free(bufs[i]);
    memset(s, 0, sizeof *s);
}

// o[i] = Σ_j p[j] v[j·stride + i] for columns i in [i0, hd), each summed over
// j in order with FMAs; the accumulators stay in registers (32 columns at a time).
static void weighted_cols(float *o, const float *p, const float *v, int len, size_t stride, int i0, int hd) {
    int i = i0;
#ifdef TRANSFORMER_AVX2
    for (; i + 32 <= hd; i += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (int j = 0; j < len; j++) {
            const float *vj = v + (size_t)j * stride + i;
            __m256 w = _mm256_set1_ps(p[j]);
            a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vj), a0);
            a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vj + 8), a1);
            a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vj + 16), a2);
            a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vj + 24), a3);
        }
        _mm256_storeu_ps(o + i, a0);
        _mm256_storeu_ps(o + i + 8, a1);
        _mm256_storeu_ps(o + i + 16, a2);
        _mm256_storeu_ps(o + i + 24, a3);
    }
    for (; i + 8 <= hd; i += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int j = 0; j < len; j++)
            a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + (size_t)j * stride + i), a);
        _mm256_storeu_ps(o + i, a);
    }
    for (; i < hd; i++) {
        float acc = 0;
        for (int j = 0; j < len; j++) acc = fmaf(p[j], v[(size_t)j * stride + i], acc);
        o[i] = acc;
    }
#else
    for (; i < hd; i++) {
        float acc = 0;
        for (int j = 0; j < len; j++) acc += p[j] * v[(size_t)j * stride + i];
        o[i] = acc;
    }
#endif
}

// att[j] = (q . k_j) * scale for j in [j0, len) (j0 a multiple of 8), keys
// `stride` floats apart. With AVX2, 8 keys at a time and one transposing reduction for the 8 sums (one
// dot call and one horizontal sum per key cost ~14% of a ternary token).
static void scores_from(float *att, const float *q, const float *k, int j0, int len, size_t stride, int hd, float scale) {
    int j = j0;
#ifdef TRANSFORMER_AVX2
    if (hd % 8 == 0)
        for (; j + 8 <= len; j += 8) {
            __m256 acc[8];
            for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
            for (int i = 0; i < hd; i += 8) {
                __m256 qv = _mm256_loadu_ps(q + i);
                for (int r = 0; r < 8; r++)
                    acc[r] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + (size_t)(j + r) * stride + i), acc[r]);
            }
            // Lanes 0-3 / 4-7 of each: keys 0-3 / 4-7 summed over half of the 8 lanes.
            __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
            __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
            __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
            _mm256_storeu_ps(att + j, _mm256_mul_ps(sum, _mm256_set1_ps(scale)));
        }
#endif
    for (; j < len; j++) att[j] = tern_dot_f32(q, k + (size_t)j * stride, hd) * scale;
}

static void scores(float *att, const float *q, const float *k, int len, size_t stride, int hd, float scale) {
    scores_from(att, q, k, 0, len, stride, hd, scale);
}

static void weighted_rows(float *o, const float *p, const float *v, int len, size_t stride, int hd) {
    weighted_cols(o, p, v, len, stride, 0, hd);
}

// A prompt's attention runs ATT_ROWS consecutive tokens of one head together,
// so each key and value row loaded serves them all (one token at a time, every
// K/V load fed one FMA: ~25% of a 512-token prompt on 768-wide SmolLM-like
// shapes). Every score and output element is computed with exactly the
// operations of the one-token path (scores_from's 8-key blocks and reduction
// tree, weighted_cols' in-order FMAs), so a prompt and the same tokens fed one
// by one give bit-identical results (tests/test_transformer.c).

#if ATT_ROWS > 1
// Keys [0, J) (J a multiple of 8, hd of 8) for R <= ATT_ROWS rows, 4 keys at a
// time: per key the 8-lane FMA sum over hd and scores_from's hadd tree.
static inline __attribute__((always_inline)) void scores_rows(float *const *att, const float *const *q, const float *k,
                                                             int J, size_t stride, int hd, float scale, int R) {
    const __m256 vs = _mm256_set1_ps(scale);
    for (int j = 0; j < J; j += 4) {
        __m256 acc[ATT_ROWS][4];
        for (int r = 0; r < R; r++)
            for (int kk = 0; kk < 4; kk++) acc[r][kk] = _mm256_setzero_ps();
        for (int i = 0; i < hd; i += 8) {
            __m256 kv[4];
            for (int kk = 0; kk < 4; kk++) kv[kk] = _mm256_loadu_ps(k + (size_t)(j + kk) * stride + i);
            for (int r = 0; r < R; r++) {
                __m256 qv = _mm256_loadu_ps(q[r] + i);
                for (int kk = 0; kk < 4; kk++) acc[r][kk] = _mm256_fmadd_ps(qv, kv[kk], acc[r][kk]);
            }
        }
        for (int r = 0; r < R; r++) {
            __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(acc[r][0], acc[r][1]), _mm256_hadd_ps(acc[r][2], acc[r][3]));
            __m128 sum = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            _mm_storeu_ps(att[r] + j, _mm_mul_ps(sum, _mm256_castps256_ps128(vs)));
        }
    }
}

// o[r][i] = Σ_j p[r][j] v[j][i] over j < len[r] for R rows, 32 columns at a
// time (each V load serves the R rows), each element summed in order; the
// last hd % 32 columns through weighted_cols.
static inline __attribute__((always_inline)) void weighted_rows_multi(float *const *o, const float *const *p,
                                                                     const float *v, const int *len, size_t stride,
                                                                     int hd, int R) {
    int common = len[0];
    for (int r = 1; r < R; r++) common = len[r] < common ? len[r] : common;
    int i = 0;
    for (; i + 32 <= hd; i += 32) {
        __m256 a[ATT_ROWS][4];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < 4; c++) a[r][c] = _mm256_setzero_ps();
        for (int j = 0; j < common; j++) {
            const float *vj = v + (size_t)j * stride + i;
            __m256 v0 = _mm256_loadu_ps(vj), v1 = _mm256_loadu_ps(vj + 8), v2 = _mm256_loadu_ps(vj + 16),
                   v3 = _mm256_loadu_ps(vj + 24);
            for (int r = 0; r < R; r++) {
                __m256 w = _mm256_set1_ps(p[r][j]);
                a[r][0] = _mm256_fmadd_ps(w, v0, a[r][0]), a[r][1] = _mm256_fmadd_ps(w, v1, a[r][1]);
                a[r][2] = _mm256_fmadd_ps(w, v2, a[r][2]), a[r][3] = _mm256_fmadd_ps(w, v3, a[r][3]);
            }
        }
        for (int r = 0; r < R; r++) {
            for (int j = common; j < len[r]; j++) {
                const float *vj = v + (size_t)j * stride + i;
                __m256 w = _mm256_set1_ps(p[r][j]);
                for (int c = 0; c < 4; c++) a[r][c] = _mm256_fmadd_ps(w, _mm256_loadu_ps(vj + 8 * c), a[r][c]);
            }
            for (int c = 0; c < 4; c++) _mm256_storeu_ps(o[r] + i + 8 * c, a[r][c]);
        }
    }
    if (i < hd)
        for (int r = 0; r < R; r++) weighted_cols(o[r], p[r], v, len[r], stride, i, hd);
}
#endif

// One query head of one token against the cached keys/values of positions
// [0, len) of its KV head (kh, vh: that head's first row, rows kvd apart):
// scores into att, softmax, the weighted sum into out. The one-token path of
// attention() and the one-region step both run exactly this.
static void attend_head(float *out, float *att, const float *qh, const float *kh, const float *vh, int len, int kvd,
                        int hd, float scale) {
    scores(att, qh, kh, len, (size_t)kvd, hd, scale);
    tern_softmax(att, len);
    weighted_rows(out, att, vh, len, (size_t)kvd, hd);
}

// Causal grouped-query attention for n new tokens whose K/V are already cached.
// q[N, n_heads, hd] -> out[N, n_heads, hd].
static void attention(tern_session *s, int layer, const float *q, float *out, int n) {
    const tern_config *c = &s->cfg;
    int hd = c->head_dim, kvd = kv_dim(c), group = c->n_heads / c->n_kv_heads;
    const float *kc = s->key_cache + (size_t)layer * s->max_seq * kvd;
    const float *vc = s->value_cache + (size_t)layer * s->max_seq * kvd;
    float scale = 1.0f / sqrtf((float)hd);
    // Work ~ tokens x heads x context x head_dim; tiny steps stay on one thread.
    // A fork/join costs ~0.5 us on 2 cores, the work of 2^13 ~1-2 us: above it
    // a generated token's heads are split too (serial attention left the other
    // thread waiting for ~30% of a 2-thread ternary token, docs/PERFORMANCE.md).
    int64_t work = (int64_t)n * c->n_heads * (s->pos[n - 1] + 1) * hd;
#if ATT_ROWS > 1
    if (n > 1 && hd % 8 == 0) {
        const int nb = (n + ATT_ROWS - 1) / ATT_ROWS;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (work >= (1 << 13))
        for (int b = 0; b < nb; b++)
            for (int h = 0; h < c->n_heads; h++) {
#ifdef _OPENMP
                float *att = s->att + (size_t)omp_get_thread_num() * ATT_ROWS * s->max_seq;
#else
                float *att = s->att;
#endif
                const int t0 = b * ATT_ROWS, R = n - t0 < ATT_ROWS ? n - t0 : ATT_ROWS, kvh = h / group;
                const float *kh = kc + (size_t)kvh * hd, *qr[ATT_ROWS];
                float *ar[ATT_ROWS], *orow[ATT_ROWS];
                int len[ATT_ROWS], J = 1 << 30;
                for (int r = 0; r < R; r++) {
                    qr[r] = q + ((size_t)(t0 + r) * c->n_heads + h) * hd;
                    orow[r] = out + ((size_t)(t0 + r) * c->n_heads + h) * hd;
                    ar[r] = att + (size_t)r * s->max_seq;
                    len[r] = s->pos[t0 + r] + 1;
                    J = len[r] / 8 * 8 < J ? len[r] / 8 * 8 : J; // keys every row has in whole 8-key blocks
                }
                if (R == ATT_ROWS) scores_rows(ar, qr, kh, J, (size_t)kvd, hd, scale, ATT_ROWS); // R constant
                else scores_rows(ar, qr, kh, J, (size_t)kvd, hd, scale, R);
                for (int r = 0; r < R; r++) {
                    scores_from(ar[r], qr[r], kh, J, len[r], (size_t)kvd, hd, scale);
                    tern_softmax(ar[r], len[r]);
                }
                const float *vh = vc + (size_t)kvh * hd;
                if (R == ATT_ROWS) weighted_rows_multi(orow, (const float *const *)ar, vh, len, (size_t)kvd, hd, ATT_ROWS);
                else weighted_rows_multi(orow, (const float *const *)ar, vh, len, (size_t)kvd, hd, R);
            }
        return;
    }
#endif
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (work >= (1 << 13))
    for (int t = 0; t < n; t++)
        for (int h = 0; h < c->n_heads; h++) {
#ifdef _OPENMP
            float *att = s->att + (size_t)omp_get_thread_num() * s->max_seq;
#else
            float *att = s->att;
#endif
            size_t at = ((size_t)t * c->n_heads + h) * hd, kv = (size_t)(h / group) * hd;
            attend_head(out + at, att, q + at, kc + kv, vc + kv, s->pos[t] + 1, kvd, hd, scale);
        }
}

// x += in · lᵀ. For one token and a bias-free layer, x rides in the bias slot
// (x[r] = in · W[r] + x[r], the same sum as the separate add), so the add is
// part of the product's epilogue instead of a serial pass between parallel
// regions (tern_linear allows bias to alias out for n == 1).
static void linear_residual(const tern_linear *l, float *x, float *tmp, const float *in, int n) {
    if (n == 1 && !l->bias) {
        tern_linear with_residual = *l;
        with_residual.bias = x;
        tern_linear_forward(&with_residual, x, in, 1, 1);
        return;
    }
    tern_linear_forward(l, tmp, in, n, 1);
    tern_residual_forward(x, tmp, (int64_t)n * l->rows);
}

// Asks for layer l's cached keys and values of positions [0, len) ahead of
// attention. Generation streams ~60 MB of weights per token, so they come from
// DRAM each time; requested at the layer's start they load while q/k/v are
// computed (attention per token -20 to -25% at tg128, docs/PERFORMANCE.md).
// The lines are split into `parts` shares and this call asks for share `part`
// (the one-region step splits them over its threads).
static void prefetch_kv(const tern_session *s, int l, int len, int part, int parts) {
    size_t off = (size_t)l * s->max_seq * kv_dim(&s->cfg);
    size_t lines = ((size_t)len * kv_dim(&s->cfg) * sizeof(float) + 63) / 64;
    size_t b = lines * part / parts, e = lines * (part + 1) / parts; // this part's share of the lines
    const char *k = (const char *)(s->key_cache + off), *v = (const char *)(s->value_cache + off);
    for (size_t i = b * 64; i < e * 64; i += 64) {
        __builtin_prefetch(k + i, 0, 2); // read, into L2
        __builtin_prefetch(v + i, 0, 2);
    }
}

// Prepares in[n, dim] in place as the input of attn_output / ffn_down: BitNet's
// sub-norm (when the model has them), then its int8 activation fake
// quantization (when the model quantizes activations).
static void linear_input(const tern_config *c, float *in, const float *sub_norm, int n, int dim) {
    if (sub_norm) tern_rmsnorm_forward(in, in, sub_norm, n, dim, c->rms_eps);
    if (c->act_int8) tern_act_quant_int8_forward(in, n, dim);
}

static void layer_forward(tern_session *s, int l, int n, int pos0) {
    const tern_config *c = &s->cfg;
    const tern_layer_weights *L = &s->w.layers[l];
    const tern_linear *lin = s->lin + (size_t)l * TERN_L_COUNT;
    int D = c->dim, KVD = kv_dim(c), H = c->hidden_dim;
    float *kc = s->key_cache + ((size_t)l * s->max_seq + pos0) * KVD;
    float *vc = s->value_cache + ((size_t)l * s->max_seq + pos0) * KVD;

    // Attention block: K and V go straight into the cache rows of these positions.
    double t = s->profile ? tern_now_sec() : 0;
    if (n == 1) prefetch_kv(s, l, pos0, 0, 1);
    tern_rmsnorm_forward(s->xb, s->x, L->attn_norm, n, D, c->rms_eps);
    linear_input(c, s->xb, NULL, n, D);
    phase_end(s, TERN_PH_ATTN_NORM, &t);
    float *qkv_out[3] = {s->q, kc, vc};
    tern_linear_forward_many(&lin[TERN_L_Q], qkv_out, 3, s->xb, n); // q, k, v are consecutive
    phase_end(s, TERN_PH_QKV, &t);
    tern_rope_forward(s->q, &s->rope, s->pos, n, c->n_heads);
    tern_rope_forward(kc, &s->rope, s->pos, n, c->n_kv_heads);
    phase_end(s, TERN_PH_ROPE, &t);
    attention(s, l, s->q, s->xb, n);
    linear_input(c, s->xb, L->attn_sub_norm, n, q_dim(c));
    phase_end(s, TERN_PH_ATTN, &t);
    linear_residual(&lin[TERN_L_O], s->x, s->xb2, s->xb, n);
    phase_end(s, TERN_PH_O, &t);

    // SwiGLU feed-forward block.
    tern_rmsnorm_forward(s->xb, s->x, L->ffn_norm, n, D, c->rms_eps);
    linear_input(c, s->xb, NULL, n, D);
    phase_end(s, TERN_PH_FFN_NORM, &t);
    float *gate_up_out[2] = {s->hb, s->hb2};
    tern_linear_forward_many(&lin[TERN_L_GATE], gate_up_out, 2, s->xb, n); // gate, up
    phase_end(s, TERN_PH_GATE_UP, &t);
    if (c->ffn_act == TERN_FFN_RELU2) tern_relu2_glu_forward(s->hb, s->hb, s->hb2, (int64_t)n * H);
    else tern_swiglu_forward(s->hb, s->hb, s->hb2, (int64_t)n * H);
    linear_input(c, s->hb, L->ffn_sub_norm, n, H);
    phase_end(s, TERN_PH_SWIGLU, &t);
    linear_residual(&lin[TERN_L_DOWN], s->x, s->xb2, s->hb, n);
    phase_end(s, TERN_PH_DOWN, &t);
}

// ---- One generated token in one parallel region ----
//
// A token's forward used to fork and join a team for each product (q/k/v,
// attention, o, gate/up, down: 5 per layer, 151 per SmolLM2 token), with the
// norms, activation quantizations, RoPE and SwiGLU on one thread between
// them. Here the team is forked once per token and meets at one barrier per
// product. Threads take runs of 16-row blocks on the fly; RoPE runs in the
// q/k product on each run of rows as it is made (runs start and end on even
// rows: whole pairs), SwiGLU in the gate/up product on each run of both, and
// the one-thread steps (a norm and the next product's activation
// quantization) on the thread that finishes a product last, before it enters
// the barrier. Measured here: a fork/join 0.8 us, a barrier 0.3 us.
// Every row, head and element is computed with the same operations as in the
// forked path, so results are bit-identical to it and to the batched forward
// (tests/test_packed.c).

#define TEAM_ROW_BLOCK 16 // rows per unit of work, as in tern_linear_forward_many

typedef struct {
    atomic_int next;    // work units taken so far in this step (never reset)
    atomic_int arrived; // threads that finished their part of a product, over all products
    double serial_s;    // profile: the last one-thread step's seconds
} team_shared;

typedef struct {
    team_shared *sh;
    int tid, nt;
    int base;       // units of the loops this thread has finished
    double t;       // profile clock (thread 0)
    double fused_s; // profile: thread 0's seconds in RoPE / SwiGLU inside the current product
} team;

// Takes a run of units of the loop [base, base + total): about a 2nt-th of
// what is left, at least one, so threads of unequal speed finish together
// after a few compare-and-swaps. Returns its length (0: none left).
static int team_take(team *tm, int total, int *first) {
    int end = tm->base + total, cur = atomic_load_explicit(&tm->sh->next, memory_order_relaxed);
    while (cur < end) {
        int n = (end - cur) / (2 * tm->nt);
        n = n < 1 ? 1 : n;
        if (atomic_compare_exchange_weak_explicit(&tm->sh->next, &cur, cur + n, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *first = cur - tm->base;
            return n;
        }
    }
    return 0;
}

// The one-thread steps between products.
enum { SER_NONE, SER_PREP_O, SER_FFN_NORM, SER_PREP_DOWN, SER_ATTN_NORM, SER_HEAD_NORM };

static void team_prepare(const tern_linear *ls, int count, const float *in) {
    for (int i = 0; i < count; i++)
        if (ls[i].prepare) ls[i].prepare(&ls[i], in, i == 0);
}

// Layer l's (or, for SER_HEAD_NORM, the head's) one-thread step `what`.
static void serial_step(tern_session *s, int what, int l) {
    const tern_config *c = &s->cfg;
    const tern_layer_weights *L = l < c->n_layers ? &s->w.layers[l] : NULL;
    const tern_linear *lin = L ? s->lin + (size_t)l * TERN_L_COUNT : NULL;
    switch (what) {
    case SER_PREP_O:
        linear_input(c, s->xb, L->attn_sub_norm, 1, q_dim(c));
        team_prepare(&lin[TERN_L_O], 1, s->xb);
        break;
    case SER_FFN_NORM:
        tern_rmsnorm_forward(s->xb, s->x, L->ffn_norm, 1, c->dim, c->rms_eps);
        linear_input(c, s->xb, NULL, 1, c->dim);
        team_prepare(&lin[TERN_L_GATE], 2, s->xb);
        break;
    case SER_PREP_DOWN:
        linear_input(c, s->hb, L->ffn_sub_norm, 1, c->hidden_dim);
        team_prepare(&lin[TERN_L_DOWN], 1, s->hb);
        break;
    case SER_ATTN_NORM:
        tern_rmsnorm_forward(s->xb, s->x, L->attn_norm, 1, c->dim, c->rms_eps);
        linear_input(c, s->xb, NULL, 1, c->dim);
        team_prepare(&lin[TERN_L_Q], 3, s->xb);
        break;
    case SER_HEAD_NORM:
        tern_rmsnorm_forward(s->x, s->x, s->w.out_norm, 1, c->dim, c->rms_eps);
        team_prepare(&s->head, 1, s->x);
        break;
    }
}

// Ends a product: the thread that finishes last runs the serial step, then
// every thread waits for it. Profile (thread 0): the product's time to ph
// less thread 0's time in the RoPE or SwiGLU it contains (to ph_fused), the
// serial step's to ph_serial.
static void team_end(tern_session *s, team *tm, int total, int what, int l, int ph, int ph_fused, int ph_serial) {
    tm->base += total;
    if (atomic_fetch_add_explicit(&tm->sh->arrived, 1, memory_order_acq_rel) % tm->nt == tm->nt - 1) {
        double t0 = s->profile ? tern_now_sec() : 0;
        serial_step(s, what, l);
        if (s->profile) tm->sh->serial_s = tern_now_sec() - t0;
    }
#pragma omp barrier
    if (tm->tid == 0 && s->profile) {
        double now = tern_now_sec(), d = what == SER_NONE ? 0 : tm->sh->serial_s;
        s->profile[ph] += now - tm->t - d - tm->fused_s;
        s->profile[ph_fused] += tm->fused_s;
        s->profile[ph_serial] += d;
        tm->t = now, tm->fused_s = 0;
    }
}

static int row_blocks(const tern_linear *l) { return (l->rows + TEAM_ROW_BLOCK - 1) / TEAM_ROW_BLOCK; }

// Rows [*r0, *r1) of a linear with `rows` rows that the run of blocks [b0, b0 + nb) covers.
static void run_rows(int b0, int nb, int rows, int *r0, int *r1) {
    *r0 = b0 * TEAM_ROW_BLOCK;
    *r1 = (b0 + nb) * TEAM_ROW_BLOCK < rows ? (b0 + nb) * TEAM_ROW_BLOCK : rows;
}

// q, k, v of one token; each run of q or k rows rotated (RoPE) as soon as it
// is made. A run is one gemv_rows call per matrix it covers, so each thread
// streams one matrix at a time.
static void team_qkv(tern_session *s, team *tm, int l, float *kc, float *vc) {
    const tern_linear *ls = s->lin + (size_t)l * TERN_L_COUNT + TERN_L_Q;
    float *outs[3] = {s->q, kc, vc};
    int first[4] = {0}, b0, nb, pos = s->pos[0];
    for (int i = 0; i < 3; i++) first[i + 1] = first[i] + row_blocks(&ls[i]);
    while ((nb = team_take(tm, first[3], &b0)) > 0)
        for (int i = 0; i < 3; i++) {
            int lo = b0 > first[i] ? b0 : first[i], hi = b0 + nb < first[i + 1] ? b0 + nb : first[i + 1], r0, r1;
            if (lo >= hi) continue;
            run_rows(lo - first[i], hi - lo, ls[i].rows, &r0, &r1);
            ls[i].gemv_rows(&ls[i], outs[i], s->xb, r0, r1);
            if (i == 2) continue;
            double t0 = tm->tid == 0 && s->profile ? tern_now_sec() : 0;
            tern_rope_columns(outs[i], &s->rope, pos, r0, r1); // r0, r1 even: whole pairs
            if (t0 > 0) tm->fused_s += tern_now_sec() - t0;
        }
}

// out = in · lᵀ over the team; with x, x += the product instead (as
// linear_residual: x rides in the bias slot when the layer has no bias,
// otherwise the product goes through out).
static void team_linear(team *tm, const tern_linear *l, float *out, const float *in, float *x) {
    tern_linear with_residual = *l;
    if (x && !l->bias) with_residual.bias = x, out = x;
    int b0, nb, r0, r1;
    while ((nb = team_take(tm, row_blocks(l), &b0)) > 0) {
        run_rows(b0, nb, l->rows, &r0, &r1);
        with_residual.gemv_rows(&with_residual, out, in, r0, r1);
        if (x && l->bias)
            for (int r = r0; r < r1; r++) x[r] += out[r];
    }
}

// gate and up by runs of rows, each run's SwiGLU applied at once.
static void team_gate_up(tern_session *s, team *tm, int l) {
    const tern_config *c = &s->cfg;
    const tern_linear *g = s->lin + (size_t)l * TERN_L_COUNT + TERN_L_GATE, *u = g + 1;
    int b0, nb, r0, r1;
    while ((nb = team_take(tm, row_blocks(g), &b0)) > 0) {
        run_rows(b0, nb, g->rows, &r0, &r1);
        g->gemv_rows(g, s->hb, s->xb, r0, r1);
        u->gemv_rows(u, s->hb2, s->xb, r0, r1);
        double t0 = tm->tid == 0 && s->profile ? tern_now_sec() : 0;
        if (c->ffn_act == TERN_FFN_RELU2) tern_relu2_glu_forward(s->hb + r0, s->hb + r0, s->hb2 + r0, r1 - r0);
        else tern_swiglu_forward(s->hb + r0, s->hb + r0, s->hb2 + r0, r1 - r0);
        if (t0 > 0) tm->fused_s += tern_now_sec() - t0;
    }
}

// One token's attention over the team: heads taken on the fly, each exactly
// as attention() computes it for one token; a short context runs on thread 0
// (attention()'s threshold).
static void team_attention(tern_session *s, team *tm, int layer) {
    const tern_config *c = &s->cfg;
    int hd = c->head_dim, kvd = kv_dim(c), group = c->n_heads / c->n_kv_heads, len = s->pos[0] + 1;
    const float *kc = s->key_cache + (size_t)layer * s->max_seq * kvd;
    const float *vc = s->value_cache + (size_t)layer * s->max_seq * kvd;
    float scale = 1.0f / sqrtf((float)hd), *att = s->att + (size_t)tm->tid * s->max_seq;
    int h0, nh, alone = (int64_t)c->n_heads * len * hd < (1 << 13);
    while ((!alone || tm->tid == 0) && (nh = team_take(tm, c->n_heads, &h0)) > 0)
        for (int h = h0; h < h0 + nh; h++) {
            size_t kv = (size_t)(h / group) * hd;
            attend_head(s->xb + (size_t)h * hd, att, s->q + (size_t)h * hd, kc + kv, vc + kv, len, kvd, hd, scale);
        }
}

// Layer l of a one-token step; its attention input is normalized and
// prepared (by the previous barrier's serial step).
static void layer_team(tern_session *s, team *tm, int l) {
    const tern_config *c = &s->cfg;
    const tern_linear *lin = s->lin + (size_t)l * TERN_L_COUNT;
    int KVD = kv_dim(c), pos0 = s->pos[0];
    float *kc = s->key_cache + ((size_t)l * s->max_seq + pos0) * KVD;
    float *vc = s->value_cache + ((size_t)l * s->max_seq + pos0) * KVD;
    prefetch_kv(s, l, pos0, tm->tid, tm->nt);
    team_qkv(s, tm, l, kc, vc);
    team_end(s, tm, row_blocks(&lin[0]) + row_blocks(&lin[1]) + row_blocks(&lin[2]), SER_NONE, l, TERN_PH_QKV,
             TERN_PH_ROPE, TERN_PH_QKV);
    team_attention(s, tm, l);
    team_end(s, tm, c->n_heads, SER_PREP_O, l, TERN_PH_ATTN, TERN_PH_ATTN, TERN_PH_O);
    team_linear(tm, &lin[TERN_L_O], s->xb2, s->xb, s->x);
    team_end(s, tm, row_blocks(&lin[TERN_L_O]), SER_FFN_NORM, l, TERN_PH_O, TERN_PH_O, TERN_PH_FFN_NORM);
    team_gate_up(s, tm, l);
    team_end(s, tm, row_blocks(&lin[TERN_L_GATE]), SER_PREP_DOWN, l, TERN_PH_GATE_UP, TERN_PH_SWIGLU,
             TERN_PH_DOWN);
    team_linear(tm, &lin[TERN_L_DOWN], s->xb2, s->hb, s->x);
    int last = l == c->n_layers - 1;
    team_end(s, tm, row_blocks(&lin[TERN_L_DOWN]), last ? SER_HEAD_NORM : SER_ATTN_NORM, l + 1, TERN_PH_DOWN,
             TERN_PH_DOWN, last ? TERN_PH_HEAD : TERN_PH_ATTN_NORM);
}

// Whether a one-token step can run in one region: every linear has the
// row-range form (packed and bf16 storage; FP32 keeps its own GEMV) and heads
// have an even width (runs of rows then hold whole RoPE pairs).
static int team_fits(const tern_session *s) {
#ifdef _OPENMP
    // The calling thread's team size: tern serve gives each slot's thread its own share.
    if (omp_get_max_threads() < 2 || s->att_threads < 2 || omp_in_parallel() || s->cfg.head_dim % 2) return 0;
    for (int i = 0; i < s->cfg.n_layers * TERN_L_COUNT; i++)
        if (!s->lin[i].gemv_rows) return 0;
    return s->head.gemv_rows != NULL;
#else
    (void)s;
    return 0;
#endif
}

static void step_team(tern_session *s, float *logits_out) {
    const tern_config *c = &s->cfg;
    team_shared sh = {.serial_s = 0};
    atomic_init(&sh.next, 0);
    atomic_init(&sh.arrived, 0);
    double t = s->profile ? tern_now_sec() : 0;
    serial_step(s, SER_ATTN_NORM, 0);
    phase_end(s, TERN_PH_ATTN_NORM, &t);
#ifdef _OPENMP
    int nt = s->att_threads < omp_get_max_threads() ? s->att_threads : omp_get_max_threads();
#else
    int nt = 1;
#endif
#pragma omp parallel num_threads(nt)
    {
        team tm = {.sh = &sh, .t = t};
#ifdef _OPENMP
        tm.tid = omp_get_thread_num(), tm.nt = omp_get_num_threads();
#else
        tm.tid = 0, tm.nt = 1;
#endif
        for (int l = 0; l < c->n_layers; l++) layer_team(s, &tm, l);
        team_linear(&tm, &s->head, s->logits, s->x, NULL);
        if (tm.tid == 0 && s->profile) phase_end(s, TERN_PH_HEAD, &tm.t); // thread 0's part; the region's end waits
    }
    if (logits_out) memcpy(logits_out, s->logits, (size_t)c->vocab_size * 4);
}

// One step of at most max_batch tokens.
static void forward_step(tern_session *s, const int *tokens, int n, int pos0, float *logits_out) {
    const tern_config *c = &s->cfg;
    for (int i = 0; i < n; i++) s->pos[i] = pos0 + i;
    if (s->w.tok_embd) tern_embedding_forward(s->x, s->w.tok_embd, tokens, n, c->dim);
    else (void)tern_tensor_rows(s->embd, tokens, n, s->x); // cannot fail: tern_forward checked the ids
    if (n == 1 && team_fits(s)) {
        step_team(s, logits_out);
        return;
    }
    for (int l = 0; l < c->n_layers; l++) layer_forward(s, l, n, pos0);
    double t = s->profile ? tern_now_sec() : 0;
    if (logits_out) {
        tern_rmsnorm_forward(s->x, s->x, s->w.out_norm, n, c->dim, c->rms_eps);
        tern_linear_forward(&s->head, logits_out, s->x, n, 1);
        memcpy(s->logits, logits_out + (size_t)(n - 1) * c->vocab_size, (size_t)c->vocab_size * 4);
    } else {
        // Only the last token's logits are needed (generation).
        float *last = s->x + (size_t)(n - 1) * c->dim;
        tern_rmsnorm_forward(last, last, s->w.out_norm, 1, c->dim, c->rms_eps);
        tern_linear_forward(&s->head, s->logits, last, 1, 1);
    }
    phase_end(s, TERN_PH_HEAD, &t);
}

int tern_forward(tern_session *s, const int *tokens, int n, int pos0, float *logits_out) {
    const tern_config *c = &s->cfg;
    if (n <= 0) return tern_errorf("forward: no tokens");
    if (pos0 < 0 || pos0 + n > s->max_seq)
        return tern_errorf("forward: positions %d..%d exceed the context of %d", pos0, pos0 + n - 1, s->max_seq);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return tern_errorf("forward: token id %d outside the vocabulary (%d)", tokens[i], c->vocab_size);
    for (int done = 0; done < n; done += s->max_batch) {
        int step = n - done < s->max_batch ? n - done : s->max_batch;
        float *lo = logits_out ? logits_out + (size_t)done * c->vocab_size : NULL;
        forward_step(s, tokens + done, step, pos0 + done, lo);
    }
    return 0;
}

#include "infer/packed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/half.h"
#include "core/mem.h"
#include "kernels/kernels.h"
#include "nn/matmul.h"
#include "quant/quant.h"
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#define MAX_ACTS 8

// One weight matrix in a non-FP32 storage, the ctx of its tern_linear.
typedef struct {
    tern_packed *owner;
    tern_kmatrix m;     // packed formats
    uint16_t *bf16;     // bf16 format
    void *data;
} plinear;

struct tern_packed {
    tern_kimpl impl;
    int max_batch;
    plinear *lins;      // [n_layers * 7 + 1]
    int n_lins;
    tern_qact acts[MAX_ACTS]; // one per distinct (cols, activation group) input
    unsigned act_input[MAX_ACTS]; // the input each holds (a count of fresh inputs)
    unsigned input;     // bumped by every fresh input
    int n_acts;
    int64_t embd_bytes; // embedding table in the file (0 when tied to the head)
    int native;         // linears run a loaded .tern file's packed bytes
    int kept;           // set_format: Q2_0 linears whose 2-bit packing was kept (not ternary)
    int lossy;          // set_format: linears with exact packed codes that had to be re-ternarized
    double lossy_err2, lossy_norm2; // their squared weight error and squared norm
    int64_t file_bytes; // native: the file's size
    const char *name;   // native: the body format's name ("tern-t2", ...)
    int requant;        // native: linears the loader requantized to q8-row (no exact packing)
    char requant_types[64]; // their types ("Q6_K, Q3_K")
    float requant_err;  // their largest relative weight error
};

// The activation buffer of m's input (shared by matrices of the same width and activation group).
static tern_qact *act_for(tern_packed *p, const tern_kmatrix *m) {
    int cols = m->cols, group = tern_kact_group(m);
    for (int i = 0; i < p->n_acts; i++)
        if (p->acts[i].cols == cols && p->acts[i].group == group) return &p->acts[i];
    if (p->n_acts == MAX_ACTS) return NULL;
    tern_qact *a = &p->acts[p->n_acts];
    if (tern_qact_init(a, p->max_batch, cols, group)) return NULL;
    p->n_acts++;
    return a;
}

// m's input `in` quantized: once per input and buffer, so q/k/v (and
// gate/up) quantize it once when they share a buffer, and each buffer once
// when their formats need different activation groups.
static tern_qact *quantized_input(tern_packed *p, const tern_kmatrix *m, const float *in, int n, int fresh) {
    tern_qact *a = act_for(p, m);
    if (fresh) p->input++;
    unsigned *held = &p->act_input[a - p->acts];
    if (*held != p->input || a->n != n) tern_quantize_act(p->impl, a, in, n), *held = p->input;
    return a;
}

static void packed_apply(const tern_linear *l, float *out, const float *in, int n, int fresh) {
    plinear *pl = l->ctx;
    tern_packed *p = pl->owner;
    tern_qact *a = quantized_input(p, &pl->m, in, n, fresh);
    if (n == 1) tern_kgemv(p->impl, &pl->m, a, 0, l->bias, out);
    else tern_kgemm(p->impl, &pl->m, a, n, l->bias, out, (size_t)l->rows);
}

static void packed_prepare(const tern_linear *l, const float *in, int fresh) {
    plinear *pl = l->ctx;
    quantized_input(pl->owner, &pl->m, in, 1, fresh);
}

static void packed_gemv_rows(const tern_linear *l, float *out, const float *in, int r0, int r1) {
    (void)in; // quantized by packed_prepare
    const plinear *pl = l->ctx;
    tern_packed *p = pl->owner;
    tern_kgemv_rows(p->impl, &pl->m, act_for(p, &pl->m), 0, l->bias, out, r0, r1);
}

static float dot_bf16(const uint16_t *w, const float *x, int n) {
    int k = 0;
    float s = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; k + 16 <= n; k += 16) {
        __m256i a = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + k))), 16);
        __m256i b = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + k + 8))), 16);
        acc0 = _mm256_fmadd_ps(_mm256_castsi256_ps(a), _mm256_loadu_ps(x + k), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_castsi256_ps(b), _mm256_loadu_ps(x + k + 8), acc1);
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(acc0, acc1));
    s = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
#endif
    for (; k < n; k++) s += tern_bf16_to_f32(w[k]) * x[k];
    return s;
}

static void bf16_gemv_rows(const tern_linear *l, float *out, const float *in, int r0, int r1) {
    const plinear *pl = l->ctx;
    for (int r = r0; r < r1; r++)
        out[r] = dot_bf16(pl->bf16 + (size_t)r * l->cols, in, l->cols) + (l->bias ? l->bias[r] : 0);
}

// Prompt batches: bf16 rows are widened to FP32 one panel at a time and
// multiplied by the FP32 GEMM (single-threaded OpenBLAS sgemm per panel when
// built with it), so a BF16 baseline processes prompts at FP32 GEMM speed
// plus the widening, as a good BF16 CPU implementation does.
#define BF16_PANEL 128

static void bf16_gemm(const tern_linear *l, float *out, const float *in, int n) {
    const plinear *pl = l->ctx;
    int rows = l->rows, cols = l->cols, n_panels = (rows + BF16_PANEL - 1) / BF16_PANEL;
    tern_gemm_serial_prepare();
#pragma omp parallel
    {
        float *panel = tern_alloc((size_t)BF16_PANEL * cols * sizeof(float));
#pragma omp for schedule(static)
        for (int p = 0; p < n_panels; p++) {
            int r0 = p * BF16_PANEL, nr = rows - r0 < BF16_PANEL ? rows - r0 : BF16_PANEL;
            if (!panel) { // out of memory: the per-row path
                for (int t = 0; t < n; t++)
                    bf16_gemv_rows(l, out + (size_t)t * rows, in + (size_t)t * cols, r0, r0 + nr);
                continue;
            }
            const uint16_t *w = pl->bf16 + (size_t)r0 * cols;
            for (size_t i = 0; i < (size_t)nr * cols; i++) panel[i] = tern_bf16_to_f32(w[i]);
            if (l->bias)
                for (int t = 0; t < n; t++) memcpy(out + (size_t)t * rows + r0, l->bias + r0, (size_t)nr * sizeof(float));
            tern_gemm_serial_f32(0, 1, n, nr, cols, 1.0f, in, cols, panel, cols, l->bias ? 1.0f : 0.0f, out + r0, rows);
        }
        tern_free(panel);
    }
}

static void bf16_apply(const tern_linear *l, float *out, const float *in, int n, int fresh) {
    (void)fresh;
    if (n > 8) {
        bf16_gemm(l, out, in, n);
        return;
    }
    const plinear *pl = l->ctx;
    int rows = l->rows, cols = l->cols;
#pragma omp parallel for schedule(static) if ((long long)rows * cols * n >= (1 << 18))
    for (int r = 0; r < rows; r++) {
        const uint16_t *w = pl->bf16 + (size_t)r * cols;
        float b = l->bias ? l->bias[r] : 0;
        for (int t = 0; t < n; t++) out[(size_t)t * rows + r] = dot_bf16(w, in + (size_t)t * cols, cols) + b;
    }
}

// Ternary codes and absmean scales of one matrix, per group of `group` columns.
void tern_absmean_ternary(const float *w, int rows, int cols, int group, int8_t *codes, float *scales) {
    int n_groups = (cols + group - 1) / group;
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < n_groups; g++) {
            int c0 = g * group, c1 = c0 + group < cols ? c0 + group : cols;
            const float *x = w + (size_t)r * cols + c0;
            // The same rule the quantization methods use (quant/group.c); an
            // all-zero group keeps scale 0.
            scales[(size_t)r * n_groups + g] = tern_group_absmean(x, c1 - c0);
            tern_group_absmean_codes(x, c1 - c0, codes + (size_t)r * cols + c0);
        }
}

// Exact recovery of one group's ternary structure from its effective values:
// at most three distinct levels, L < M < H with M - L == H - M (shift: gamma = M,
// alpha = (H - L)/2; two levels: their midpoint and half-distance; one level:
// gamma = it, alpha = 0). Without a shift the levels must be within {-a, 0, a}.
// Returns the number of distinct levels, or -1 when they are not ternary.
int tern_ternary_recover_group(const float *x, int n, int shift, int8_t *T, float *alpha, float *gamma) {
    float lv[3];
    int nl = 0;
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < nl && lv[k] != x[i]) k++;
        if (k < nl) continue;
        if (nl == 3) return -1;
        lv[nl++] = x[i];
    }
    for (int i = 0; i < nl; i++) // sort the (at most 3) levels
        for (int j = i + 1; j < nl; j++)
            if (lv[j] < lv[i]) {
                float t = lv[i];
                lv[i] = lv[j], lv[j] = t;
            }
    float a = 0, c = 0;
    if (shift) {
        if (nl == 1) c = lv[0];
        else if (nl == 2) c = 0.5f * (lv[0] + lv[1]), a = 0.5f * (lv[1] - lv[0]);
        else {
            float d0 = lv[1] - lv[0], d1 = lv[2] - lv[1];
            if (fabsf(d0 - d1) > 1e-4f * (d0 + d1)) return -1;
            c = lv[1], a = 0.5f * (lv[2] - lv[0]);
        }
    } else {
        for (int k = 0; k < nl; k++) a = fmaxf(a, fabsf(lv[k]));
        for (int k = 0; k < nl; k++)
            if (lv[k] != 0 && fabsf(fabsf(lv[k]) - a) > 1e-6f * a) return -1;
    }
    for (int i = 0; i < n; i++) {
        float d = x[i] - c;
        T[i] = a > 0 && fabsf(d) > 0.5f * a ? (d > 0 ? 1 : -1) : 0;
    }
    *alpha = a, *gamma = c;
    return nl;
}

// Recovers every group of w (rows x cols) exactly; 0, or -1 at the first
// group that is not ternary.
static int recover_all(const float *w, int rows, int cols, int group, int shift, int8_t *codes, float *scales,
                       float *shifts) {
    int ng = (cols + group - 1) / group;
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < ng; g++) {
            int c0 = g * group, n = c0 + group < cols ? group : cols - c0;
            size_t j = (size_t)r * ng + g, o = (size_t)r * cols + c0;
            float gamma;
            if (tern_ternary_recover_group(w + o, n, shift, codes + o, &scales[j], &gamma) < 0) return -1;
            if (shifts) shifts[j] = gamma;
        }
    return 0;
}

int tern_ternary_codes(const float *w, int rows, int cols, int group, int8_t *codes, float *scales, float *shifts) {
    if (recover_all(w, rows, cols, group, 0, codes, scales, NULL) == 0) {
        if (shifts) memset(shifts, 0, (size_t)rows * ((cols + group - 1) / group) * sizeof(float));
        return TERN_TERNARY_EXACT;
    }
    if (shifts && recover_all(w, rows, cols, group, 1, codes, scales, shifts) == 0) return TERN_TERNARY_EXACT_SHIFT;
    tern_absmean_ternary(w, rows, cols, group, codes, scales);
    if (shifts) memset(shifts, 0, (size_t)rows * ((cols + group - 1) / group) * sizeof(float));
    return TERN_TERNARY_ABSMEAN;
}

void tern_ternary_error(const float *w, int rows, int cols, int group, const int8_t *codes, const float *scales,
                        const float *shifts, double *err2, double *norm2) {
    int ng = (cols + group - 1) / group;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            size_t g = (size_t)r * ng + c / group, i = (size_t)r * cols + c;
            float a = tern_f16_to_f32(tern_f32_to_f16(scales[g]));
            float b = shifts ? tern_f16_to_f32(tern_f32_to_f16(shifts[g])) : 0.0f;
            double e = (double)w[i] - ((double)a * codes[i] + b);
            *err2 += e * e, *norm2 += (double)w[i] * w[i];
        }
}

static void set_packed_hooks(tern_linear *l, plinear *pl) {
    l->apply = packed_apply;
    l->prepare = packed_prepare;
    l->gemv_rows = packed_gemv_rows;
    l->ctx = pl;
}

// The AVX-512 kernels read ternary, q4g and q8-row matrices row-interleaved (kernels/formats.h):
// a thread's share of a one-token product is then one sequential stream, which
// streams from DRAM at 93-100% of a plain read (tern-t2) where the row layout
// reaches 70-75% (docs/PERFORMANCE.md). Whether l's matrix m gets that layout.
static int wants_ilv(const tern_packed *p, const tern_kmatrix *m) {
    return p->impl == TERN_KIMPL_AVX512 && tern_kilv_ok(m);
}

// m's interleaved copy in a new buffer; NULL (error set) when out of memory.
static uint8_t *ilv_new(const tern_kmatrix *m) {
    uint8_t *ilv = tern_alloc((size_t)m->rows * m->row_bytes);
    if (!ilv) tern_errorf("out of memory");
    else tern_kilv_pack(m, ilv);
    return ilv;
}

// A layer that packed its own matrix keeps only the interleaved copy.
static int interleave_own(tern_packed *p, plinear *pl) {
    if (!wants_ilv(p, &pl->m)) return 0;
    uint8_t *ilv = ilv_new(&pl->m);
    if (!ilv) return -1;
    tern_free(pl->data);
    pl->data = ilv;
    pl->m.data = NULL, pl->m.ilv = ilv;
    return 0;
}

// A layer that views a loaded tensor's packed bytes uses the tensor's
// interleaved copy, made by the first session that needs it and shared by the
// others (a server's slots): the tensor is const to sessions but this memo is
// published once with a compare-and-swap, so sessions made at the same time on
// other threads either install their copy or free it and take the winner's.
static int interleave_view(tern_packed *p, plinear *pl, const tern_tensor *t) {
    if (!wants_ilv(p, &pl->m)) return 0;
    void **memo = &((tern_tensor *)t)->packed_copy;
    uint8_t *ilv = __atomic_load_n(memo, __ATOMIC_ACQUIRE);
    if (!ilv) {
        uint8_t *mine = ilv_new(&pl->m);
        if (!mine) return -1;
        void *none = NULL;
        if (__atomic_compare_exchange_n(memo, &none, mine, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) ilv = mine;
        else tern_free(mine), ilv = none;
    }
    pl->m.data = NULL, pl->m.ilv = ilv;
    return 0;
}

// Packs l as fmt. Ternary: exactly ternary weights keep their codes and
// scales (tern_ternary_codes; a DLT model its shifts), at `group` when they
// are ternary per group of it, else at the group their packed source t was
// loaded with; anything else is absmean PTQ, counted in p->lossy when t
// carried exact packed codes. q8: absmax per block.
static int pack_linear(tern_packed *p, plinear *pl, tern_linear *l, tern_kfmt_id fmt, int group, const tern_tensor *t) {
    const tern_kformat *f = tern_kformat_get(fmt);
    int rows = l->rows, cols = l->cols;
    if (group > cols) group = cols;
    const tern_kformat *tf = t && t->packed ? tern_kformat_get((tern_kfmt_id)t->packed_fmt) : NULL;
    int tg = tf && tf->kind == TERN_KKIND_TERNARY && t->packed_group < cols ? t->packed_group : 0;
    int gmin = tg && tg < group ? tg : group;
    size_t ng = (size_t)rows * (size_t)((cols + gmin - 1) / gmin);
    int8_t *codes = malloc((size_t)rows * cols);
    float *scales = malloc(ng * sizeof(float)), *shifts = malloc(ng * sizeof(float));
    int rc = codes && scales && shifts ? 0 : tern_errorf("out of memory"), kind = TERN_TERNARY_ABSMEAN;
    if (rc == 0 && fmt == TERN_KFMT_Q8) tern_absmax_q8(l->w, rows, cols, group, codes, scales, NULL, NULL);
    else if (rc == 0) {
        kind = tern_ternary_codes(l->w, rows, cols, group, codes, scales, shifts);
        if (kind == TERN_TERNARY_ABSMEAN && tg && tg != group) {
            group = tg;
            kind = tern_ternary_codes(l->w, rows, cols, group, codes, scales, shifts);
        }
        if (kind == TERN_TERNARY_ABSMEAN && tf) {
            p->lossy++;
            tern_ternary_error(l->w, rows, cols, group, codes, scales, NULL, &p->lossy_err2, &p->lossy_norm2);
        }
    }
    int shift = kind == TERN_TERNARY_EXACT_SHIFT;
    size_t row_bytes = rc ? 0 : tern_kformat_row_bytes(f, cols, group, shift);
    if (rc == 0 && !row_bytes) rc = -1;
    pl->owner = p;
    pl->data = rc ? NULL : tern_calloc((size_t)rows * row_bytes);
    if (rc == 0 && !pl->data) rc = tern_errorf("out of memory");
    if (rc == 0) rc = tern_kmatrix_init(&pl->m, f, rows, cols, group, shift, pl->data);
    if (rc == 0) rc = tern_kpack(&pl->m, pl->data, codes, scales, shift ? shifts : NULL, NULL);
    free(codes), free(scales), free(shifts);
    if (rc || interleave_own(p, pl)) return -1;
    if (!act_for(p, &pl->m)) return tern_errorf("packed inference: cannot allocate activation buffers");
    set_packed_hooks(l, pl);
    l->bytes = (long long)rows * (long long)row_bytes;
    return 0;
}

static int bf16_linear(plinear *pl, tern_packed *p, tern_linear *l) {
    size_t n = (size_t)l->rows * l->cols;
    pl->owner = p;
    pl->bf16 = tern_alloc(n * sizeof(uint16_t));
    if (!pl->bf16) return -1;
    pl->data = pl->bf16;
    for (size_t i = 0; i < n; i++) pl->bf16[i] = tern_f32_to_bf16(l->w[i]);
    l->apply = bf16_apply;
    l->prepare = NULL;
    l->gemv_rows = bf16_gemv_rows;
    l->ctx = pl;
    l->bytes = (long long)n * 2;
    return 0;
}

void tern_packed_free(tern_packed *p) {
    if (!p) return;
    for (int i = 0; p->lins && i < p->n_lins; i++) tern_free(p->lins[i].data);
    for (int i = 0; i < p->n_acts; i++) tern_qact_free(&p->acts[i]);
    free(p->lins);
    free(p);
}

// The model tensor behind linear i of s (decoder linears layer by layer in
// TERN_L_* order, then the head); NULL if none.
static const tern_tensor *tensor_of(const tern_session *s, int i) {
    char name[TERN_NAME_MAX];
    if (i == s->cfg.n_layers * TERN_L_COUNT)
        snprintf(name, sizeof name, "%s", s->cfg.tied_embeddings ? "token_embd.weight" : "output.weight");
    else snprintf(name, sizeof name, "blk.%d.%s.weight", i / TERN_L_COUNT, tern_linear_names[i % TERN_L_COUNT]);
    return tern_model_find(s->model, name);
}

// Points l at a loaded tensor's packed bytes (no copy, no re-quantization).
static int native_linear(tern_packed *p, plinear *pl, tern_linear *l, const tern_tensor *t) {
    const tern_kformat *f = tern_kformat_get((tern_kfmt_id)t->packed_fmt);
    if (t->ndim != 2 || t->shape[0] != l->rows || t->shape[1] != l->cols)
        return tern_errorf("packed tensor %s does not match its layer's shape", t->name);
    pl->owner = p;
    if (tern_kmatrix_init(&pl->m, f, l->rows, l->cols, t->packed_group, t->packed_shift, t->packed)) return -1;
    if ((size_t)l->rows * pl->m.row_bytes != t->packed_bytes)
        return tern_errorf("packed tensor %s has %zu bytes, expected %zu", t->name, t->packed_bytes,
                           (size_t)l->rows * pl->m.row_bytes);
    if (t->packed_ilv) pl->m.data = NULL, pl->m.ilv = t->packed; // only that layout (any kernel reads it)
    else if (interleave_view(p, pl, t)) return -1;
    if (!act_for(p, &pl->m)) return tern_errorf("packed inference: cannot allocate activation buffers");
    set_packed_hooks(l, pl);
    l->bytes = (long long)t->packed_bytes;
    return 0;
}

// An empty packed state with one slot per linear (decoder blocks, then the
// head) and the kernel choice. *out is NULL only when nothing was allocated;
// otherwise a non-zero return leaves *out for the caller to free.
static int packed_new(const tern_session *s, tern_packed **out) {
    tern_packed *p = calloc(1, sizeof *p);
    *out = p;
    if (!p) return tern_errorf("out of memory");
    p->max_batch = s->max_batch;
    p->n_lins = s->cfg.n_layers * TERN_L_COUNT + 1;
    p->lins = calloc((size_t)p->n_lins, sizeof *p->lins);
    return p->lins ? tern_kernel_default(&p->impl) : tern_errorf("out of memory");
}

// The note on the linears the loader requantized (tern_tensor.packed_err).
static void requant_note(tern_packed *p, const tern_tensor *t) {
    if (!(t->packed_err > 0)) return;
    size_t n = strlen(p->requant_types);
    if (!strstr(p->requant_types, t->src_type) && n + strlen(t->src_type) + 3 < sizeof p->requant_types)
        snprintf(p->requant_types + n, sizeof p->requant_types - n, "%s%s", n ? ", " : "", t->src_type);
    p->requant++;
    if (t->packed_err > p->requant_err) p->requant_err = t->packed_err;
}

int tern_session_use_native(tern_session *s, tern_packed **out) {
    *out = NULL;
    int any = 0;
    for (int i = 0; i < s->model->n_tensors; i++) any |= s->model->tensors[i].packed != NULL;
    if (!any) return 0; // nothing packed: the FP32 session is the model
    tern_packed *p;
    int rc = packed_new(s, &p);
    if (!p) return rc;
    p->native = 1;
    for (int i = 0; i < p->n_lins && rc == 0; i++) {
        int is_head = i == p->n_lins - 1;
        tern_linear *l = is_head ? &s->head : &s->lin[i];
        const tern_tensor *t = tensor_of(s, i);
        // A head stored as bf16 (BitNet's) runs as bf16: the same values at half the bytes of FP32.
        if (is_head && t && !t->packed && strcmp(t->src_type, "BF16") == 0) rc = bf16_linear(&p->lins[i], p, l);
        if (!t || !t->packed) continue;
        rc = native_linear(p, &p->lins[i], l, t);
        requant_note(p, t);
        if (rc == 0 && !is_head && !p->name) p->name = tern_kformat_get((tern_kfmt_id)t->packed_fmt)->name;
    }
    if (rc == 0 && p->requant)
        fprintf(stderr, "note: %d linear%s stored as %s run%s as 8-bit per 32 weights: relative weight error %s%.2e\n",
                p->requant, p->requant > 1 ? "s" : "", p->requant_types, p->requant > 1 ? "" : "s",
                p->requant > 1 ? "up to " : "", p->requant_err);
    struct stat st;
    // A directory (Hugging Face) has no one size: the weights' bytes count instead.
    p->file_bytes = stat(s->model->path, &st) == 0 && S_ISREG(st.st_mode) ? (int64_t)st.st_size : 0;
    if (rc) {
        tern_packed_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

const char *tern_packed_format_name(const tern_packed *p) {
    return p && p->native && p->name ? p->name : NULL;
}

int tern_format_known(const char *format) {
    static const char *names[] = {"native", "f32", "bf16", "t2", "tern-t2", "t1.6", "tern-t1.6", "q8"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (!strcmp(format, names[k])) return 1;
    return 0;
}

int tern_session_set_format(tern_session *s, const char *format, int group, tern_packed **out) {
    *out = NULL;
    if (!strcmp(format, "native")) return tern_session_use_native(s, out);
    if (s->model->packed_only)
        return tern_errorf("%s: --format %s needs the FP32 weights, and the model was loaded for packed inference "
                           "only (format native)", s->model->path, format);
    if (!strcmp(format, "f32")) return 0;
    int is_bf16 = !strcmp(format, "bf16");
    tern_kfmt_id body = TERN_KFMT_T2;
    if (!strcmp(format, "t2") || !strcmp(format, "tern-t2")) body = TERN_KFMT_T2;
    else if (!strcmp(format, "t1.6") || !strcmp(format, "tern-t1.6")) body = TERN_KFMT_T1_6;
    else if (!strcmp(format, "q8")) body = TERN_KFMT_Q8;
    else if (!is_bf16) return tern_errorf("unknown format '%s' (f32, bf16, t2, t1.6, q8)", format);
    if (group <= 0) group = 128;
    tern_packed *p;
    int rc = packed_new(s, &p);
    if (!p) return rc;
    for (int i = 0; i < p->n_lins && rc == 0; i++) {
        int is_head = i == p->n_lins - 1;
        tern_linear *l = is_head ? &s->head : &s->lin[i];
        const tern_tensor *t = tensor_of(s, i);
        int q8 = is_head || body == TERN_KFMT_Q8;
        if (is_bf16) rc = bf16_linear(&p->lins[i], p, l);
        else if (q8 && t && t->packed && t->packed_fmt == TERN_KFMT_Q8) rc = native_linear(p, &p->lins[i], l, t);
        else if (!q8 && t && t->packed && !strcmp(t->src_type, "Q2_0") && t->packed_fmt == TERN_KFMT_Q2G) {
            rc = native_linear(p, &p->lins[i], l, t); // llama.cpp Q2_0 using code 2: no ternary form
            p->kept++;
        }
        else if (q8) rc = pack_linear(p, &p->lins[i], l, TERN_KFMT_Q8, TERN_KQ8_GROUP, t);
        else rc = pack_linear(p, &p->lins[i], l, body, group, t);
    }
    if (rc == 0 && p->kept)
        fprintf(stderr, "note: --format %s: %d Q2_0 linears use code 2 (not ternary); they run in their own 2-bit "
                        "packing\n", format, p->kept);
    if (rc == 0 && p->lossy)
        fprintf(stderr, "note: --format %s: %d linears held exact packed codes that are not ternary at G=%d or at "
                        "their own group; re-ternarized by absmean, weight rel. RMSE %.4f\n",
                format, p->lossy, group, sqrt(p->lossy_err2 / (p->lossy_norm2 > 0 ? p->lossy_norm2 : 1)));
    // An untied embedding table is stored like the head (8 bits, or bf16).
    if (!s->cfg.tied_embeddings)
        p->embd_bytes = is_bf16 ? 2LL * s->cfg.vocab_size * s->cfg.dim
                                : (int64_t)s->cfg.vocab_size * (int64_t)tern_kformat_row_bytes(tern_kformat_get(TERN_KFMT_Q8), s->cfg.dim, TERN_KQ8_GROUP, 0);
    if (rc) {
        tern_packed_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

static int64_t norm_bytes(const tern_session *s) { return 4LL * s->cfg.dim * (2 * s->cfg.n_layers + 1); }

int64_t tern_session_weight_bytes(const tern_session *s) {
    int64_t b = s->head.bytes + norm_bytes(s) + 4LL * s->cfg.dim; // one embedding row
    for (int i = 0; i < s->cfg.n_layers * TERN_L_COUNT; i++) b += s->lin[i].bytes;
    return b;
}

int64_t tern_session_file_bytes(const tern_session *s, const tern_packed *p) {
    if (p && p->native && p->file_bytes > 0) return p->file_bytes;
    int64_t b = tern_session_weight_bytes(s) - 4LL * s->cfg.dim;
    // An untied embedding table is a file's extra tensor (FP32 when unpacked).
    if (!s->cfg.tied_embeddings) b += p ? p->embd_bytes : 4LL * s->cfg.vocab_size * s->cfg.dim;
    return b;
}

// Replaces w[rows, cols] by scale[g] * code (scales fp16-rounded like tern_kpack).
static void fake_quant(float *w, int rows, int cols, int group, int q8) {
    int n_groups = (cols + group - 1) / group;
    int8_t *codes = malloc((size_t)rows * cols);
    float *scales = malloc((size_t)rows * n_groups * sizeof(float));
    if (!codes || !scales) {
        free(codes), free(scales);
        return;
    }
    if (q8) tern_absmax_q8(w, rows, cols, group, codes, scales, NULL, NULL);
    else tern_absmean_ternary(w, rows, cols, group, codes, scales);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            float a = tern_f16_to_f32(tern_f32_to_f16(scales[(size_t)r * n_groups + c / group]));
            w[(size_t)r * cols + c] = a * codes[(size_t)r * cols + c];
        }
    free(codes), free(scales);
}

int tern_model_fake_quant_absmean(tern_model *m, int group) {
    if (group <= 0) group = 128;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < TERN_L_COUNT; k++) {
            char name[TERN_NAME_MAX];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, tern_linear_names[k]);
            tern_tensor *t = tern_model_find(m, name);
            if (!t) return tern_errorf("%s: missing tensor %s", m->path, name);
            int cols = (int)t->shape[1];
            fake_quant(t->data, (int)t->shape[0], cols, group < cols ? group : cols, 0);
        }
    tern_tensor *head = tern_model_find(m, m->cfg.tied_embeddings ? "token_embd.weight" : "output.weight");
    if (!head) return tern_errorf("%s: missing LM head", m->path);
    // A tied head shares its table with the embedding: both see the q8 values.
    fake_quant(head->data, (int)head->shape[0], (int)head->shape[1], TERN_KQ8_GROUP, 1);
    return 0;
}

// `tern export` to the packed .tern container (see export.h, docs/format.md).
#include "infer/export.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/file.h"
#include "core/half.h"
#include "core/mem.h"
#include "eval/ppl.h"
#include "infer/packed.h"
#include "io/gguf_write.h"
#include "kernels/formats.h"
#include "quant/quant.h"
#include "tok/tokenizer.h"

#define TERN_FORMAT_VERSION 1
#define Q8_GROUP TERN_KQ8_GROUP

static const char *const lin_names[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

// Packed buffers stay alive until the writer has written them.
typedef struct {
    void **bufs;
    int n, cap;
} buf_list;

static void *buf_new(buf_list *b, size_t n) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        void **p = realloc(b->bufs, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        b->bufs = p, b->cap = cap;
    }
    void *p = tern_calloc(n ? n : 1);
    if (p) b->bufs[b->n++] = p;
    return p;
}

static void buf_free(buf_list *b) {
    for (int i = 0; i < b->n; i++) tern_free(b->bufs[i]);
    free(b->bufs);
}

// Exact recovery of one group's ternary structure from its effective values:
// at most three distinct levels, L < M < H with M - L == H - M (shift: gamma = M,
// alpha = (H - L)/2; two levels: their midpoint and half-distance; one level:
// gamma = it, alpha = 0). Without a shift the levels must be within {-a, 0, a}.
// Returns the number of distinct levels, or -1 when they are not ternary.
static int recover_group(const float *x, int n, int shift, int8_t *T, float *alpha, float *gamma) {
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

static int recover_matrix(const tern_tensor *t, int group, int shift, const char *method, int8_t *codes,
                          float *scales, float *shifts) {
    int rows = (int)t->shape[0], cols = (int)t->shape[1], ng = (cols + group - 1) / group;
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < ng; g++) {
            int c0 = g * group, n = c0 + group < cols ? group : cols - c0;
            size_t j = (size_t)r * ng + g, o = (size_t)r * cols + c0;
            float gamma;
            if (recover_group(t->data + o, n, shift, codes + o, &scales[j], &gamma) < 0)
                return tern_errorf("export: %s row %d group %d (G=%d) holds values that are not %s ternary "
                                   "(tern.method %s)",
                                   t->name, r, g, group, shift ? "shifted" : "symmetric", method);
            if (shifts) shifts[j] = gamma;
        }
    return 0;
}

// Exact recovery of one group of b-bit RTN values (rtn.c, or teq.c with the
// rtn inner quantizer; asymmetric or symmetric): every value is s*(c - z) with
// integer c, z in [0, L], L = 2^b - 1, so the span max - min is s*k for an
// integer k <= L. k is tried from L down; the first (s, z) that reproduces
// every value up to float rounding is kept (a finer grid that still fits in L
// levels stands for the same values). -1 when no grid fits.
static int recover_rtn_group(const float *x, int n, int bits, int8_t *c, float *scale, uint8_t *zero) {
    int L = (1 << bits) - 1;
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
    if (!isfinite(mn) || !isfinite(mx)) return -1;
    if (mn == mx) { // one level v: s = |v|, c - z = sign(v)
        *scale = fabsf(mn), *zero = mn < 0;
        memset(c, mn > 0, (size_t)n);
        return 0;
    }
    for (int k = L; k >= 1; k--) {
        float s = (mx - mn) / (float)k, m = nearbyintf(-mn / s); // m = z - c_min
        int z = m > 0 ? (int)m : 0;
        if (z > L || z - m + k > L) continue;
        int i = 0;
        for (; i < n; i++) {
            float q = nearbyintf(x[i] / s) + (float)z;
            if (q < 0 || q > L || fabsf((q - (float)z) * s - x[i]) > 1e-4f * s) break;
            c[i] = (int8_t)q;
        }
        if (i == n) {
            *scale = s, *zero = (uint8_t)z;
            return 0;
        }
    }
    return -1;
}

static int recover_rtn_matrix(const tern_tensor *t, int group, int bits, const char *method, int8_t *codes,
                              float *scales, uint8_t *zeros) {
    int rows = (int)t->shape[0], cols = (int)t->shape[1], ng = (cols + group - 1) / group;
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < ng; g++) {
            int c0 = g * group, n = c0 + group < cols ? group : cols - c0;
            size_t j = (size_t)r * ng + g, o = (size_t)r * cols + c0;
            if (recover_rtn_group(t->data + o, n, bits, codes + o, &scales[j], &zeros[j]) < 0)
                return tern_errorf("export: %s row %d group %d (G=%d) holds values that are not on a %d-bit grid "
                                   "(tern.method %s)",
                                   t->name, r, g, group, bits, method);
        }
    return 0;
}

// Packs one matrix into a new buffer and adds it to the writer.
static int add_packed(tern_gguf_writer *w, buf_list *bl, const tern_tensor *t, tern_kfmt_id fmt, int group,
                      int shift, const int8_t *codes, const float *scales, const float *shifts,
                      const uint8_t *zeros) {
    const tern_kformat *f = tern_kformat_get(fmt);
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    tern_kmatrix km;
    if (tern_kmatrix_init(&km, f, rows, cols, group, shift, NULL)) return -1;
    size_t bytes = (size_t)rows * km.row_bytes;
    uint8_t *dst = buf_new(bl, bytes);
    if (!dst) return tern_errorf("out of memory");
    km.data = dst;
    if (tern_kpack(&km, dst, codes, scales, shifts, zeros)) {
        char why[256];
        snprintf(why, sizeof why, "%s", tern_last_error());
        return tern_errorf("export: %s: %s", t->name, why);
    }
    uint32_t type = (shift ? TERN_EXPORT_SHIFT_BASE : TERN_EXPORT_PACKED_BASE) + (uint32_t)fmt;
    return tern_gguf_add_tensor(w, t->name, type, 2, t->shape, dst, bytes);
}

// Linear id (layer*7 + kind) of a decoder linear's weight name, -1 otherwise.
static int linear_id(const char *name) {
    int l;
    if (sscanf(name, "blk.%d.", &l) != 1 || l < 0 || l >= TERN_EXPORT_MAX_LINEARS / 7) return -1;
    for (int k = 0; k < 7; k++) {
        char want[TERN_NAME_MAX];
        snprintf(want, sizeof want, "blk.%d.%s.weight", l, lin_names[k]);
        if (!strcmp(name, want)) return l * 7 + k;
    }
    return -1;
}

// What the input's metadata says the decoder linears hold: ternary levels, or
// for a method that is not ternary (rtn, uniform, teq with the rtn inner
// quantizer) a b-bit grid.
static int input_bits(const tern_export_meta *meta) {
    const tern_quant_method *qm = tern_quant_find(meta->method);
    int grid = qm && !qm->ternary && (!meta->inner[0] || !strcmp(meta->inner, "rtn"));
    return grid ? meta->bits : 0;
}

// Bits of linear id's b-bit grid: its --keep bits, else the input's (0: ternary).
static int linear_bits(const tern_export_meta *meta, int id) {
    return id >= 0 && id < meta->n_linear && meta->linear_bits[id] ? meta->linear_bits[id] : input_bits(meta);
}

static tern_kfmt_id lowbit_format(int bits) {
    return bits == 4 ? TERN_KFMT_Q4G : bits == 3 ? TERN_KFMT_Q3G : TERN_KFMT_Q2G;
}

static int add_tensor(tern_gguf_writer *w, buf_list *bl, const tern_tensor *t, tern_kfmt_id body, int group,
                      int shift, const tern_export_meta *meta) {
    int is_embd = !strcmp(t->name, "token_embd.weight"), is_head = !strcmp(t->name, "output.weight");
    int id = linear_id(t->name), lin = id >= 0, bits = lin ? linear_bits(meta, id) : 0;
    if (bits && bits != input_bits(meta)) { // a kept linear of a mixed model
        if (bits > 4)
            return tern_errorf("export: %s is held at %d bits; packed low-bit formats hold 2, 3 or 4 bits", t->name,
                               bits);
        body = lowbit_format(bits), shift = 0;
    }
    if (!lin && !is_embd && !is_head)
        return tern_gguf_add_tensor(w, t->name, 0 /* GGML_TYPE_F32 */, t->ndim, t->shape, t->data, (uint64_t)t->numel * 4);
    if (t->ndim != 2) return tern_errorf("export: %s is not a matrix", t->name);
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    int g = lin ? (group < cols ? group : cols) : (Q8_GROUP < cols ? Q8_GROUP : cols);
    size_t ng = (size_t)rows * ((cols + g - 1) / g);
    int8_t *codes = malloc((size_t)rows * cols);
    float *scales = malloc(ng * sizeof(float)), *shifts = shift ? malloc(ng * sizeof(float)) : NULL;
    uint8_t *zeros = lin && bits ? malloc(ng) : NULL;
    int rc = codes && scales && (!shift || shifts) && (!lin || !bits || zeros) ? 0 : tern_errorf("out of memory");
    if (rc == 0) {
        if (!lin) tern_absmax_q8(t->data, rows, cols, g, codes, scales);
        else if (bits) rc = recover_rtn_matrix(t, g, bits, meta->method, codes, scales, zeros);
        else if (meta->method[0]) rc = recover_matrix(t, g, shift, meta->method, codes, scales, shifts);
        else tern_absmean_ternary(t->data, rows, cols, g, codes, scales);
    }
    if (rc == 0)
        rc = add_packed(w, bl, t, lin ? body : TERN_KFMT_Q8, g, lin ? shift : 0, codes, scales, lin ? shifts : NULL,
                        zeros);
    free(codes), free(scales), free(shifts), free(zeros);
    return rc;
}

// The decoder linears' packed format: --pack for ternary inputs; q{b}g for
// b-bit RTN/TEQ inputs (b = 2, 3, 4: the low-bit formats the kernels have).
static int choose_body(const char *in_path, const tern_export_opts *o, const tern_export_meta *meta,
                       tern_kfmt_id *out) {
    int bits = input_bits(meta);
    if (!bits) {
        const char *pack = o->pack;
        if (!pack || !strcmp(pack, "2") || !strcmp(pack, "t2") || !strcmp(pack, "tern-t2")) *out = TERN_KFMT_T2;
        else if (!strcmp(pack, "1.6") || !strcmp(pack, "t1.6") || !strcmp(pack, "tern-t1.6")) *out = TERN_KFMT_T1_6;
        else return tern_errorf("export: unknown --pack '%s' (2 or 1.6)", pack);
        return 0;
    }
    if (bits < 2 || bits > 4)
        return tern_errorf("export: %s is a %d-bit %s model; packed low-bit formats hold 2, 3 or 4 bits", in_path,
                           bits, meta->method);
    if (o->pack)
        return tern_errorf("export: --pack is for ternary models; %s is a %d-bit %s model, stored as q%dg", in_path,
                           bits, meta->method, bits);
    *out = lowbit_format(bits);
    return 0;
}

// Group from the options and the input: a quantized input fixes it.
static int resolve_group(const tern_model *m, const tern_export_opts *o, const char *method, int in_group,
                         int *out) {
    int g = o->group;
    if (method[0]) {
        int want = in_group < 0 ? TERN_KMAX_COLS : in_group > 0 ? in_group : 128;
        if (g > 0 && g != want && !(in_group < 0 && g >= m->cfg.hidden_dim && g >= m->cfg.dim))
            return tern_errorf("export: --group %d differs from the input's tern.group_size %d (the codes were "
                               "learned per group of %d)", g, in_group, in_group);
        g = want;
    } else if (g <= 0) g = 128;
    // The kernels' rule, against every linear's row width.
    int widths[2] = {m->cfg.dim, m->cfg.hidden_dim};
    int n_heads_dim = m->cfg.n_heads * m->cfg.head_dim;
    for (int k = 0; k < 3; k++) {
        int cols = k < 2 ? widths[k] : n_heads_dim;
        if (g % TERN_KCHUNK != 0 && g < cols)
            return tern_errorf("export: group size %d must be a multiple of %d or >= the row width %d", g,
                               TERN_KCHUNK, cols);
    }
    *out = g;
    return 0;
}

static int set_meta(tern_gguf_writer *w, buf_list *bl, const tern_model *m, const tern_export_meta *meta, int group,
                    tern_kfmt_id body) {
    int rc = tern_gguf_add_model_metadata(w, m), bits = input_bits(meta);
    if (rc == 0) rc = tern_gguf_set_u32(w, "tern.format_version", TERN_FORMAT_VERSION);
    if (rc == 0) rc = tern_gguf_set_str(w, "tern.method", meta->method[0] ? meta->method : "absmean-ptq");
    if (rc == 0) rc = tern_gguf_set_i32(w, "tern.group_size", group);
    if (rc == 0) rc = tern_gguf_set_i32(w, "tern.q8_group", Q8_GROUP);
    if (rc == 0) rc = tern_gguf_set_str(w, "tern.pack", tern_kformat_get(body)->name);
    if (rc == 0 && bits) rc = tern_gguf_set_i32(w, "tern.bits", bits);
    if (rc == 0 && bits) rc = tern_gguf_set_bool(w, "tern.sym", meta->sym);
    if (rc == 0 && meta->inner[0]) rc = tern_gguf_set_str(w, "tern.teq_inner", meta->inner);
    if (rc == 0 && meta->n_linear) { // the writer keeps a pointer: the array lives in bl
        int32_t *kb = buf_new(bl, (size_t)meta->n_linear * sizeof *kb);
        if (!kb) return tern_errorf("out of memory");
        for (int i = 0; i < meta->n_linear; i++) kb[i] = meta->linear_bits[i];
        rc = tern_gguf_set_array(w, "tern.linear_bits", TERN_GGUF_I32, kb, (uint64_t)meta->n_linear, NULL);
    }
    return rc;
}

int tern_export_tern(const tern_model *m, const char *in_path, const tern_export_opts *o, const char *out_path,
                     tern_export_info *info) {
    tern_export_info tmp;
    if (!info) info = &tmp;
    memset(info, 0, sizeof *info);
    if (tern_model_require_llama(m, "export")) return -1;
    tern_export_meta meta;
    tern_kfmt_id body = TERN_KFMT_T2;
    int group = 0;
    if (tern_export_input_meta(in_path, &meta)) return -1;
    if (!strcmp(meta.method, "absmean-ptq")) meta.method[0] = 0; // a .tern from an FP model: re-quantize
    if (choose_body(in_path, o, &meta, &body)) return -1;
    if (resolve_group(m, o, meta.method, meta.group, &group)) return -1;
    int shift = !strcmp(meta.method, "dlt");
    snprintf(info->method, sizeof info->method, "%s", meta.method);
    snprintf(info->format, sizeof info->format, "%s", tern_kformat_get(body)->name);
    info->group = group, info->has_shift = shift;
    tern_gguf_writer *w = tern_gguf_writer_new();
    if (!w) return tern_errorf("out of memory");
    buf_list bl = {0};
    int rc = set_meta(w, &bl, m, &meta, group, body);
    for (int i = 0; i < m->n_tensors && rc == 0; i++)
        rc = add_tensor(w, &bl, &m->tensors[i], body, group, shift, &meta);
    if (rc == 0) rc = tern_gguf_write(w, out_path);
    tern_gguf_writer_free(w);
    buf_free(&bl);
    struct stat st;
    if (rc == 0 && stat(out_path, &st) == 0) info->bytes = (int64_t)st.st_size;
    return rc;
}

// ---------------------------------------------------------------------------
// llama.cpp export: TQ2_0 / TQ1_0 (docs/format.md, "llama.cpp export").

#define LLAMA_FTYPE_MOSTLY_TQ1_0 36 // general.file_type values (llama.cpp's numbering)
#define LLAMA_FTYPE_MOSTLY_TQ2_0 37
#define GGML_QUANT_VERSION 2

static float f16_round(float x) { return tern_f16_to_f32(tern_f32_to_f16(x)); }

// Ternary codes of one linear and the effective weights w they stand for.
// *w is t->data (a .tern file, a `tern quantize` output or a TQ file: the
// loaded values are already alpha*T (+ gamma)), or for absmean PTQ of an FP
// model a new buffer alpha_fp16 * T that the caller frees.
static int tq_codes(const tern_tensor *t, const char *method, int group, int shift, int8_t *T, float **w,
                    tern_export_tq_info *info) {
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    *w = t->data;
    if (t->packed) {
        const tern_kformat *f = tern_kformat_get((tern_kfmt_id)t->packed_fmt);
        if (!f || f->kind != TERN_KKIND_TERNARY)
            return tern_errorf("export: %s is stored as %s, not ternary (only ternary models export to TQ)", t->name,
                               f ? f->name : "an unknown format");
        tern_kmatrix km;
        if (tern_kmatrix_init(&km, f, rows, cols, t->packed_group, t->packed_shift, t->packed)) return -1;
        tern_kunpack(&km, T, NULL, NULL, NULL);
        snprintf(info->source, sizeof info->source, "from the .tern packing");
        info->group = t->packed_group;
        info->dropped_shift |= t->packed_shift;
        return 0;
    }
    // A TQ file read back (or its Q4_0 fallback matrices): the blocks hold
    // exactly {-d, 0, d}; recovering them keeps codes and scales (a Q4_0
    // matrix that is not ternary, e.g. a Q4_0 model's, is quantized below).
    int tq_in = !strcmp(t->src_type, "TQ1_0") || !strcmp(t->src_type, "TQ2_0");
    int blk = tq_in ? TERN_GGUF_TQ_BLOCK : !strcmp(t->src_type, "Q4_0") ? TERN_GGUF_Q4_0_BLOCK : 0;
    int g = blk && blk < group ? blk : group;
    size_t ng = (size_t)rows * ((cols + g - 1) / g);
    float *scales = malloc(ng * sizeof(float)), *shifts = malloc(ng * sizeof(float));
    int rc = scales && shifts ? 0 : tern_errorf("out of memory");
    int exact = rc == 0 && blk && recover_matrix(t, blk, 0, "", T, scales, NULL) == 0;
    if (rc == 0 && blk && !exact && tq_in)
        rc = tern_errorf("export: %s (%s) holds values that are not d * {-1, 0, 1} per block", t->name, t->src_type);
    if (rc == 0 && exact) {
        snprintf(info->source, sizeof info->source, "from exact ternary blocks");
        info->group = blk;
    } else if (rc == 0 && method[0]) {
        rc = recover_matrix(t, group, shift, method, T, scales, shifts);
        snprintf(info->source, sizeof info->source, "recovered");
        info->group = group;
        info->dropped_shift |= shift;
    } else if (rc == 0) {
        float *wq = tern_alloc((size_t)rows * cols * sizeof(float));
        if (!wq) rc = tern_errorf("out of memory");
        else {
            tern_absmean_ternary(t->data, rows, cols, group, T, scales);
            int n_groups = (cols + group - 1) / group;
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) {
                    size_t i = (size_t)r * cols + c;
                    wq[i] = f16_round(scales[(size_t)r * n_groups + c / group]) * T[i];
                }
            *w = wq;
        }
        snprintf(info->source, sizeof info->source, "by absmean PTQ");
        info->group = group;
    }
    free(scales), free(shifts);
    return rc;
}

// Re-blocks one linear to `type` (TQ1_0 / TQ2_0: blocks of 256; the Q4_0
// fallback: blocks of 32, codes T stored as q = T): per block the
// least-squares scale for the fixed codes, d = sum w_i T_i / sum T_i^2 (0 for
// an all-zero block), rounded to fp16, then the blocks encoded. Accumulates
// the weight-space error.
static int add_ternary(tern_gguf_writer *wr, buf_list *bl, const tern_tensor *t, const int8_t *T, const float *w,
                       uint32_t type, double *err2, double *norm2) {
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    int bk = type == TERN_GGUF_TYPE_Q4_0 ? TERN_GGUF_Q4_0_BLOCK : TERN_GGUF_TQ_BLOCK, nb = cols / bk;
    size_t bsize = type == TERN_GGUF_TYPE_TQ1_0   ? TERN_GGUF_TQ1_0_BYTES
                   : type == TERN_GGUF_TYPE_TQ2_0 ? TERN_GGUF_TQ2_0_BYTES
                                                  : TERN_GGUF_Q4_0_BYTES;
    size_t bytes = (size_t)rows * nb * bsize;
    uint8_t *dst = buf_new(bl, bytes);
    if (!dst) return tern_errorf("out of memory");
    for (size_t b = 0; b < (size_t)rows * nb; b++) {
        const int8_t *tb = T + b * bk;
        const float *wb = w + b * bk;
        double num = 0, den = 0;
        for (int i = 0; i < bk; i++) num += (double)wb[i] * tb[i], den += tb[i] * tb[i];
        float d = den > 0 ? (float)(num / den) : 0.0f;
        if (!isfinite(f16_round(d)))
            return tern_errorf("export: %s block %zu: scale %g does not fit fp16", t->name, b, (double)d);
        d = f16_round(d);
        for (int i = 0; i < bk; i++) {
            double e = (double)wb[i] - (double)d * tb[i];
            *err2 += e * e, *norm2 += (double)wb[i] * wb[i];
        }
        if (type == TERN_GGUF_TYPE_TQ1_0) tern_gguf_encode_tq1_0(tb, d, dst + b * bsize);
        else if (type == TERN_GGUF_TYPE_TQ2_0) tern_gguf_encode_tq2_0(tb, d, dst + b * bsize);
        else tern_gguf_encode_q4_0(tb, d, dst + b * bsize);
    }
    return tern_gguf_add_tensor(wr, t->name, type, 2, t->shape, dst, bytes);
}

// Token embedding / output head as Q8_0: absmax int8 per block of 32.
static int add_q8_0(tern_gguf_writer *wr, buf_list *bl, const tern_tensor *t) {
    int rows = (int)t->shape[0], cols = (int)t->shape[1], nb = cols / TERN_GGUF_Q8_0_BLOCK;
    size_t bytes = (size_t)rows * nb * TERN_GGUF_Q8_0_BYTES;
    int8_t *codes = malloc((size_t)rows * cols);
    float *scales = malloc((size_t)rows * nb * sizeof(float));
    uint8_t *dst = buf_new(bl, bytes);
    int rc = codes && scales && dst ? 0 : tern_errorf("out of memory");
    if (rc == 0) {
        tern_absmax_q8(t->data, rows, cols, TERN_GGUF_Q8_0_BLOCK, codes, scales);
        for (size_t b = 0; b < (size_t)rows * nb; b++)
            tern_gguf_encode_q8_0(codes + b * TERN_GGUF_Q8_0_BLOCK, scales[b], dst + b * TERN_GGUF_Q8_0_BYTES);
        rc = tern_gguf_add_tensor(wr, t->name, TERN_GGUF_TYPE_Q8_0, 2, t->shape, dst, bytes);
    }
    free(codes), free(scales);
    return rc;
}

// llama.cpp's TQ types need rows that are whole 256-blocks; with the Q4_0
// fallback other rows must be whole 32-blocks.
static int tq_check_shapes(const tern_model *m, const char *fmt, const char *type, int fallback) {
    for (int i = 0; i < m->n_tensors; i++) {
        const tern_tensor *t = &m->tensors[i];
        if (linear_id(t->name) < 0) continue;
        if (t->ndim != 2) return tern_errorf("export: %s is not a matrix", t->name);
        long long cols = (long long)t->shape[1];
        if (cols % TERN_GGUF_TQ_BLOCK == 0) continue;
        if (!fallback)
            return tern_errorf("export: %s: %s has rows of %lld values, not a multiple of %d (llama.cpp's %s block); "
                               "--fallback q4_0 stores such matrices as Q4_0 (as llama-quantize does)",
                               fmt, t->name, cols, TERN_GGUF_TQ_BLOCK, type);
        if (cols % TERN_GGUF_Q4_0_BLOCK)
            return tern_errorf("export: %s: %s has rows of %lld values, a multiple of neither %d (%s) nor %d (Q4_0)",
                               fmt, t->name, cols, TERN_GGUF_TQ_BLOCK, type, TERN_GGUF_Q4_0_BLOCK);
    }
    return 0;
}

// Perplexity of a model's FP32 values on the check text.
static int tq_ppl(const tern_model *m, const char *text, size_t len, int ctx, int chunks, tern_ppl_result *r) {
    tern_tokenizer *tok;
    if (tern_tokenizer_init(&tok, &m->vocab)) return -1;
    int rc = tern_perplexity_text(m, tok, text, len, ctx, chunks, "f32", r);
    tern_tokenizer_free(tok);
    return rc;
}

int tern_export_gguf_tq(const tern_model *m, const char *in_path, const tern_export_tq_opts *o, const char *out_path,
                        tern_export_tq_info *info) {
    tern_export_tq_info tmp;
    if (!info) info = &tmp;
    memset(info, 0, sizeof *info);
    if (tern_model_require_llama(m, "export")) return -1;
    const char *fmt = o->format ? o->format : "gguf-tq2";
    int tq1 = !strcmp(fmt, "gguf-tq1");
    if (!tq1 && strcmp(fmt, "gguf-tq2")) return tern_errorf("export: unknown format '%s' (gguf-tq2 or gguf-tq1)", fmt);
    const char *type = tq1 ? "TQ1_0" : "TQ2_0";
    int fallback = o->fallback && strcmp(o->fallback, "none");
    if (fallback && strcmp(o->fallback, "q4_0"))
        return tern_errorf("export: unknown fallback '%s' (none or q4_0)", o->fallback);
    tern_export_meta meta;
    int group = 0;
    if (tern_export_input_meta(in_path, &meta)) return -1;
    if (!strcmp(meta.method, "absmean-ptq")) meta.method[0] = 0;
    if (input_bits(&meta))
        return tern_errorf("export: %s is a %d-bit %s model; only ternary models export to %s (use --format tern)",
                           in_path, meta.bits, meta.method, type);
    if (tq_check_shapes(m, fmt, type, fallback)) return -1;
    snprintf(info->method, sizeof info->method, "%s", meta.method);
    tern_export_opts eo = {.group = o->group};
    if (resolve_group(m, &eo, info->method, meta.group, &group)) return -1;
    int shift = !strcmp(info->method, "dlt");

    char *text = NULL;
    size_t text_len = 0;
    if (o->check_text && tern_read_file(o->check_text, &text, &text_len)) return -1;
    int ctx = o->check_ctx > 0 ? o->check_ctx : 512, chunks = o->check_chunks > 0 ? o->check_chunks : 8;
    if (ctx > m->cfg.max_seq) ctx = m->cfg.max_seq;

    // The source model for the check: m itself, or (absmean PTQ) a shallow
    // copy whose linears point at the alpha*T buffers.
    tern_model src = *m;
    src.tensors = malloc((size_t)(m->n_tensors ? m->n_tensors : 1) * sizeof *src.tensors);
    float **owned = calloc((size_t)(m->n_tensors ? m->n_tensors : 1), sizeof *owned);
    tern_gguf_writer *wr = tern_gguf_writer_new();
    buf_list bl = {0};
    int rc = src.tensors && owned && wr ? 0 : tern_errorf("out of memory");
    if (rc == 0) memcpy(src.tensors, m->tensors, (size_t)m->n_tensors * sizeof *src.tensors);
    if (rc == 0) rc = tern_gguf_add_model_metadata(wr, m);
    if (rc == 0) rc = tern_gguf_set_u32(wr, "general.file_type", tq1 ? LLAMA_FTYPE_MOSTLY_TQ1_0 : LLAMA_FTYPE_MOSTLY_TQ2_0);
    if (rc == 0) rc = tern_gguf_set_u32(wr, "general.quantization_version", GGML_QUANT_VERSION);
    double err2[2] = {0}, norm2[2] = {0}; // [0]: TQ matrices, [1]: Q4_0 fallback
    for (int i = 0; i < m->n_tensors && rc == 0; i++) {
        const tern_tensor *t = &m->tensors[i];
        if (!strcmp(t->name, "token_embd.weight") || !strcmp(t->name, "output.weight")) {
            rc = t->ndim == 2 && t->shape[1] % TERN_GGUF_Q8_0_BLOCK == 0
                     ? add_q8_0(wr, &bl, t)
                     : tern_errorf("export: %s is not a matrix of rows that are whole Q8_0 blocks", t->name);
        } else if (linear_id(t->name) < 0) {
            rc = tern_gguf_add_tensor(wr, t->name, TERN_GGUF_TYPE_F32, t->ndim, t->shape, t->data,
                                      (uint64_t)t->numel * 4);
            info->biases += strstr(t->name, ".bias") != NULL;
        } else {
            int8_t *T = malloc((size_t)t->numel);
            float *w = NULL;
            rc = T ? tq_codes(t, info->method, group, shift, T, &w, info) : tern_errorf("out of memory");
            uint32_t ty = t->shape[1] % TERN_GGUF_TQ_BLOCK ? TERN_GGUF_TYPE_Q4_0
                          : tq1                              ? TERN_GGUF_TYPE_TQ1_0
                                                             : TERN_GGUF_TYPE_TQ2_0;
            int k = ty == TERN_GGUF_TYPE_Q4_0;
            if (rc == 0) rc = add_ternary(wr, &bl, t, T, w, ty, &err2[k], &norm2[k]);
            info->fallback_linears += ty == TERN_GGUF_TYPE_Q4_0;
            if (w && w != t->data) {
                if (text) owned[i] = w, src.tensors[i].data = w, src.tensors[i].packed = NULL;
                else tern_free(w);
            }
            free(T);
            info->linears++;
        }
    }
    info->weight_rel_rmse = norm2[0] > 0 ? sqrt(err2[0] / norm2[0]) : 0;
    info->fallback_rel_rmse = norm2[1] > 0 ? sqrt(err2[1] / norm2[1]) : 0;
    tern_ppl_result r;
    if (rc == 0 && text) {
        rc = tq_ppl(&src, text, text_len, ctx, chunks, &r);
        info->ppl_source = r.ppl, info->ctx = r.ctx, info->chunks = r.chunks;
    }
    for (int i = 0; owned && i < m->n_tensors; i++) tern_free(owned[i]);
    free(owned), free(src.tensors);

    // With a check, the file is written beside the target, read back through
    // tern's GGUF reader and measured; only then renamed into place.
    char stage[600];
    snprintf(stage, sizeof stage, "%s", out_path);
    if (text) snprintf(stage, sizeof stage, "%s.check.%ld", out_path, (long)getpid());
    if (rc == 0) rc = tern_gguf_write(wr, stage);
    tern_gguf_writer_free(wr);
    buf_free(&bl);
    if (rc == 0 && text) {
        tern_model back;
        rc = tern_model_load(&back, stage, NULL);
        if (rc == 0) {
            rc = tq_ppl(&back, text, text_len, ctx, chunks, &r);
            tern_model_free(&back);
        }
        if (rc == 0) {
            info->checked = 1;
            info->ppl_export = r.ppl;
            info->change_pct = 100.0 * (info->ppl_export / info->ppl_source - 1.0);
            double bound = o->max_ppl_change;
            if (!(info->change_pct <= bound) && !o->force)
                rc = tern_errorf("export: perplexity on %s rose by %+.2f%% (source %.4f, %s %.4f; %d chunks of %d), "
                                 "more than --max-ppl-change %g%%; nothing written (--force writes it anyway)",
                                 o->check_text, info->change_pct, info->ppl_source, fmt, info->ppl_export,
                                 info->chunks, info->ctx, bound);
            else info->forced = !(info->change_pct <= bound);
        }
        if (rc == 0 && rename(stage, out_path) != 0)
            rc = tern_errorf("%s: cannot rename into place: %s", out_path, strerror(errno));
        if (rc) unlink(stage);
    }
    free(text);
    struct stat st;
    if (rc == 0 && stat(out_path, &st) == 0) info->bytes = (int64_t)st.st_size;
    return rc;
}

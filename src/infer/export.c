// `tern export` to the packed .tern container (see export.h, docs/format.md).
#include "infer/export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/file.h"
#include "core/half.h"
#include "core/mem.h"
#include "infer/packed.h"
#include "io/gguf_write.h"
#include "kernels/formats.h"

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
            if (recover_group(t->data + o, n, shift, codes + o, &scales[j], &gamma) < 0) {
                int lowbit = !strcmp(method, "rtn") || !strcmp(method, "teq");
                return tern_errorf("export: %s row %d group %d (G=%d) holds values that are not %s ternary "
                                   "(tern.method %s)%s",
                                   t->name, r, g, group, shift ? "shifted" : "symmetric", method,
                                   lowbit ? "; exporting low-bit q4g/q3g/q2g models is not implemented yet"
                                          : "");
            }
            if (shifts) shifts[j] = gamma;
        }
    return 0;
}

// Packs one matrix into a new buffer and adds it to the writer.
static int add_packed(tern_gguf_writer *w, buf_list *bl, const tern_tensor *t, tern_kfmt_id fmt, int group,
                      int shift, const int8_t *codes, const float *scales, const float *shifts) {
    const tern_kformat *f = tern_kformat_get(fmt);
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    tern_kmatrix km;
    if (tern_kmatrix_init(&km, f, rows, cols, group, shift, NULL)) return -1;
    size_t bytes = (size_t)rows * km.row_bytes;
    uint8_t *dst = buf_new(bl, bytes);
    if (!dst) return tern_errorf("out of memory");
    km.data = dst;
    if (tern_kpack(&km, dst, codes, scales, shifts, NULL)) {
        char why[256];
        snprintf(why, sizeof why, "%s", tern_last_error());
        return tern_errorf("export: %s: %s", t->name, why);
    }
    uint32_t type = (shift ? TERN_EXPORT_SHIFT_BASE : TERN_EXPORT_PACKED_BASE) + (uint32_t)fmt;
    return tern_gguf_add_tensor(w, t->name, type, 2, t->shape, dst, bytes);
}

static int is_linear(const char *name) {
    int l;
    if (sscanf(name, "blk.%d.", &l) != 1 || l < 0) return 0;
    for (int k = 0; k < 7; k++) {
        char want[TERN_NAME_MAX];
        snprintf(want, sizeof want, "blk.%d.%s.weight", l, lin_names[k]);
        if (!strcmp(name, want)) return 1;
    }
    return 0;
}

static int add_tensor(tern_gguf_writer *w, buf_list *bl, const tern_model *m, const tern_tensor *t,
                      tern_kfmt_id body, int group, int shift, const char *method) {
    int is_embd = !strcmp(t->name, "token_embd.weight"), is_head = !strcmp(t->name, "output.weight");
    int lin = is_linear(t->name);
    if (!lin && !is_embd && !is_head)
        return tern_gguf_add_tensor(w, t->name, 0 /* GGML_TYPE_F32 */, t->ndim, t->shape, t->data, (uint64_t)t->numel * 4);
    if (t->ndim != 2) return tern_errorf("export: %s is not a matrix", t->name);
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    int g = lin ? (group < cols ? group : cols) : (Q8_GROUP < cols ? Q8_GROUP : cols);
    size_t ng = (size_t)rows * ((cols + g - 1) / g);
    int8_t *codes = malloc((size_t)rows * cols);
    float *scales = malloc(ng * sizeof(float)), *shifts = shift ? malloc(ng * sizeof(float)) : NULL;
    int rc = codes && scales && (!shift || shifts) ? 0 : tern_errorf("out of memory");
    if (rc == 0) {
        if (!lin) tern_absmax_q8(t->data, rows, cols, g, codes, scales);
        else if (method[0]) rc = recover_matrix(t, g, shift, method, codes, scales, shifts);
        else tern_absmean_ternary(t->data, rows, cols, g, codes, scales);
    }
    if (rc == 0)
        rc = add_packed(w, bl, t, lin ? body : TERN_KFMT_Q8, g, lin ? shift : 0, codes, scales, lin ? shifts : NULL);
    free(codes), free(scales), free(shifts);
    (void)m;
    return rc;
}

static int parse_pack(const char *pack, tern_kfmt_id *out) {
    if (!pack || !strcmp(pack, "2") || !strcmp(pack, "t2") || !strcmp(pack, "tern-t2")) *out = TERN_KFMT_T2;
    else if (!strcmp(pack, "1.6") || !strcmp(pack, "t1.6") || !strcmp(pack, "tern-t1.6")) *out = TERN_KFMT_T1_6;
    else return tern_errorf("export: unknown --pack '%s' (2 or 1.6)", pack);
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

static int set_meta(tern_gguf_writer *w, const tern_model *m, const char *method, int group, tern_kfmt_id body) {
    int rc = tern_gguf_add_model_metadata(w, m);
    if (rc == 0) rc = tern_gguf_set_u32(w, "tern.format_version", TERN_FORMAT_VERSION);
    if (rc == 0) rc = tern_gguf_set_str(w, "tern.method", method[0] ? method : "absmean-ptq");
    if (rc == 0) rc = tern_gguf_set_i32(w, "tern.group_size", group);
    if (rc == 0) rc = tern_gguf_set_i32(w, "tern.q8_group", Q8_GROUP);
    if (rc == 0) rc = tern_gguf_set_str(w, "tern.pack", tern_kformat_get(body)->name);
    return rc;
}

int tern_export_tern(const tern_model *m, const char *in_path, const tern_export_opts *o, const char *out_path,
                     tern_export_info *info) {
    tern_export_info tmp;
    if (!info) info = &tmp;
    memset(info, 0, sizeof *info);
    tern_kfmt_id body = TERN_KFMT_T2;
    int in_group = 0, group = 0;
    if (parse_pack(o->pack, &body)) return -1;
    if (tern_export_input_meta(in_path, info->method, sizeof info->method, &in_group)) return -1;
    if (!strcmp(info->method, "absmean-ptq")) info->method[0] = 0; // a .tern from an FP model: re-quantize
    if (resolve_group(m, o, info->method, in_group, &group)) return -1;
    int shift = !strcmp(info->method, "dlt");
    info->group = group, info->has_shift = shift;
    tern_gguf_writer *w = tern_gguf_writer_new();
    if (!w) return tern_errorf("out of memory");
    buf_list bl = {0};
    int rc = set_meta(w, m, info->method, group, body);
    for (int i = 0; i < m->n_tensors && rc == 0; i++)
        rc = add_tensor(w, &bl, m, &m->tensors[i], body, group, shift, info->method);
    if (rc == 0) rc = tern_gguf_write(w, out_path);
    tern_gguf_writer_free(w);
    buf_free(&bl);
    struct stat st;
    if (rc == 0 && stat(out_path, &st) == 0) info->bytes = (int64_t)st.st_size;
    return rc;
}

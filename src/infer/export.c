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

static int recover_matrix(const tern_tensor *t, int group, int shift, const char *method, int8_t *codes,
                          float *scales, float *shifts) {
    int rows = (int)t->shape[0], cols = (int)t->shape[1], ng = (cols + group - 1) / group;
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < ng; g++) {
            int c0 = g * group, n = c0 + group < cols ? group : cols - c0;
            size_t j = (size_t)r * ng + g, o = (size_t)r * cols + c0;
            float gamma;
            if (tern_ternary_recover_group(t->data + o, n, shift, codes + o, &scales[j], &gamma) < 0)
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
        snprintf(want, sizeof want, "blk.%d.%s.weight", l, tern_linear_names[k]);
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

// What one .tern export applies to every tensor, and what it found.
typedef struct {
    tern_kfmt_id body;
    int group, q8_group, shift;
    const tern_export_meta *meta;
    tern_export_info *info;
    double err2, norm2; // lossy linears: squared weight error, squared norm
} tern_job;

// Whether t was loaded with codes an export can keep: ternary, or a b-bit
// grid s*(c - z) (Q2_0 with code 2, Q4_0). Not q8-row (Q8_0 / Q5_x) nor
// shifted RTN (Q4_1, Q4_K: s*c + m): those inputs are quantized as FP ones.
static int exact_packed(const tern_tensor *t) {
    if (!t->packed) return 0;
    tern_kkind kind = tern_kformat_get((tern_kfmt_id)t->packed_fmt)->kind;
    return kind == TERN_KKIND_TERNARY || (kind == TERN_KKIND_RTN && !t->packed_shift);
}

// Ternary codes of a linear of an input without tern.method: exact when its
// values are ternary per group (a llama.cpp ternary GGUF, a .tern re-export;
// *shift set when they carry DLT shifts), absmean PTQ otherwise. A matrix
// that was loaded with exact packed codes but is not ternary at the group
// (coarser re-blocking) is a lossy conversion: it keeps the source's codes
// with each new group's least-squares scale, counted and measured.
static void plain_codes(tern_job *j, const tern_tensor *t, int g, int8_t *codes, float *scales, float *shifts,
                        int *shift) {
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    int kind = tern_ternary_codes(t->data, rows, cols, g, codes, scales, shifts);
    *shift = kind == TERN_TERNARY_EXACT_SHIFT;
    if (kind != TERN_TERNARY_ABSMEAN) j->info->exact_linears++;
    else if (exact_packed(t)) {
        const tern_kformat *f = tern_kformat_get((tern_kfmt_id)t->packed_fmt);
        tern_kmatrix km;
        if (f->kind == TERN_KKIND_TERNARY && !t->packed_shift &&
            !tern_kmatrix_init(&km, f, rows, cols, t->packed_group, 0, t->packed)) {
            // Re-blocking: the source's codes, each new group's least-squares scale.
            tern_kunpack(&km, codes, NULL, NULL, NULL);
            int ng = (cols + g - 1) / g;
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < ng; k++) {
                    double num = 0, den = 0;
                    for (int c = k * g; c < cols && c < (k + 1) * g; c++) {
                        size_t i = (size_t)r * cols + c;
                        num += (double)t->data[i] * codes[i], den += codes[i] * codes[i];
                    }
                    scales[(size_t)r * ng + k] = den > 0 ? (float)(num / den) : 0.0f;
                }
        }
        j->info->lossy_linears++;
        tern_ternary_error(t->data, rows, cols, g, codes, scales, NULL, &j->err2, &j->norm2);
    }
}

static int add_tensor(tern_gguf_writer *w, buf_list *bl, const tern_tensor *t, tern_job *j) {
    const tern_export_meta *meta = j->meta;
    tern_kfmt_id body = j->body;
    int shift = j->shift;
    int is_embd = !strcmp(t->name, "token_embd.weight"), is_head = !strcmp(t->name, "output.weight");
    int id = linear_id(t->name), lin = id >= 0, bits = lin ? linear_bits(meta, id) : 0;
    if (bits && bits != input_bits(meta)) { // a kept linear of a mixed model
        if (bits > 4)
            return tern_errorf("export: %s is held at %d bits; packed low-bit formats hold 2, 3 or 4 bits", t->name,
                               bits);
        body = lowbit_format(bits), shift = 0;
    }
    // A linear loaded with exact 2-4 bit codes (Q2_0 with code 2, Q4_0) keeps
    // them: its grid s*(c - z) is recovered per group as for an rtn model.
    const tern_kformat *src = lin && !meta->method[0] && exact_packed(t) ? tern_kformat_get((tern_kfmt_id)t->packed_fmt) : NULL;
    if (src && src->kind == TERN_KKIND_RTN) bits = src->code_bits, body = lowbit_format(bits), shift = 0;
    if (!lin && !is_embd && !is_head)
        return tern_gguf_add_tensor(w, t->name, 0 /* GGML_TYPE_F32 */, t->ndim, t->shape, t->data, (uint64_t)t->numel * 4);
    if (t->ndim != 2) return tern_errorf("export: %s is not a matrix", t->name);
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    int g = lin ? (j->group < cols ? j->group : cols) : (j->q8_group < cols ? j->q8_group : cols);
    if (src && src->kind == TERN_KKIND_RTN && t->packed_group % g)
        return tern_errorf("export: %s holds %d-bit codes per block of %d (%s); G=%d cannot keep them (a --group "
                           "dividing %d does)", t->name, bits, t->packed_group, t->src_type, g, t->packed_group);
    j->info->exact_linears += src && src->kind == TERN_KKIND_RTN;
    size_t ng = (size_t)rows * ((cols + g - 1) / g);
    int plain = lin && !bits && !meta->method[0];
    int8_t *codes = malloc((size_t)rows * cols);
    float *scales = malloc(ng * sizeof(float)), *shifts = shift || plain ? malloc(ng * sizeof(float)) : NULL;
    uint8_t *zeros = lin && bits ? malloc(ng) : NULL;
    int rc = codes && scales && (!(shift || plain) || shifts) && (!lin || !bits || zeros) ? 0 : tern_errorf("out of memory");
    if (rc == 0) {
        if (!lin) tern_absmax_q8(t->data, rows, cols, g, codes, scales, NULL, NULL);
        else if (bits) rc = recover_rtn_matrix(t, g, bits, meta->method, codes, scales, zeros);
        else if (meta->method[0]) rc = recover_matrix(t, g, shift, meta->method, codes, scales, shifts);
        else plain_codes(j, t, g, codes, scales, shifts, &shift);
    }
    j->info->has_shift |= lin && shift;
    if (rc == 0)
        rc = add_packed(w, bl, t, lin ? body : TERN_KFMT_Q8, g, lin ? shift : 0, codes, scales,
                        lin && shift ? shifts : NULL, zeros);
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

// Labels of a .tern whose codes did not come from `tern quantize` (no
// tern.method in its input): absmean PTQ of an FP model, or the exact codes
// of a llama.cpp ternary / 2-bit GGUF. Re-exporting such a file recovers its codes
// again (exactly when they are ternary at the group).
static int plain_method(const char *method) {
    return !strcmp(method, "absmean-ptq") || !strcmp(method, "gguf-exact");
}

static int set_meta(tern_gguf_writer *w, buf_list *bl, const tern_model *m, const tern_job *j) {
    const tern_export_meta *meta = j->meta;
    const char *plain = j->info->exact_linears && !j->info->lossy_linears ? "gguf-exact" : "absmean-ptq";
    int rc = tern_gguf_add_model_metadata(w, m), bits = input_bits(meta), group = j->group;
    if (rc == 0) rc = tern_gguf_set_u32(w, "tern.format_version", TERN_FORMAT_VERSION);
    if (rc == 0) rc = tern_gguf_set_str(w, "tern.method", meta->method[0] ? meta->method : plain);
    if (rc == 0) rc = tern_gguf_set_i32(w, "tern.group_size", group);
    if (rc == 0) rc = tern_gguf_set_i32(w, "tern.q8_group", j->q8_group);
    if (rc == 0) rc = tern_gguf_set_str(w, "tern.pack", tern_kformat_get(j->body)->name);
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

// Perplexity of a model's FP32 values on the check text.
static int tq_ppl(const tern_model *m, const char *text, size_t len, int ctx, int chunks, tern_ppl_result *r) {
    tern_tokenizer *tok;
    if (tern_tokenizer_init(&tok, &m->vocab)) return -1;
    int rc = tern_perplexity_text(m, tok, text, len, ctx, chunks, "f32", r);
    tern_tokenizer_free(tok);
    return rc;
}

// An export's perplexity check (--check-text): the source's perplexity, then
// the written file's, read back through tern's reader, FP32 on both sides.
static int check_open(tern_ppl_check *c, const tern_model *m, const tern_export_check *o) {
    memset(c, 0, sizeof *c);
    if (!o->text) return 0;
    if (tern_read_file(o->text, &c->text, &c->len)) return -1;
    c->o = o;
    c->ctx = o->ctx > 0 ? o->ctx : 512, c->chunks = o->chunks > 0 ? o->chunks : 8;
    if (c->ctx > m->cfg.max_seq) c->ctx = m->cfg.max_seq;
    return 0;
}

static int check_source(tern_ppl_check *c, const tern_model *src, tern_export_checked *res) {
    tern_ppl_result r;
    if (!c->text) return 0;
    if (tq_ppl(src, c->text, c->len, c->ctx, c->chunks, &r)) return -1;
    res->ppl_source = r.ppl, res->ctx = r.ctx, res->chunks = r.chunks;
    return 0;
}

// Writes wr to out_path. With a check the file is first written beside the
// target, read back and measured; only then renamed into place (a rise above
// max_change fails, nothing written, unless force). Frees the check text.
static int write_checked(tern_gguf_writer *wr, const char *out_path, tern_ppl_check *c, const char *fmt,
                         tern_export_checked *res) {
    char stage[600];
    snprintf(stage, sizeof stage, "%s", out_path);
    if (c->text) snprintf(stage, sizeof stage, "%s.check.%ld", out_path, (long)getpid());
    int rc = tern_gguf_write(wr, stage);
    if (rc == 0 && c->text) {
        tern_model back;
        tern_ppl_result r;
        rc = tern_model_load(&back, stage, NULL);
        if (rc == 0) {
            rc = tq_ppl(&back, c->text, c->len, c->ctx, c->chunks, &r);
            tern_model_free(&back);
        }
        if (rc == 0) {
            res->checked = 1;
            res->ppl_export = r.ppl;
            res->change_pct = 100.0 * (res->ppl_export / res->ppl_source - 1.0);
            double bound = c->o->max_change;
            if (!(res->change_pct <= bound) && !c->o->force)
                rc = tern_errorf("export: perplexity on %s rose by %+.2f%% (source %.4f, %s %.4f; %d chunks of %d), "
                                 "more than --max-ppl-change %g%%; nothing written (--force writes it anyway)",
                                 c->o->text, res->change_pct, res->ppl_source, fmt, res->ppl_export, res->chunks,
                                 res->ctx, bound);
            else res->forced = !(res->change_pct <= bound);
        }
        if (rc == 0 && rename(stage, out_path) != 0)
            rc = tern_errorf("%s: cannot rename into place: %s", out_path, strerror(errno));
        if (rc) unlink(stage);
    }
    free(c->text);
    c->text = NULL;
    return rc;
}

// Smallest group the input's linears were loaded packed with exact codes (a
// llama.cpp ternary GGUF: 256, 128, 64 or 32 per type), 0 when none is. Codes
// exact per block stay exact per any group dividing it.
static int packed_group_min(const tern_model *m) {
    int g = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const tern_tensor *t = &m->tensors[i];
        if (linear_id(t->name) >= 0 && exact_packed(t) && (!g || t->packed_group < g)) g = t->packed_group;
    }
    return g;
}

// q8 block of the embedding / head: the input's own when it was loaded packed
// as q8 (a llama.cpp Q8_0 embedding: 32), so its codes are kept; else 128.
static int q8_group_of(const tern_model *m) {
    const tern_tensor *t = tern_model_find(m, "token_embd.weight");
    return t && t->packed && t->packed_fmt == TERN_KFMT_Q8 ? t->packed_group : Q8_GROUP;
}

int tern_export_tern(const tern_model *m, const char *in_path, const tern_export_opts *o, const char *out_path,
                     tern_export_info *info) {
    tern_export_info tmp;
    if (!info) info = &tmp;
    memset(info, 0, sizeof *info);
    if (tern_model_require_llama(m, "export")) return -1;
    tern_export_meta meta;
    tern_job j = {.body = TERN_KFMT_T2, .meta = &meta, .info = info, .q8_group = q8_group_of(m)};
    if (tern_export_input_meta(in_path, &meta)) return -1;
    if (plain_method(meta.method)) meta.method[0] = 0; // codes recovered again, or absmean
    if (choose_body(in_path, o, &meta, &j.body)) return -1;
    tern_export_opts eo = *o;
    if (!meta.method[0] && eo.group <= 0) eo.group = packed_group_min(m);
    if (resolve_group(m, &eo, meta.method, meta.group, &j.group)) return -1;
    j.shift = !strcmp(meta.method, "dlt");
    snprintf(info->method, sizeof info->method, "%s", meta.method);
    snprintf(info->format, sizeof info->format, "%s", tern_kformat_get(j.body)->name);
    info->group = j.group;
    tern_ppl_check chk;
    if (check_open(&chk, m, &o->check)) return -1;
    tern_gguf_writer *w = tern_gguf_writer_new();
    int rc = w ? check_source(&chk, m, &info->check) : tern_errorf("out of memory");
    buf_list bl = {0};
    // Tensors first: the metadata records what they turned out to be.
    for (int i = 0; i < m->n_tensors && rc == 0; i++) rc = add_tensor(w, &bl, &m->tensors[i], &j);
    if (rc == 0) rc = set_meta(w, &bl, m, &j);
    info->lossy_rel_rmse = j.norm2 > 0 ? sqrt(j.err2 / j.norm2) : 0;
    if (rc == 0) rc = write_checked(w, out_path, &chk, "tern", &info->check);
    free(chk.text);
    tern_gguf_writer_free(w);
    buf_free(&bl);
    struct stat st;
    if (rc == 0 && stat(out_path, &st) == 0) info->bytes = (int64_t)st.st_size;
    return rc;
}

// ---------------------------------------------------------------------------
// llama.cpp export: TQ2_0 / TQ1_0 / Q2_0 (docs/format.md, "llama.cpp export").

// The ternary block types a llama.cpp export writes its linears as, with
// general.file_type (llama.h's LLAMA_FTYPE_MOSTLY_*) and the block encoder.
typedef struct {
    const char *format, *type_name;
    uint32_t type;
    int block;
    size_t bytes;
    uint32_t ftype;
    void (*encode)(const int8_t *T, float d, uint8_t *out);
} tq_format;

static const tq_format TQ_FORMATS[] = {
    {"gguf-tq2", "TQ2_0", TERN_GGUF_TYPE_TQ2_0, TERN_GGUF_TQ_BLOCK, TERN_GGUF_TQ2_0_BYTES, 37, tern_gguf_encode_tq2_0},
    {"gguf-tq1", "TQ1_0", TERN_GGUF_TYPE_TQ1_0, TERN_GGUF_TQ_BLOCK, TERN_GGUF_TQ1_0_BYTES, 36, tern_gguf_encode_tq1_0},
    {"gguf-q2_0", "Q2_0", TERN_GGUF_TYPE_Q2_0, TERN_GGUF_Q2_0_BLOCK, TERN_GGUF_Q2_0_BYTES, 41, tern_gguf_encode_q2_0},
};
static const tq_format Q4_0_FALLBACK = {"q4_0", "Q4_0", TERN_GGUF_TYPE_Q4_0, TERN_GGUF_Q4_0_BLOCK,
                                        TERN_GGUF_Q4_0_BYTES, 0, tern_gguf_encode_q4_0};
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
        if (f && f->kind == TERN_KKIND_RTN && !strcmp(t->src_type, "Q2_0")) {
            // Q2_0's code 2 has no ternary code: absmean codes, each block's d
            // fitted to the source values (the error is measured against them).
            float *sc = malloc((size_t)rows * ((cols + group - 1) / group) * sizeof(float));
            if (!sc) return tern_errorf("out of memory");
            tern_absmean_ternary(t->data, rows, cols, group, T, sc);
            free(sc);
            snprintf(info->source, sizeof info->source, "by absmean PTQ of Q2_0");
            info->group = group;
            info->lossy_linears++;
            return 0;
        }
        if (!f || f->kind != TERN_KKIND_TERNARY)
            return tern_errorf("export: %s is stored as %s, not ternary (only ternary models export to TQ)", t->name,
                               f ? f->name : "an unknown format");
        tern_kmatrix km;
        if (tern_kmatrix_init(&km, f, rows, cols, t->packed_group, t->packed_shift, t->packed)) return -1;
        tern_kunpack(&km, T, NULL, NULL, NULL);
        // A llama.cpp ternary tensor (io/gguf.c repacks it losslessly at load) or a .tern packing.
        int ggml = strncmp(t->src_type, "tern-", 5) != 0;
        snprintf(info->source, sizeof info->source, ggml ? "from exact ternary blocks" : "from the .tern packing");
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

// Re-blocks one linear to format tf (TQ1_0 / TQ2_0: blocks of 256; Q2_0: 64;
// the Q4_0 fallback: blocks of 32, codes T stored as q = T): per block the
// least-squares scale for the fixed codes, d = sum w_i T_i / sum T_i^2 (0 for
// an all-zero block), rounded to fp16, then the blocks encoded. Accumulates
// the weight-space error.
static int add_ternary(tern_gguf_writer *wr, buf_list *bl, const tern_tensor *t, const int8_t *T, const float *w,
                       const tq_format *tf, double *err2, double *norm2) {
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    int bk = tf->block, nb = cols / bk;
    size_t bsize = tf->bytes, bytes = (size_t)rows * nb * bsize;
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
        tf->encode(tb, d, dst + b * bsize);
    }
    return tern_gguf_add_tensor(wr, t->name, tf->type, 2, t->shape, dst, bytes);
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
        tern_absmax_q8(t->data, rows, cols, TERN_GGUF_Q8_0_BLOCK, codes, scales, NULL, NULL);
        for (size_t b = 0; b < (size_t)rows * nb; b++)
            tern_gguf_encode_q8_0(codes + b * TERN_GGUF_Q8_0_BLOCK, scales[b], dst + b * TERN_GGUF_Q8_0_BYTES);
        rc = tern_gguf_add_tensor(wr, t->name, TERN_GGUF_TYPE_Q8_0, 2, t->shape, dst, bytes);
    }
    free(codes), free(scales);
    return rc;
}

// llama.cpp's block types need rows that are whole blocks (256 for TQ1_0 /
// TQ2_0, 64 for Q2_0); with the Q4_0 fallback other rows must be whole 32-blocks.
static int tq_check_shapes(const tern_model *m, const tq_format *tf, int fallback) {
    for (int i = 0; i < m->n_tensors; i++) {
        const tern_tensor *t = &m->tensors[i];
        if (linear_id(t->name) < 0) continue;
        if (t->ndim != 2) return tern_errorf("export: %s is not a matrix", t->name);
        long long cols = (long long)t->shape[1];
        if (cols % tf->block == 0) continue;
        if (!fallback)
            return tern_errorf("export: %s: %s has rows of %lld values, not a multiple of %d (llama.cpp's %s block); "
                               "--fallback q4_0 stores such matrices as Q4_0 (as llama-quantize does)",
                               tf->format, t->name, cols, tf->block, tf->type_name);
        if (cols % TERN_GGUF_Q4_0_BLOCK)
            return tern_errorf("export: %s: %s has rows of %lld values, a multiple of neither %d (%s) nor %d (Q4_0)",
                               tf->format, t->name, cols, tf->block, tf->type_name, TERN_GGUF_Q4_0_BLOCK);
    }
    return 0;
}

int tern_export_gguf_tq(const tern_model *m, const char *in_path, const tern_export_tq_opts *o, const char *out_path,
                        tern_export_tq_info *info) {
    tern_export_tq_info tmp;
    if (!info) info = &tmp;
    memset(info, 0, sizeof *info);
    if (tern_model_require_llama(m, "export")) return -1;
    const char *fmt = o->format ? o->format : "gguf-tq2";
    const tq_format *tf = NULL;
    for (size_t k = 0; k < sizeof TQ_FORMATS / sizeof TQ_FORMATS[0]; k++)
        if (!strcmp(fmt, TQ_FORMATS[k].format)) tf = &TQ_FORMATS[k];
    if (!tf) return tern_errorf("export: unknown format '%s' (gguf-tq2, gguf-tq1 or gguf-q2_0)", fmt);
    const char *type = tf->type_name;
    int fallback = o->fallback && strcmp(o->fallback, "none");
    if (fallback && strcmp(o->fallback, "q4_0"))
        return tern_errorf("export: unknown fallback '%s' (none or q4_0)", o->fallback);
    tern_export_meta meta;
    int group = 0;
    if (tern_export_input_meta(in_path, &meta)) return -1;
    if (plain_method(meta.method)) meta.method[0] = 0;
    if (input_bits(&meta))
        return tern_errorf("export: %s is a %d-bit %s model; only ternary models export to %s (use --format tern)",
                           in_path, meta.bits, meta.method, type);
    if (tq_check_shapes(m, tf, fallback)) return -1;
    snprintf(info->method, sizeof info->method, "%s", meta.method);
    // Absmean PTQ of an FP model per Q2_0 block of 64 (no re-blocking); TQ keeps 128.
    tern_export_opts eo = {.group = o->group > 0 || meta.method[0] || tf->block > 128 ? o->group : tf->block};
    if (resolve_group(m, &eo, info->method, meta.group, &group)) return -1;
    int shift = !strcmp(info->method, "dlt");

    tern_ppl_check chk;
    if (check_open(&chk, m, &o->check)) return -1;
    const char *text = chk.text;

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
    if (rc == 0) rc = tern_gguf_set_u32(wr, "general.file_type", tf->ftype);
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
            int k = t->shape[1] % tf->block != 0;
            if (rc == 0) rc = add_ternary(wr, &bl, t, T, w, k ? &Q4_0_FALLBACK : tf, &err2[k], &norm2[k]);
            info->fallback_linears += k;
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
    if (rc == 0 && info->dropped_shift && !o->allow_lossy)
        rc = tern_errorf("export: %s drops the DLT shifts of %s (weight rel. RMSE %.4f%s); nothing written "
                         "(--allow-lossy writes it)",
                         fmt, in_path, info->weight_rel_rmse, info->fallback_linears ? " in the TQ matrices" : "");
    if (rc == 0) rc = check_source(&chk, &src, &info->check);
    for (int i = 0; owned && i < m->n_tensors; i++) tern_free(owned[i]);
    free(owned), free(src.tensors);

    if (rc == 0) rc = write_checked(wr, out_path, &chk, fmt, &info->check);
    free(chk.text);
    tern_gguf_writer_free(wr);
    buf_free(&bl);
    struct stat st;
    if (rc == 0 && stat(out_path, &st) == 0) info->bytes = (int64_t)st.st_size;
    return rc;
}

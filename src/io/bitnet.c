#include "io/bitnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/half.h"
#include "core/mem.h"
#include "kernels/formats.h"

int tern_bitnet_unpack_hf(const uint8_t *bytes, int64_t rows, int64_t cols, float *t, const char *what) {
    int64_t prow = rows / 4;
    for (int64_t r = 0; r < prow; r++)
        for (int64_t c = 0; c < cols; c++) {
            uint8_t b = bytes[r * cols + c];
            for (int i = 0; i < 4; i++) {
                int code = (b >> (2 * i)) & 3;
                if (code == 3) return tern_errorf("%s: invalid 2-bit code 3 at packed row %lld", what, (long long)r);
                t[(i * prow + r) * cols + c] = (float)(code - 1);
            }
        }
    return 0;
}

float tern_bitnet_ternarize(float *w, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += fabsf(w[i]);
    float s = 1.0f / fmaxf((float)(sum / (double)n), 1e-5f);
    for (int64_t i = 0; i < n; i++) w[i] = fminf(fmaxf(nearbyintf(w[i] * s), -1.0f), 1.0f);
    return s;
}

int tern_bitnet_attach(tern_tensor *t, float scale, int divide, const char *what) {
    float alpha = divide ? 1.0f / scale : scale;
    if (!(scale > 0) || !isfinite(alpha) || !(alpha > 0) || fabsf(alpha) > 65504.0f ||
        tern_f16_to_f32(tern_f32_to_f16(alpha)) == 0)
        return tern_errorf("%s: weight_scale %g is not a usable positive scale", what, scale);
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    const tern_kformat *f = tern_kformat_get(TERN_KFMT_T2);
    tern_kmatrix km;
    size_t row_bytes = tern_kformat_row_bytes(f, cols, cols, 0);
    uint8_t *packed = row_bytes ? tern_calloc((size_t)rows * row_bytes) : NULL;
    int8_t *codes = malloc((size_t)rows * cols);
    float *scales = malloc((size_t)rows * sizeof *scales);
    int rc = -1;
    if (packed && codes && scales && !tern_kmatrix_init(&km, f, rows, cols, cols, 0, packed)) {
        for (size_t i = 0; i < (size_t)rows * cols; i++) {
            codes[i] = (int8_t)t->data[i];
            t->data[i] = divide ? t->data[i] / scale : t->data[i] * scale; // HF's own operation
        }
        for (int r = 0; r < rows; r++) scales[r] = alpha;
        rc = tern_kpack(&km, packed, codes, scales, NULL, NULL);
    } else if (!packed || !codes || !scales) {
        tern_errorf("out of memory");
    }
    free(codes);
    free(scales);
    if (rc) {
        tern_free(packed);
        return -1;
    }
    t->packed = packed;
    t->packed_bytes = (size_t)rows * row_bytes;
    t->packed_fmt = TERN_KFMT_T2;
    t->packed_group = cols;
    t->packed_shift = 0;
    return 0;
}

// a > 0 when every value is 0 or +-a; 0 otherwise.
static float ternary_scale(const float *w, int64_t n) {
    float a = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = fabsf(w[i]);
        if (v == 0) continue;
        if (a == 0) a = v;
        else if (v != a) return 0;
    }
    return a;
}

static const char *const LINEARS[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

int tern_bitnet_finish_gguf(tern_model *m) {
    const tern_config *c = &m->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < 7; k++) {
            char name[TERN_NAME_MAX], what[700];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, LINEARS[k]);
            snprintf(what, sizeof what, "%s: tensor %s", m->path, name);
            tern_tensor *t = tern_model_find(m, name);
            if (!t) continue; // tern_model_bind already required it
            snprintf(name, sizeof name, "blk.%d.%s.scale", l, LINEARS[k]);
            const tern_tensor *s = tern_model_find(m, name);
            if (s && s->numel != 1) return tern_errorf("%s: tensor %s has %lld elements, expected 1", m->path, name,
                                                       (long long)s->numel);
            if (s && !(isfinite(s->data[0]) && s->data[0] != 0))
                return tern_errorf("%s: tensor %s is not a finite non-zero scale", m->path, name);
            for (int64_t i = 0; s && i < t->numel; i++) t->data[i] *= s->data[0];
            int heads = k == 0 ? c->n_heads : k == 1 ? c->n_kv_heads : 0;
            if ((heads || s) && t->packed) { // the stored bytes no longer match: re-derived below
                tern_free((void *)t->packed);
                t->packed = NULL;
                t->packed_bytes = 0;
            }
            if (heads && tern_permute_rope_rows(t->data, heads, c->head_dim, t->shape[1])) return -1;
            float a = t->packed ? 0 : ternary_scale(t->data, t->numel);
            if (a == 0) continue; // not ternary (or already packed): FP32 weights
            for (int64_t i = 0; i < t->numel; i++) t->data[i] = t->data[i] > 0 ? 1.0f : t->data[i] < 0 ? -1.0f : 0.0f;
            if (tern_bitnet_attach(t, a, 0, what)) return -1;
        }
    return 0;
}

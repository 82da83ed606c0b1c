// GGUF v2/v3 reader (written from the GGUF format description).
//
// File layout (little-endian): "GGUF", u32 version, u64 tensor count, u64
// metadata count; metadata entries (string key, u32 value type, value); tensor
// infos (string name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml
// type, u64 offset into the data section); padding to `general.alignment`
// (default 32); the data section. A string is a u64 byte length and the bytes
// (no NUL); an array is a u32 element type, a u64 count and the elements.
// v1 used 32-bit counts and lengths and is refused.
//
// Everything is validated in tern_gguf_parse before any of it is used, so the
// model and vocabulary readers below work on trusted offsets.
#include "io/gguf.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/half.h"
#include "core/mem.h"
#include "io/bitnet.h"
#include "kernels/formats.h"
#include "kernels/kernels.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ALIGNMENT (1u << 24)
#define GGUF_MAX_NESTING 8        // arrays of arrays of ...; real files use at most 2
#define GGUF_MAX_KEY_LEN 65535    // the format's own limit on key length
#define GGUF_MAX_TOKENS (1 << 22) // same bound as tern_config_validate's vocab_size

// ---------------------------------------------------------------------------
// Block layouts and dequantization. Each decoder turns one block of `block`
// values stored in `size` bytes into floats. Scales are fp16; reads are
// byte-wise so blocks need no alignment.

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline float rdh(const uint8_t *p) { return tern_f16_to_f32(rd16(p)); }

// The block types whose values are d * q, one fp16 d per block and an integer
// code q per value (Q8_0, Q4_0, TQ1_0, TQ2_0, Q1_0, Q2_0): each decoder writes
// the codes and returns d, so dequantization (d * q) and the lossless repack
// into the kernels' formats (repack_codes below) read a layout in one place.
typedef float (*codes_fn)(const uint8_t *block, int8_t *q);

// Q8_0, 32 values in 34 bytes: fp16 d, int8 q[32]; x = d * q.
static float codes_q8_0(const uint8_t *b, int8_t *q) {
    memcpy(q, b + 2, 32);
    return rdh(b);
}

// Q4_0, 32 values in 18 bytes: fp16 d, 16 bytes of nibbles. The low nibble of
// byte j is value j, the high nibble value j + 16; x = d * (q - 8).
static float codes_q4_0(const uint8_t *b, int8_t *q) {
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) q[j] = (int8_t)((qs[j] & 15) - 8), q[j + 16] = (int8_t)((qs[j] >> 4) - 8);
    return rdh(b);
}

// Q5_0, 32 values in 22 bytes: fp16 d, u32 of fifth bits (bit j belongs to
// value j), nibbles as Q4_0; x = d * (q - 16).
static float codes_q5_0(const uint8_t *b, int8_t *q) {
    uint32_t qh = rd32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 15) | (int)((qh >> j) & 1) << 4) - 16);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16);
    }
    return rdh(b);
}

// The block types whose values are d * q + m with an unsigned code q per value
// and one (d, m) per sub-block of 32 values (Q4_1, Q5_1, Q4_K, Q5_K): each
// decoder writes the codes and the sub-blocks' d and m, exact in fp32 (the
// K-quants' d * scale and dmin * min are products of an fp16 and a 6-bit
// integer), for dequantization and for the repack into the kernels' shifted
// formats (repack_affine below).
typedef void (*affine_fn)(const uint8_t *block, uint8_t *q, float *d, float *m);

// 32 values of nibbles (Q4_0's layout: byte j holds value j low, j + 16 high)
// and fifth bits (bit j of qh, or none when qh is NULL).
static void nibbles32(const uint8_t *qs, const uint8_t *qh, uint8_t *q) {
    uint32_t h = qh ? rd32(qh) : 0;
    for (int j = 0; j < 16; j++) {
        q[j] = (uint8_t)((qs[j] & 15) | ((h >> j) & 1) << 4);
        q[j + 16] = (uint8_t)((qs[j] >> 4) | ((h >> (j + 16)) & 1) << 4);
    }
}

// Q4_1, 32 values in 20 bytes: fp16 d, fp16 m, nibbles as Q4_0; x = d * q + m.
static void affine_q4_1(const uint8_t *b, uint8_t *q, float *d, float *m) {
    *d = rdh(b), *m = rdh(b + 2);
    nibbles32(b + 4, NULL, q);
}

// Q5_1, 32 values in 24 bytes: fp16 d, fp16 m, then as Q5_0; x = d * q + m.
static void affine_q5_1(const uint8_t *b, uint8_t *q, float *d, float *m) {
    *d = rdh(b), *m = rdh(b + 2);
    nibbles32(b + 8, b + 4, q);
}

// K-quant 6-bit scale and min of sub-block j (0..7) packed in 12 bytes: the
// first four pairs sit in the low 6 bits of bytes 0..3 / 4..7; the last four
// take their low 4 bits from bytes 8..11 and their top 2 bits from the unused
// high bits of bytes 0..3 (scales) and 4..7 (mins).
static void k_scale_min(int j, const uint8_t *s, float *sc, float *mn) {
    int a, b;
    if (j < 4) {
        a = s[j] & 63;
        b = s[j + 4] & 63;
    } else {
        a = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        b = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
    *sc = (float)a;
    *mn = (float)b;
}

// Q4_K (qh NULL) and Q5_K: fp16 d, fp16 dmin, 12 bytes of scales/mins, for
// Q5_K 32 bytes of fifth bits (bit s of byte l belongs to value l of
// sub-block s), then 128 bytes of nibbles: each 32-byte group holds two
// sub-blocks (low nibbles first). x = d*sc * q - dmin*mn.
static void affine_k(const uint8_t *b, const uint8_t *qh, const uint8_t *qs, uint8_t *q, float *d, float *m) {
    float dd = rdh(b), dmin = rdh(b + 2);
    for (int s = 0; s < 8; s++) {
        float sc, mn;
        k_scale_min(s, b + 4, &sc, &mn);
        d[s] = dd * sc, m[s] = -(dmin * mn);
        const uint8_t *p = qs + 32 * (s / 2);
        for (int l = 0; l < 32; l++) {
            int v = s % 2 ? p[l] >> 4 : p[l] & 15;
            q[32 * s + l] = (uint8_t)(v | (qh ? ((qh[l] >> s) & 1) << 4 : 0));
        }
    }
}
// Q4_K, 256 values in 144 bytes; Q5_K, 256 values in 176 bytes.
static void affine_q4_k(const uint8_t *b, uint8_t *q, float *d, float *m) { affine_k(b, NULL, b + 16, q, d, m); }
static void affine_q5_k(const uint8_t *b, uint8_t *q, float *d, float *m) { affine_k(b, b + 16, b + 48, q, d, m); }

// Q6_K, 256 values in 210 bytes: 128 bytes of low nibbles, 64 bytes of 2-bit
// high parts, 16 int8 scales (one per 16 values), fp16 d. Each half of 128
// values uses 64 nibble bytes and 32 high bytes: value l + 32k (k = 0..3)
// takes nibble byte l (k even) or l + 32 (k odd), low nibble for k < 2, and
// bits 2k..2k+1 of high byte l. x = d * scale * (q - 32).
static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = rdh(b + 208);
    for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, y += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q0 = ((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32;
            int q1 = ((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32;
            int q2 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
            int q3 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            y[l] = d * (float)sc[is] * (float)q0;
            y[l + 32] = d * (float)sc[is + 2] * (float)q1;
            y[l + 64] = d * (float)sc[is + 4] * (float)q2;
            y[l + 96] = d * (float)sc[is + 6] * (float)q3;
        }
    }
}

// Q2_K, 256 values in 84 bytes: scales[16] (low nibble a scale, high nibble a
// min, one pair per 16 values), qs[64], fp16 d, fp16 dmin. Value
// 128h + 32k + l (h = 0..1, k = 0..3, l = 0..31) is bits 2k..2k+1 of
// qs[32h + l] with pair 8h + 2k + l / 16; x = d*sc * q - dmin*mn.
static void deq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *qs = b + 16;
    float d = rdh(b + 80), dmin = rdh(b + 82);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int s = sc[8 * h + 2 * k + l / 16];
                y[128 * h + 32 * k + l] = d * (float)(s & 15) * (float)((qs[32 * h + l] >> (2 * k)) & 3) -
                                          dmin * (float)(s >> 4);
            }
}

// Q3_K, 256 values in 110 bytes: hmask[32], qs[64], scales[12], fp16 d. Value
// 128h + 32k + l takes its low 2 bits from bits 2k..2k+1 of qs[32h + l] and
// loses 4 when bit 4h + k of hmask[l] is clear (q in -4..3); its scale
// j = 8h + 2k + l / 16 is 6 bits minus 32: the low 4 from the low (j < 8) or
// high nibble of byte j % 8, the top 2 from bits 2(j / 4).. of byte 8 + j % 4.
// x = d * scale * q.
static void deq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *qs = b + 32, *sc = b + 96;
    float d = rdh(b + 108);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int j = 8 * h + 2 * k + l / 16;
                int s = ((j < 8 ? sc[j] & 15 : sc[j - 8] >> 4) | ((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
                int q = ((qs[32 * h + l] >> (2 * k)) & 3) - ((hm[l] >> (4 * h + k)) & 1 ? 0 : 4);
                y[128 * h + 32 * k + l] = d * (float)s * (float)q;
            }
}

// IQ4_NL and IQ4_XS: a 4-bit code indexes these 16 non-uniform int8 levels.
static const int8_t iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// IQ4_NL, 32 values in 18 bytes: fp16 d, nibbles as Q4_0; x = d * level[q].
static float codes_iq4_nl(const uint8_t *b, int8_t *q) {
    for (int j = 0; j < 16; j++) q[j] = iq4_levels[b[2 + j] & 15], q[j + 16] = iq4_levels[b[2 + j] >> 4];
    return rdh(b);
}

// IQ4_XS, 256 values in 136 bytes: fp16 d, u16 scales_h, scales_l[4],
// qs[128]. Sub-block s (32 values, nibbles as Q4_0 in qs[16s..16s+15]) has
// the 6-bit scale ls = nibble s % 2 of scales_l[s / 2] | bits 2s..2s+1 of
// scales_h << 4; x = d * (ls - 32) * level[q].
static void deq_iq4_xs(const uint8_t *b, float *y) {
    float d = rdh(b);
    unsigned sh = rd16(b + 2);
    for (int s = 0; s < 8; s++) {
        int ls = ((b[4 + s / 2] >> (4 * (s % 2))) & 15) | ((sh >> (2 * s)) & 3) << 4;
        float dl = d * (float)(ls - 32);
        const uint8_t *qs = b + 8 + 16 * s;
        for (int j = 0; j < 16; j++)
            y[32 * s + j] = dl * (float)iq4_levels[qs[j] & 15], y[32 * s + j + 16] = dl * (float)iq4_levels[qs[j] >> 4];
    }
}

// Ternary digit k (0..4) of a TQ1_0 byte. A byte stores up to five trits
// t_0..t_4 as the fixed-point fraction v/243 (v = sum t_k 3^(4-k), byte =
// ceil(v*256/243)); multiplying by 3^k modulo 256 drops the leading k digits,
// and the top bits of the product by 3 are the next digit.
static inline int tq1_trit(uint8_t byte, int k) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t x = (uint8_t)(byte * pow3[k]);
    return (x * 3) >> 8;
}

// TQ1_0, 256 values in 54 bytes: qs[48], qh[4], fp16 d. Value 32k + j
// (k = 0..4, j = 0..31) is digit k of qs[j]; value 160 + 16k + j (j = 0..15)
// is digit k of qs[32 + j]; value 240 + 4k + j (k = 0..3, j = 0..3) is digit k
// of qh[j]. x = d * (t - 1).
static float codes_tq1_0(const uint8_t *b, int8_t *q) {
    const uint8_t *qs = b, *qh = b + 48;
    for (int k = 0; k < 5; k++) {
        for (int j = 0; j < 32; j++) q[32 * k + j] = (int8_t)(tq1_trit(qs[j], k) - 1);
        for (int j = 0; j < 16; j++) q[160 + 16 * k + j] = (int8_t)(tq1_trit(qs[32 + j], k) - 1);
    }
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 4; j++) q[240 + 4 * k + j] = (int8_t)(tq1_trit(qh[j], k) - 1);
    return rdh(b + 52);
}

// TQ2_0, 256 values in 66 bytes: qs[64], fp16 d. Value 128h + 32k + j
// (h = 0..1, k = 0..3, j = 0..31) is bits 2k..2k+1 of qs[32h + j]; x = d * (q - 1)
// (a field of 3, which ggml's quantizer never writes, decodes to 2d as in
// ggml's dequantizer; a model holding one is refused by repack_codes).
static float codes_tq2_0(const uint8_t *b, int8_t *q) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 32; j++) q[128 * h + 32 * k + j] = (int8_t)(((b[32 * h + j] >> (2 * k)) & 3) - 1);
    return rdh(b + 64);
}

// Q1_0 (ggml-common.h block_q1_0), 128 values in 18 bytes: fp16 d, qs[16];
// value j is bit j % 8 of qs[j / 8]: 1 -> +d, 0 -> -d.
static float codes_q1_0(const uint8_t *b, int8_t *q) {
    for (int j = 0; j < 128; j++) q[j] = (int8_t)((b[2 + j / 8] >> (j % 8)) & 1 ? 1 : -1);
    return rdh(b);
}

// Q2_0 (ggml-common.h block_q2_0), 64 values in 18 bytes: fp16 d, qs[16];
// value j is bits 2(j % 4)..2(j % 4)+1 of qs[j / 4]; x = d * (q - 1), so the
// levels are {-1, 0, 1, 2} * d (a 2-bit format; ternary when no field is 3).
static float codes_q2_0(const uint8_t *b, int8_t *q) {
    for (int j = 0; j < 64; j++) q[j] = (int8_t)(((b[2 + j / 4] >> (2 * (j % 4))) & 3) - 1);
    return rdh(b);
}

typedef void (*block_fn)(const uint8_t *block, float *out);

typedef struct {
    const char *name;
    int block; // values per block
    int size;  // bytes per block
    block_fn deq; // NULL: scalar type handled inline, a codes or affine type, or not supported
    int supported;
    codes_fn codes;   // d * q block types
    affine_fn affine; // d * q + m block types
} type_info;

static const type_info TYPES[] = {
    [TERN_GGML_F32] = {"F32", 1, 4, NULL, 1, NULL, NULL},
    [TERN_GGML_F16] = {"F16", 1, 2, NULL, 1, NULL, NULL},
    [TERN_GGML_Q4_0] = {"Q4_0", 32, 18, NULL, 1, codes_q4_0, NULL},
    [TERN_GGML_Q4_1] = {"Q4_1", 32, 20, NULL, 1, NULL, affine_q4_1},
    [TERN_GGML_Q5_0] = {"Q5_0", 32, 22, NULL, 1, codes_q5_0, NULL},
    [TERN_GGML_Q5_1] = {"Q5_1", 32, 24, NULL, 1, NULL, affine_q5_1},
    [TERN_GGML_Q8_0] = {"Q8_0", 32, 34, NULL, 1, codes_q8_0, NULL},
    [TERN_GGML_Q8_1] = {"Q8_1", 32, 36, NULL, 0, NULL, NULL},
    [TERN_GGML_Q2_K] = {"Q2_K", 256, 84, deq_q2_k, 1, NULL, NULL},
    [TERN_GGML_Q3_K] = {"Q3_K", 256, 110, deq_q3_k, 1, NULL, NULL},
    [TERN_GGML_Q4_K] = {"Q4_K", 256, 144, NULL, 1, NULL, affine_q4_k},
    [TERN_GGML_Q5_K] = {"Q5_K", 256, 176, NULL, 1, NULL, affine_q5_k},
    [TERN_GGML_Q6_K] = {"Q6_K", 256, 210, deq_q6_k, 1, NULL, NULL},
    [TERN_GGML_Q8_K] = {"Q8_K", 256, 292, NULL, 0, NULL, NULL},
    [TERN_GGML_IQ4_NL] = {"IQ4_NL", 32, 18, NULL, 1, codes_iq4_nl, NULL},
    [TERN_GGML_IQ4_XS] = {"IQ4_XS", 256, 136, deq_iq4_xs, 1, NULL, NULL},
    [TERN_GGML_I8] = {"I8", 1, 1, NULL, 0, NULL, NULL},
    [TERN_GGML_I16] = {"I16", 1, 2, NULL, 0, NULL, NULL},
    [TERN_GGML_I32] = {"I32", 1, 4, NULL, 0, NULL, NULL},
    [TERN_GGML_I64] = {"I64", 1, 8, NULL, 0, NULL, NULL},
    [TERN_GGML_F64] = {"F64", 1, 8, NULL, 0, NULL, NULL},
    [TERN_GGML_BF16] = {"BF16", 1, 2, NULL, 1, NULL, NULL},
    [TERN_GGML_TQ1_0] = {"TQ1_0", 256, 54, NULL, 1, codes_tq1_0, NULL},
    [TERN_GGML_TQ2_0] = {"TQ2_0", 256, 66, NULL, 1, codes_tq2_0, NULL},
    [TERN_GGML_Q1_0] = {"Q1_0", 128, 18, NULL, 1, codes_q1_0, NULL},
    [TERN_GGML_Q2_0] = {"Q2_0", 64, 18, NULL, 1, codes_q2_0, NULL},
};

static const type_info *type_of(uint32_t t) {
    if (t >= sizeof TYPES / sizeof TYPES[0] || !TYPES[t].name) return NULL;
    return &TYPES[t];
}

// tern's packed types (gguf.h): the kernels' format, or NULL when t is not one.
static const tern_kformat *packed_format(uint32_t t, int *shift) {
    int sh = t >= TERN_GGUF_PACKED_SHIFT_BASE && t < TERN_GGUF_PACKED_SHIFT_BASE + TERN_GGUF_PACKED_MAX_FMT;
    uint32_t base = sh ? TERN_GGUF_PACKED_SHIFT_BASE : TERN_GGUF_PACKED_BASE;
    if (t < base || t - base >= TERN_KFMT_COUNT) return NULL;
    const tern_kformat *f = tern_kformat_get((tern_kfmt_id)(t - base));
    if (!f || (sh && f->kind != TERN_KKIND_TERNARY)) return NULL;
    if (shift) *shift = sh;
    return f;
}

const char *tern_gguf_type_name(uint32_t type) {
    const tern_kformat *f = packed_format(type, NULL);
    if (f) return f->name;
    const type_info *ti = type_of(type);
    return ti ? ti->name : NULL;
}

int tern_gguf_type_supported(uint32_t type) {
    if (packed_format(type, NULL)) return 1;
    const type_info *ti = type_of(type);
    return ti && ti->supported;
}

// Dequantizes a packed tern tensor (validated by packed_info): ternary
// alpha*T, RTN s*(c - z), q8 d*c, each + gamma when it has shifts. A ternary code outside {-1, 0, 1}
// (2-bit field 3) is an error: the kernels rely on it (kern_avx2.c's int16 groups).
static int dequant_packed(const tern_gguf *g, const tern_gguf_tensor *t, float *out) {
    const tern_kformat *f = packed_format(t->type, NULL);
    int rows = (int)(t->numel / t->ne[0]), cols = (int)t->ne[0], group = t->packed_group;
    tern_kmatrix m;
    if (tern_kmatrix_init(&m, f, rows, cols, group, t->packed_shift, t->data)) return -1;
    size_t ng = (size_t)rows * m.n_groups;
    int8_t *codes = malloc((size_t)rows * cols);
    float *scales = malloc(ng * sizeof(float)), *shifts = malloc(ng * sizeof(float));
    uint8_t *zeros = malloc(ng);
    int rc = codes && scales && shifts && zeros ? 0 : tern_errorf("out of memory");
    if (rc == 0) {
        memset(shifts, 0, ng * sizeof(float));
        memset(zeros, 0, ng);
        tern_kunpack(&m, codes, scales, t->packed_shift ? shifts : NULL, zeros);
        for (size_t i = 0; f->kind == TERN_KKIND_TERNARY && i < (size_t)rows * cols && rc == 0; i++)
            if (codes[i] > 1)
                rc = tern_errorf("%s: tensor %s: row %zu holds a 2-bit field 3, not a ternary code", g->path,
                                 t->name, i / (size_t)cols);
        for (int r = 0; rc == 0 && r < rows; r++)
            for (int c = 0; c < cols; c++) {
                size_t j = (size_t)r * m.n_groups + c / group, i = (size_t)r * cols + c;
                float v = (float)codes[i];
                if (f->kind == TERN_KKIND_RTN) v -= (float)zeros[j];
                out[i] = scales[j] * v + shifts[j];
            }
    }
    free(codes), free(scales), free(shifts), free(zeros);
    return rc;
}

// Dequantizes blocks [b0, b1) of t into out (the whole tensor's output); for
// F32/F16/BF16 a "block" is one value.
static void dequant_blocks(const tern_gguf_tensor *t, const type_info *ti, int64_t b0, int64_t b1, float *out) {
    const uint8_t *src = t->data;
    switch (t->type) {
    case TERN_GGML_F32:
        memcpy(out + b0, src + b0 * 4, (size_t)(b1 - b0) * 4);
        break;
    case TERN_GGML_F16:
        for (int64_t i = b0; i < b1; i++) out[i] = tern_f16_to_f32(rd16(src + 2 * i));
        break;
    case TERN_GGML_BF16:
        for (int64_t i = b0; i < b1; i++) out[i] = tern_bf16_to_f32(rd16(src + 2 * i));
        break;
    default:
        if (ti->deq) {
            for (int64_t i = b0; i < b1; i++) ti->deq(src + i * ti->size, out + i * ti->block);
            break;
        }
        if (ti->affine) {
            for (int64_t i = b0; i < b1; i++) {
                uint8_t q[256]; // the largest block
                float d[8], m[8], *y = out + i * ti->block;
                ti->affine(src + i * ti->size, q, d, m);
                for (int j = 0; j < ti->block; j++) y[j] = d[j / 32] * (float)q[j] + m[j / 32];
            }
            break;
        }
        for (int64_t i = b0; i < b1; i++) {
            int8_t q[256]; // the largest block
            float d = ti->codes(src + i * ti->size, q), *y = out + i * ti->block;
            for (int j = 0; j < ti->block; j++) y[j] = d * (float)q[j];
        }
    }
}

// Work is cut into chunks of about this many values. Blocks are independent,
// so chunks of all tensors go to the threads in one parallel loop: one fork
// per model instead of one per tensor (which mattered on a loaded machine,
// where OpenMP threads spin at every barrier).
#define CHUNK_VALUES (1 << 16)

typedef struct {
    const tern_gguf_tensor *t;
    float *out;
    int64_t b0, b1;
} dq_chunk;

static int64_t count_chunks(const tern_gguf_tensor *t) {
    int64_t nb = t->numel / type_of(t->type)->block;
    int64_t per = CHUNK_VALUES / type_of(t->type)->block;
    return (nb + per - 1) / per;
}

static int64_t add_chunks(dq_chunk *c, const tern_gguf_tensor *t, float *out) {
    const type_info *ti = type_of(t->type);
    int64_t nb = t->numel / ti->block, per = CHUNK_VALUES / ti->block, k = 0;
    for (int64_t b = 0; b < nb; b += per, k++)
        c[k] = (dq_chunk){t, out, b, b + per < nb ? b + per : nb};
    return k;
}

static void run_chunks(const dq_chunk *c, int64_t n) {
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
#endif
    for (int64_t i = 0; i < n; i++) dequant_blocks(c[i].t, type_of(c[i].t->type), c[i].b0, c[i].b1, c[i].out);
}

static const tern_kformat *packed_format(uint32_t t, int *shift);

static int check_supported(const tern_gguf *g, const tern_gguf_tensor *t) {
    if (packed_format(t->type, NULL)) return 0;
    const type_info *ti = type_of(t->type);
    if (ti && ti->supported) return 0;
    return tern_errorf("%s: tensor %s has type %s (id %u), which tern cannot load", g->path, t->name,
                       ti ? ti->name : "unknown", t->type);
}

int tern_gguf_dequantize(const tern_gguf *g, const tern_gguf_tensor *t, float *out) {
    if (packed_format(t->type, NULL)) return dequant_packed(g, t, out);
    if (check_supported(g, t)) return -1;
    int64_t n = count_chunks(t);
    dq_chunk *c = malloc((size_t)n * sizeof *c);
    if (!c) return tern_errorf("out of memory");
    add_chunks(c, t, out);
    run_chunks(c, n);
    free(c);
    return 0;
}

// Dequantizes tensors [0, n) of g into outs[i], all in one parallel loop
// (outs[i] NULL: tensor i is skipped).
static int dequantize_all(const tern_gguf *g, float *const *outs, int64_t n) {
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!outs[i]) continue;
        if (packed_format(g->tensors[i].type, NULL)) {
            if (dequant_packed(g, &g->tensors[i], outs[i])) return -1;
            continue;
        }
        if (check_supported(g, &g->tensors[i])) return -1;
        total += count_chunks(&g->tensors[i]);
    }
    dq_chunk *c = malloc((size_t)(total ? total : 1) * sizeof *c);
    if (!c) return tern_errorf("out of memory");
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (outs[i] && !packed_format(g->tensors[i].type, NULL)) k += add_chunks(c + k, &g->tensors[i], outs[i]);
    run_chunks(c, k);
    free(c);
    return 0;
}

// ---------------------------------------------------------------------------
// Header parsing.

static const char *vtype_name(uint32_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

// Encoded size of a fixed-size value type, 0 for string/array/unknown.
static size_t scalar_size(uint32_t t) {
    switch (t) {
    case TERN_GGUF_U8: case TERN_GGUF_I8: case TERN_GGUF_BOOL: return 1;
    case TERN_GGUF_U16: case TERN_GGUF_I16: return 2;
    case TERN_GGUF_U32: case TERN_GGUF_I32: case TERN_GGUF_F32: return 4;
    case TERN_GGUF_U64: case TERN_GGUF_I64: case TERN_GGUF_F64: return 8;
    default: return 0;
    }
}

static int is_int_type(uint32_t t) {
    return t == TERN_GGUF_U8 || t == TERN_GGUF_I8 || t == TERN_GGUF_U16 || t == TERN_GGUF_I16 ||
           t == TERN_GGUF_U32 || t == TERN_GGUF_I32 || t == TERN_GGUF_U64 || t == TERN_GGUF_I64;
}

static size_t remaining(const tern_cursor *c) { return c->size - c->pos; }

// A GGUF string: u64 length, then that many bytes (checked against the file
// before anything else happens with the length).
static int read_str(tern_cursor *c, const uint8_t **s, uint64_t *len, const char *what) {
    uint64_t n;
    *s = NULL;
    *len = 0;
    if (tern_cur_u64(c, &n, what)) return -1;
    if (n > remaining(c))
        return tern_errorf("%s: %s at offset %zu claims %llu bytes but only %zu remain", c->path, what,
                           c->pos - 8, (unsigned long long)n, remaining(c));
    *s = tern_cur_view(c, (size_t)n, what);
    *len = n;
    return *s ? 0 : -1;
}

static int walk_value(tern_cursor *c, uint32_t type, int depth, const char *key);

// Array header + elements. The count is checked against the bytes left
// (every element takes at least one byte) before the elements are walked,
// and nesting is bounded so a crafted file cannot exhaust the stack.
static int walk_array(tern_cursor *c, int depth, const char *key, uint32_t *et_out, uint64_t *n_out) {
    if (depth >= GGUF_MAX_NESTING)
        return tern_errorf("%s: metadata %s: arrays nested more than %d deep", c->path, key, GGUF_MAX_NESTING);
    uint32_t et;
    uint64_t n;
    if (tern_cur_u32(c, &et, "array type") || tern_cur_u64(c, &n, "array length")) return -1;
    size_t min = scalar_size(et);
    if (et == TERN_GGUF_STRING) min = 8;
    else if (et == TERN_GGUF_ARRAY) min = 12;
    else if (!min)
        return tern_errorf("%s: metadata %s: unknown array element type %u", c->path, key, et);
    if (n > remaining(c) / min)
        return tern_errorf("%s: metadata %s: array of %llu %s elements is longer than the file", c->path,
                           key, (unsigned long long)n, vtype_name(et));
    if (et_out) *et_out = et;
    if (n_out) *n_out = n;
    if (et != TERN_GGUF_STRING && et != TERN_GGUF_ARRAY)
        return tern_cur_skip(c, (size_t)n * min, "array elements");
    for (uint64_t i = 0; i < n; i++)
        if (walk_value(c, et, depth + 1, key)) return -1;
    return 0;
}

static int walk_value(tern_cursor *c, uint32_t type, int depth, const char *key) {
    if (type == TERN_GGUF_STRING) {
        const uint8_t *s;
        uint64_t len;
        return read_str(c, &s, &len, "string value");
    }
    if (type == TERN_GGUF_ARRAY) return walk_array(c, depth, key, NULL, NULL);
    size_t sz = scalar_size(type);
    if (!sz) return tern_errorf("%s: metadata %s has unknown value type %u", c->path, key, type);
    return tern_cur_skip(c, sz, "metadata value");
}

// Decodes one scalar into the kv's u/i/f members.
static void decode_scalar(tern_gguf_kv *kv, const uint8_t *p) {
    switch (kv->type) {
    case TERN_GGUF_U8: kv->u = p[0]; kv->i = p[0]; break;
    case TERN_GGUF_BOOL: kv->u = p[0] != 0; kv->i = p[0] != 0; break;
    case TERN_GGUF_I8: kv->i = (int8_t)p[0]; break;
    case TERN_GGUF_U16: kv->u = rd16(p); kv->i = rd16(p); break;
    case TERN_GGUF_I16: kv->i = (int16_t)rd16(p); break;
    case TERN_GGUF_U32: kv->u = rd32(p); kv->i = rd32(p); break;
    case TERN_GGUF_I32: kv->i = (int32_t)rd32(p); break;
    case TERN_GGUF_U64: memcpy(&kv->u, p, 8); kv->i = kv->u > INT64_MAX ? INT64_MAX : (int64_t)kv->u; break;
    case TERN_GGUF_I64: memcpy(&kv->i, p, 8); break;
    case TERN_GGUF_F32: { float f; memcpy(&f, p, 4); kv->f = f; return; }
    case TERN_GGUF_F64: memcpy(&kv->f, p, 8); return;
    default: return;
    }
    if (kv->type == TERN_GGUF_I8 || kv->type == TERN_GGUF_I16 || kv->type == TERN_GGUF_I32 ||
        kv->type == TERN_GGUF_I64)
        kv->u = kv->i < 0 ? 0 : (uint64_t)kv->i;
    kv->f = kv->type == TERN_GGUF_U64 ? (double)kv->u : (double)kv->i;
}

static int read_kv(tern_gguf *g, tern_cursor *c, tern_gguf_kv *kv) {
    const uint8_t *key;
    uint64_t key_len;
    if (read_str(c, &key, &key_len, "metadata key")) return -1;
    if (key_len == 0 || key_len > GGUF_MAX_KEY_LEN)
        return tern_errorf("%s: metadata key at offset %zu has length %llu", g->path, c->pos - key_len - 8,
                           (unsigned long long)key_len);
    kv->key = tern_strndup((const char *)key, (size_t)key_len);
    if (!kv->key) return -1;
    if (tern_cur_u32(c, &kv->type, "metadata value type")) return -1;
    if (kv->type == TERN_GGUF_STRING) return read_str(c, &kv->str, &kv->str_len, kv->key);
    if (kv->type == TERN_GGUF_ARRAY) {
        size_t start = c->pos;
        if (walk_array(c, 0, kv->key, &kv->arr_type, &kv->arr_n)) return -1;
        kv->arr_data = c->base + start + 12;
        kv->arr_bytes = c->pos - start - 12;
        return 0;
    }
    size_t sz = scalar_size(kv->type);
    if (!sz) return tern_errorf("%s: metadata %s has unknown value type %u", g->path, kv->key, kv->type);
    const uint8_t *p = tern_cur_view(c, sz, kv->key);
    if (!p) return -1;
    decode_scalar(kv, p);
    return 0;
}

static int meta_int(const tern_gguf *g, const char *key, int required, int64_t def, int64_t lo, int64_t hi,
                    int64_t *out);

// Geometry of a tern packed tensor: a 2-D matrix whose group comes from the
// metadata (read before the tensor infos); bytes = rows * packed row bytes.
static int packed_info(tern_gguf *g, tern_gguf_tensor *t, const tern_kformat *f, int shift) {
    if (t->n_dims != 2 || t->ne[0] > TERN_KMAX_COLS || t->ne[1] > INT_MAX)
        return tern_errorf("%s: tensor %s: a %s tensor must be a matrix of at most %d columns and %d rows",
                           g->path, t->name, f->name, TERN_KMAX_COLS, INT_MAX);
    int64_t group;
    const char *key = f->kind == TERN_KKIND_Q8 ? "tern.q8_group" : "tern.group_size";
    if (meta_int(g, key, 1, 0, 1, INT_MAX, &group)) return -1;
    if (group > t->ne[0]) group = t->ne[0];
    size_t row = tern_kformat_row_bytes(f, (int)t->ne[0], (int)group, shift);
    if (!row) {
        char why[256];
        snprintf(why, sizeof why, "%s", tern_last_error());
        return tern_errorf("%s: tensor %s: %s", g->path, t->name, why);
    }
    uint64_t bytes;
    if (__builtin_mul_overflow((uint64_t)t->ne[1], (uint64_t)row, &bytes))
        return tern_errorf("%s: tensor %s is too large", g->path, t->name);
    t->packed_fmt = (int)f->id;
    t->packed_group = (int)group;
    t->packed_shift = shift;
    t->packed_row_bytes = row;
    t->nbytes = bytes;
    return 0;
}

static int read_tensor_info(tern_gguf *g, tern_cursor *c, tern_gguf_tensor *t) {
    const uint8_t *name;
    uint64_t len;
    if (read_str(c, &name, &len, "tensor name")) return -1;
    if (len == 0 || len >= TERN_NAME_MAX || memchr(name, 0, (size_t)len))
        return tern_errorf("%s: tensor name at offset %zu is empty, too long (%llu bytes) or contains NUL",
                           g->path, c->pos - (size_t)len - 8, (unsigned long long)len);
    memcpy(t->name, name, (size_t)len);
    t->name[len] = 0;
    uint32_t nd;
    if (tern_cur_u32(c, &nd, "tensor dimension count")) return -1;
    if (nd < 1 || nd > TERN_MAX_DIMS)
        return tern_errorf("%s: tensor %s has %u dimensions (1..%d supported)", g->path, t->name, nd,
                           TERN_MAX_DIMS);
    t->n_dims = (int)nd;
    int64_t numel = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t ne;
        if (tern_cur_u64(c, &ne, "tensor dimension")) return -1;
        if (ne == 0 || ne > INT64_MAX || __builtin_mul_overflow(numel, (int64_t)ne, &numel))
            return tern_errorf("%s: tensor %s has invalid dimension %u = %llu", g->path, t->name, d,
                               (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    t->numel = numel;
    if (tern_cur_u32(c, &t->type, "tensor type") || tern_cur_u64(c, &t->offset, "tensor offset")) return -1;
    int shift = 0;
    const tern_kformat *pf = packed_format(t->type, &shift);
    if (pf) return packed_info(g, t, pf, shift);
    const type_info *ti = type_of(t->type);
    if (!ti) return tern_errorf("%s: tensor %s has unknown type id %u", g->path, t->name, t->type);
    if (t->ne[0] % ti->block)
        return tern_errorf("%s: tensor %s: row length %lld is not a multiple of the %s block size %d",
                           g->path, t->name, (long long)t->ne[0], ti->name, ti->block);
    int64_t bytes;
    if (__builtin_mul_overflow(numel / ti->block, (int64_t)ti->size, &bytes))
        return tern_errorf("%s: tensor %s is too large", g->path, t->name);
    t->nbytes = (uint64_t)bytes;
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Duplicate keys or tensor names make lookups ambiguous: refuse them. Sorting
// keeps this O(n log n) whatever the count.
static int check_unique(const tern_gguf *g, const char **names, int64_t n, const char *what) {
    qsort(names, (size_t)n, sizeof *names, cmp_name);
    for (int64_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return tern_errorf("%s: duplicate %s %.100s", g->path, what, names[i]);
    return 0;
}

// Grows an array geometrically as entries are actually read, so a huge count
// in the header cannot trigger a huge allocation up front.
static int grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t nc = *cap ? *cap * 2 : 16;
    if (nc < need) nc = need;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return tern_errorf("out of memory");
    memset((char *)q + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *p = q;
    *cap = nc;
    return 0;
}

static int read_header(tern_gguf *g, tern_cursor *c, uint64_t *n_tensors, uint64_t *n_kv) {
    uint8_t magic[4];
    if (tern_cur_bytes(c, magic, 4, "GGUF magic")) return -1;
    if (memcmp(magic, "GGUF", 4) != 0)
        return tern_errorf("%s: not a GGUF file (magic %02x %02x %02x %02x)", g->path, magic[0], magic[1],
                           magic[2], magic[3]);
    if (tern_cur_u32(c, &g->version, "GGUF version")) return -1;
    if (g->version == 1)
        return tern_errorf("%s: GGUF v1 is not supported (re-convert the model with a current llama.cpp)",
                           g->path);
    if (g->version != 2 && g->version != 3)
        return tern_errorf("%s: unsupported GGUF version %u%s", g->path, g->version,
                           g->version > 0xffff ? " (big-endian file?)" : "");
    if (tern_cur_u64(c, n_tensors, "tensor count") || tern_cur_u64(c, n_kv, "metadata count")) return -1;
    // Smallest encodings: a tensor info is 8 (name length) + 1 + 4 + 8 + 4 + 8
    // bytes, a metadata entry 8 (key length) + 1 + 4 + 1.
    if (*n_tensors > remaining(c) / 33)
        return tern_errorf("%s: tensor count %llu is impossible for a %zu-byte file", g->path,
                           (unsigned long long)*n_tensors, g->size);
    if (*n_kv > remaining(c) / 14)
        return tern_errorf("%s: metadata count %llu is impossible for a %zu-byte file", g->path,
                           (unsigned long long)*n_kv, g->size);
    return 0;
}

static int read_alignment(tern_gguf *g) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const tern_gguf_kv *kv = tern_gguf_find_kv(g, "general.alignment");
    if (!kv) return 0;
    if (!is_int_type(kv->type))
        return tern_errorf("%s: general.alignment has type %s, expected an integer", g->path,
                           vtype_name(kv->type));
    if (kv->i <= 0 || kv->i > GGUF_MAX_ALIGNMENT || (kv->i & (kv->i - 1)))
        return tern_errorf("%s: general.alignment %lld is not a power of two in 1..%u", g->path,
                           (long long)kv->i, GGUF_MAX_ALIGNMENT);
    g->alignment = (uint64_t)kv->i;
    return 0;
}

static int place_tensors(tern_gguf *g) {
    size_t data_size = g->size - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        tern_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return tern_errorf("%s: tensor %s offset %llu is not a multiple of the alignment %llu", g->path,
                               t->name, (unsigned long long)t->offset, (unsigned long long)g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return tern_errorf("%s: tensor %s data (%llu bytes at data offset %llu) lies outside the file "
                               "(data section has %zu bytes)",
                               g->path, t->name, (unsigned long long)t->nbytes,
                               (unsigned long long)t->offset, data_size);
        t->data = g->data + g->data_offset + t->offset;
    }
    return 0;
}

int tern_gguf_parse(tern_gguf *g, const void *data, size_t size, const char *path) {
    memset(g, 0, sizeof *g);
    snprintf(g->path, sizeof g->path, "%s", path ? path : "(memory)");
    g->data = data;
    g->size = size;
    tern_cursor c;
    tern_cursor_init(&c, data, size, g->path);
    uint64_t n_tensors, n_kv;
    if (read_header(g, &c, &n_tensors, &n_kv)) return -1;

    int64_t cap = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        if (grow((void **)&g->kv, &cap, g->n_kv + 1, sizeof *g->kv)) return -1;
        if (read_kv(g, &c, &g->kv[g->n_kv++])) return -1;
    }
    cap = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (grow((void **)&g->tensors, &cap, g->n_tensors + 1, sizeof *g->tensors)) return -1;
        if (read_tensor_info(g, &c, &g->tensors[g->n_tensors++])) return -1;
    }

    int64_t n_names = g->n_kv > g->n_tensors ? g->n_kv : g->n_tensors;
    const char **names = malloc((size_t)(n_names ? n_names : 1) * sizeof *names);
    if (!names) return tern_errorf("out of memory");
    for (int64_t i = 0; i < g->n_kv; i++) names[i] = g->kv[i].key;
    int rc = check_unique(g, names, g->n_kv, "metadata key");
    for (int64_t i = 0; i < g->n_tensors && !rc; i++) names[i] = g->tensors[i].name;
    if (!rc) rc = check_unique(g, names, g->n_tensors, "tensor");
    free(names);
    if (rc || read_alignment(g)) return -1;

    // The data section starts at the next multiple of the alignment.
    size_t pad = (size_t)((g->alignment - c.pos % g->alignment) % g->alignment);
    if (pad > remaining(&c)) {
        if (g->n_tensors)
            return tern_errorf("%s: tensor data section (aligned to %llu) starts past the end of the file",
                               g->path, (unsigned long long)g->alignment);
        pad = remaining(&c);
    }
    g->data_offset = c.pos + pad;
    return place_tensors(g);
}

int tern_gguf_open(tern_gguf *g, const char *path) {
    tern_blob b;
    memset(g, 0, sizeof *g);
    if (tern_blob_open(&b, path)) return -1;
    int rc = tern_gguf_parse(g, b.data, b.size, path);
    g->blob = b; // closed by tern_gguf_close, also after a failed parse
    return rc;
}

void tern_gguf_close(tern_gguf *g) {
    for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].key);
    free(g->kv);
    free(g->tensors);
    if (g->blob.data) tern_blob_close(&g->blob);
    memset(g, 0, sizeof *g);
}

const tern_gguf_kv *tern_gguf_find_kv(const tern_gguf *g, const char *key) {
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const tern_gguf_tensor *tern_gguf_find_tensor(const tern_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

// ---------------------------------------------------------------------------
// Typed metadata access. Each getter fails with "PATH: KEY ..." on a type or
// range mismatch; absent keys give the default (or an error when required).

// Integer in [lo, hi]; *out = def when absent and not required.
static int meta_int(const tern_gguf *g, const char *key, int required, int64_t def, int64_t lo, int64_t hi,
                    int64_t *out) {
    const tern_gguf_kv *kv = tern_gguf_find_kv(g, key);
    if (!kv) {
        if (required) return tern_errorf("%s: missing metadata %s", g->path, key);
        *out = def;
        return 0;
    }
    if (!is_int_type(kv->type))
        return tern_errorf("%s: metadata %s has type %s, expected an integer", g->path, key,
                           vtype_name(kv->type));
    if (kv->type == TERN_GGUF_U64 && kv->u > INT64_MAX)
        return tern_errorf("%s: metadata %s = %llu is out of range", g->path, key, (unsigned long long)kv->u);
    if (kv->i < lo || kv->i > hi)
        return tern_errorf("%s: metadata %s = %lld is out of range", g->path, key, (long long)kv->i);
    *out = kv->i;
    return 0;
}

// An int-valued config field: any value in int range; tern_config_validate
// judges whether it is sane.
static int meta_cfg_int(const tern_gguf *g, const char *key, int required, int def, int *out) {
    int64_t v;
    if (meta_int(g, key, required, def, INT_MIN, INT_MAX, &v)) return -1;
    *out = (int)v;
    return 0;
}

static int meta_float(const tern_gguf *g, const char *key, int required, float def, float *out) {
    const tern_gguf_kv *kv = tern_gguf_find_kv(g, key);
    if (!kv) {
        if (required) return tern_errorf("%s: missing metadata %s", g->path, key);
        *out = def;
        return 0;
    }
    if (kv->type != TERN_GGUF_F32 && kv->type != TERN_GGUF_F64 && !is_int_type(kv->type))
        return tern_errorf("%s: metadata %s has type %s, expected a number", g->path, key,
                           vtype_name(kv->type));
    *out = (float)kv->f;
    return 0;
}

static int meta_bool(const tern_gguf *g, const char *key, int def, int *out) {
    const tern_gguf_kv *kv = tern_gguf_find_kv(g, key);
    if (!kv) {
        *out = def;
        return 0;
    }
    if (kv->type != TERN_GGUF_BOOL && !is_int_type(kv->type))
        return tern_errorf("%s: metadata %s has type %s, expected a bool", g->path, key, vtype_name(kv->type));
    *out = kv->i != 0 || kv->u != 0;
    return 0;
}

// Copies a string value into buf (NUL-terminated); a value that does not fit
// is an error rather than silently truncated.
static int meta_str(const tern_gguf *g, const char *key, int required, const char *def, char *buf,
                    size_t cap) {
    const tern_gguf_kv *kv = tern_gguf_find_kv(g, key);
    if (!kv) {
        if (required) return tern_errorf("%s: missing metadata %s", g->path, key);
        snprintf(buf, cap, "%s", def);
        return 0;
    }
    if (kv->type != TERN_GGUF_STRING)
        return tern_errorf("%s: metadata %s has type %s, expected a string", g->path, key,
                           vtype_name(kv->type));
    if (kv->str_len >= cap || memchr(kv->str, 0, (size_t)kv->str_len))
        return tern_errorf("%s: metadata %s is longer than %zu bytes or contains NUL", g->path, key, cap - 1);
    memcpy(buf, kv->str, (size_t)kv->str_len);
    buf[kv->str_len] = 0;
    return 0;
}

// ---------------------------------------------------------------------------
// Vocabulary.

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xe0) == 0xc0) { k = 1; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { k = 2; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (k > n - i - 1) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += k + 1;
    }
    return 1;
}

// Looks up an array-of-strings key; *n = 0 and *kv = NULL when absent.
static int meta_array(const tern_gguf *g, const char *key, uint32_t want, const tern_gguf_kv **out) {
    const tern_gguf_kv *kv = tern_gguf_find_kv(g, key);
    *out = NULL;
    if (!kv) return 0;
    int ok = kv->type == TERN_GGUF_ARRAY &&
             (kv->arr_type == want || (want == TERN_GGUF_I32 && kv->arr_type == TERN_GGUF_U32));
    if (!ok)
        return tern_errorf("%s: metadata %s must be an array of %s", g->path, key, vtype_name(want));
    *out = kv;
    return 0;
}

// Copies every string of an array-of-strings value into a malloc'd array.
// Validated by tern_gguf_parse, so the cursor reads cannot fail; they still
// go through the cursor to stay bounds-checked.
static int read_strings(const tern_gguf *g, const tern_gguf_kv *kv, int check_utf8, char **dst, int *lens) {
    tern_cursor c;
    tern_cursor_init(&c, kv->arr_data, kv->arr_bytes, g->path);
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        const uint8_t *s;
        uint64_t len;
        if (read_str(&c, &s, &len, kv->key)) return -1;
        if (len > INT_MAX) return tern_errorf("%s: %s[%llu] is too long", g->path, kv->key, (unsigned long long)i);
        if (check_utf8 && !utf8_valid(s, (size_t)len))
            return tern_errorf("%s: %s[%llu] is not valid UTF-8", g->path, kv->key, (unsigned long long)i);
        dst[i] = malloc((size_t)len + 1);
        if (!dst[i]) return tern_errorf("out of memory");
        memcpy(dst[i], s, (size_t)len);
        dst[i][len] = 0;
        if (lens) lens[i] = (int)len;
    }
    return 0;
}

// Fixed-width numeric arrays (scores f32, token types i32/u32) with exactly
// one entry per token.
static int read_numbers(const tern_gguf *g, const char *key, uint32_t want, int n_tokens, void **out) {
    const tern_gguf_kv *kv;
    if (meta_array(g, key, want, &kv)) return -1;
    if (!kv) return 0;
    if (kv->arr_n != (uint64_t)n_tokens)
        return tern_errorf("%s: %s has %llu entries for %d tokens", g->path, key,
                           (unsigned long long)kv->arr_n, n_tokens);
    void *p = malloc((size_t)n_tokens * 4 + 1);
    if (!p) return tern_errorf("out of memory");
    memcpy(p, kv->arr_data, (size_t)n_tokens * 4); // f32 / i32 little-endian, as in memory
    *out = p;
    return 0;
}

static int read_token_id(const tern_gguf *g, const char *key, int n_tokens, int *out) {
    int64_t v;
    if (meta_int(g, key, 0, -1, INT64_MIN, INT64_MAX, &v)) return -1;
    if (v != -1 && (v < 0 || v >= n_tokens))
        return tern_errorf("%s: metadata %s = %lld is not a token id (%d tokens)", g->path, key, (long long)v,
                           n_tokens);
    *out = (int)v;
    return 0;
}

// tokenizer.chat_template (optional): a UTF-8 string without NUL, copied.
static int read_chat_template(const tern_gguf *g, tern_vocab *v) {
    const char *key = "tokenizer.chat_template";
    const tern_gguf_kv *kv = tern_gguf_find_kv(g, key);
    if (!kv) return 0;
    if (kv->type != TERN_GGUF_STRING || memchr(kv->str, 0, (size_t)kv->str_len) ||
        !utf8_valid((const uint8_t *)kv->str, (size_t)kv->str_len))
        return tern_errorf("%s: metadata %s must be a UTF-8 string without NUL", g->path, key);
    v->chat_template = malloc((size_t)kv->str_len + 1);
    if (!v->chat_template) return tern_errorf("out of memory");
    memcpy(v->chat_template, kv->str, (size_t)kv->str_len);
    v->chat_template[kv->str_len] = 0;
    return 0;
}

int tern_gguf_read_vocab(const tern_gguf *g, tern_vocab *v, int required) {
    memset(v, 0, sizeof *v);
    const tern_gguf_kv *model = tern_gguf_find_kv(g, "tokenizer.ggml.model");
    if (!model) {
        if (required) return tern_errorf("%s: the file carries no tokenizer (no tokenizer.ggml.model)", g->path);
        return 0;
    }
    char kind[32];
    if (meta_str(g, "tokenizer.ggml.model", 1, "", kind, sizeof kind)) return -1;
    if (strcmp(kind, "llama") == 0) v->type = TERN_VOCAB_SPM;
    else if (strcmp(kind, "gpt2") == 0) v->type = TERN_VOCAB_BPE;
    else return tern_errorf("%s: unknown tokenizer '%s' (tern supports llama and gpt2)", g->path, kind);
    int bpe = v->type == TERN_VOCAB_BPE;

    const tern_gguf_kv *tokens;
    if (meta_array(g, "tokenizer.ggml.tokens", TERN_GGUF_STRING, &tokens)) return -1;
    if (!tokens) return tern_errorf("%s: missing metadata tokenizer.ggml.tokens", g->path);
    if (tokens->arr_n == 0 || tokens->arr_n > GGUF_MAX_TOKENS)
        return tern_errorf("%s: tokenizer has %llu tokens", g->path, (unsigned long long)tokens->arr_n);
    int n = (int)tokens->arr_n;
    v->tokens = calloc((size_t)n, sizeof *v->tokens);
    v->token_lens = calloc((size_t)n, sizeof *v->token_lens);
    if (!v->tokens || !v->token_lens) return tern_errorf("out of memory");
    v->n_tokens = n;
    if (read_strings(g, tokens, bpe, v->tokens, v->token_lens)) return -1;
    if (read_numbers(g, "tokenizer.ggml.scores", TERN_GGUF_F32, n, (void **)&v->scores) ||
        read_numbers(g, "tokenizer.ggml.token_type", TERN_GGUF_I32, n, (void **)&v->token_types))
        return -1;
    // 0 (undefined) .. TERN_TOKEN_BYTE; anything else would confuse the tokenizer.
    for (int i = 0; v->token_types && i < n; i++)
        if (v->token_types[i] < 0 || v->token_types[i] > TERN_TOKEN_BYTE)
            return tern_errorf("%s: token %d has invalid type %d", g->path, i, v->token_types[i]);

    const tern_gguf_kv *merges;
    if (meta_array(g, "tokenizer.ggml.merges", TERN_GGUF_STRING, &merges)) return -1;
    if (merges && merges->arr_n) {
        if (merges->arr_n > INT_MAX) return tern_errorf("%s: too many merges", g->path);
        v->merges = calloc((size_t)merges->arr_n, sizeof *v->merges);
        if (!v->merges) return tern_errorf("out of memory");
        v->n_merges = (int)merges->arr_n;
        if (read_strings(g, merges, bpe, v->merges, NULL)) return -1;
    }

    if (read_token_id(g, "tokenizer.ggml.bos_token_id", n, &v->bos_id) ||
        read_token_id(g, "tokenizer.ggml.eos_token_id", n, &v->eos_id) ||
        read_token_id(g, "tokenizer.ggml.unknown_token_id", n, &v->unk_id) ||
        read_token_id(g, "tokenizer.ggml.padding_token_id", n, &v->pad_id) ||
        meta_bool(g, "tokenizer.ggml.add_bos_token", !bpe, &v->add_bos) ||
        meta_bool(g, "tokenizer.ggml.add_eos_token", 0, &v->add_eos) ||
        meta_bool(g, "tokenizer.ggml.add_space_prefix", !bpe, &v->add_space_prefix) ||
        meta_str(g, "tokenizer.ggml.pre", 0, "default", v->pre, sizeof v->pre) || read_chat_template(g, v))
        return -1;
    return 0;
}

// ---------------------------------------------------------------------------
// LLaMA model.

// "ARCH.suffix": the model's metadata key (llama.cpp prefixes them with the architecture).
static const char *arch_key(const tern_config *c, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", c->arch, suffix);
    return buf;
}
#define KEY(suffix) arch_key(c, suffix, key, sizeof key)

static int read_rope_scaling(const tern_gguf *g, tern_config *c) {
    char type[32], key[64];
    if (meta_str(g, KEY("rope.scaling.type"), 0, "", type, sizeof type)) return -1;
    if (type[0] == 0) {
        // Older converters wrote only a linear factor.
        float f;
        if (meta_float(g, KEY("rope.scale_linear"), 0, 1.0f, &f)) return -1;
        if (f != 1.0f) {
            c->rope_scaling = TERN_ROPE_SCALING_LINEAR;
            c->rope_factor = f;
        }
        return 0;
    }
    if (strcmp(type, "none") == 0) return 0;
    if (strcmp(type, "linear") != 0)
        return tern_errorf("%s: unsupported rope scaling '%s' (tern supports linear)", g->path, type);
    c->rope_scaling = TERN_ROPE_SCALING_LINEAR;
    return meta_float(g, KEY("rope.scaling.factor"), 1, 0, &c->rope_factor);
}

// llama.cpp's "bitnet" (LLM_ARCH_BITNET): LLaMA with sub-norms, NEOX RoPE
// (q/k rows permuted at load, io/bitnet.h) and the output tied to token_embd;
// its graph gates the FFN with SiLU. tern adds BitNet b1.58's per-token int8
// activations (the W1.58A8 the models are trained with).
static int check_arch(const tern_gguf *g, tern_config *c) {
    if (strcmp(c->arch, "llama") == 0) return 0;
    if (strcmp(c->arch, "bitnet") != 0)
        return tern_errorf("%s: unsupported architecture '%s' (tern supports the LLaMA family and bitnet)", g->path,
                           c->arch);
    c->sub_norms = c->act_int8 = 1;
    c->ffn_act = TERN_FFN_SILU;
    snprintf(c->quant, sizeof c->quant, "BitNet b1.58 ternary (llama.cpp bitnet), int8 per-token activations");
    return 0;
}

static int read_config(const tern_gguf *g, tern_model *m) {
    tern_config *c = &m->cfg;
    char key[64];
    if (meta_str(g, "general.architecture", 1, "", c->arch, sizeof c->arch) || check_arch(g, c)) return -1;
    if (meta_str(g, "general.name", 0, "", c->name, sizeof c->name) ||
        meta_cfg_int(g, KEY("embedding_length"), 1, 0, &c->dim) ||
        meta_cfg_int(g, KEY("block_count"), 1, 0, &c->n_layers) ||
        meta_cfg_int(g, KEY("attention.head_count"), 1, 0, &c->n_heads) ||
        meta_cfg_int(g, KEY("attention.head_count_kv"), 0, c->n_heads, &c->n_kv_heads) ||
        meta_cfg_int(g, KEY("feed_forward_length"), 1, 0, &c->hidden_dim) ||
        meta_cfg_int(g, KEY("context_length"), 1, 0, &c->max_seq) ||
        meta_float(g, KEY("rope.freq_base"), 0, 10000.0f, &c->rope_theta) ||
        // llama.cpp's own default when a converter left the epsilon out.
        meta_float(g, KEY("attention.layer_norm_rms_epsilon"), 0, 1e-5f, &c->rms_eps))
        return -1;
    int head_dim = c->n_heads > 0 && c->dim % c->n_heads == 0 ? c->dim / c->n_heads : 0;
    if (meta_cfg_int(g, KEY("rope.dimension_count"), 0, head_dim, &head_dim) ||
        meta_cfg_int(g, KEY("attention.key_length"), 0, head_dim, &c->head_dim))
        return -1;
    // Vocabulary size: explicit key, else the tokenizer, else the embedding rows.
    const tern_gguf_tensor *emb = tern_gguf_find_tensor(g, "token_embd.weight");
    int fallback = m->vocab.n_tokens ? m->vocab.n_tokens
                 : emb && emb->n_dims == 2 && emb->ne[1] <= INT_MAX ? (int)emb->ne[1] : 0;
    if (meta_cfg_int(g, KEY("vocab_size"), 0, fallback, &c->vocab_size) || read_rope_scaling(g, c)) return -1;
    // llama.cpp's bitnet graph always multiplies by token_embd.
    c->tied_embeddings = c->sub_norms || tern_gguf_find_tensor(g, "output.weight") == NULL;
    c->attn_qkv_bias = tern_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    c->attn_out_bias = tern_gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
    c->ffn_bias = tern_gguf_find_tensor(g, "blk.0.ffn_gate.bias") != NULL;
    if (tern_config_validate(c, g->path)) return -1;
    // The tokenizer must never produce an id the embedding cannot look up.
    if (m->vocab.n_tokens > c->vocab_size)
        return tern_errorf("%s: tokenizer has %d tokens but the model's vocabulary is %d", g->path,
                           m->vocab.n_tokens, c->vocab_size);
    return 0;
}

#undef KEY

// A packed tensor keeps its bytes next to the FP32 values (inference runs them).
static int keep_packed(const tern_gguf_tensor *gt, tern_tensor *t) {
    void *p = tern_alloc((size_t)gt->nbytes ? (size_t)gt->nbytes : 1);
    if (!p) return tern_errorf("out of memory");
    memcpy(p, gt->data, (size_t)gt->nbytes);
    t->packed = p;
    t->packed_bytes = (size_t)gt->nbytes;
    t->packed_fmt = gt->packed_fmt;
    t->packed_group = gt->packed_group;
    t->packed_shift = gt->packed_shift;
    return 0;
}

// A tensor's file bytes kept past the load (a packed-only load's embedding),
// dequantized a row at a time by the code that dequantizes whole tensors.
struct tern_row_source {
    tern_gguf_tensor t; // its descriptor; t.data points into bytes
    uint8_t *bytes;
    char path[512];     // the file, for errors
};

static int keep_rows(const tern_gguf *g, const tern_gguf_tensor *gt, tern_tensor *t) {
    struct tern_row_source *r = calloc(1, sizeof *r);
    uint8_t *bytes = r ? malloc((size_t)gt->nbytes ? (size_t)gt->nbytes : 1) : NULL;
    if (!bytes) {
        free(r);
        return tern_errorf("out of memory");
    }
    memcpy(bytes, gt->data, (size_t)gt->nbytes);
    r->t = *gt, r->t.data = bytes, r->bytes = bytes;
    snprintf(r->path, sizeof r->path, "%s", g->path);
    t->rows = r;
    return 0;
}

void tern_row_source_free(struct tern_row_source *r) {
    if (r) free(r->bytes), free(r);
}

int tern_row_source_get(const struct tern_row_source *r, int64_t row, float *out) {
    const tern_gguf_tensor *t = &r->t;
    if (t->n_dims != 2 || row < 0 || row >= (int64_t)t->ne[1])
        return tern_errorf("%s: tensor %s has no row %lld", r->path, t->name, (long long)row);
    tern_gguf_tensor v = *t; // a one-row view
    v.ne[1] = 1, v.numel = (int64_t)t->ne[0];
    if (packed_format(t->type, NULL)) {
        v.data = t->data + (size_t)row * t->packed_row_bytes, v.nbytes = t->packed_row_bytes;
        tern_gguf g;
        memset(&g, 0, sizeof g);
        snprintf(g.path, sizeof g.path, "%s", r->path);
        return dequant_packed(&g, &v, out);
    }
    const type_info *ti = type_of(t->type);
    int64_t nb = (int64_t)t->ne[0] / ti->block;
    v.data = t->data + (size_t)row * (size_t)nb * (size_t)ti->size, v.nbytes = (uint64_t)nb * (uint64_t)ti->size;
    dequant_blocks(&v, ti, 0, nb, out);
    return 0;
}

// A transformer block's 2-D tensor (blk.N.*): a linear layer's weights.
static int layer_matrix(const tern_gguf_tensor *gt) { return gt->n_dims == 2 && !strncmp(gt->name, "blk.", 4); }
// The embedding or the output head (the LM head, or the table a tied head reads).
static int head_matrix(const tern_gguf_tensor *gt) {
    return !strcmp(gt->name, "token_embd.weight") || !strcmp(gt->name, "output.weight");
}

// llama.cpp's ternary / 1-2 bit types (ggml ids 34, 35, 41, 42).
static int lowbit_type(uint32_t t) {
    return t == TERN_GGML_TQ1_0 || t == TERN_GGML_TQ2_0 || t == TERN_GGML_Q1_0 || t == TERN_GGML_Q2_0;
}

// A ggml block type (not F32 / F16 / BF16).
static int quantized_type(uint32_t t) {
    const type_info *ti = type_of(t);
    return ti && ti->block > 1;
}

// The kernels' format a d * q matrix runs in without loss (its block is the
// group, d the group's fp16 scale, the codes unchanged), given its code range;
// -1 when it stays FP32. Q4_0 runs as q4g at G = 32 (c = q + 8, zero point 8,
// exact) in any file: a Q4_0 model's matrices, and llama-quantize's 4-bit
// fallback in its ternary files. lowbit_file: the file has llama.cpp ternary
// tensors, so its Q4_0 matrices holding only codes -1..1 are the ternary
// fallback (llama-quantize's and tern's for rows that are not whole
// 256-blocks). packed_file: its layer matrices are llama.cpp ternary or
// quantized blocks (a quantized model), so its Q8_0 and Q5_0 matrices run as
// q8-row at G = 32 (exact: int8 codes, fp16 d), the embedding / head among
// them: the whole model runs packed. A file of FP layers keeps its Q8_0 / Q5_0
// tensors FP32.
static int repack_format(const tern_gguf_tensor *gt, int lowbit_file, int packed_file, int lo, int hi) {
    switch (gt->type) {
    case TERN_GGML_TQ1_0: return TERN_KFMT_T1_6;
    case TERN_GGML_TQ2_0: case TERN_GGML_Q1_0: return TERN_KFMT_T2;
    case TERN_GGML_Q2_0: return hi > 1 ? TERN_KFMT_Q2G : TERN_KFMT_T2; // code 2: the 2-bit format (s*(c - 1))
    case TERN_GGML_Q4_0: return lowbit_file && lo >= -1 && hi <= 1 ? TERN_KFMT_T2 : TERN_KFMT_Q4G;
    case TERN_GGML_Q8_0:
    case TERN_GGML_Q5_0:
    case TERN_GGML_IQ4_NL:
        return packed_file && (head_matrix(gt) || layer_matrix(gt)) && lo >= -127 ? TERN_KFMT_Q8 : -1;
    default: return -1;
    }
}

// Packs gt's codes q [rows, cols], group scales d and (NULL: none) shifts m
// [rows, cols / group] and (unshifted RTN) zero points as fmt into t->packed.
static int pack_as(const tern_gguf *g, const tern_gguf_tensor *gt, tern_kfmt_id fmt, int group, const int8_t *q,
                   const float *d, const float *m, const uint8_t *zeros, tern_tensor *t) {
    int rows = (int)gt->ne[1], cols = (int)gt->ne[0];
    tern_kmatrix km;
    int rc = tern_kmatrix_init(&km, tern_kformat_get(fmt), rows, cols, group, m != NULL, NULL);
    size_t bytes = (size_t)rows * km.row_bytes;
    void *dst = rc ? NULL : tern_calloc(bytes ? bytes : 1);
    if (rc == 0 && !dst) rc = tern_errorf("out of memory");
    if (rc == 0 && tern_kpack(&km, dst, q, d, m, zeros)) {
        char why[256];
        snprintf(why, sizeof why, "%s", tern_last_error());
        rc = tern_errorf("%s: tensor %s: %s", g->path, gt->name, why);
    }
    if (rc) {
        tern_free(dst);
        return -1;
    }
    t->packed = dst;
    t->packed_bytes = bytes;
    t->packed_fmt = (int)fmt;
    t->packed_group = group;
    t->packed_shift = m != NULL;
    return 0;
}

// Packs codes q [rows, cols] and block scales d [rows, cols / block] as fmt
// (q2g: c = q + 1 with zero point 1; q4g: c = q + 8, zero point 8) into t->packed.
static int pack_blocks(const tern_gguf *g, const tern_gguf_tensor *gt, tern_kfmt_id fmt, int block, int8_t *q,
                       const float *d, tern_tensor *t) {
    size_t ng = (size_t)gt->ne[1] * (size_t)(gt->ne[0] / block);
    uint8_t *zeros = NULL;
    if (tern_kformat_get(fmt)->kind == TERN_KKIND_RTN) {
        zeros = malloc(ng ? ng : 1);
        if (!zeros) return tern_errorf("out of memory");
        const int zp = fmt == TERN_KFMT_Q4G ? 8 : 1;
        memset(zeros, zp, ng);
        for (size_t i = 0; i < (size_t)gt->numel; i++) q[i] = (int8_t)(q[i] + zp);
    }
    int rc = pack_as(g, gt, fmt, block, q, d, NULL, zeros, t);
    free(zeros);
    return rc;
}

// A d * q + m matrix (Q4_1, Q5_1, Q4_K, Q5_K layer matrices, and their
// embedding / head in a quantized model) repacked with shifts at G = 32: 4-bit
// codes as q4g, 5-bit as q8-row, d the scale and m the shift (the same bits
// per weight as Q4_1 / Q5_1 for q4g, 3 more for q8-row).
// Exact for Q4_1 / Q5_1 (fp16 d, m); the K-quants' d * scale and dmin * min
// are rounded to fp16 (relative error <= 2^-11 of a sub-block's scale or
// min). A value fp16 cannot hold leaves the matrix FP32.
static int repack_affine(const tern_gguf *g, const tern_gguf_tensor *gt, const type_info *ti, tern_tensor *t) {
    size_t nb = (size_t)gt->numel / (size_t)ti->block, ns = (size_t)gt->numel / 32;
    int8_t *q = malloc((size_t)gt->numel);
    float *d = malloc(ns * sizeof(float)), *m = malloc(ns * sizeof(float));
    int rc = q && d && m ? 0 : tern_errorf("out of memory"), hi = 0, fits = 1;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(max : hi) if (rc == 0 && nb >= 1024)
#endif
    for (size_t b = 0; b < (rc == 0 ? nb : 0); b++) {
        uint8_t u[256];
        ti->affine(gt->data + b * (size_t)ti->size, u, d + b * (ti->block / 32), m + b * (ti->block / 32));
        for (int j = 0; j < ti->block; j++) q[b * (size_t)ti->block + j] = (int8_t)u[j], hi = u[j] > hi ? u[j] : hi;
    }
    for (size_t i = 0; rc == 0 && i < ns; i++) fits &= fabsf(d[i]) <= 65504.0f && fabsf(m[i]) <= 65504.0f;
    if (rc == 0 && fits) rc = pack_as(g, gt, hi <= 15 ? TERN_KFMT_Q4G : TERN_KFMT_Q8, 32, q, d, m, NULL, t);
    free(q), free(d), free(m);
    return rc;
}

// A layer matrix or head in a llama.cpp block type the loader could not pack
// exactly (Q6_K, Q3_K and Q2_K with scales per 16 values, IQ4_XS's levels
// under a 6-bit scale, Q8_0 holding -128), in a quantized model: q8-row at
// G = 32 requantized from its values (absmax per 32, the error kept in
// t->packed_err), so it does not stream FP32. The values are dequantized from
// the file's blocks ~4 MB at a time, so a packed-only load never holds the
// tensor in FP32.
static int requant_q8(const tern_gguf *g, const tern_gguf_tensor *gt, tern_tensor *t) {
    const type_info *ti = type_of(gt->type);
    int rows = (int)gt->ne[1], cols = (int)gt->ne[0], step = cols < (1 << 20) ? (1 << 20) / cols : 1;
    size_t row_bytes = (size_t)(cols / ti->block) * (size_t)ti->size;
    int8_t *q = malloc((size_t)gt->numel);
    float *d = malloc(((size_t)gt->numel / 32 + 1) * sizeof(float)), *buf = malloc((size_t)step * cols * sizeof(float));
    double err2 = 0, norm2 = 0;
    int rc = q && d && buf ? 0 : tern_errorf("out of memory");
    for (int r0 = 0; rc == 0 && r0 < rows; r0 += step) {
        int n = rows - r0 < step ? rows - r0 : step;
        tern_gguf_tensor v = *gt; // rows [r0, r0 + n)
        v.ne[1] = (uint64_t)n, v.numel = (int64_t)n * cols;
        v.data = gt->data + (size_t)r0 * row_bytes, v.nbytes = (uint64_t)n * row_bytes;
        rc = tern_gguf_dequantize(g, &v, buf);
        if (rc == 0)
            tern_absmax_q8(buf, n, cols, 32, q + (size_t)r0 * cols, d + (size_t)r0 * (cols / 32), &err2, &norm2);
    }
    if (rc == 0) rc = pack_as(g, gt, TERN_KFMT_Q8, 32, q, d, NULL, NULL, t);
    if (rc == 0) t->packed_err = (float)sqrt(err2 / (norm2 > 0 ? norm2 : 1));
    free(q), free(d), free(buf);
    return rc;
}

// Whether gt (loaded as t) is a layer matrix or head in a block type the
// repack could not pack, in a quantized model: requant_q8's input.
static int needs_requant(const tern_gguf_tensor *gt, const tern_tensor *t, int packed_file) {
    return packed_file && !t->packed && quantized_type(gt->type) && gt->n_dims == 2 &&
           (head_matrix(gt) || layer_matrix(gt)) &&
           gt->ne[0] <= TERN_KMAX_COLS && gt->ne[1] <= INT_MAX;
}

// A ggml d * q matrix repacked losslessly for the kernels (repack_format), or
// left FP32. A TQ2_0 field of 3 (code 2) is refused: TQ2_0 is ternary.
static int repack_codes(const tern_gguf *g, const tern_gguf_tensor *gt, int lowbit_file, int packed_file,
                        tern_tensor *t) {
    const type_info *ti = type_of(gt->type);
    if (!ti || gt->n_dims != 2 || gt->ne[0] > TERN_KMAX_COLS || gt->ne[1] > INT_MAX) return 0;
    if (!lowbit_type(gt->type) && !packed_file) return 0;
    if (ti->affine && (head_matrix(gt) || layer_matrix(gt))) return repack_affine(g, gt, ti, t);
    if (!ti->codes) return 0;
    int rows = (int)gt->ne[1], cols = (int)gt->ne[0], nb = cols / ti->block;
    int8_t *q = malloc((size_t)gt->numel);
    float *d = malloc((size_t)rows * (size_t)nb * sizeof(float));
    int rc = q && d ? 0 : tern_errorf("out of memory"), lo = 127, hi = -128;
    for (size_t b = 0; rc == 0 && b < (size_t)rows * nb; b++) {
        int8_t *qb = q + b * (size_t)ti->block;
        d[b] = ti->codes(gt->data + b * (size_t)ti->size, qb);
        for (int j = 0; j < ti->block; j++) lo = qb[j] < lo ? qb[j] : lo, hi = qb[j] > hi ? qb[j] : hi;
        if (gt->type == TERN_GGML_TQ2_0 && hi > 1)
            rc = tern_errorf("%s: tensor %s: TQ2_0 code 3 in row %zu block %zu (ternary codes are 0..2)", g->path,
                             gt->name, b / (size_t)nb, b % (size_t)nb);
    }
    int fmt = rc ? -1 : repack_format(gt, lowbit_file, packed_file, lo, hi);
    if (fmt >= 0) rc = pack_blocks(g, gt, (tern_kfmt_id)fmt, ti->block, q, d, t);
    free(q), free(d);
    return rc;
}

// Dequantizes the tensors' FP32 values. A lazy (TERN_LOAD_PACKED) load skips
// packed matrices and what requant_q8 will pack from the file's blocks (their
// never-touched allocations go back), and keeps the embedding's file bytes for
// lookups a row at a time.
static int fill_values(const tern_gguf *g, tern_model *m, int base, int lazy, int packed_file) {
    float **outs = malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * sizeof *outs);
    int rc = outs ? 0 : tern_errorf("out of memory");
    for (int64_t i = 0; rc == 0 && i < g->n_tensors; i++) {
        tern_tensor *t = &m->tensors[base + i];
        int embd = !strcmp(t->name, "token_embd.weight");
        if (lazy && embd && g->tensors[i].n_dims == 2) rc = keep_rows(g, &g->tensors[i], t);
        // Packed or to be requantized (from the file's blocks): no FP32
        // values; nor an embedding with its rows, unless an unpacked tied
        // head reads them.
        int packs = t->packed || needs_requant(&g->tensors[i], t, packed_file);
        int drop = embd ? t->rows && (packs || !m->cfg.tied_embeddings) : packs;
        if (lazy && drop) tern_free(t->data), t->data = NULL;
        outs[i] = t->data;
    }
    if (rc == 0) rc = dequantize_all(g, outs, g->n_tensors);
    free(outs);
    return rc;
}

// A packed-only load on AVX-512: each packed matrix the interleaved GEMVs read
// (tern_kilv_ok) is kept in that layout only, instead of the row layout plus
// the copy every session would make of it (infer/packed.c interleave_view).
static int interleave_packed(tern_model *m, int base) {
    tern_kimpl impl;
    if (tern_kernel_default(&impl) || impl != TERN_KIMPL_AVX512) {
        tern_clear_error();
        return 0;
    }
    for (int i = base; i < m->n_tensors; i++) {
        tern_tensor *t = &m->tensors[i];
        tern_kmatrix km;
        if (!t->packed || t->ndim != 2 ||
            tern_kmatrix_init(&km, tern_kformat_get((tern_kfmt_id)t->packed_fmt), (int)t->shape[0], (int)t->shape[1],
                              t->packed_group, t->packed_shift, t->packed) ||
            !tern_kilv_ok(&km))
            continue;
        uint8_t *ilv = tern_alloc(t->packed_bytes);
        if (!ilv) return tern_errorf("out of memory");
        tern_kilv_pack(&km, ilv);
        tern_free((void *)t->packed);
        t->packed = t->packed_copy = ilv, t->packed_ilv = 1;
    }
    return 0;
}

int tern_gguf_read_model(const tern_gguf *g, tern_model *m) {
    snprintf(m->format, sizeof m->format, "gguf");
    if (!m->path[0]) snprintf(m->path, sizeof m->path, "%s", g->path);
    if (tern_gguf_read_vocab(g, &m->vocab, 0) || read_config(g, m)) return -1;
    // Create every tensor and check the shapes the forward pass needs before
    // the expensive dequantization, so a bad file fails early.
    int base = m->n_tensors;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const tern_gguf_tensor *t = &g->tensors[i];
        if (check_supported(g, t)) return -1;
        int64_t shape[TERN_MAX_DIMS];
        for (int d = 0; d < t->n_dims; d++) shape[d] = t->ne[t->n_dims - 1 - d]; // outermost first
        // Not zeroed: every value is written by the dequantization below, and
        // a packed-only load never touches a dropped tensor's pages.
        if (!tern_model_add_tensor_ex(m, t->name, t->n_dims, shape, tern_gguf_type_name(t->type), 0)) return -1;
    }
    tern_weights w;
    if (tern_model_bind(m, &w)) return -1;
    tern_weights_free(&w);
    int lowbit_file = 0, packed_file = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        lowbit_file |= lowbit_type(g->tensors[i].type);
        const tern_gguf_tensor *gt = &g->tensors[i];
        packed_file |= lowbit_type(gt->type) || (quantized_type(gt->type) && layer_matrix(gt));
    }
    const int bitnet = strcmp(m->cfg.arch, "bitnet") == 0; // its loader rewrites FP32 values at the end
    const int lazy = m->packed_only && !bitnet;
    // The packed copies come from the file's blocks, not from the FP32 values.
    // A lazy load reads an untied embedding only by rows: it is not packed.
    int rc = 0;
    for (int64_t i = 0; i < g->n_tensors && rc == 0; i++) {
        const tern_gguf_tensor *gt = &g->tensors[i];
        if (lazy && !m->cfg.tied_embeddings && !strcmp(gt->name, "token_embd.weight")) continue;
        rc = packed_format(gt->type, NULL) ? keep_packed(gt, &m->tensors[base + i])
                                           : repack_codes(g, gt, lowbit_file, packed_file, &m->tensors[base + i]);
    }
    if (rc == 0) rc = fill_values(g, m, base, lazy, packed_file);
    for (int64_t i = 0; rc == 0 && !bitnet && i < g->n_tensors; i++) {
        const tern_gguf_tensor *gt = &g->tensors[i];
        tern_tensor *t = &m->tensors[base + i];
        if (!needs_requant(gt, t, packed_file)) continue;
        if (lazy && !m->cfg.tied_embeddings && !strcmp(gt->name, "token_embd.weight")) continue; // read by rows only
        rc = requant_q8(g, gt, t);
    }
    // The embedding, when its rows come from its file bytes and a tied head
    // does not read its FP32 values (it is packed, or the head is untied).
    for (int64_t i = 0; rc == 0 && lazy && i < g->n_tensors; i++) {
        tern_tensor *t = &m->tensors[base + i];
        if (t->rows && (t->packed || !m->cfg.tied_embeddings)) tern_free(t->data), t->data = NULL;
    }
    if (rc == 0 && lazy) rc = interleave_packed(m, base);
    if (rc == 0 && bitnet) rc = tern_bitnet_finish_gguf(m);
    return rc;
}

// ---------------------------------------------------------------------------
// readers.h entry points.

int tern_gguf_parse_model(tern_model *m, const void *data, size_t size, const char *path) {
    tern_gguf g;
    int rc = tern_gguf_parse(&g, data, size, path);
    if (rc == 0) rc = tern_gguf_read_model(&g, m);
    tern_gguf_close(&g);
    return rc;
}

int tern_gguf_load_model(tern_model *m, const char *path) {
    tern_gguf g;
    int rc = tern_gguf_open(&g, path);
    if (rc == 0) rc = tern_gguf_read_model(&g, m);
    tern_gguf_close(&g);
    return rc;
}

int tern_gguf_load_vocab(tern_vocab *v, const char *path) {
    tern_gguf g;
    int rc = tern_gguf_open(&g, path);
    if (rc == 0) rc = tern_gguf_read_vocab(&g, v, 1);
    tern_gguf_close(&g);
    return rc;
}

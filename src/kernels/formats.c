// Storage-format traits: chunk encoders/decoders, pack/unpack, geometry.
#include "kernels/formats.h"

#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/half.h"
#include "kernels/kern_impl.h"

// ---- 2-bit fields (tern-t2, q2g, and tern-t1.6 tail chunks) ----
// Chunk = 8 bytes; byte j holds slots j, j+8, j+16, j+24 in bits 0-1, 2-3,
// 4-5, 6-7. A SIMD kernel broadcasts the 8 bytes to four 64-bit lanes,
// shifts lane k right by 2k and masks with 3: the 32 bytes are then slots
// 0..31 in order.
static void get2(const uint8_t *p, uint8_t u[TERN_KCHUNK]) {
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 8; j++) u[8 * k + j] = (p[j] >> (2 * k)) & 3;
}

static void put2(uint8_t *p, const uint8_t u[TERN_KCHUNK]) {
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 8; j++) p[j] |= (uint8_t)((u[8 * k + j] & 3) << (2 * k));
}

static size_t bytes_2bit(int n_chunks) { return (size_t)n_chunks * 8; }
static void get_2bit(const uint8_t *codes, int n_chunks, int c, uint8_t u[TERN_KCHUNK]) {
    (void)n_chunks;
    get2(codes + (size_t)c * 8, u);
}
static void put_2bit(uint8_t *codes, int n_chunks, int c, const uint8_t u[TERN_KCHUNK]) {
    (void)n_chunks;
    put2(codes + (size_t)c * 8, u);
}

// ---- tern-t1.6: 5 trits per byte ----
// Chunks 5b..5b+4 form bundle b (32 bytes): byte j holds v = sum_k d_k 3^(4-k),
// d_k = slot j of chunk 5b+k, stored as ceil(v * 256 / 243). Then digit k is
// ((uint8)(byte * 3^k) * 3) >> 8: multiplying by 3^k mod 256 drops the
// leading digits and the top bits of the fixed-point fraction give the next
// one. The kernel gets each next chunk's bytes by one more x3 (mod 256).
// Chunks past the last whole bundle (n_chunks % 5 of them) use 2-bit fields.
static const uint8_t pow3[5] = {1, 3, 9, 27, 81};

static inline int trit_at(uint8_t byte, int k) {
    uint8_t x = (uint8_t)(byte * pow3[k]);
    return (x * 3) >> 8;
}

static inline uint8_t trits_encode(const int d[5]) {
    int v = 0;
    for (int k = 0; k < 5; k++) v = v * 3 + d[k];
    return (uint8_t)((v * 256 + 242) / 243);
}

static size_t bytes_t16(int n_chunks) { return (size_t)(n_chunks / 5) * 32 + (size_t)(n_chunks % 5) * 8; }

static void get_t16(const uint8_t *codes, int n_chunks, int c, uint8_t u[TERN_KCHUNK]) {
    int full = n_chunks / 5;
    if (c >= 5 * full) {
        get2(codes + (size_t)full * 32 + (size_t)(c - 5 * full) * 8, u);
        return;
    }
    const uint8_t *p = codes + (size_t)(c / 5) * 32;
    for (int j = 0; j < TERN_KCHUNK; j++) u[j] = (uint8_t)trit_at(p[j], c % 5);
}

static void put_t16(uint8_t *codes, int n_chunks, int c, const uint8_t u[TERN_KCHUNK]) {
    int full = n_chunks / 5;
    if (c >= 5 * full) {
        put2(codes + (size_t)full * 32 + (size_t)(c - 5 * full) * 8, u);
        return;
    }
    uint8_t *p = codes + (size_t)(c / 5) * 32;
    for (int j = 0; j < TERN_KCHUNK; j++) {
        int d[5];
        for (int k = 0; k < 5; k++) d[k] = trit_at(p[j], k); // zeroed byte decodes as all 0
        d[c % 5] = u[j] > 2 ? 2 : u[j];
        p[j] = trits_encode(d);
    }
}

// ---- q4g: 16 bytes per chunk, byte j = slot j | slot j+16 << 4 ----
static size_t bytes_q4(int n_chunks) { return (size_t)n_chunks * 16; }
static void get_q4(const uint8_t *codes, int n_chunks, int c, uint8_t u[TERN_KCHUNK]) {
    (void)n_chunks;
    const uint8_t *p = codes + (size_t)c * 16;
    for (int j = 0; j < 16; j++) u[j] = p[j] & 15, u[j + 16] = p[j] >> 4;
}
static void put_q4(uint8_t *codes, int n_chunks, int c, const uint8_t u[TERN_KCHUNK]) {
    (void)n_chunks;
    uint8_t *p = codes + (size_t)c * 16;
    for (int j = 0; j < 16; j++) p[j] = (uint8_t)((u[j] & 15) | (u[j + 16] & 15) << 4);
}

// ---- q3g: 12 bytes per chunk: low 2 bits as a 2-bit chunk, then 4 bytes
// where bit i (little-endian 32-bit word) is bit 2 of slot i ----
static size_t bytes_q3(int n_chunks) { return (size_t)n_chunks * 12; }
static void get_q3(const uint8_t *codes, int n_chunks, int c, uint8_t u[TERN_KCHUNK]) {
    (void)n_chunks;
    const uint8_t *p = codes + (size_t)c * 12;
    get2(p, u);
    for (int i = 0; i < TERN_KCHUNK; i++) u[i] |= (uint8_t)(((p[8 + i / 8] >> (i % 8)) & 1) << 2);
}
static void put_q3(uint8_t *codes, int n_chunks, int c, const uint8_t u[TERN_KCHUNK]) {
    (void)n_chunks;
    uint8_t *p = codes + (size_t)c * 12;
    put2(p, u);
    for (int i = 0; i < TERN_KCHUNK; i++) p[8 + i / 8] |= (uint8_t)(((u[i] >> 2) & 1) << (i % 8));
}

// ---- q8-row: 32 int8 per chunk ----
static size_t bytes_q8(int n_chunks) { return (size_t)n_chunks * 32; }
static void get_q8(const uint8_t *codes, int n_chunks, int c, uint8_t u[TERN_KCHUNK]) {
    (void)n_chunks;
    memcpy(u, codes + (size_t)c * 32, TERN_KCHUNK);
}
static void put_q8(uint8_t *codes, int n_chunks, int c, const uint8_t u[TERN_KCHUNK]) {
    (void)n_chunks;
    memcpy(codes + (size_t)c * 32, u, TERN_KCHUNK);
}

#ifdef TERN_KHAVE_X86
#define X86(f) f
#else
#define X86(f) NULL
#endif
#ifdef TERN_KHAVE_NEON
#define NEON(f) f
#else
#define NEON(f) NULL
#endif

// The AVX-512 column reuses the AVX2 kernel where no VNNI variant exists
// (every AVX-512 CPU also has AVX2).
static const tern_kformat formats[TERN_KFMT_COUNT] = {
    {TERN_KFMT_T2, "tern-t2", TERN_KKIND_TERNARY, 2, -1, 1, 128, 0, 2.0, bytes_2bit, get_2bit, put_2bit,
     {tern_kdot_scalar, X86(tern_kdot_t2_avx2), X86(tern_kdot_t2_avx512), NEON(tern_kdot_t2_neon)}},
    {TERN_KFMT_T1_6, "tern-t1.6", TERN_KKIND_TERNARY, 0, -1, 1, 128, 0, 1.6, bytes_t16, get_t16, put_t16,
     {tern_kdot_scalar, X86(tern_kdot_t16_avx2), X86(tern_kdot_t16_avx512), NEON(tern_kdot_t16_neon)}},
    {TERN_KFMT_Q8, "q8-row", TERN_KKIND_Q8, 8, -127, 127, TERN_KQ8_GROUP, 0, 8.0, bytes_q8, get_q8, put_q8,
     {tern_kdot_scalar, X86(tern_kdot_q8_avx2), X86(tern_kdot_q8_avx512), NEON(tern_kdot_q8_neon)}},
    {TERN_KFMT_Q4G, "q4g", TERN_KKIND_RTN, 4, 0, 15, 128, 64, 4.0, bytes_q4, get_q4, put_q4,
     {tern_kdot_scalar, X86(tern_kdot_q4_avx2), X86(tern_kdot_q4_avx512), NEON(tern_kdot_q4_neon)}},
    {TERN_KFMT_Q3G, "q3g", TERN_KKIND_RTN, 3, 0, 7, 128, 64, 3.0, bytes_q3, get_q3, put_q3,
     {tern_kdot_scalar, X86(tern_kdot_q3_avx2), X86(tern_kdot_q3_avx2), NEON(tern_kdot_q3_neon)}},
    {TERN_KFMT_Q2G, "q2g", TERN_KKIND_RTN, 2, 0, 3, 128, 64, 2.0, bytes_2bit, get_2bit, put_2bit,
     {tern_kdot_scalar, X86(tern_kdot_q2_avx2), X86(tern_kdot_q2_avx2), NEON(tern_kdot_q2_neon)}},
};

const tern_kformat *tern_kformat_get(tern_kfmt_id id) {
    return (unsigned)id < TERN_KFMT_COUNT ? &formats[id] : NULL;
}

const tern_kformat *tern_kformat_find(const char *name) {
    for (int i = 0; i < TERN_KFMT_COUNT; i++)
        if (name && strcmp(formats[i].name, name) == 0) return &formats[i];
    tern_errorf("unknown packed format '%s' (tern-t2, tern-t1.6, q8-row, q4g, q3g, q2g)", name ? name : "");
    return NULL;
}

static int check_shape(const tern_kformat *f, int cols, int group, int has_shift) {
    if (cols < 1 || cols > TERN_KMAX_COLS)
        return tern_errorf("%s: %d columns (need 1..%d)", f->name, cols, TERN_KMAX_COLS);
    if (group < 1 || (group % TERN_KCHUNK != 0 && group < cols))
        return tern_errorf("%s: group size %d must be a multiple of %d or >= the row width %d", f->name, group,
                           TERN_KCHUNK, cols);
    return 0;
}

static size_t extras_bytes(const tern_kformat *f, int n_groups, int has_shift) {
    if (has_shift) return 2 * (size_t)n_groups;
    return f->kind == TERN_KKIND_RTN ? (size_t)n_groups : 0;
}

size_t tern_kformat_row_bytes(const tern_kformat *f, int cols, int group, int has_shift) {
    if (check_shape(f, cols, group, has_shift)) return 0;
    int ng = (cols + group - 1) / group, nch = (cols + TERN_KCHUNK - 1) / TERN_KCHUNK;
    return f->code_bytes(nch) + 2 * (size_t)ng + extras_bytes(f, ng, has_shift);
}

int tern_kmatrix_init(tern_kmatrix *m, const tern_kformat *f, int rows, int cols, int group, int has_shift,
                      const void *data) {
    memset(m, 0, sizeof *m);
    if (rows < 0) return tern_errorf("%s: %d rows", f->name, rows);
    if (check_shape(f, cols, group, has_shift)) return -1;
    m->fmt = f;
    m->rows = rows, m->cols = cols, m->group = group;
    m->n_groups = (cols + group - 1) / group;
    m->n_chunks = (cols + TERN_KCHUNK - 1) / TERN_KCHUNK;
    m->cpg = group >= cols ? m->n_chunks : group / TERN_KCHUNK;
    m->has_shift = has_shift != 0;
    m->code_bytes = f->code_bytes(m->n_chunks);
    m->row_bytes = tern_kformat_row_bytes(f, cols, group, has_shift);
    m->data = data;
    return 0;
}

int tern_kilv_ok(const tern_kmatrix *m) {
    const int id = m->fmt->id;
    return (id == TERN_KFMT_T2 || id == TERN_KFMT_T1_6 || id == TERN_KFMT_Q4G || id == TERN_KFMT_Q8) && m->rows > 0 &&
           m->rows % TERN_KILV_ROWS == 0;
}

// Copies the bytes of row i of a block between the row layout and the block
// (to_ilv: src is the row, dst the block; else the reverse).
static void ilv_copy(const tern_kmatrix *m, int i, const uint8_t *src, uint8_t *dst, int to_ilv) {
    const size_t cb = tern_kilv_scales(m), ng = (size_t)m->n_groups;
    const size_t halves = m->has_shift ? 2 * ng : ng; // fp16 values per row after the codes
    for (size_t w = 0; w < m->code_bytes / 4; w++) {
        size_t ro = 4 * w, bo = 64 * w + 4 * (size_t)i;
        memcpy(dst + (to_ilv ? bo : ro), src + (to_ilv ? ro : bo), 4);
    }
    for (size_t e = 0; e < halves; e++) {
        size_t ro = m->code_bytes + 2 * e, bo = cb + 32 * e + 2 * (size_t)i;
        memcpy(dst + (to_ilv ? bo : ro), src + (to_ilv ? ro : bo), 2);
    }
    if (tern_kmatrix_zeros(m)) // one zero-point byte per group
        for (size_t g = 0; g < ng; g++) {
            size_t ro = m->code_bytes + 2 * ng + g, bo = tern_kilv_zeros(m) + 16 * g + (size_t)i;
            dst[to_ilv ? bo : ro] = src[to_ilv ? ro : bo];
        }
}

void tern_kilv_pack(const tern_kmatrix *m, uint8_t *dst) {
    for (int r = 0; r < m->rows; r++)
        ilv_copy(m, r % TERN_KILV_ROWS, m->data + (size_t)r * m->row_bytes, dst + tern_kilv_block(m, r), 1);
}

void tern_kilv_unpack_row(const tern_kmatrix *m, int r, uint8_t *dst) {
    ilv_copy(m, r % TERN_KILV_ROWS, m->ilv + tern_kilv_block(m, r), dst, 0);
}

void tern_absmax_q8(const float *w, int rows, int cols, int group, int8_t *codes, float *scales, double *err2,
                    double *norm2) {
    int n_groups = (cols + group - 1) / group;
    const int want = err2 || norm2;
    double e2 = 0, n2 = 0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(+ : e2, n2) if (rows >= 64)
#endif
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < n_groups; g++) {
            int c0 = g * group, c1 = c0 + group < cols ? c0 + group : cols;
            const float *x = w + (size_t)r * cols;
            float amax = 0;
            for (int c = c0; c < c1; c++) {
                float a = fabsf(x[c]);
                amax = a > amax ? a : amax; // fmaxf's result (NaN ignored), without its libm call
            }
            float scale = amax / 127.0f;
            scales[(size_t)r * n_groups + g] = scale;
            int8_t *q = codes + (size_t)r * cols;
            if (scale > 0)
                for (int c = c0; c < c1; c++) { // NaN (a corrupt file's value) becomes 0, not an undefined cast
                    float v = rintf(x[c] / scale);
                    q[c] = (int8_t)(v >= -127.0f && v <= 127.0f ? v : 0.0f);
                }
            else
                for (int c = c0; c < c1; c++) q[c] = 0;
            if (!want) continue;
            // Eight partial sums: independent chains (a single one waits on
            // each add) that still add in a fixed order.
            const double s16 = tern_f16_to_f32(tern_f32_to_f16(scale));
            double pe[8] = {0}, pn[8] = {0};
            for (int c = c0; c < c1; c++) {
                double d = (double)x[c] - s16 * q[c];
                pe[c & 7] += d * d, pn[c & 7] += (double)x[c] * x[c];
            }
            for (int k = 0; k < 8; k++) e2 += pe[k], n2 += pn[k];
        }
    if (err2) *err2 += e2;
    if (norm2) *norm2 += n2;
}

// Stored field for an input code; -1 when out of range.
static int code_to_field(const tern_kformat *f, int code) {
    if (code < f->code_min || code > f->code_max) return -1;
    if (f->kind == TERN_KKIND_TERNARY) return code + 1;
    return (uint8_t)code;
}

static int code_from_field(const tern_kformat *f, uint8_t u) {
    if (f->kind == TERN_KKIND_TERNARY) return (int)u - 1;
    if (f->kind == TERN_KKIND_Q8) return (int8_t)u;
    return u;
}

static int put_f16(uint8_t *p, int i, float v, const char *what, const tern_kformat *f, int r, int g) {
    uint16_t h = tern_f32_to_f16(v);
    if (!isfinite(tern_f16_to_f32(h)))
        return tern_errorf("%s: %s %g at row %d group %d is not finite in fp16", f->name, what, (double)v, r, g);
    memcpy(p + 2 * (size_t)i, &h, 2);
    return 0;
}

static int pack_row(const tern_kmatrix *m, uint8_t *row, int r, const int8_t *codes, const float *scales,
                    const float *shifts, const uint8_t *zeros) {
    const tern_kformat *f = m->fmt;
    memset(row, 0, m->row_bytes);
    // The codes' range first (a loop the compiler vectorizes; the packing of
    // a 1B model's load runs over ~10^9 of them), then the fields.
    int lo = 127, hi = -128;
    for (int col = 0; col < m->cols; col++)
        lo = codes[col] < lo ? codes[col] : lo, hi = codes[col] > hi ? codes[col] : hi;
    if (lo < f->code_min || hi > f->code_max)
        for (int col = 0; col < m->cols; col++)
            if (code_to_field(f, codes[col]) < 0)
                return tern_errorf("%s: code %d at row %d col %d outside [%d, %d]", f->name, codes[col], r, col,
                                   f->code_min, f->code_max);
    const int off = code_to_field(f, 0); // field = code + off (ternary T+1; RTN and q8 the code)
    for (int c = 0; c < m->n_chunks; c++) {
        uint8_t u[TERN_KCHUNK] = {0}; // padding slots stay 0: no contribution to any dot
        const int n = m->cols - c * TERN_KCHUNK < TERN_KCHUNK ? m->cols - c * TERN_KCHUNK : TERN_KCHUNK;
        for (int j = 0; j < n; j++) u[j] = (uint8_t)(codes[c * TERN_KCHUNK + j] + off);
        f->put_chunk(row, m->n_chunks, c, u);
    }
    uint8_t *sc = row + m->code_bytes;
    for (int g = 0; g < m->n_groups; g++) {
        if (put_f16(sc, g, scales[g], "scale", f, r, g)) return -1;
        if (m->has_shift && put_f16(sc, m->n_groups + g, shifts[g], "shift", f, r, g))
            return -1;
        if (tern_kmatrix_zeros(m)) {
            if (zeros[g] > f->code_max)
                return tern_errorf("%s: zero point %d at row %d group %d outside [0, %d]", f->name, zeros[g], r, g,
                                   f->code_max);
            sc[2 * (size_t)m->n_groups + g] = zeros[g];
        } else if (f->kind == TERN_KKIND_RTN && zeros && zeros[g]) {
            return tern_errorf("%s: zero point %d at row %d group %d with shifts (they store none)", f->name, zeros[g],
                               r, g);
        }
    }
    return 0;
}

int tern_kpack(const tern_kmatrix *m, uint8_t *dst, const int8_t *codes, const float *scales,
               const float *shifts, const uint8_t *zeros) {
    if (m->has_shift && !shifts) return tern_errorf("%s: matrix has a shift but none was given", m->fmt->name);
    if (tern_kmatrix_zeros(m) && !zeros) return tern_errorf("%s: zero points missing", m->fmt->name);
    // Rows in parallel (a 1B model's load packs ~10^9 codes); the first bad
    // row is packed again alone for its error message.
    int bad = m->rows;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(min : bad) if (m->rows >= 64)
#endif
    for (int r = 0; r < m->rows; r++) {
        size_t go = (size_t)r * m->n_groups;
        if (pack_row(m, dst + (size_t)r * m->row_bytes, r, codes + (size_t)r * m->cols, scales + go,
                     shifts ? shifts + go : NULL, zeros ? zeros + go : NULL))
            bad = r < bad ? r : bad;
    }
    if (bad < m->rows) {
        size_t go = (size_t)bad * m->n_groups;
        return pack_row(m, dst + (size_t)bad * m->row_bytes, bad, codes + (size_t)bad * m->cols, scales + go,
                        shifts ? shifts + go : NULL, zeros ? zeros + go : NULL);
    }
    return 0;
}

void tern_kunpack(const tern_kmatrix *m, int8_t *codes, float *scales, float *shifts, uint8_t *zeros) {
    const tern_kformat *f = m->fmt;
    for (int r = 0; r < m->rows; r++) {
        const uint8_t *row = m->data + (size_t)r * m->row_bytes, *sc = row + m->code_bytes;
        if (codes)
            for (int c = 0; c < m->n_chunks; c++) {
                uint8_t u[TERN_KCHUNK];
                f->get_chunk(row, m->n_chunks, c, u);
                for (int j = 0; j < TERN_KCHUNK && c * TERN_KCHUNK + j < m->cols; j++)
                    codes[(size_t)r * m->cols + c * TERN_KCHUNK + j] = (int8_t)code_from_field(f, u[j]);
            }
        for (int g = 0; g < m->n_groups; g++) {
            size_t o = (size_t)r * m->n_groups + g;
            if (scales) scales[o] = tern_kload_f16(sc, g);
            if (shifts) shifts[o] = m->has_shift ? tern_kload_f16(sc, m->n_groups + g) : 0.0f;
            if (zeros) zeros[o] = tern_kmatrix_zeros(m) ? sc[2 * (size_t)m->n_groups + g] : 0;
        }
    }
}

// Packed storage formats for ternary and low-bit linear layers: one traits
// entry per format (ggml style) with its geometry, pack/unpack and dot kernels.
// Bit layouts are documented in docs/format.md.
//
// Common geometry. A weight matrix is rows x cols (out x in). Each row is cut
// into groups of G consecutive columns (the last group of a row may be
// shorter); G must be a multiple of 32 or >= cols (one group per row). A group
// is stored as ceil(len/32) chunks of 32 code slots; only the row's last chunk
// can be partial, and its unused slots hold code field 0, which contributes
// nothing to an integer dot product. So chunk c always meets activations
// 32c..32c+31 and the kernels never need to know where a group ends inside a
// chunk.
//
// A packed row is [code bytes][per-group scale fp16 x ng][per-group extras]:
//   ternary (tern-t2, tern-t1.6): w = alpha*T (+ gamma), T in {-1,0,1};
//   RTN (q4g, q3g, q2g): w = s*(c - z), c in [0, 2^b-1], z integer in the
//       same range, or with shifts w = s*c + gamma;
//   q8-row: w = d*c (+ gamma), c in [-127,127].
// Extras: gamma fp16 x ng when the matrix has shifts (a DLT model; llama.cpp's
// Q4_1 / Q5_1 and K-quant mins), else for RTN z as u8 x ng.
#ifndef TERN_KERNELS_FORMATS_H
#define TERN_KERNELS_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#define TERN_KCHUNK 32          // code slots per chunk
#define TERN_KMAX_COLS 65536
// Block of the 8-bit embedding / LM head (and of the whole-model q8 format):
// 128 rather than ggml's 32 because the GEMV's per-block epilogue dominated
// the head's cost at 32 (docs/PERFORMANCE.md); the perplexity change is < 0.1%.
#define TERN_KQ8_GROUP 128    // keeps every per-group int32 sum exact (see docs/format.md)

typedef enum {
    TERN_KFMT_T2,   // ternary, 2 bits per code
    TERN_KFMT_T1_6, // ternary, 5 trits per byte (1.6 bits)
    TERN_KFMT_Q8,   // int8, per-block scale (embeddings, LM head)
    TERN_KFMT_Q4G,  // 4-bit asymmetric RTN
    TERN_KFMT_Q3G,  // 3-bit asymmetric RTN
    TERN_KFMT_Q2G,  // 2-bit asymmetric RTN
    TERN_KFMT_COUNT
} tern_kfmt_id;

// How a group's integer dot becomes a float (see tern_kstep in kern_impl.h).
typedef enum { TERN_KKIND_TERNARY, TERN_KKIND_RTN, TERN_KKIND_Q8 } tern_kkind;

// Kernel implementations, selected at run time (kernels.h).
typedef enum { TERN_KIMPL_SCALAR, TERN_KIMPL_AVX2, TERN_KIMPL_AVX512, TERN_KIMPL_NEON, TERN_KIMPL_COUNT } tern_kimpl;

typedef struct tern_kformat tern_kformat;
typedef struct tern_qact tern_qact;

// A packed matrix: geometry plus a pointer to rows * row_bytes bytes.
typedef struct {
    const tern_kformat *fmt;
    int rows, cols, group;
    int n_groups;   // ceil(cols / group)
    int n_chunks;   // ceil(cols / 32): chunks per row
    int cpg;        // chunks per full group
    int has_shift;  // gamma stored per group
    size_t code_bytes, row_bytes;
    const uint8_t *data;
    // Optional row-interleaved copy (tern_kilv_pack) that the AVX-512 kernels
    // read instead of data; NULL when there is none. With ilv, data may be
    // NULL: the other kernels then run on rows decoded back block by block.
    const uint8_t *ilv;
} tern_kmatrix;

// Rows [r0, r1) x tokens [t0, t0+nt): out[(t-t0)*ldo + (r-r0)] = row_r . x_t (+ bias[r]).
typedef void (*tern_kdot_fn)(const tern_kmatrix *w, int r0, int r1, const tern_qact *a, int t0, int nt,
                             const float *bias, float *out, size_t ldo);

struct tern_kformat {
    tern_kfmt_id id;
    const char *name;
    tern_kkind kind;
    int code_bits;      // bits per stored code field (t1.6: 0, it is base-3)
    int code_min, code_max; // accepted input codes
    int default_group;
    // Activation group for this format's inputs, in columns; 0: the weights'
    // group. The low-bit formats use 64: a 4-bit RTN SmolLM2's packed
    // perplexity is +1.20% over the same weights in FP32 with int8 activation
    // groups of 128, +0.43% with 64 and +0.45% with 32 (docs/PERFORMANCE.md);
    // each activation group is one float step, so 64 costs the q4g GEMV ~4%
    // and 32 ~30%. The ternary and q8 kernels keep the weights' group.
    int act_group;
    double bits_per_code;   // code storage only, for a row of whole 5-chunk bundles
    // Bytes of code storage for a row of n_chunks chunks.
    size_t (*code_bytes)(int n_chunks);
    // Read / write the 32 unsigned code fields of chunk c (stored value: T+1
    // for ternary, c for RTN, the int8 bits for q8). put_chunk expects the
    // code bytes zeroed first.
    void (*get_chunk)(const uint8_t *codes, int n_chunks, int c, uint8_t u[TERN_KCHUNK]);
    void (*put_chunk)(uint8_t *codes, int n_chunks, int c, const uint8_t u[TERN_KCHUNK]);
    tern_kdot_fn dot[TERN_KIMPL_COUNT]; // NULL where an implementation does not exist
};

const tern_kformat *tern_kformat_get(tern_kfmt_id id);
const tern_kformat *tern_kformat_find(const char *name); // NULL (error set) if unknown

// Bytes per packed row; 0 (error set) when cols/group are invalid.
size_t tern_kformat_row_bytes(const tern_kformat *f, int cols, int group, int has_shift);

// Fills m for data of rows * row_bytes bytes; -1 (error set) on a bad shape.
int tern_kmatrix_init(tern_kmatrix *m, const tern_kformat *f, int rows, int cols, int group, int has_shift,
                      const void *data);

// Row-interleaved ternary (docs/format.md, "Row-interleaved ternary"): the
// same bytes as the row layout, regrouped in blocks of TERN_KILV_ROWS rows so
// that a kernel whose vector lanes are the block's rows reads one sequential
// stream. A row's code bytes are a sequence of 4-byte words (tern-t2: chunk c's
// words 2c, 2c + 1; tern-t1.6: bundle b's words 8b..8b+7, then its 2-bit tail
// chunks'); block b (16 * row_bytes bytes) holds, for each word, 64 bytes with
// row 16b + i's word at 4i; then the alphas, group by group, 16 fp16 each; then
// the shifts likewise when the matrix has them, or for q4g the zero points,
// 16 bytes a group. Whether m can be interleaved: tern-t2, tern-t1.6,
// q4g or q8-row, whole blocks.
#define TERN_KILV_ROWS 16
int tern_kilv_ok(const tern_kmatrix *m);
// Byte offset of the block holding row r (the same in both layouts), and of a
// block's scale area from its start.
static inline size_t tern_kilv_block(const tern_kmatrix *m, int r) {
    return (size_t)(r / TERN_KILV_ROWS) * TERN_KILV_ROWS * m->row_bytes;
}
static inline size_t tern_kilv_scales(const tern_kmatrix *m) { return m->code_bytes * TERN_KILV_ROWS; }
// Offset of a block's zero points (RTN) from its start.
static inline size_t tern_kilv_zeros(const tern_kmatrix *m) { return tern_kilv_scales(m) + 32 * (size_t)m->n_groups; }
// Whether m stores zero points: RTN without shifts.
static inline int tern_kmatrix_zeros(const tern_kmatrix *m) { return m->fmt->kind == TERN_KKIND_RTN && !m->has_shift; }
// Writes m's interleaved copy (rows * row_bytes bytes) to dst.
void tern_kilv_pack(const tern_kmatrix *m, uint8_t *dst);
// The inverse for row r of m->ilv: its row_bytes bytes in the row layout at dst.
void tern_kilv_unpack_row(const tern_kmatrix *m, int r, uint8_t *dst);
// The largest row_bytes of an interleaved matrix (q8-row with shifts, TERN_KMAX_COLS, G = 32).
#define TERN_KILV_MAX_ROW (TERN_KMAX_COLS + 4 * (TERN_KMAX_COLS / 32))

// Packs into dst (rows * m->row_bytes bytes, m from tern_kmatrix_init on dst).
// codes [rows, cols]: ternary T in {-1,0,1}; RTN c in [0, 2^b-1]; q8 c in
// [-127,127]. scales, shifts, zeros [rows, n_groups]: shifts = gamma
// (NULL when the matrix has none); zeros = RTN zero points (required for RTN,
// ignored otherwise; with shifts z is 0: NULL or zeros). Scales and shifts are rounded to fp16. -1 (error set) on
// a code or zero point out of range, or a scale that is not finite in fp16.
int tern_kpack(const tern_kmatrix *m, uint8_t *dst, const int8_t *codes, const float *scales,
               const float *shifts, const uint8_t *zeros);
// q8-row's quantizer: per group of `group` columns (the last of a row may be
// shorter) s = max|w| / 127 and codes round(w / s) (0 when s is 0); scales
// [rows, ceil(cols / group)]. *err2 / *norm2 (may be NULL) get the squared
// error of s * code against w, s rounded to fp16 as tern_kpack stores it,
// and the squared values.
void tern_absmax_q8(const float *w, int rows, int cols, int group, int8_t *codes, float *scales, double *err2,
                    double *norm2);
// Inverse of pack (scales come back fp16-rounded). Any output may be NULL.
void tern_kunpack(const tern_kmatrix *m, int8_t *codes, float *scales, float *shifts, uint8_t *zeros);

#endif

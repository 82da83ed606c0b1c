// Private to src/kernels: small AVX2 helpers shared by kern_avx2.c and
// kern_avx512.c (the AVX-512 kernels are compiled with a superset target, so
// these inline into them).
#ifndef TERN_KERNELS_KERN_X86_H
#define TERN_KERNELS_KERN_X86_H

#include "kernels/kern_impl.h"

#ifdef TERN_KHAVE_X86
#include <immintrin.h>

#define TERN_X86_INL static inline __attribute__((always_inline, target("avx2,fma,f16c")))

TERN_X86_INL int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

// 8 bytes of 2-bit fields -> slots 0..31 (layout in formats.c).
TERN_X86_INL __m256i expand2(const uint8_t *p) {
    int64_t v;
    memcpy(&v, p, 8);
    __m256i b = _mm256_srlv_epi64(_mm256_set1_epi64x(v), _mm256_setr_epi64x(0, 2, 4, 6));
    return _mm256_and_si256(b, _mm256_set1_epi8(3));
}

TERN_X86_INL unsigned short load_u16(const uint8_t *p, int i) {
    uint16_t h;
    memcpy(&h, p + 2 * (size_t)i, 2);
    return h;
}

// GEMV kernels run RB rows x 1 token at once. The activation chunk is loaded
// once for RB rows, and the per-group int32 sums of the RB rows are reduced
// together (a transposing hadd tree instead of RB horizontal sums), so the
// exact same per-row fmaf sequence runs in RB float lanes.
TERN_X86_INL __m128i reduce4(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1)); // lane r: row r
}

// Group g's fp16 parameter at offset `at` (in halfs) of each of RB (4 or 8) rows' scale areas.
TERN_X86_INL __m128i gather_u16(const uint8_t *const *sc, int RB, size_t at) {
    __m128i h = _mm_setzero_si128();
    h = _mm_insert_epi16(h, load_u16(sc[0], (int)at), 0);
    h = _mm_insert_epi16(h, load_u16(sc[1], (int)at), 1);
    h = _mm_insert_epi16(h, load_u16(sc[2], (int)at), 2);
    h = _mm_insert_epi16(h, load_u16(sc[3], (int)at), 3);
    if (RB == 8) {
        h = _mm_insert_epi16(h, load_u16(sc[4], (int)at), 4);
        h = _mm_insert_epi16(h, load_u16(sc[5], (int)at), 5);
        h = _mm_insert_epi16(h, load_u16(sc[6], (int)at), 6);
        h = _mm_insert_epi16(h, load_u16(sc[7], (int)at), 7);
    }
    return h;
}

// GEMV kernels prefetch the rows PF_BLOCKS row blocks ahead, into L2: the
// next rows' loads start while this block computes. Measured on the q8 LM head
// streamed from DRAM (bench_kernels --cold, docs/PERFORMANCE.md): Zen 1, into
// L1 2 blocks ahead, 5.2 -> 8.5 GMAC/s; Zen 4, into L2 (T1) instead of L1,
// 2.9 -> 1.7 ms per call, flat from 4 to 32 blocks ahead; t2 unchanged.
#ifndef PF_BLOCKS
#define PF_BLOCKS 8
#endif
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T1
#endif

#endif
#endif

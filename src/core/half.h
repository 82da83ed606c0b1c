// IEEE half and bfloat16 <-> float conversion (exact, incl. subnormals, inf, NaN).
#ifndef TERN_CORE_HALF_H
#define TERN_CORE_HALF_H

#include <stdint.h>
#include <string.h>

static inline float tern_bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t tern_f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float tern_bf16_to_f32(uint16_t h) { return tern_bits_to_f32((uint32_t)h << 16); }

// Round to nearest even; NaN stays NaN.
static inline uint16_t tern_f32_to_bf16(float f) {
    uint32_t u = tern_f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float tern_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0) return tern_bits_to_f32(sign);
        // Subnormal: value = man * 2^-24.
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) return tern_bits_to_f32(sign | 0x7f800000u | (man << 13));
    return tern_bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

// Round to nearest even, with overflow to inf and gradual underflow.
static inline uint16_t tern_f32_to_f16(float f) {
    uint32_t u = tern_f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;           // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00u;          // >= 65520 rounds to inf
    if (a < 0x38800000u) {                               // below 2^-14: subnormal or zero
        if (a < 0x33000000u) return sign;                // below half the smallest subnormal
        uint32_t man = (a & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(a >> 23);                // 14..24
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

#endif

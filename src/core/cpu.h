// Runtime CPU feature detection for kernel dispatch.
#ifndef TERN_CORE_CPU_H
#define TERN_CORE_CPU_H

enum {
    TERN_CPU_AVX2 = 1 << 0,
    TERN_CPU_FMA = 1 << 1,
    TERN_CPU_F16C = 1 << 2,
    TERN_CPU_AVX512F = 1 << 3,
    TERN_CPU_AVX512BW = 1 << 4,
    TERN_CPU_AVX512VNNI = 1 << 5,
    TERN_CPU_AVX512BF16 = 1 << 6,
    TERN_CPU_AVXVNNI = 1 << 7,
    TERN_CPU_NEON = 1 << 8,
    TERN_CPU_NEON_DOTPROD = 1 << 9,
};

unsigned tern_cpu_features(void);
// Space-separated feature names, e.g. "avx2 fma f16c".
const char *tern_cpu_describe(void);

#endif

#include "core/cpu.h"

#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static unsigned detect(void) {
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1;
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    int ymm_ok = (xcr0 & 0x6) == 0x6, zmm_ok = (xcr0 & 0xe6) == 0xe6;
    if (ymm_ok && ((c >> 12) & 1)) f |= TERN_CPU_FMA;
    if (ymm_ok && ((c >> 29) & 1)) f |= TERN_CPU_F16C;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (ymm_ok && ((b >> 5) & 1)) f |= TERN_CPU_AVX2;
        if (zmm_ok && ((b >> 16) & 1)) f |= TERN_CPU_AVX512F;
        if (zmm_ok && ((b >> 30) & 1)) f |= TERN_CPU_AVX512BW;
        if (zmm_ok && ((c >> 11) & 1)) f |= TERN_CPU_AVX512VNNI;
        __cpuid_count(7, 1, a, b, c, d);
        if (zmm_ok && ((a >> 5) & 1)) f |= TERN_CPU_AVX512BF16;
        if (ymm_ok && ((a >> 4) & 1)) f |= TERN_CPU_AVXVNNI;
    }
    return f;
}
#elif defined(__aarch64__)
#include <sys/auxv.h>
static unsigned detect(void) {
    unsigned f = TERN_CPU_NEON;
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
    // At run time, as the NEON kernels decide (a build need not target dotprod).
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) f |= TERN_CPU_NEON_DOTPROD;
    return f;
}
#else
static unsigned detect(void) { return 0; }
#endif

unsigned tern_cpu_features(void) {
    static unsigned cached = ~0u;
    if (cached == ~0u) cached = detect();
    return cached;
}

const char *tern_cpu_describe(void) {
    static char buf[160];
    static const struct { unsigned bit; const char *name; } names[] = {
        {TERN_CPU_AVX2, "avx2"},         {TERN_CPU_FMA, "fma"},
        {TERN_CPU_F16C, "f16c"},         {TERN_CPU_AVX512F, "avx512f"},
        {TERN_CPU_AVX512BW, "avx512bw"}, {TERN_CPU_AVX512VNNI, "avx512vnni"},
        {TERN_CPU_AVX512BF16, "avx512bf16"}, {TERN_CPU_AVXVNNI, "avxvnni"},
        {TERN_CPU_NEON, "neon"},         {TERN_CPU_NEON_DOTPROD, "dotprod"},
    };
    unsigned f = tern_cpu_features();
    buf[0] = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(f & names[i].bit)) continue;
        if (buf[0]) strncat(buf, " ", sizeof buf - strlen(buf) - 1);
        strncat(buf, names[i].name, sizeof buf - strlen(buf) - 1);
    }
    if (!buf[0]) snprintf(buf, sizeof buf, "none");
    return buf;
}

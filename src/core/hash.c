#include "core/hash.h"

#include <string.h>

// Word-at-a-time multiply-xorshift mixing (in the spirit of wyhash/murmur
// finalizers): ~8 bytes per multiply, so checksumming a 1 GB checkpoint is cheap.
static inline uint64_t mix(uint64_t h, uint64_t w) {
    h ^= w * 0x9e3779b97f4a7c15ull;
    h = (h << 27 | h >> 37) * 0xff51afd7ed558ccdull;
    return h;
}

uint64_t tern_hash64(const void *data, size_t n, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = seed ^ 0xc4ceb9fe1a85ec53ull ^ (uint64_t)n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = mix(h, w);
    }
    uint64_t tail = 0;
    memcpy(&tail, p + i, n - i);
    h = mix(h, tail ^ 0x100);
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return h;
}

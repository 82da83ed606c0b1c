// Fast non-cryptographic 64-bit hash for cache keys and checkpoint checksums.
#ifndef TERN_CORE_HASH_H
#define TERN_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

// Hash of n bytes, continuing from `seed` (pass 0 to start; chain calls to hash
// several buffers).
uint64_t tern_hash64(const void *data, size_t n, uint64_t seed);

#endif

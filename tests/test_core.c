// Core layer: half-float conversions against the compiler's own _Float16,
// bounds-checked cursors, atomic writes, overflow-checked sizes.
#include <unistd.h>

#include "core/error.h"
#include "core/file.h"
#include "core/half.h"
#include "core/mem.h"
#include "test.h"

#ifdef __FLT16_MAX__ // the compiler's _Float16 is the oracle (gcc >= 12 on x86-64)
static void test_f16_exhaustive(void) {
    int bad_to_f32 = 0, bad_roundtrip = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        _Float16 hv;
        uint16_t hb = (uint16_t)h;
        memcpy(&hv, &hb, 2);
        float ref = (float)hv, got = tern_f16_to_f32(hb);
        if (memcmp(&ref, &got, 4) != 0 && !(ref != ref && got != got)) bad_to_f32++;
        if (got == got && tern_f32_to_f16(got) != hb) bad_roundtrip++;
    }
    CHECK_MSG(bad_to_f32 == 0, "%d half values convert differently from _Float16", bad_to_f32);
    CHECK_MSG(bad_roundtrip == 0, "%d half values do not round-trip", bad_roundtrip);
    // float -> half rounding vs the compiler on a sweep of floats incl. ties.
    int bad_round = 0;
    uint32_t x = 12345;
    for (int i = 0; i < 2000000; i++) {
        x = x * 1664525u + 1013904223u;
        float f = tern_bits_to_f32(x);
        if (f != f) continue;
        _Float16 r = (_Float16)f;
        uint16_t rb;
        memcpy(&rb, &r, 2);
        if (tern_f32_to_f16(f) != rb) bad_round++;
    }
    CHECK_MSG(bad_round == 0, "%d floats round to half differently from _Float16", bad_round);
}
#else
static void test_f16_exhaustive(void) { fprintf(stderr, "no _Float16 in this compiler: f16 oracle test skipped\n"); }
#endif

static void test_bf16(void) {
    CHECK(tern_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(tern_bf16_to_f32(0x3f80) == 1.0f);
    // 1 + 2^-8 is halfway between two bf16 values: ties to even (down).
    CHECK(tern_f32_to_bf16(1.00390625f) == 0x3f80);
    CHECK(tern_f32_to_bf16(1.01171875f) == 0x3f82); // 1+3*2^-8: tie, rounds up to even
    float nan = tern_bf16_to_f32(tern_f32_to_bf16(NAN));
    CHECK(nan != nan);
}

static void test_cursor(void) {
    uint8_t buf[6] = {1, 0, 0, 0, 2, 0};
    tern_cursor c;
    tern_cursor_init(&c, buf, sizeof buf, "mem.bin");
    uint32_t v = 0;
    CHECK_OK(tern_cur_u32(&c, &v, "first"));
    CHECK(v == 1);
    CHECK_FAILS(tern_cur_u32(&c, &v, "second"), "mem.bin: truncated");
    CHECK(c.pos == 4); // a failed read does not advance
    CHECK(tern_cur_view(&c, SIZE_MAX, "huge") == NULL);
    uint16_t s;
    CHECK_OK(tern_cur_u16(&c, &s, "third"));
    CHECK(s == 2);
}

static void test_sizes(void) {
    size_t out;
    CHECK_OK(tern_mul_size(1 << 20, 1 << 20, &out));
    CHECK(out == (size_t)1 << 40);
    CHECK_FAILS(tern_mul_size(SIZE_MAX / 2, 3, &out), "overflows");
    CHECK_FAILS(tern_mul3_size(1ull << 30, 1ull << 30, 1ull << 30, &out), "overflows");
}

static void test_atomic(void) {
    char path[] = "/tmp/tern_test_atomicXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    write(fd, "old", 3);
    close(fd);
    tern_atomic_file af;
    CHECK_OK(tern_atomic_open(&af, path));
    fputs("new contents", af.f);
    tern_atomic_abort(&af);
    char *data;
    size_t n;
    CHECK_OK(tern_read_file(path, &data, &n));
    CHECK(n == 3 && memcmp(data, "old", 3) == 0);
    free(data);
    CHECK(access(af.tmp_path, F_OK) != 0);
    CHECK_OK(tern_atomic_open(&af, path));
    fputs("new", af.f);
    CHECK_OK(tern_atomic_commit(&af));
    CHECK_OK(tern_read_file(path, &data, &n));
    CHECK(n == 3 && memcmp(data, "new", 3) == 0);
    free(data);
    unlink(path);
    CHECK_FAILS(tern_atomic_open(&af, "/nonexistent-dir/x"), "cannot create");
    CHECK_FAILS(tern_read_file("/nonexistent-file", &data, &n), "/nonexistent-file: cannot open");
}

int main(void) {
    test_f16_exhaustive();
    test_bf16();
    test_cursor();
    test_sizes();
    test_atomic();
    return test_report();
}

// UTF-8 decoding and Unicode class lookups.
#include "tok/unicode.h"

uint32_t tern_utf8_decode(const uint8_t *s, size_t n, int *len) {
    uint8_t b = s[0];
    *len = 1;
    if (b < 0x80) return b;
    int need;
    uint32_t cp, min;
    if (b >= 0xC2 && b <= 0xDF) need = 1, cp = b & 0x1Fu, min = 0x80;
    else if (b >= 0xE0 && b <= 0xEF) need = 2, cp = b & 0x0Fu, min = 0x800;
    else if (b >= 0xF0 && b <= 0xF4) need = 3, cp = b & 0x07u, min = 0x10000;
    else return TERN_UTF8_INVALID; // continuation byte, overlong lead C0/C1, or F5..FF
    if ((size_t)need >= n) return TERN_UTF8_INVALID;
    for (int i = 1; i <= need; i++) {
        if ((s[i] & 0xC0) != 0x80) return TERN_UTF8_INVALID;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not
    // valid UTF-8: each of their bytes then stands alone.
    if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return TERN_UTF8_INVALID;
    *len = need + 1;
    return cp;
}

int tern_utf8_len(const uint8_t *s, size_t n) {
    int len;
    tern_utf8_decode(s, n, &len);
    return len;
}

int tern_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int in_ranges(const uint32_t (*r)[2], int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid - 1;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

// ASCII answers inline: nearly all text the tokenizers see is ASCII.
int tern_uni_is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(tern_uni_letter, tern_uni_letter_n, cp);
}

int tern_uni_is_number(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(tern_uni_number, tern_uni_number_n, cp);
}

int tern_uni_is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return in_ranges(tern_uni_space, tern_uni_space_n, cp);
}

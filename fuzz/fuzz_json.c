// Fuzzes the JSON parser and walks the resulting DOM (every node, lookups).
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "io/json.h"

// Touches every node so ASan sees any bad pointer or length the parser left.
static size_t walk(const tern_json *v) {
    size_t n = 1;
    if (v->type == TERN_JSON_STRING && v->str[v->len] != 0) __builtin_trap(); // always NUL-terminated
    if (v->type == TERN_JSON_ARRAY)
        for (size_t i = 0; i < v->len; i++) n += walk(tern_json_at(v, i));
    if (v->type == TERN_JSON_OBJECT) {
        for (size_t i = 0; i < v->len; i++) n += walk(tern_json_key(v, i)) + walk(tern_json_value(v, i));
        const tern_json *k0 = tern_json_key(v, 0);
        if (k0 && strlen(k0->str) == k0->len && !tern_json_get(v, k0->str))
            __builtin_trap(); // a key that is present must be found
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tern_json_doc d;
    if (tern_json_parse(&d, data, size, "fuzz.json") == 0) {
        walk(d.root);
        tern_json_free(&d);
    }
    return 0;
}

// Strict RFC 8259 JSON parser into a read-only DOM.
//
// - Objects keep their key order; duplicate keys are kept, lookup returns the
//   last one (as Python's json module does).
// - Numbers are doubles; `is_int` marks integral values that fit int64, with the
//   exact value in `i` (so 9007199254740993 survives, which a double cannot hold).
// - Strings are decoded UTF-8 (\uXXXX escapes and surrogate pairs included),
//   NUL-terminated, with `len` bytes (a \u0000 escape may embed a NUL).
// - Invalid UTF-8, control characters in strings, lone surrogates, leading
//   zeros, trailing commas and nesting deeper than TERN_JSON_MAX_DEPTH are
//   errors of the form "NAME:LINE:COL: problem".
// - Every node and string of one document lives in one arena: tern_json_free
//   releases it all. Nodes stay valid until then.
#ifndef TERN_IO_JSON_H
#define TERN_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#define TERN_JSON_MAX_DEPTH 512

typedef enum {
    TERN_JSON_NULL = 0,
    TERN_JSON_FALSE,
    TERN_JSON_TRUE,
    TERN_JSON_NUMBER,
    TERN_JSON_STRING,
    TERN_JSON_ARRAY,
    TERN_JSON_OBJECT,
} tern_json_type;

typedef struct tern_json tern_json;
struct tern_json {
    tern_json_type type;
    int is_int;        // NUMBER: integral and within int64
    size_t len;        // STRING: bytes; ARRAY: elements; OBJECT: members
    double num;        // NUMBER
    int64_t i;         // NUMBER when is_int
    const char *str;   // STRING
    // ARRAY: len elements. OBJECT: 2*len nodes, key (a STRING) then value.
    const tern_json *items;
};

typedef struct tern_json_arena tern_json_arena;

typedef struct {
    const tern_json *root;
    tern_json_arena *arena;
} tern_json_doc;

// Parses `size` bytes (need not be NUL-terminated). `name` prefixes errors.
// On failure the doc is left empty (nothing to free, though freeing is safe).
int tern_json_parse(tern_json_doc *doc, const void *data, size_t size, const char *name);
// Reads and parses a whole file; errors name `path`.
int tern_json_load(tern_json_doc *doc, const char *path);
void tern_json_free(tern_json_doc *doc);

// Lookups. All accept NULL and wrong-typed nodes, returning NULL / the default,
// so chains like tern_json_get(tern_json_get(root, "model"), "type") are safe.
const tern_json *tern_json_get(const tern_json *obj, const char *key);
const tern_json *tern_json_at(const tern_json *arr, size_t i);       // array element
const tern_json *tern_json_key(const tern_json *obj, size_t i);      // i-th member's key
const tern_json *tern_json_value(const tern_json *obj, size_t i);    // i-th member's value
// String value or NULL when `v` is not a string.
const char *tern_json_str(const tern_json *v);
// 1 when `v` is a string equal to s.
int tern_json_str_eq(const tern_json *v, const char *s);
// Boolean value, or `def` when v is NULL/null; -1 when v is another type.
int tern_json_bool(const tern_json *v, int def);

const char *tern_json_type_name(tern_json_type t);

#endif

#!/bin/sh
# make install into a temporary prefix, then build examples/simple.c and
# examples/ppl.c against it the way a user would (pkg-config; simple with the
# shared library, ppl statically), and check they print what the tern CLI does
# on the real stories260K.
set -eu
: "${TERN_SRC:?}" "${TERN_BIN:?}" "${TERN_DATA:?}"
build=$(dirname "$TERN_BIN")
model=$TERN_DATA/models/stories260K/stories260K.bin
tok=$TERN_DATA/models/stories260K/tok512.bin
text=$TERN_DATA/data/tinystories/valid-sample.txt
for f in "$model" "$tok" "$text"; do
    [ -f "$f" ] || { echo "test data missing: $f (set TERN_DATA)" >&2; exit 1; }
done
command -v pkg-config >/dev/null || { echo "test_install: pkg-config is not installed" >&2; exit 1; }
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(dirname "$(find "$prefix" -name tern.pc | head -n 1)")
libdir=$(dirname "$(find "$prefix" -name 'libtern.so' | head -n 1)")
export PKG_CONFIG_PATH="$pc"
for f in bin/tern include/tern.h; do [ -e "$prefix/$f" ] || { echo "test_install: $f not installed" >&2; exit 1; }; done
[ -e "$libdir/libtern.a" ] || { echo "test_install: libtern.a not installed" >&2; exit 1; }
cc=${CC:-cc}
# shellcheck disable=SC2046
$cc -std=c11 -Wall -Werror "$TERN_SRC/examples/simple.c" $(pkg-config --cflags --libs tern) -o "$prefix/simple"
# shellcheck disable=SC2046
$cc -std=c11 -Wall -Werror "$TERN_SRC/examples/ppl.c" $(pkg-config --cflags tern) "$libdir/libtern.a" \
    $(pkg-config --static --libs-only-other --libs-only-l tern | sed 's/-ltern//') -o "$prefix/ppl"
LD_LIBRARY_PATH=$libdir "$prefix/simple" "$model" "$tok" "Once upon a time" 48 >"$prefix/a.txt"
"$prefix/bin/tern" generate --model "$model" --tokenizer "$tok" --prompt "Once upon a time" -n 48 --temp 0 \
    >"$prefix/b.txt" 2>/dev/null
cmp "$prefix/a.txt" "$prefix/b.txt" || { echo "test_install: simple differs from tern generate" >&2; exit 1; }
[ "$(wc -c <"$prefix/a.txt")" -gt 40 ] || { echo "test_install: simple printed too little" >&2; exit 1; }
"$prefix/ppl" "$model" "$tok" "$text" 256 8 >"$prefix/p.txt"
"$prefix/bin/tern" ppl --model "$model" --tokenizer "$tok" --file "$text" --ctx 256 --chunks 8 2>/dev/null |
    tail -n 1 | cut -d'(' -f1 | sed 's/ *$//' >"$prefix/q.txt"
cmp "$prefix/p.txt" "$prefix/q.txt" || { echo "test_install: ppl differs: $(cat "$prefix/p.txt") vs $(cat "$prefix/q.txt")" >&2; exit 1; }
# The shared library exports the public API and nothing else.
if nm -D --defined-only "$libdir/libtern.so" | awk '{print $3}' | grep -v '^tern_\(llm\|ctx\|gen\|chat\|quantize\|export\|error\|threads\|version\)' | grep -q .; then
    echo "test_install: libtern.so exports internal symbols" >&2
    exit 1
fi
[ "$("$prefix/bin/tern" --version)" = "tern $(sed -n 's/#define TERN_VERSION_STRING "\(.*\)"/\1/p' "$TERN_SRC/include/tern.h")" ]
echo "test_install: installed, built simple (shared) and ppl (static) with pkg-config; outputs match the CLI"

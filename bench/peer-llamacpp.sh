#!/usr/bin/env bash
# tern vs mainline llama.cpp on the same machine, in one run, engines alternated
# format by format (llama.cpp is a benchmark peer only, never a dependency).
#
# usage: bench/peer-llamacpp.sh [--model 768|smollm2|1b|2b] [--threads N] [--reps R] [--json FILE]
#                               [--formats LIST] [--cache DIR]
#
# Downloads the pinned llama-cpp-python sdist from PyPI, builds llama-bench and
# llama-quantize from the llama.cpp tree it vendors (-DGGML_NATIVE=ON, i.e.
# -march=native) into the cache directory (default ~/.cache/tern/peer), makes
# the models (a random LLaMA of the chosen shape written by bench/peer/make_model.py
# with SmolLM2's tokenizer, or SmolLM2-135M itself; llama.cpp's formats with
# llama-quantize, tern's t2/t1.6/bf16 by tern bench from the same source) and runs
# pp512 and tg128 on both; on llama.cpp's quantized files (TQ2_0, TQ1_0, Q4_0,
# Q4_1, Q5_0, Q5_1, Q8_0, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K) tern also runs the same
# file natively (rows with engine "tern" and that format). SmolLM2's F32 source
# is its Q4_1 file dequantized, so its other llama.cpp formats quantize twice.
# Writes a markdown table on stdout and, with --json,
# {"bandwidth_gbs", "rows": [{"model", "engine", "format", "test", "tokens_per_s", "sd"}]}.
# Needs python3 with numpy and gguf (pip install numpy gguf) for the random models.
set -euo pipefail
cd "$(dirname "$0")/.."

LCP_VERSION=0.3.36
model=768 threads=2 reps=3 json= cache=${TERN_PEER_CACHE:-$HOME/.cache/tern/peer}
formats="t2,t1.6,bf16,TQ2_0,TQ1_0,Q4_0,Q8_0,BF16"
die() { echo "peer-llamacpp: $*" >&2; exit 1; }
usage() { echo "peer-llamacpp: $* (usage: bench/peer-llamacpp.sh [--model 768|smollm2|1b|2b] [--threads N] [--reps R] [--json FILE] [--formats LIST] [--cache DIR])" >&2; exit 2; }
while (($#)); do
    case $1 in
        --model) model=${2:-}; shift 2 ;;
        --threads) threads=${2:-}; shift 2 ;;
        --reps) reps=${2:-}; shift 2 ;;
        --json) json=${2:-}; shift 2 ;;
        --formats) formats=${2:-}; shift 2 ;;
        --cache) cache=${2:-}; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) usage "unknown option $1" ;;
    esac
done
case $model in 768|smollm2|1b|2b) ;; *) usage "--model must be 768, smollm2, 1b or 2b, not '$model'" ;; esac
[[ $threads =~ ^[1-9][0-9]*$ ]] || usage "--threads must be a positive integer, not '$threads'"
[[ $reps =~ ^[1-9][0-9]*$ ]] || usage "--reps must be a positive integer, not '$reps'"
IFS=, read -r -a fmts <<<"$formats"
for f in "${fmts[@]}"; do
    case $f in t2|t1.6|bf16|f32|BF16|F32|TQ2_0|TQ1_0|Q4_0|Q4_1|Q5_0|Q5_1|Q8_0|Q3_K_M|Q4_K_M|Q5_K_M|Q6_K) ;;
        *) usage "unknown format '$f'" ;;
    esac
done

tern=build/tern
[[ -x $tern ]] || make >/dev/null || die "cannot build tern"
mkdir -p "$cache"

# ---- llama.cpp, built once from the pinned sdist ----
src=$cache/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp
bin=$cache/build/bin
if [[ ! -x $bin/llama-bench || ! -x $bin/llama-quantize ]]; then
    if [[ ! -d $src ]]; then
        echo "peer-llamacpp: downloading llama-cpp-python $LCP_VERSION (sdist) from PyPI" >&2
        python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LCP_VERSION" -d "$cache" ||
            die "cannot download llama-cpp-python $LCP_VERSION"
        tar -xzf "$cache/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$cache"
    fi
    echo "peer-llamacpp: building llama-bench and llama-quantize in $cache/build (several minutes)" >&2
    # AMX off: on a Xeon VM that reports AMX, llama.cpp's AMX path crashed (SIGSEGV
    # in llama-bench, SIGILL elsewhere) on every quantized model. With -march=native
    # the compiler's AMX macros switch that path on, so they are turned off here.
    noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    grep -qw amx_tile /proc/cpuinfo 2>/dev/null || noamx=
    cmake -S "$src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DCMAKE_C_FLAGS="$noamx" -DCMAKE_CXX_FLAGS="$noamx" \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >"$cache/cmake.log" 2>&1 ||
        die "llama.cpp configure failed (see $cache/cmake.log)"
    cmake --build "$cache/build" -j "$(nproc)" --target llama-bench llama-quantize >"$cache/build.log" 2>&1 ||
        die "llama.cpp build failed (see $cache/build.log)"
fi
"$bin/llama-bench" --help >/dev/null 2>&1 || die "$bin/llama-bench does not run (delete $cache/build to rebuild)"

# ---- models ----
if [[ $model == smollm2 ]]; then
    base=$cache/smollm2-f32.gguf
    if [[ ! -f $base ]]; then
        q41=$(scripts/get-model.sh)
        "$bin/llama-quantize" --allow-requantize "$q41" "$base" F32 >"$cache/quantize.log" 2>&1 ||
            die "llama-quantize F32 failed (see $cache/quantize.log)"
    fi
else
    base=$cache/random-$model.gguf
    if [[ ! -f $base ]]; then
        type=f32
        [[ $model == 768 ]] || type=bf16 # 1b/2b: written in BF16 directly
        echo "peer-llamacpp: writing the random $model model ($type)" >&2
        python3 bench/peer/make_model.py "$model" "$(scripts/get-model.sh)" "$base.tmp" --type "$type" &&
            mv "$base.tmp" "$base" || die "cannot write the random model (needs: pip install numpy gguf)"
    fi
fi
lc_file() { # llama.cpp's file of a format, made on first use
    local f=$1 out=$cache/$(basename "$base" .gguf)-$1.gguf
    if [[ ! -f $out ]]; then
        "$bin/llama-quantize" --allow-requantize "$base" "$out.tmp" "$f" >"$cache/quantize.log" 2>&1 ||
            { rm -f "$out.tmp"; return 1; }
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

# ---- runs, alternating engines format by format ----
rows=$(mktemp)
trap 'rm -f "$rows" "$rows.run"' EXIT
bw=
run_tern() {
    local out
    out=$("$tern" bench --model "$base" --compare "$1" -p 512 -n 128 -r "$reps" -t "$threads" --json 2>/dev/null) ||
        { echo "peer-llamacpp: tern bench $1 failed" >&2; return 0; }
    printf '%s' "$out" >"$rows.run"
    python3 - "$model" "$1" "$rows.run" >>"$rows" <<'EOF'
import json, sys
d = json.load(open(sys.argv[3]))
print(json.dumps({"bandwidth_gbs": d["bandwidth_gbs"]}))
for r in d["results"]:
    print(json.dumps({"model": sys.argv[1], "engine": "tern", "format": sys.argv[2], "test": r["test"],
                      "tokens_per_s": r["tokens_per_s"], "sd": r["sd"]}))
EOF
}
run_llama() {
    local file out
    if ! file=$(lc_file "$1"); then
        echo "peer-llamacpp: llama-quantize cannot make $1 from this model (see $cache/quantize.log)" >&2
        return 0
    fi
    out=$("$bin/llama-bench" -m "$file" -p 512 -n 128 -r "$reps" -t "$threads" -o json 2>/dev/null) ||
        { echo "peer-llamacpp: llama-bench $1 failed" >&2; return 0; }
    printf '%s' "$out" >"$rows.run"
    python3 - "$model" "$1" "$rows.run" >>"$rows" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[3])):
    test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
    print(json.dumps({"model": sys.argv[1], "engine": "llama.cpp", "format": sys.argv[2], "test": test,
                      "tokens_per_s": r["avg_ts"], "sd": r["stddev_ts"]}))
EOF
}
# tern running llama.cpp's own quantized file natively (engine tern).
run_tern_native() {
    local file out
    file=$(lc_file "$1") || return 0
    out=$("$tern" bench --model "$file" --compare native -p 512 -n 128 -r "$reps" -t "$threads" --json 2>/dev/null) ||
        { echo "peer-llamacpp: tern bench on $file failed" >&2; return 0; }
    printf '%s' "$out" >"$rows.run"
    python3 - "$model" "$1" "$rows.run" >>"$rows" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[3]))["results"]:
    print(json.dumps({"model": sys.argv[1], "engine": "tern", "format": sys.argv[2], "test": r["test"],
                      "tokens_per_s": r["tokens_per_s"], "sd": r["sd"]}))
EOF
}
for f in "${fmts[@]}"; do
    echo "peer-llamacpp: $f" >&2
    case $f in
        t2|t1.6|bf16|f32) run_tern "$f" ;;
        BF16|F32) run_llama "$f" ;;
        *) run_llama "$f"; run_tern_native "$f" ;;
    esac
done

python3 - "$rows" "$json" "$model" "$threads" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
bws = [l["bandwidth_gbs"] for l in lines if "bandwidth_gbs" in l]
rows = [l for l in lines if "engine" in l]
doc = {"bandwidth_gbs": max(bws) if bws else None, "threads": int(sys.argv[4]), "rows": rows}
if sys.argv[2]:
    with open(sys.argv[2], "w") as f:
        json.dump(doc, f, indent=1)
bw = doc["bandwidth_gbs"]
bw = f"{bw} GB/s" if bw is not None else "not measured (only tern t2, t1.6, bf16 or f32 runs measure it)"
print(f"model {sys.argv[3]}, {sys.argv[4]} threads, read-bandwidth probe {bw}\n")
print("| engine | format | pp512 tok/s | tg128 tok/s |\n|---|---|---|---|")
seen = []
for r in rows:
    if (r["engine"], r["format"]) not in seen:
        seen.append((r["engine"], r["format"]))
for e, f in seen:
    cell = {r["test"]: f"{r['tokens_per_s']:.1f} ± {r['sd']:.1f}" for r in rows if r["engine"] == e and r["format"] == f}
    print(f"| {e} | {f} | {cell.get('pp512', '–')} | {cell.get('tg128', '–')} |")
EOF

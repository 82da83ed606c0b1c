#!/usr/bin/env bash
# docs/SCALING.md's check of the all-reduce cost model: N ranks (default 8) on
# this one machine (--oversubscribe) train stories260K for a few steps of one
# sequence per rank, and the bytes rank 0 sent per step (the log's comm_bytes)
# are compared with the ring all-reduce's 2 (N-1)/N x S, S = 4 bytes x the
# trainable values (every parameter for tern train), computed here from the
# model's shapes, plus the step's 5 loss values (float64).
# Usage: scripts/dist-sim.sh [N]   (needs a build with MPI; TERN_DATA as for the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-8}
TERN_DATA=${TERN_DATA:-$(cd .. && pwd)/shared}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=$TERN_DATA/models/stories260K/stories260K.bin
mpirun -np "$N" --oversubscribe build/tern train --model "$model" --tokenizer "$TERN_DATA/models/stories260K/tok512.bin" \
    --data "$TERN_DATA/data/tinystories/valid-sample.txt" --steps 6 --batch "$N" --seq 64 --threads 1 --val-every 0 \
    --out "$work/sim.gguf" 2>"$work/err" || { cat "$work/err"; exit 1; }
# stories260K: dim 64, ffn 172, 5 layers, 8 heads (4 for K/V), vocab 512, shared classifier.
D=64 F=172 L=5 KV=32 V=512
S=$((V * D + L * (2 * D * D + 2 * D * KV + 3 * D * F + 2 * D) + D))
awk -v N="$N" -v S="$S" '
    # Bytes rank 0 sends summing n values of b bytes: the ring sends every chunk
    # but chunk 1 in the reduce-scatter and every chunk but chunk 2 in the
    # all-gather (chunk c = values [c n / N, (c + 1) n / N)).
    function ring(n, b,   c1, c2) {
        c1 = int(2 * n / N) - int(n / N); c2 = int(3 * n / N) - int(2 * n / N)
        return b * (2 * n - c1 - c2)
    }
    BEGIN { model = 2 * (N - 1) / N * 4 * S; exact = ring(S, 4) + ring(5, 8)
            printf "ranks %d, trainable values S = %d (%.3f MB of float32 gradients)\n", N, S, 4 * S / 1e6
            printf "ring model 2(N-1)/N x S: %.0f bytes per step; with chunk rounding and the losses: %d\n", model, exact }
    match($0, /"step": [0-9]+/) {
        step = substr($0, RSTART + 8, RLENGTH - 8) + 0
        match($0, /"comm_bytes": [0-9]+/); bytes = substr($0, RSTART + 14, RLENGTH - 14) + 0
        if (!/val_loss/) {
            d = bytes - prev
            printf "step %d: rank 0 sent %d bytes (%s)\n", step, d, d == exact ? "as predicted" : "DIFFERS"
            if (d != exact) bad = 1
        }
        prev = bytes
    }
    END { exit bad }' "$work/sim.gguf.log.jsonl"
grep -o '[0-9.]* s exchanging [0-9.]* MB' "$work/err" | sed 's/^/rank 0 in total: /'

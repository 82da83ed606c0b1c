#!/usr/bin/env bash
# Training throughput, tern vs PyTorch (Debian python3-torch on OpenBLAS), same
# model shape, batch, sequence length and thread count, measured back to back.
# usage: bench/train_speed.sh [smollm2|stories] [threads]
# Prints one JSON line per system and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-stories}
threads=${2:-2}
DATA=${TERN_DATA:-../shared}
TERN=${TERN:-build/tern}
steps=4
if [[ $which == smollm2 ]]; then
    model=$(scripts/get-model.sh); tok=(); batch=4; seq=256
    shape=(--dim 576 --layers 30 --heads 9 --kv-heads 3 --hidden 1536 --vocab 49152 --tied)
else
    model=$DATA/models/stories260K/stories260K.bin; tok=(--tokenizer "$DATA/models/stories260K/tok512.bin")
    batch=8; seq=256; steps=20
    shape=(--dim 64 --layers 5 --heads 8 --kv-heads 4 --hidden 172 --vocab 512 --tied)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# tern: steady-state tokens/s from the step log (the first step is a warm-up).
"$TERN" train --model "$model" "${tok[@]}" --data "$DATA/data/brown/brown.txt" --out "$work/out.gguf" \
    --steps $((steps + 1)) --batch $batch --seq $seq --val-every 0 --checkpoint-every 0 --threads "$threads" \
    --log "$work/log.jsonl" 2>/dev/null
tern_tps=$(python3 - "$work/log.jsonl" $((batch * seq)) <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
t = [r["elapsed"] for r in rows]
print(int(sys.argv[2]) * (len(t) - 1) / (t[-1] - t[0]))
PY
)
echo "{\"system\": \"tern\", \"model\": \"$which\", \"batch\": $batch, \"seq\": $seq, \"threads\": $threads, \"tokens_per_s\": $tern_tps}"

# PyTorch at its best: intra-op threads with OpenBLAS single-threaded, or OpenBLAS's own threads.
best=0
for blas_threads in 1 "$threads"; do
    tps=$(OPENBLAS_NUM_THREADS=$blas_threads /usr/bin/python3 bench/train_torch.py "${shape[@]}" --batch $batch \
          --seq $seq --steps $steps --threads "$threads" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])')
    echo "{\"system\": \"pytorch\", \"openblas_threads\": $blas_threads, \"tokens_per_s\": $tps}"
    best=$(python3 -c "print(max($best, $tps))")
done
python3 -c "print('{\"ratio_tern_over_pytorch\": %.3f}' % ($tern_tps / $best))"

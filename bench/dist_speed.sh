#!/usr/bin/env bash
# Data-parallel training throughput (docs/PERFORMANCE.md, "Data-parallel
# training"): SmolLM2-135M, global batch B x 256 (TERN_BATCH, default 4), `tern train` (FP32, CE) and
# optionally `tern quantize --method dlt` (QAT with the FP teacher's logit KD,
# the CPU recipe's training step, RTN init so no GPTQ runs), as
#   1 process x 2 threads   vs   mpirun -np 2, 1 thread per rank.
# Steady-state tokens/s between the first logged step and the last (the
# first step carries the warm-up), and rank 0's share of time in the exchange.
# Usage: bench/dist_speed.sh [steps] [train|quantize ...]   (default: 6 train)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-6}
batch=${TERN_BATCH:-4}
shift || true
kinds=("${@:-train}")
M=${TERN_MODEL:-/root/.cache/tern/SmolLM2-135M-Instruct.Q4_1.gguf}
TERN_DATA=${TERN_DATA:-$(cd .. && pwd)/shared}
B=$TERN_DATA/data/brown/brown.txt
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# tokens/s from step 1 to the last step; the last comm_s over elapsed (after step 1).
rate() {
    awk 'match($0, /"tokens": [0-9]+/) { tok = substr($0, RSTART + 10, RLENGTH - 10) + 0
         match($0, /"elapsed": [0-9.]+/); el = substr($0, RSTART + 11, RLENGTH - 11) + 0
         comm = 0; if (match($0, /"comm_s": [0-9.]+/)) comm = substr($0, RSTART + 10, RLENGTH - 10) + 0
         if (n++ == 0) { t0 = tok; e0 = el; c0 = comm } t1 = tok; e1 = el; c1 = comm }
         END { printf "%.1f tok/s, exchange %.1f%% of the time", (t1 - t0) / (e1 - e0), 100 * (c1 - c0) / (e1 - e0) }' "$1"
}
echo "dist_speed: $(date -u '+%F %H:%M') UTC, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $steps steps of $batch x 256"
for kind in "${kinds[@]}"; do
    if [ "$kind" = train ]; then
        args=(train --model "$M" --data "$B" --steps "$steps" --batch "$batch" --seq 256 --val-every 0 --checkpoint-every 0)
    else
        args=(quantize --model "$M" --calib "$B" --method dlt --init rtn --kd-weight 1 --steps "$steps" --batch "$batch"
              --seq 256 --val-every 0 --checkpoint-every 0)
    fi
    build/tern "${args[@]}" --threads 2 --out "$work/one.gguf" --log "$work/one.log" 2>"$work/one.err" ||
        { tail -n 3 "$work/one.err"; exit 1; }
    echo "$kind, 1 process x 2 threads: $(rate "$work/one.log")"
    mpirun -np 2 --oversubscribe build/tern "${args[@]}" --threads 1 --out "$work/two.gguf" --log "$work/two.log" \
        2>"$work/two.err" || { tail -n 3 "$work/two.err"; exit 1; }
    echo "$kind, 2 ranks x 1 thread:   $(rate "$work/two.log")"
    grep -ho 'final loss [0-9.]*' "$work/one.err" "$work/two.err" | tr '\n' ' '
    echo
done

#!/usr/bin/env bash
# Data-parallel training over MPI (docs/SCALING.md) on the real stories260K,
# 60 steps of 4 x 128 tokens (4 x 32 under ASan), one thread per rank:
#  - 2 ranks vs 1 process: the same final loss, validation loss and perplexity
#    up to float summation order;
#  - two 2-rank runs: byte-identical outputs and checkpoints;
#  - one rank SIGKILLed mid-run: mpirun ends the job within seconds, naming
#    the rank; the last checkpoint resumes (2 ranks) to the uninterrupted
#    run's output byte for byte, and (1 process) to the same loss up to
#    summation order: any rank count resumes;
#  - --check-sync catches ranks whose parameters differ (a test hook moves one);
#  - bad input (a batch the ranks do not divide, more ranks than sequences, a
#    checkpoint of another model): one line from rank 0, non-zero exit, no hang;
#    a file missing on one rank only: its message, every rank exits, no hang.
# `test_dist.sh quantize` (ctest test_dist_quantize, slow) instead checks tern
# quantize (GPTQ + end-to-end QAT, block-wise + E2E-QP) the same way.
# Skipped (exit 77) when the build has no MPI. Runs as root in CI: Open MPI
# then needs the two OMPI_ALLOW_RUN_AS_ROOT variables, set here.
set -euo pipefail
: "${TERN_BIN:?}" "${TERN_DATA:?}" "${TERN_SRC:?}"
if [ "${TERN_MPI:-OFF}" != "ON" ]; then
    echo "test_dist: SKIPPED: tern was built without MPI (install libopenmpi-dev openmpi-bin and re-run cmake)"
    exit 77
fi
command -v mpirun >/dev/null || { echo "test_dist: mpirun not found (install openmpi-bin)" >&2; exit 1; }
model=$TERN_DATA/models/stories260K/stories260K.bin
tok=$TERN_DATA/models/stories260K/tok512.bin
text=$TERN_DATA/data/tinystories/valid-sample.txt
for f in "$model" "$tok" "$text"; do
    [ -f "$f" ] || { echo "test data missing: $f (set TERN_DATA)" >&2; exit 1; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
# Under `make asan`, Open MPI keeps what MPI_Init allocated past MPI_Finalize,
# and LeakSanitizer cannot tell those allocations from tern's with its fast
# unwinder (Debian's Open MPI has no frame pointers: the stacks stop at an
# <unknown module>). So one short 2-rank run below checks leaks with whole
# stacks (the slow unwinder, ~50x slower) and tests/lsan-openmpi.supp, which
# suppresses only stacks through Open MPI's libraries and plugins; the other
# mpirun runs keep every ASan check but leaks. One-process runs check all.
mpi_env=()
[ "${TERN_ASAN:-OFF}" = ON ] && mpi_env=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TERN_CACHE=$work/cache
cd "$work"
fail() { echo "test_dist: FAIL: $*" >&2; exit 1; }
mpi() { local n=$1; shift; "${mpi_env[@]}" mpirun -np "$n" --oversubscribe "$@"; }
# Under ASan (-O1, no OpenBLAS) a step is ~20x slower: shorter sequences and
# perplexity on fewer chunks keep the test within minutes.
seq=128 chunks=1000000
[ "${TERN_ASAN:-OFF}" = ON ] && seq=32 chunks=40
args=(train --model "$model" --tokenizer "$tok" --data "$text" --steps 60 --batch 4 --seq $seq --lr 1e-3 --threads 1
      --val-every 30 --checkpoint-every 10 --keep-checkpoint)
# The last value of a JSONL log's field ("loss", "val_loss").
last() { grep -o "\"$2\": [-0-9.e]*" "$1" | tail -n 1 | awk '{print $2}'; }
# A field of step k's record in a JSONL log.
at() { grep "^{\"step\": $2," "$1" | grep -o "\"$3\": [-0-9.e]*" | head -n 1 | awk '{print $2}'; }
# |a - b| <= tol * |a|
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a; exit !(d <= t * m) }'; }
ppl() { "$TERN_BIN" ppl --model "$1" --tokenizer "$tok" --file "$text" --ctx 128 --chunks $chunks --threads 1 --json 2>/dev/null |
    grep -o '"ppl": [0-9.]*' | awk '{print $2}'; }

part=${1:-train}
if [ "$part" = train ]; then
if [ "${TERN_ASAN:-OFF}" = ON ]; then
    short=() prev=
    for a in "${args[@]}"; do
        [ "$prev" = --steps ] && short+=(3) || short+=("$a")
        prev=$a
    done
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0 \
    LSAN_OPTIONS=${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$TERN_SRC/tests/lsan-openmpi.supp \
    OMPI_MCA_mca_base_component_disable_dlclose=1 TERN_DIST_ALL_STDERR=1 \
        mpirun -np 2 --oversubscribe "$TERN_BIN" "${short[@]}" --out leak.gguf >leak.out 2>&1 ||
        { grep -v '^ *[0-9]* *[0-9]* [/l]' leak.out | tail -n 40; fail "2 ranks under ASan (leak check)"; }
    echo "test_dist: 2 ranks, 3 steps under ASan: no leak outside Open MPI"
fi
"$TERN_BIN" "${args[@]}" --out one.gguf 2>one.err || { cat one.err; fail "1 process"; }
mpi 2 "$TERN_BIN" "${args[@]}" --out a.gguf --check-sync 10 2>a.err || { cat a.err; fail "2 ranks"; }
mpi 2 "$TERN_BIN" "${args[@]}" --out b.gguf 2>b.err || { cat b.err; fail "2 ranks (again)"; }

# 1. 2 ranks vs 1 process, and the run did train (the loss moved).
l1=$(last one.gguf.log.jsonl loss) l2=$(last a.gguf.log.jsonl loss)
v1=$(last one.gguf.log.jsonl val_loss) v2=$(last a.gguf.log.jsonl val_loss)
p1=$(ppl one.gguf) p2=$(ppl a.gguf) p0=$(ppl "$model")
echo "test_dist: final loss 1 process $l1, 2 ranks $l2; val $v1 / $v2; ppl $p1 / $p2 (before training $p0)"
close "$l1" "$l2" 1e-4 || fail "final loss differs beyond summation order: $l1 vs $l2"
close "$v1" "$v2" 1e-4 || fail "validation loss differs beyond summation order: $v1 vs $v2"
close "$p1" "$p2" 1e-4 || fail "perplexity differs beyond summation order: $p1 vs $p2"
close "$p0" "$p1" 1e-3 && fail "training did not change the perplexity ($p0)"
grep -q '"ranks": 2, "comm_s": ' a.gguf.log.jsonl || fail "the 2-rank log has no communication fields"
grep -q '"ranks"' one.gguf.log.jsonl && fail "the 1-process log has communication fields"

# 2. Two 2-rank runs: the same bits.
cmp a.gguf b.gguf || fail "two 2-rank runs differ"
cmp a.gguf.ckpt b.gguf.ckpt || fail "two 2-rank runs' checkpoints differ"

# 3. Rank 1 SIGKILLed after step 25 (checkpoints every 10 steps).
start=$(date +%s)
(set +e; mpi 2 "$TERN_BIN" "${args[@]}" --out k.gguf >k.out 2>&1; echo $? >k.rc) &
job=$!
victim=
for _ in $(seq 600); do
    if [ -f k.gguf.log.jsonl ] && [ "$(wc -l <k.gguf.log.jsonl)" -ge 25 ]; then
        for p in /proc/[0-9]*; do
            grep -qz '^OMPI_COMM_WORLD_RANK=1$' "$p/environ" 2>/dev/null && grep -qz 'k.gguf' "$p/cmdline" 2>/dev/null &&
                victim=${p#/proc/}
        done
        break
    fi
    sleep 0.05
done
[ -n "$victim" ] || { wait $job; fail "rank 1 of the run to kill was not found (the run finished first?)"; }
killed_at=$(date +%s.%N)
kill -9 "$victim"
wait $job
took=$(awk -v a="$killed_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
steps=$(wc -l <k.gguf.log.jsonl)
echo "test_dist: rank 1 killed at step $steps; mpirun exited $(cat k.rc) after $took s"
[ "$(cat k.rc)" != 0 ] || fail "the job exited 0 after a rank was killed"
awk -v t="$took" 'BEGIN { exit !(t < 15) }' || fail "the job took $took s to end after the kill"
grep -q 'rank 1.*signal 9' k.out || { cat k.out; fail "mpirun did not name the killed rank"; }
[ -f k.gguf ] && fail "the killed run wrote an output"
cp k.gguf.ckpt k1.ckpt
mpi 2 "$TERN_BIN" "${args[@]}" --out k.gguf --resume 2>kr.err || { cat kr.err; fail "resume with 2 ranks"; }
cmp k.gguf a.gguf || fail "resumed (2 ranks) differs from the uninterrupted run"
"$TERN_BIN" "${args[@]}" --out k1.gguf --checkpoint k1.ckpt --log k1.log --resume 2>k1.err ||
    { cat k1.err; fail "resume with 1 process"; }
grep -q 'resuming a checkpoint of 2 ranks with 1' k1.err || fail "resume did not say the rank count changed"
close "$(last a.gguf.log.jsonl loss)" "$(last k1.log loss)" 1e-4 || fail "resumed (1 process) loss differs"
echo "test_dist: resumed with 2 ranks: identical; with 1 process: loss $(last k1.log loss)"

# 4. --check-sync fails when the ranks' parameters differ.
if TERN_TEST_DESYNC_STEP=20 mpi 2 -x TERN_TEST_DESYNC_STEP "$TERN_BIN" "${args[@]}" --out d.gguf --check-sync 10 \
    >d.out 2>&1; then fail "--check-sync missed differing parameters"; fi
[ "$(grep -c '^tern: ' d.out)" = 1 ] && grep -q 'checksum at step 20 differs between rank 0 .* and rank 1' d.out ||
    { cat d.out; fail "--check-sync: not one line naming the step and the rank"; }

fi

if [ "$part" = quantize ]; then
# 5. tern quantize (GPTQ init, then QAT: end to end, and block-wise + E2E-QP):
# 2 ranks twice identical; 2 ranks vs 1 process: the first 5 steps' losses
# within summation order, the final perplexity within 3 %. QAT amplifies the
# last-bit differences: once one latent weight crosses a rounding threshold
# on one side only, its ternary code flips and the runs part (measured: equal
# to 1e-6 for 6 steps, then 1e-3 apart by step 12; 0.7 % in perplexity
# after 40 steps of 4 x 16).
q=(quantize --model "$model" --tokenizer "$tok" --calib "$text" --method dlt --steps 40 --batch 4 --seq $((seq / 2)) --threads 1
   --kd-weight 1 --calib-seqs 32)
for mode in e2e blockwise; do
    extra=()
    [ $mode = blockwise ] && extra=(--mode blockwise --qp-steps 10)
    "$TERN_BIN" "${q[@]}" "${extra[@]}" --out q1.tern 2>q.err || { cat q.err; fail "quantize $mode, 1 process"; }
    for r in a b; do
        mpi 2 "$TERN_BIN" "${q[@]}" "${extra[@]}" --out q2$r.tern --check-sync 5 2>q.err ||
            { cat q.err; fail "quantize $mode, 2 ranks"; }
    done
    cmp q2a.tern q2b.tern || fail "quantize $mode: two 2-rank runs differ"
    field=loss
    [ $mode = blockwise ] && field=mse
    for k in 1 2 3 4 5; do
        a=$(at q1.tern.log.jsonl $k $field) b=$(at q2a.tern.log.jsonl $k $field)
        [ -n "$a" ] && [ -n "$b" ] || fail "quantize $mode: no $field at step $k in the logs"
        close "$a" "$b" 1e-5 || fail "quantize $mode: step $k $field differs beyond summation order: $a vs $b"
    done
    p1=$(ppl q1.tern) p2=$(ppl q2a.tern)
    echo "test_dist: quantize $mode: steps 1-5 $field equal within 1e-5; final ppl 1 process $p1, 2 ranks $p2"
    close "$p1" "$p2" 3e-2 || fail "quantize $mode: perplexity differs by more than 3 %: $p1 vs $p2"
done

echo "test_dist quantize: passed"
exit 0
fi

# 6. Bad input: one line from rank 0, every rank non-zero, no hang (timeout).
bad() { # ranks, expected message, arguments...
    local n=$1 want=$2
    shift 2
    if timeout 60 "${mpi_env[@]}" mpirun -np "$n" --oversubscribe "$TERN_BIN" "$@" >bad.out 2>&1; then
        fail "accepted: $*"
    fi
    [ "$(grep -c '^tern' bad.out)" = 1 ] && grep -q "$want" bad.out || { cat bad.out; fail "bad input ($want)"; }
    grep -q 'Exit code: *[1-9]' bad.out || grep -q 'non-zero' bad.out || { cat bad.out; fail "exit codes ($want)"; }
}
bad 3 "does not split evenly over 3 ranks: give a multiple of 3 (--batch 3 or 6)" "${args[@]}" --out x.gguf
bad 8 "8 ranks but a global batch of 4 sequences" "${args[@]}" --out x.gguf
bad 2 "checkpoint belongs to another model" train --model "$TERN_SRC/tests/fixtures/tiny_hf" --data "$text" \
    --seq 16 --batch 2 --steps 2 --threads 1 --checkpoint a.gguf.ckpt --resume --out x.gguf
# A failure only rank 1 meets (MPMD launch: its own arguments). In setup the
# ranks agree on it: rank 0 says it. Before training (loading the model) the
# others are already waiting in a collective: rank 1 says it and aborts the
# job after TERN_DIST_EXIT_WAIT seconds.
one=(train --model "$model" --tokenizer "$tok" --steps 2 --batch 2 --seq 32 --threads 1 --out x.gguf)
if timeout 60 "${mpi_env[@]}" mpirun -np 1 "$TERN_BIN" "${one[@]}" --data "$text" : -np 1 "$TERN_BIN" "${one[@]}" \
    --data "$work/missing.txt" >bad.out 2>&1; then fail "accepted a data file missing on rank 1"; fi
grep -q '^tern: rank 1: .*missing.txt: cannot open' bad.out || { cat bad.out; fail "rank 1's missing data"; }
[ "$(grep -c '^tern' bad.out)" = 1 ] || { cat bad.out; fail "rank 1's missing data: not one line"; }
two=(train --tokenizer "$tok" --data "$text" --steps 2 --batch 2 --seq 32 --threads 1 --out x.gguf)
if TERN_DIST_EXIT_WAIT=2 timeout 60 "${mpi_env[@]}" mpirun -x TERN_DIST_EXIT_WAIT -np 1 "$TERN_BIN" "${two[@]}" \
    --model "$model" : -np 1 "$TERN_BIN" "${two[@]}" --model "$work/missing.bin" >bad.out 2>&1; then
    fail "accepted a model missing on rank 1"
fi
grep -q '^tern: rank 1: .*missing.bin' bad.out || { cat bad.out; fail "rank 1's missing model"; }
echo "test_dist: passed"

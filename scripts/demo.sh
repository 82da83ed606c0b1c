#!/usr/bin/env bash
# `make demo`: the main job end to end on the default model (SmolLM2-135M):
# fetch it, describe it, generate a completion, measure perplexity on a slice
# of WikiText-2.
set -euo pipefail
cd "$(dirname "$0")/.."
TERN=${TERN:-build/tern}
DATA=${TERN_DATA:-../shared}

model=$(scripts/get-model.sh)
echo "== tern info"
"$TERN" info --model "$model" | sed -n '1,7p'
echo
echo "== tern generate (greedy)"
"$TERN" generate --model "$model" --prompt "The capital of France is" --n-predict 32 --temp 0
echo
echo "== tern ppl (WikiText-2 test, first 4 chunks of 512 tokens)"
"$TERN" ppl --model "$model" --file "$DATA/data/wikitext-2-raw/wiki.test.raw" --ctx 512 --chunks 4

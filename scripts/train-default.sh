#!/bin/sh
# train-default.sh — reproduce Aisle's default shopping model from scratch,
# resumably: run it again after an interruption (or with a session limit)
# and it continues from the last checkpoint, bit for bit.
#
#   scripts/train-default.sh [WORK_DIR]        (default var/default-model)
#
# Environment: DATA (shared data sets, default ../shared/data), SESSION_SECONDS
# (stop and checkpoint after this long; default: run to the end), AISLE (the
# program, default build/aisle, built by make), MPI_NP (run under
# `mpirun -np MPI_NP`, default: one process), TRAIN_ARGS (extra `aisle train`
# options that override the config, e.g. "--tokens 4000000" for a shorter run).
#
# Steps (each skipped when its output exists):
#   1. the demo store in WORK/store.db (aisle ingest of data/demo-store)
#   2. JSON Lines text of the shared data sets (scripts/corpus-text.py)
#   3. an 8192-token byte-level BPE on the store and the text
#   4. the corpus: per-source shards, 3% held out per source (seed 1)
#   5. aisle train --config scripts/default-model.conf (resumed when
#      WORK/run/ckpt.bin exists)
#   6. when pretraining has finished: models/aisle-shopping-small-base.gguf
#      (Q8_0), the run's log and plot; then SFT data (aisle sft build) and
#      instruction tuning -> models/aisle-shopping-small.gguf (Q8_0), the
#      assistant's default model.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$ROOT/var/default-model}
DATA=${DATA:-$ROOT/../shared/data}
AISLE=${AISLE:-$ROOT/build/aisle}
NP=${MPI_NP:-1}
mkdir -p "$WORK"
[ -x "$AISLE" ] || make -C "$ROOT" "$AISLE"

if [ ! -f "$WORK/store.db" ]; then
    D=$ROOT/data/demo-store
    "$AISLE" ingest --db "$WORK/store.db.tmp" --products "$D/products.jsonl.gz" --reviews "$D/reviews.jsonl.gz" \
        --qa "$D/qa.jsonl.gz"
    mv "$WORK/store.db.tmp" "$WORK/store.db"
fi
if [ ! -f "$WORK/text/text.jsonl.gz" ]; then
    python3 "$ROOT/scripts/corpus-text.py" --data "$DATA" "$WORK/text"
fi
if [ ! -f "$WORK/tokenizer.gguf" ]; then
    "$AISLE" tokenizer train --vocab 8192 --db "$WORK/store.db" --field text --out "$WORK/tokenizer.gguf" \
        "$WORK/text/catalog.jsonl.gz" "$WORK/text/reviews.jsonl.gz" "$WORK/text/qa.jsonl.gz" \
        "$WORK/text/text.jsonl.gz"
fi
if [ ! -f "$WORK/corpus/manifest.json" ]; then
    "$AISLE" corpus build --db "$WORK/store.db" --tokenizer "$WORK/tokenizer.gguf" --out "$WORK/corpus" \
        --val-frac 0.03 --seed 1 \
        --text catalog="$WORK/text/catalog.jsonl.gz" --text reviews="$WORK/text/reviews.jsonl.gz" \
        --text qa="$WORK/text/qa.jsonl.gz" --text text="$WORK/text/text.jsonl.gz"
fi

RUNNER=""
[ "$NP" -gt 1 ] && RUNNER="mpirun --allow-run-as-root --oversubscribe -np $NP"
LIMIT=""
[ -n "${SESSION_SECONDS:-}" ] && LIMIT="--time-limit $SESSION_SECONDS"
if [ -f "$WORK/run/ckpt.bin" ]; then
    # shellcheck disable=SC2086
    $RUNNER "$AISLE" train --resume "$WORK/run/ckpt.bin" --corpus "$WORK/corpus" $LIMIT ${TRAIN_ARGS:-}
else
    # shellcheck disable=SC2086
    $RUNNER "$AISLE" train --config "$ROOT/scripts/default-model.conf" --corpus "$WORK/corpus" --out "$WORK/run" $LIMIT \
        ${TRAIN_ARGS:-}
fi

if [ ! -f "$WORK/run/model-q8_0.gguf" ]; then
    echo "training stopped before the end: run scripts/train-default.sh again to continue"
    exit 0
fi
mkdir -p "$ROOT/models"
cp "$WORK/run/model-q8_0.gguf" "$ROOT/models/aisle-shopping-small-base.gguf"
cp "$WORK/run/log.csv" "$ROOT/models/aisle-shopping-small.log.csv"
[ -f "$WORK/run/loss.png" ] && cp "$WORK/run/loss.png" "$ROOT/models/aisle-shopping-small.loss.png"

# 6. Instruction tuning in the assistant's prompt format (docs/PROMPT.md): the
#    shared data sets plus the 'live' price/stock/delivery examples made from
#    the repo's demo store, SFT_STEPS (default 800) steps of 4 x 1024 tokens
#    from the pretrained F32 weights (the context grows from 512 to 1024 here),
#    checkpointed every 100 steps and resumed like pretraining.
if [ ! -f "$WORK/sft/train.sft" ]; then
    "$AISLE" sft build --tokenizer "$WORK/tokenizer.gguf" --out "$WORK/sft" --data-dir "$DATA" --seed 1
fi
if [ ! -f "$WORK/sft-live/train.sft" ]; then
    "$AISLE" sft build --tokenizer "$WORK/tokenizer.gguf" --out "$WORK/sft-live" --data-dir "$ROOT/data" \
        --datasets live --seed 1
fi
if [ ! -f "$WORK/sft-run/model-q8_0.gguf" ]; then
    if [ -f "$WORK/sft-run/ckpt.bin" ]; then
        # shellcheck disable=SC2086
        "$AISLE" train --resume "$WORK/sft-run/ckpt.bin" $LIMIT
    else
        STEPS=${SFT_STEPS:-800}
        # shellcheck disable=SC2086
        "$AISLE" train --init "$WORK/run/model.gguf" --sft "$WORK/sft/train.sft@0.95" \
            --sft "$WORK/sft-live/train.sft@0.05" --out "$WORK/sft-run" --ctx 1024 --batch 4 --steps "$STEPS" \
            --lr 5e-4 --min-lr 5e-5 --warmup $((STEPS / 20)) --eval-every 0 --ckpt-every 100 --log-every 5 \
            --name aisle-shopping-small --seed 1 $LIMIT
    fi
    if [ ! -f "$WORK/sft-run/model-q8_0.gguf" ]; then
        echo "instruction tuning stopped before the end: run scripts/train-default.sh again to continue"
        exit 0
    fi
fi
cp "$WORK/sft-run/model-q8_0.gguf" "$ROOT/models/aisle-shopping-small.gguf"
cp "$WORK/sft-run/log.csv" "$ROOT/models/aisle-shopping-small.sft.log.csv"
echo "models/aisle-shopping-small.gguf: done (see docs/MODEL.md for the model card)"

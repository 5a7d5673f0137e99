#!/bin/sh
# size-sweep.sh — which model size gives the best validation loss for the
# default model's two-hour budget: one budget-length pretraining run per
# candidate shape on the default model's corpus, everything but the shape and
# the token budget from scripts/default-model.conf, then a table of each run's
# final validation loss per source (WORK/sweep/NAME/log.csv).
# Resumable like train-default.sh: run it again after an interruption (or
# with SESSION_SECONDS) and each unfinished run continues from its checkpoint.
#
#   scripts/size-sweep.sh [WORK_DIR]          (default var/default-model)
#   scripts/size-sweep.sh --table [WORK_DIR]  the table only (runs may be unfinished:
#                                             their last validation row)
#
# With gnuplot the table comes with WORK_DIR/sweep/sweep.png: each run's mean
# validation loss against tokens seen and against the share of its two-hour
# budget (= the same wall time on a quiet machine).
#
# WORK_DIR must hold the corpus of scripts/train-default.sh (steps 1-4).
# Environment: SWEEP (candidates, default "dim128 dim192 dim256"), SESSION_SECONDS
# (stop and checkpoint each run after this long), AISLE (default build/aisle).
#
# Candidates, each budgeted at two hours of its own quiet-machine speed on the
# 2-core reference machine (docs/TRAIN.md "Choosing the size"):
#   dim128  C 128, 6 layers, 2 heads, FFN 352   ~3,450 tok/s -> 24.8M tokens
#   dim192  C 192, 6 layers, 3 heads, FFN 512   ~2,350 tok/s -> 16.9M tokens
#           (the winner: scripts/default-model.conf's shape since v2)
#   dim256  C 256, 6 layers, 4 heads, FFN 704   ~1,530 tok/s -> 11.0M tokens (v1)
#   dim384  C 384, 8 layers, 6 heads, FFN 1024  ~920 tok/s   ->  6.6M tokens
# (not in the default list: larger than dim256, which lost to dim192)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TABLE_ONLY=0
[ "${1:-}" = "--table" ] && { TABLE_ONLY=1; shift; }
WORK=${1:-$ROOT/var/default-model}
AISLE=${AISLE:-$ROOT/build/aisle}
[ -f "$WORK/corpus/manifest.json" ] || { echo "size-sweep: no corpus in $WORK (run scripts/train-default.sh first)" >&2; exit 1; }
[ "$TABLE_ONLY" = 1 ] || [ -x "$AISLE" ] || make -C "$ROOT" "$AISLE"
LIMIT=""
[ -n "${SESSION_SECONDS:-}" ] && LIMIT="--time-limit $SESSION_SECONDS"

shape() {
    case $1 in
    dim128) echo "--dim 128 --layers 6 --heads 2 --kv-heads 2 --ffn 352 --tokens 24800000" ;;
    dim192) echo "--dim 192 --layers 6 --heads 3 --kv-heads 3 --ffn 512 --tokens 16900000" ;;
    dim256) echo "--dim 256 --layers 6 --heads 4 --kv-heads 4 --ffn 704 --tokens 11000000" ;;
    dim384) echo "--dim 384 --layers 8 --heads 6 --kv-heads 6 --ffn 1024 --tokens 6600000" ;;
    *) echo "size-sweep: unknown candidate '$1' (dim128, dim192, dim256, dim384)" >&2; exit 1 ;;
    esac
}

for c in ${SWEEP:-dim128 dim192 dim256}; do
    [ "$TABLE_ONLY" = 1 ] && break
    out=$WORK/sweep/$c
    args=$(shape "$c")
    [ -f "$out/model.gguf" ] && continue
    if [ -f "$out/ckpt.bin" ]; then
        # shellcheck disable=SC2086
        "$AISLE" train --resume "$out/ckpt.bin" --corpus "$WORK/corpus" $LIMIT
    else
        # shellcheck disable=SC2086
        "$AISLE" train --config "$ROOT/scripts/default-model.conf" --corpus "$WORK/corpus" --out "$out" \
            --name "aisle-sweep-$c" $args $LIMIT
    fi
    if [ ! -f "$out/model.gguf" ]; then
        echo "size-sweep: $c stopped before the end: run scripts/size-sweep.sh again to continue"
        exit 0
    fi
done

# The table: the last row of each log with validation columns (nats/token).
printf '%-8s %10s %8s %8s %8s %8s %8s\n' run tokens catalog reviews qa text mean
for c in ${SWEEP:-dim128 dim192 dim256}; do
    log=$WORK/sweep/$c/log.csv
    [ -f "$log" ] || continue
    awk -F, -v name="$c" 'NR > 1 && $8 != "" { last = $0 }
        END { if (last == "") exit; split(last, f, ",");
              printf "%-8s %10d %8.3f %8.3f %8.3f %8.3f %8.3f\n", name, f[2], f[8], f[9], f[10], f[11],
                     (f[8] + f[9] + f[10] + f[11]) / 4 }' "$log"
done

# The plot: mean validation loss per run, against tokens and against the
# share of each run's own budget (its last row = 1).
command -v gnuplot >/dev/null 2>&1 || exit 0
mkdir -p "$WORK/sweep"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
series=""
for c in ${SWEEP:-dim128 dim192 dim256}; do
    log=$WORK/sweep/$c/log.csv
    [ -f "$log" ] || continue
    budget=$(shape "$c" | sed 's/.*--tokens //')
    awk -F, -v b="$budget" 'NR > 1 && $8 != "" { printf "%d %.5f %.4f\n", $2, ($8 + $9 + $10 + $11) / 4, $2 / b }' \
        "$log" > "$tmp/$c.dat"
    [ -s "$tmp/$c.dat" ] && series="$series $c"
done
[ -n "$series" ] || exit 0
{
    echo "set terminal pngcairo size 1200,500 noenhanced"
    echo "set output '$tmp/sweep.png'"
    echo "set multiplot layout 1,2 title 'size sweep: mean validation loss over catalog, reviews, qa, text (nats/token)'"
    echo "set grid; set key top right; set yrange [*:5]"
    echo "set xlabel 'tokens seen (millions)'"
    printf "plot"
    sep=""
    for c in $series; do printf "%s '%s' using (\$1/1e6):2 with linespoints pt 7 ps 0.5 title '%s'" "$sep" "$tmp/$c.dat" "$c"; sep=","; done
    echo
    echo "set xlabel 'share of the run''s two-hour budget (= quiet wall time)'"
    printf "plot"
    sep=""
    for c in $series; do printf "%s '%s' using 3:2 with linespoints pt 7 ps 0.5 title '%s'" "$sep" "$tmp/$c.dat" "$c"; sep=","; done
    echo
    echo "unset multiplot"
} | gnuplot 2>/dev/null && mv "$tmp/sweep.png" "$WORK/sweep/sweep.png" && echo "plot: $WORK/sweep/sweep.png" ||
    echo "size-sweep: gnuplot failed; no plot" >&2

#!/bin/sh
# llamacpp_train.sh — a model trained by `aisle train` loads in llama.cpp with
# the logits Aisle's engine computes: the demo store → a 512-token BPE →
# corpus → 30 steps of a small Llama (GQA, tied output) → model.gguf (F32,
# tokenizer embedded) and model-q8_0.gguf; then `aisle logits` against
# libllama from the @node-llama-cpp/linux-x64 npm package (as llamacpp.sh).
#
# Pass: argmax equal; F32 RMS(logit difference) / RMS(logits) below 1e-3;
# Q8_0 within 1.5x llama.cpp's own distance from the F32 model (each side
# quantizes activations its own way), or below 1e-3.
#
# Usage: scripts/conformance/llamacpp_train.sh [BUILD_DIR]   (default build-conformance)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build-conformance}
cd "$root"
make BUILD="$build" "$build/aisle" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @node-llama-cpp/linux-x64@3.22.1 >/dev/null && tar xzf node-llama-cpp-linux-x64-3.22.1.tgz)
bins="$tmp/package/bins/linux-x64"
cc -O1 -o "$tmp/ref" scripts/conformance/llamacpp_logits.c -L"$bins" -l:libllama.v0.5.0.so -l:libggml.v0.5.0.so \
    -Wl,-rpath,"$bins"
a="$build/aisle"
d=data/demo-store
"$a" ingest --db "$tmp/s.db" --products $d/products.jsonl.gz --reviews $d/reviews.jsonl.gz --qa $d/qa.jsonl.gz >/dev/null
"$a" tokenizer train --vocab 512 --db "$tmp/s.db" --out "$tmp/tok.gguf" >/dev/null 2>&1
"$a" corpus build --db "$tmp/s.db" --tokenizer "$tmp/tok.gguf" --out "$tmp/corpus" >/dev/null
"$a" train --corpus "$tmp/corpus" --out "$tmp/run" --dim 64 --layers 2 --heads 4 --kv-heads 2 --ctx 64 --batch 8 \
    --steps 30 --lr 3e-3 --warmup 5 --eval-every 0 --eval-tokens 4096 --plot 0 >/dev/null 2>&1
ids=70,114,105,103,105,100,97,105,114,101,32,99,114,105,115,112,101,114,32,100,114,97,119,101,114
rel() { paste "$1" "$2" | awk '$1 != $3 { exit 1 } { d += ($2 - $4) ^ 2; s += $4 ^ 2 } END { printf "%.2e", sqrt(d / s) }'; }
argmax() { awk 'NR == 1 || $2 > m { m = $2; i = $1 } END { print i }' "$1"; }
status=0
for t in f32 q8_0; do
    m="$tmp/run/model.gguf"
    [ $t = q8_0 ] && m="$tmp/run/model-q8_0.gguf"
    "$tmp/ref" "$bins" "$m" "$ids" >"$tmp/ref-$t.txt"
    "$a" logits --model "$m" --ids "$ids" --kv-f16 >"$tmp/aisle-$t.txt"
    dd=$(rel "$tmp/aisle-$t.txt" "$tmp/ref-$t.txt")
    a1=$(argmax "$tmp/aisle-$t.txt")
    a2=$(argmax "$tmp/ref-$t.txt")
    if [ $t = f32 ]; then
        ok=$(awk -v d="$dd" 'BEGIN { print (d < 1e-3) ? "ok" : "FAIL" }')
        echo "trained $t: aisle vs llama.cpp $dd (limit 1e-3), argmax $a1 vs $a2"
    else
        ea=$(rel "$tmp/aisle-$t.txt" "$tmp/aisle-f32.txt")
        el=$(rel "$tmp/ref-$t.txt" "$tmp/aisle-f32.txt")
        ok=$(awk -v a="$ea" -v l="$el" 'BEGIN { print (a <= 1.5 * l || a < 1e-3) ? "ok" : "FAIL" }')
        echo "trained $t: aisle vs llama.cpp $dd; from F32: aisle $ea, llama.cpp $el; argmax $a1 vs $a2"
    fi
    [ "$a1" = "$a2" ] || ok=FAIL
    echo "  $ok"
    [ "$ok" = ok ] || status=1
done

# The shipped default models (Q8_0, our BPE and chat tokens embedded): the
# same rule, the reference being the file's own weights dequantized to F32
# (`aisle model convert --type f32`), on the token ids our tokenizer gives
# four shoppers' questions in the model's chat format. Each side quantizes
# activations its own way and one prompt's distance swings 2-3x either way
# (v2: aisle/llama.cpp 0.65-2.6 over these four), so the rule compares the
# mean distance over the four; the argmax must agree on every one.
for m in models/aisle-shopping-small.gguf models/aisle-shopping-small-base.gguf; do
    [ -f "$m" ] || continue
    n=$(basename "$m" .gguf)
    "$a" model convert --type f32 "$m" "$tmp/$n-f32.gguf" >/dev/null
    sa=0 sl=0 k=0 ok=ok
    for qs in "will this crisper drawer fit my frigidaire?" "does this blender crush ice?" \
        "what do customers say about the battery life of this camera? is it good for travel" "how long is the cable"; do
        q=$("$a" tokenize --model "$m" --ids "<|user|>
$qs<|end|>
<|assistant|>
" | tr ' ' ',')
        "$tmp/ref" "$bins" "$m" "$q" >"$tmp/ref-$n.txt"
        "$a" logits --model "$m" --ids "$q" --kv-f16 >"$tmp/aisle-$n.txt"
        "$a" logits --model "$tmp/$n-f32.gguf" --ids "$q" --kv-f16 >"$tmp/exact-$n.txt"
        dd=$(rel "$tmp/aisle-$n.txt" "$tmp/ref-$n.txt")
        ea=$(rel "$tmp/aisle-$n.txt" "$tmp/exact-$n.txt")
        el=$(rel "$tmp/ref-$n.txt" "$tmp/exact-$n.txt")
        a1=$(argmax "$tmp/aisle-$n.txt")
        a2=$(argmax "$tmp/ref-$n.txt")
        [ "$a1" = "$a2" ] || ok=FAIL
        echo "$m, \"$qs\" ($(echo "$q" | tr ',' '\n' | wc -l) tokens): aisle vs llama.cpp $dd; from F32: aisle $ea, llama.cpp $el; argmax $a1 vs $a2"
        sa=$(awk -v s="$sa" -v x="$ea" 'BEGIN { print s + x }')
        sl=$(awk -v s="$sl" -v x="$el" 'BEGIN { print s + x }')
        k=$((k + 1))
    done
    r=$(awk -v a="$sa" -v l="$sl" -v k="$k" 'BEGIN { printf "%.2e %.2e %s", a / k, l / k, (a <= 1.5 * l || a / k < 1e-3) ? "ok" : "FAIL" }')
    set -- $r
    [ "$3" = ok ] || ok=FAIL
    echo "  $m: mean distance from F32 aisle $1, llama.cpp $2: $ok"
    [ "$ok" = ok ] || status=1
done
exit $status

#!/bin/sh
# llamacpp.sh — check the engine's logits against llama.cpp's on the same GGUF
# files: small random Llama models (scripts/conformance/random_llama.c) in
# F32, F16, Q8_0, Q4_0, Q4_K and Q6_K, a 30-token id list, `aisle logits --kv-f16` against
# libllama from the @node-llama-cpp/linux-x64 npm package (prebuilt llama.cpp
# CPU backends; fetched with `npm pack`, nothing installed globally).
#
# Pass: argmax equal, and for F32/F16 RMS(logit difference) / RMS(logits)
# below 1e-3 (both sides compute in float; the rest is summation order and
# llama.cpp's F16 rounding inside attention). For the quantized types each
# side quantizes the activations its own way (llama.cpp: 8-bit blocks of 32
# or 256), so both are compared with the same weights run unquantized
# (`aisle model convert --type f16`): aisle must be no further from it than
# 1.5x llama.cpp's own distance.
#
# Usage: scripts/conformance/llamacpp.sh [BUILD_DIR]   (default build-conformance)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build-conformance}
cd "$root"
make BUILD="$build" "$build/aisle" "$build/libaisle.a" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @node-llama-cpp/linux-x64@3.22.1 >/dev/null && tar xzf node-llama-cpp-linux-x64-3.22.1.tgz)
bins="$tmp/package/bins/linux-x64"
cc -O1 -o "$tmp/ref" scripts/conformance/llamacpp_logits.c -L"$bins" -l:libllama.v0.5.0.so -l:libggml.v0.5.0.so \
    -Wl,-rpath,"$bins"
cc -O1 -Isrc -o "$tmp/mk" scripts/conformance/random_llama.c "$build/libaisle.a" -lpcre2-8 -lutf8proc -lopenblas -lm -pthread
ids=256,72,101,108,108,111,44,32,119,111,114,108,100,33,10,84,104,105,115,32,105,115,32,97,32,116,101,115,116,46
# rel A B: RMS(A - B) / RMS(B) over two 'id value' files; argmax F: the top id.
rel() { paste "$1" "$2" | awk '$1 != $3 { exit 1 } { d += ($2 - $4) ^ 2; s += $4 ^ 2 } END { printf "%.2e", sqrt(d / s) }'; }
argmax() { awk 'NR == 1 || $2 > m { m = $2; i = $1 } END { print i }' "$1"; }
status=0
for t in f32 f16 q8_0 q4_0 q4_K q6_K; do
    m="$tmp/m-$t.gguf"
    "$tmp/mk" "$m" "$t"
    "$tmp/ref" "$bins" "$m" "$ids" >"$tmp/ref-$t.txt"
    "$build/aisle" logits --model "$m" --ids "$ids" --kv-f16 >"$tmp/aisle-$t.txt"
    d=$(rel "$tmp/aisle-$t.txt" "$tmp/ref-$t.txt")
    a1=$(argmax "$tmp/aisle-$t.txt")
    a2=$(argmax "$tmp/ref-$t.txt")
    case $t in
    f32 | f16)
        ok=$(awk -v d="$d" 'BEGIN { print (d < 1e-3) ? "ok" : "FAIL" }')
        echo "$t: aisle vs llama.cpp $d (limit 1e-3), argmax $a1 vs $a2"
        ;;
    *)
        # Each side's distance from the same weights evaluated without
        # quantization (converted to F16): aisle must be no further than
        # 1.5x llama.cpp's own distance (or 1e-3).
        "$build/aisle" model convert --type f16 "$m" "$tmp/x-$t.gguf" >/dev/null
        "$build/aisle" logits --model "$tmp/x-$t.gguf" --ids "$ids" --kv-f16 >"$tmp/exact-$t.txt"
        ea=$(rel "$tmp/aisle-$t.txt" "$tmp/exact-$t.txt")
        el=$(rel "$tmp/ref-$t.txt" "$tmp/exact-$t.txt")
        ok=$(awk -v a="$ea" -v l="$el" 'BEGIN { print (a <= 1.5 * l || a < 1e-3) ? "ok" : "FAIL" }')
        echo "$t: aisle vs llama.cpp $d; from unquantized: aisle $ea, llama.cpp $el; argmax $a1 vs $a2"
        ;;
    esac
    [ "$a1" = "$a2" ] || ok=FAIL
    echo "  $ok"
    [ "$ok" = ok ] || status=1
done
exit $status

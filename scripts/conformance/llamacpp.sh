#!/bin/sh
# llamacpp.sh — check the engine's logits against llama.cpp's on the same GGUF
# files: small random Llama models (scripts/conformance/random_llama.c) in
# F32, F16, Q8_0 and Q4_0, a 30-token id list, `aisle logits --kv-f16` against
# libllama from the @node-llama-cpp/linux-x64 npm package (prebuilt llama.cpp
# CPU backends; fetched with `npm pack`, nothing installed globally).
#
# Pass: argmax equal and RMS(logit difference) / RMS(logits) below 1e-3 for
# F32/F16 (both sides compute in float; the rest is summation order and
# llama.cpp's F16 rounding inside attention) and 2e-2 for Q8_0/Q4_0 (each
# side quantizes the activations to 8 bits its own way).
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
status=0
for t in f32 f16 q8_0 q4_0; do
    "$tmp/mk" "$tmp/m-$t.gguf" "$t"
    "$tmp/ref" "$bins" "$tmp/m-$t.gguf" "$ids" >"$tmp/ref-$t.txt"
    "$build/aisle" logits --model "$tmp/m-$t.gguf" --ids "$ids" --kv-f16 >"$tmp/aisle-$t.txt"
    case $t in f32 | f16) tol=0.001 ;; *) tol=0.02 ;; esac
    paste "$tmp/aisle-$t.txt" "$tmp/ref-$t.txt" | awk -v t="$t" -v tol="$tol" '
        $1 != $3 { print "id mismatch"; exit 1 }
        { a = $2; r = $4; d += (a - r) * (a - r); s += r * r; n++
          if (n == 1 || a > am) { am = a; ai = $1 }
          if (n == 1 || r > rm) { rm = r; ri = $1 } }
        END { rel = sqrt(d / n) / sqrt(s / n)
              ok = rel < tol && ai == ri
              printf "%s: %d logits, relative rms difference %.2e (limit %g), argmax %d vs %d: %s\n",
                     t, n, rel, tol, ai, ri, ok ? "ok" : "FAIL"
              exit ok ? 0 : 1 }' || status=1
done
exit $status

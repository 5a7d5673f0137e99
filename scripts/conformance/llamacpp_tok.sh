#!/bin/sh
# llamacpp_tok.sh — check `aisle tokenize` against llama.cpp's own tokenizer
# (libllama from the @node-llama-cpp/linux-x64 npm package, loaded
# vocab-only; fetched with `npm pack`, nothing installed globally) line by line
# on ~10,000 texts (scripts/conformance/tok_inputs.py: demo-store shopper text,
# hostile strings, invalid UTF-8), for three vocabularies:
#   bpe     `aisle tokenizer train --vocab 4096` on data/demo-store (GPT-2 split)
#   llama3  the same merges with tokenizer.ggml.pre = "llama-bpe", BOS added
#   spm     tests/fixtures/tok/spm-bpe2000 as a "llama" (SentencePiece) GGUF
# each with parse_special off and on (add_special as the vocabulary says).
#
# Pass: identical ids on every line. For invalid UTF-8 and the BPE
# vocabularies, llama.cpp's ids must equal Aisle's for the text as llama.cpp
# reads it (invalid-fffd.txt: each bad byte replaced by U+FFFD, overlong forms
# decoded; docs/TOKENIZER.md); for SPM, for the text as it is.
#
# With FIXTURE=DIR it also writes DIR/llamacpp-{bpe4096,spm2000}.gguf,
# DIR/llamacpp-inputs.hex and DIR/llamacpp-*.ids:
# a sample of the inputs with llama.cpp's ids, which tests/tok/llamacpp_test.c
# replays offline (KEEP=1 keeps the work directory).
#
# Usage: scripts/conformance/llamacpp_tok.sh [BUILD_DIR]   (default build-conformance)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build-conformance}
cd "$root"
make BUILD="$build" "$build/aisle" "$build/libaisle.a" >/dev/null
tmp=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @node-llama-cpp/linux-x64@3.22.1 >/dev/null && tar xzf node-llama-cpp-linux-x64-3.22.1.tgz)
bins="$tmp/package/bins/linux-x64"
cc -O1 -o "$tmp/ref" scripts/conformance/llamacpp_tok.c -L"$bins" -l:libllama.v0.5.0.so -l:libggml.v0.5.0.so \
    -Wl,-rpath,"$bins"
cc -O1 -Isrc -o "$tmp/mk" scripts/conformance/tok_gguf.c "$build/libaisle.a" -lpcre2-8 -lutf8proc -lm -pthread
python3 scripts/conformance/tok_inputs.py "$root" "$tmp/in"

"$build/aisle" tokenizer train --vocab 4096 --out "$tmp/bpe.gguf" data/demo-store/products.jsonl.gz \
    data/demo-store/reviews.jsonl.gz data/demo-store/qa.jsonl.gz >/dev/null 2>&1
"$tmp/mk" llama3 "$tmp/bpe.gguf" "$tmp/llama3.gguf"
"$tmp/mk" spm tests/fixtures/tok/spm-bpe2000.vocab.tsv "$tmp/spm.gguf"

# compare NAME EXPECTED_IDS GOT_IDS INPUT: prints a summary line and the first
# differing lines; fails when any line differs.
compare() {
    paste -d '\t' "$2" "$3" "$4" | awk -F '\t' -v name="$1" '
        { n++ } $1 == $2 { ok++; next }
        { bad++; if (bad <= 5) printf "  differ on line %d: %.100s\n    llama.cpp: %.200s\n    aisle:     %.200s\n", n, $3, $1, $2 }
        END { printf "%-46s %5d lines, %5d identical, %d differ\n", name, n, ok, bad; exit bad ? 1 : 0 }'
}

status=0
total=0
for v in bpe llama3 spm; do
    for ps in 0 1; do
        flag=--no-parse-special
        [ $ps = 1 ] && flag=
        for set in real hostile invalid; do
            "$tmp/ref" "$bins" "$tmp/$v.gguf" "$tmp/in/$set.txt" "$ps" >"$tmp/ref-$v-$ps-$set.txt" 2>"$tmp/ref.log" ||
                { cat "$tmp/ref.log"; exit 1; }
            aisle_in=$tmp/in/$set.txt
            # invalid UTF-8: llama.cpp tokenizes BPE text after replacing bad bytes with U+FFFD
            [ $set = invalid ] && [ $v != spm ] && aisle_in=$tmp/in/invalid-fffd.txt
            "$build/aisle" tokenize --model "$tmp/$v.gguf" --lines --escape $flag <"$aisle_in" >"$tmp/aisle-$v-$ps-$set.txt"
            what=$set
            [ "$aisle_in" != "$tmp/in/$set.txt" ] && what="$set (read as llama.cpp does)"
            compare "$v parse_special=$ps $what" "$tmp/ref-$v-$ps-$set.txt" "$tmp/aisle-$v-$ps-$set.txt" \
                "$aisle_in" || status=1
            total=$((total + $(wc -l <"$aisle_in")))
        done
    done
done
echo "$total tokenizations compared"
if [ $status = 0 ] && [ -n "${FIXTURE:-}" ]; then
    # the CI fixture: the files llama.cpp read, the sample texts in hex and
    # llama.cpp's ids for them, one line per text: ids with parse_special off,
    # a tab, ids with it on
    cp "$tmp/bpe.gguf" "$FIXTURE/llamacpp-bpe4096.gguf"
    cp "$tmp/spm.gguf" "$FIXTURE/llamacpp-spm2000.gguf"
    cp "$tmp/in/sample.hex" "$FIXTURE/llamacpp-inputs.hex"
    for v in bpe llama3 spm; do
        "$tmp/ref" "$bins" "$tmp/$v.gguf" "$tmp/in/sample.txt" 0 >"$tmp/s0" 2>/dev/null
        "$tmp/ref" "$bins" "$tmp/$v.gguf" "$tmp/in/sample.txt" 1 >"$tmp/s1" 2>/dev/null
        paste -d '\t' "$tmp/s0" "$tmp/s1" >"$FIXTURE/llamacpp-$v.ids"
    done
    echo "wrote $FIXTURE/llamacpp-*"
fi
exit $status

#!/usr/bin/env python3
"""tok-crosscheck.py — check Aisle's tokenizer against independent references.

  tok-crosscheck.py gpt2 MODEL.gguf TEXT_FILE
      Reads the tokenizer from MODEL.gguf with a minimal GGUF parser written here,
      encodes every line of TEXT_FILE with GPT-2's encoder.py algorithm (byte-to-
      unicode map, the GPT-2 regex from Python's `regex` module, merges by rank) and
      compares with `aisle tokenize --ids --no-bos --no-parse-special` (AISLE_BIN,
      default build/aisle). Exit status 1 on any difference.

  tok-crosscheck.py splits OUT_DIR
      Rewrites tests/fixtures/tok/{gpt2,llama3}-splits.tsv (fixed seeds) from
      Python's `regex` module.

Needs Python 3 and the `regex` module (Debian: python3-regex). Not run by CI: the
fixtures it writes are what CI checks. See docs/TOKENIZER.md.
"""
import json
import os
import random
import struct
import subprocess
import sys

import regex

GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3 = (r"""(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
          r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


def read_gguf_kv(path):
    d = open(path, 'rb').read()
    o = 0

    def u(fmt):
        nonlocal o
        v = struct.unpack_from('<' + fmt, d, o)[0]
        o += struct.calcsize('<' + fmt)
        return v

    def s():
        nonlocal o
        n = u('Q')
        v = d[o:o + n]
        o += n
        return v.decode('utf-8', 'surrogateescape')

    scalar = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}

    def val(t):
        if t == 8:
            return s()
        if t == 9:
            et, n = u('I'), u('Q')
            return [val(et) for _ in range(n)]
        return u(scalar[t])

    if d[:4] != b'GGUF':
        sys.exit(path + ': not a GGUF file')
    o = 4
    u('I')
    u('Q')
    kv = {}
    for _ in range(u('Q')):
        k = s()
        kv[k] = val(u('I'))
    return kv


def bytes_to_unicode():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def gpt2(model, text_file):
    kv = read_gguf_kv(model)
    if kv.get('tokenizer.ggml.model') != 'gpt2':
        sys.exit('not a gpt2 tokenizer')
    toks = kv['tokenizer.ggml.tokens']
    enc = {t: i for i, t in enumerate(toks)}
    ranks = {}
    for i, m in enumerate(kv['tokenizer.ggml.merges']):
        ranks.setdefault(tuple(m.split(' ', 1)), i)
    b2u = bytes_to_unicode()
    pat = regex.compile(GPT2)

    def bpe(w):
        w = list(w)
        while len(w) > 1:
            best = min((ranks.get((w[i], w[i + 1]), float('inf')), i) for i in range(len(w) - 1))
            if best[0] == float('inf'):
                break
            a, b = w[best[1]], w[best[1] + 1]
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            w = out
        return w

    aisle = os.environ.get('AISLE_BIN', 'build/aisle')
    bad = n = 0
    for line in open(text_file, encoding='utf-8').read().split('\n'):
        if not line:
            continue
        ref = [enc[p] for m in pat.finditer(line) for p in bpe(''.join(b2u[c] for c in m.group().encode()))]
        got = subprocess.run([aisle, 'tokenize', '--ids', '--no-bos', '--no-parse-special', '--model', model, '--', line],
                             capture_output=True, text=True, check=True).stdout.split()
        n += 1
        if [int(x) for x in got] != ref:
            bad += 1
            print('differ:', repr(line[:80]), ref[:12], got[:12])
    print(f'{n} lines, {bad} differ')
    return 1 if bad else 0


def splits(out_dir):
    alpha = list("abcXYZ0123456789 'sStTrReEvVmMlLdD\u017f\u212a’\t\n\r.,!?-_$€£¥½²³٣४é̀ñßΩжक़กាន់ 　\u00a0\u2000"
                 "\u2028\u2029\x0b\x0c\x1c\x1d\x1e\x1f\x85\u180e\u200b\u200dｱ한🚀🦙😁\U0001F9D1\u0301")
    for name, src, seed in (('gpt2-splits.tsv', GPT2, 11), ('llama3-splits.tsv', LLAMA3, 13)):
        pat = regex.compile(src)
        rnd = random.Random(seed)
        with open(os.path.join(out_dir, name), 'w', encoding='ascii') as f:
            for _ in range(400):
                s = ''.join(rnd.choice(alpha) for _ in range(rnd.randint(1, 24)))
                f.write(s.encode().hex() + '\t' + ' '.join(str(len(m.group().encode())) for m in pat.finditer(s)) + '\n')
    return 0


if __name__ == '__main__':
    if len(sys.argv) == 4 and sys.argv[1] == 'gpt2':
        sys.exit(gpt2(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 3 and sys.argv[1] == 'splits':
        sys.exit(splits(sys.argv[2]))
    sys.exit(__doc__)

#!/usr/bin/env python3
"""tok_inputs.py — the inputs of the llama.cpp tokenizer conformance check
(scripts/conformance/llamacpp_tok.sh), deterministic (fixed seeds, Python's
standard library only).

Usage: tok_inputs.py ROOT OUT_DIR

Writes, one text per line in llama-tokenize's escapes (\\n \\r \\t \\\\ \\xHH;
`aisle tokenize --lines --escape` and llamacpp_tok read them the same way):
  real.txt         shopper text from ROOT/data/demo-store: product titles and
                   bullets, reviews, questions and answers
  hostile.txt      hand-picked and random mixed-script strings: spaces, tabs,
                   newlines, digit runs, emoji, CJK, combining marks, Arabic,
                   contractions in both cases, long words, control characters,
                   special-token texts
  invalid.txt      strings with invalid UTF-8 (lone continuation bytes,
                   truncated sequences, bytes 0xF8-0xFF, overlong forms; not
                   surrogates, which llama.cpp's BPE splitters read as
                   punctuation: a documented difference, docs/TOKENIZER.md)
  invalid-fffd.txt the same strings as llama.cpp's BPE tokenizers read them
                   (fffd() below)
  sample.txt       the CI fixture's inputs: the hand-picked strings, every 6th
                   random one, every 100th real line, every 5th invalid one
  sample.hex       the same texts in hex, one per line
"""
import gzip
import json
import os
import random
import sys


def escape(b):
    """Bytes as one line: backslash, controls and (in invalid UTF-8) every
    byte >= 0x80 escaped."""
    named = {0x5c: '\\\\', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t'}
    return ''.join(named.get(c) or (chr(c) if 0x20 <= c < 0x7f else '\\x%02x' % c) for c in b)


def esc_str(s):
    """Valid text stays readable: only ASCII controls and backslashes are escaped."""
    return ''.join(escape(ch.encode()) if ord(ch) < 0x80 else ch for ch in s)


def write(path, texts):
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        for t in texts:
            f.write((esc_str(t) if isinstance(t, str) else escape(t)) + '\n')


def fffd(b):
    """What llama.cpp's BPE tokenizers see of b (unicode_cpts_from_utf8, then
    each code point re-encoded): a byte that does not start a lead byte
    followed by the continuation bytes it announces becomes U+FFFD and the
    next byte is looked at; a complete sequence is decoded without checking
    for overlong forms or surrogates (C0 89 reads as a tab). Code points above
    U+10FFFF make llama.cpp abort, so invalid() never makes them."""
    out, i = bytearray(), 0
    while i < len(b):
        c = b[i]
        n = 1 if c < 0x80 else 0 if c < 0xc0 else 2 if c < 0xe0 else 3 if c < 0xf0 else 4 if c < 0xf8 else 0
        if n == 0 or i + n > len(b) or any(b[i + k] & 0xc0 != 0x80 for k in range(1, n)):
            out += '\ufffd'.encode()
            i += 1
            continue
        cp = c & (0x7f, 0x1f, 0x0f, 0x07)[n - 1]
        for k in range(1, n):
            cp = cp << 6 | b[i + k] & 0x3f
        assert cp <= 0x10ffff, 'llama.cpp aborts on code points above U+10FFFF'
        out += chr(cp).encode('utf-8', 'surrogatepass')
        i += n
    return bytes(out)


def real(root):
    d = os.path.join(root, 'data', 'demo-store')
    texts = []
    with gzip.open(os.path.join(d, 'products.jsonl.gz'), 'rt', encoding='utf-8') as f:
        for line in f:
            p = json.loads(line)
            texts.append(p['title'])
            texts.extend(p.get('bullets') or [])
    with gzip.open(os.path.join(d, 'reviews.jsonl.gz'), 'rt', encoding='utf-8') as f:
        texts.extend(json.loads(line)['text'] for line in f)
    with gzip.open(os.path.join(d, 'qa.jsonl.gz'), 'rt', encoding='utf-8') as f:
        for line in f:
            q = json.loads(line)
            texts += [q['question'], q['answer']]
    return [t for t in texts if t]


HAND = [
    '', ' ', '  ', '\t', '\n', 'a', ' a', 'a ', '  leading spaces', 'trailing spaces   ', 'multiple    inner   spaces',
    '\ttab\tseparated\tvalues\t', 'tab\t \tand space', 'line one\nline two', '\n\nmany\n\n\nnewlines\n\n',
    'windows\r\nline\r\nends', ' \n \n ', 'space before newline \nand after\n ', '12345678901234567890',
    '1,234.56 and 007 and 3.14159', 'Price: $1,299.99!!! (was $1,499)', 'model #WR30X10093, 240337103 x4',
    '2x4 12v 110-120V 60Hz 1/2" 3/4in', 'Will this fit my Frigidaire FFTR1821QW? <|end|>',
    'I love it 👍🏽 great 😀😀😀', '👨‍👩‍👧‍👦 family pack', 'flags 🇺🇸🇯🇵', '🦙 llama', '❤️ ☃ ★ ✓ ™ ® ©',
    '我想买一个冰箱', '冷蔵庫を買いたいです。', '냉장고를 사고 싶어요', '中文 English 混合 mixed 123',
    'café crème naïve résumé façade', 'cafe\u0301 cre\u0300me n\u0303 a\u0308\u0304', 'Ω ж क़ ก ាន់ ß ẞ',
    'مرحبا بالعالم، هذا منتج رائع', 'שלום עולם', 'नमस्ते दुनिया', 'สวัสดีชาวโลก', 'Привет, мир! Это ХОРОШО.',
    "it's they're we'll I'd you've she'll he'd", "IT'S THEY'RE WE'LL I'D YOU'VE", "It'S They'Re We'LL",
    "don't won't can't shouldn't y'all 'twas", "the product's box", "''quoted'' 's 're",
    'a' * 300, 'supercalifragilistic' * 20, 'x' * 200 + ' end', '-' * 80, '=' * 7 + '>' + '.' * 9,
    '\x01\x02\x03 control \x7f chars \x1b[0m', 'nul\x00byte', 'bell\x07 vt\x0b ff\x0c', '\x1c\x1d\x1e\x1f',
    '\u00a0nbsp\u00a0', 'ideographic\u3000space', 'thin\u2009space', 'mongolian\u180eseparator',
    'zero\u200bwidth', 'line\u2028sep\u2029para', 'next\x85line', 'soft\u00adhyphen', 'bom\ufeffinside',
    'fullwidth ＡＢＣ１２３', 'superscript ² ³ ½ ٣ ४', '\u017f long s and \u212a kelvin',
    'email@example.com https://www.example.com/path?q=1&x=2', 'C++ && C# || F#', '<html><body>hi</body></html>',
    '<|user|>hi', '<|system|>\nYou are helpful.<|end|>\n<|user|>\nFits?<|end|>\n<|assistant|>\n',
    '<|endoftext|>doc two', '<|end|><|end|>', '<| user |>', '<|user|', 'a<|user|>b', ' <|user|> ',
    '<s>hello</s>', '<unk> <s> </s>', '[INST] hi [/INST]', '<0x41> <0xFF>', '▁ ▁▁ leading sentencepiece',
    '\\n literally', 'back\\slash \\x41 \\\\',
]


def hostile():
    alpha = list("abcXYZ0123456789 'sStTrReEvVmMlLdD\u017f\u212a’\t\n\r.,!?-_$€£¥½²³٣४é̀ñßΩжक़กាន់ 　\u00a0\u2000"
                 "\u2028\u2029\x0b\x0c\x1c\x1d\x1e\x1f\x85\u180e\u200b\u200dｱ한🚀🦙😁\U0001F9D1\u0301<|>")
    rnd = random.Random(31)
    texts = list(HAND)
    for _ in range(600):
        texts.append(''.join(rnd.choice(alpha) for _ in range(rnd.randint(1, 40))))
    return texts


def invalid():
    rnd = random.Random(37)
    pieces = [b'\x80', b'\xbf', b'\xc3', b'\xe2\x82', b'\xf0\x9f\x98', b'\xf8', b'\xfe', b'\xff', b'\xc3\x28',
              b'\xe2\x28\xa1', b'\xf0\x28\x8c\xbc', b'\xc0\x89', b'\xc1\xbf', b'\xe0\x80\xaf',
              b'\xf0\x80\x80\x80', b'\xf4\x8f\xbf\xbf']
    words = [b'fit', b' fridge', b' ', b'caf\xc3\xa9', b'\xe5\x86\xb0', b'\xf0\x9f\x98\x80', b'12', b"'s", b'\t', b'\n']
    texts = [p for p in pieces] + [b'ok' + p + b'ok' for p in pieces] + [b' ' + p + b' word' for p in pieces]
    for _ in range(200):
        texts.append(b''.join(rnd.choice(pieces if rnd.random() < 0.3 else words) for _ in range(rnd.randint(1, 10))))
    return texts


def main():
    if len(sys.argv) != 3:
        sys.stderr.write('usage: tok_inputs.py ROOT OUT_DIR\n')
        return 2
    root, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    shop, odd, bad = real(root), hostile(), invalid()
    write(os.path.join(out, 'real.txt'), shop)
    write(os.path.join(out, 'hostile.txt'), odd)
    sample = HAND + odd[len(HAND)::6] + shop[::100] + bad[::5]
    write(os.path.join(out, 'sample.txt'), sample)
    with open(os.path.join(out, 'sample.hex'), 'w', encoding='ascii') as f:
        f.writelines((t.encode() if isinstance(t, str) else t).hex() + '\n' for t in sample)
    write(os.path.join(out, 'invalid.txt'), bad)
    write(os.path.join(out, 'invalid-fffd.txt'), [fffd(b) for b in bad])
    return 0


if __name__ == '__main__':
    sys.exit(main())

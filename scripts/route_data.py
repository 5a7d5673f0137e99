#!/usr/bin/env python3
"""route_data.py — cut the labelled slices the source router learns from (and is
evaluated on) out of contextual-pqa into tests/fixtures/route/ as JSON Lines:
    {"q": "question text", "sources": ["catalog", "reviews", "qa", "api"]}
Run once by hand: python3 scripts/route_data.py /work/shared/data/contextual-pqa
Source mapping (hetPQA): Desc, OSP, bullet, attribute -> catalog; review -> reviews;
CQA -> qa. semiPQA attribute ranking: a question with a relevant attribute -> catalog.
hetPQA evidence_ranking dev keeps only positively labelled evidence; it is for
held-out evaluation only (the retrieval evaluation uses it too)."""
import csv, gzip, json, os, sys
from collections import OrderedDict

MAP = {"Desc": "catalog", "OSP": "catalog", "bullet": "catalog", "attribute": "catalog",
       "review": "reviews", "CQA": "qa"}
src = sys.argv[1]
out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "route")
csv.field_size_limit(1 << 24)

def rows(path):
    with gzip.open(os.path.join(src, path), "rt", encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f, delimiter="\t")

def write(name, d):
    with gzip.GzipFile(os.path.join(out, name), "wb", mtime=0) as f:
        for q, s in d.items():
            f.write((json.dumps({"q": q, "sources": sorted(s)}, ensure_ascii=False) + "\n").encode())
    print(name, len(d))

d = OrderedDict()
for r in rows("hetPQA/answer_generation/train.csv.gz"):
    d.setdefault(r["question"].strip(), set()).add(MAP[r["source"]])
write("hetpqa_train.jsonl.gz", d)

d = OrderedDict()
for r in rows("hetPQA/evidence_ranking/dev.csv.gz"):
    if r["label"] == "1":
        d.setdefault(r["question"].strip(), set()).add(MAP[r["source"]])
write("hetpqa_er_dev.jsonl.gz", d)

d = OrderedDict()
for r in rows("semiPQA/attribute_ranking/dev.csv.gz"):
    if r["label"] == "1":
        d.setdefault(r["question"].strip(), set()).add("catalog")
write("semipqa_attr_dev.jsonl.gz", d)

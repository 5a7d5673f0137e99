#!/usr/bin/env python3
"""corpus-text.py — the shared/data sets that may be used for pretraining, as
JSON Lines text files for `aisle corpus build --text NAME=FILE`.

    scripts/corpus-text.py [--data ../shared/data] [--include-nc] OUT_DIR

writes OUT_DIR/{catalog,reviews,qa,text}.jsonl.gz, one {"text": ...} per line:

  catalog  webshop-goals products_100 (MIT); with --include-nc also the
           BigBasket catalog (CC BY-NC-SA 4.0 per a third-party README:
           non-commercial, so the shipped default model leaves it out)
  reviews  FewSum train reviews; SubjQA electronics + grocery TRAIN reviews
           (unique review ids, the ANSWERNOTFOUND marker stripped)
  qa       McAuley Amazon QA (Appliances, Video Games; exact duplicates
           dropped); CoQASUM TRAIN products' Q&A, one document per question
  text     CoQASUM TRAIN summaries, FewSum TRAIN summaries, WebShop human
           shopping instructions

Evaluation data stays out: hetPQA and semiPQA are not read at all (their
train splits are SFT data, built by `aisle sft build`); only the TRAIN split
of CoQASUM, FewSum and SubjQA is read (their dev/test splits never are);
ShopBench and the ESCI judgments are evaluation sets and are not read.
DummyJSON is generated fixture text (21 canned reviews) and is left out.

The output is deterministic (input order, fixed gzip mtime). Python 3
standard library only.
"""
import csv
import gzip
import io
import json
import os
import sys

csv.field_size_limit(1 << 30)


def gz_lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield line


class Out:
    def __init__(self, path):
        raw = open(path, "wb")
        self.raw = raw
        self.gz = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="")
        self.f = io.TextIOWrapper(self.gz, encoding="utf-8", newline="\n")
        self.n = 0
        self.bytes = 0
        self.path = path

    def add(self, text):
        text = text.strip()
        if not text:
            return
        self.f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        self.n += 1
        self.bytes += len(text.encode("utf-8"))

    def close(self):
        self.f.close()
        self.raw.close()
        print(f"{self.path}: {self.n} documents, {self.bytes / 1e6:.1f} MB", file=sys.stderr)


def lines_of(*parts):
    return "\n".join(p for p in parts if p)


def webshop_products(data, out):
    for line in gz_lines(os.path.join(data, "webshop-goals/products_100_documents.jsonl.gz")):
        p = json.loads(line)["product"]
        bullets = p.get("BulletPoints") or p.get("small_description") or []
        if isinstance(bullets, str):
            bullets = [bullets]
        attrs = p.get("Attributes") or []
        out.add(lines_of(
            (p.get("Title") or p.get("name") or "").strip(),
            "Category: " + p["product_category"].replace(" › ", " > ") if p.get("product_category") else "",
            "Price: " + p["Price"] if p.get("Price") else "",
            "\n".join("- " + b.strip() for b in bullets if b and b.strip()),
            "Attributes: " + ", ".join(attrs) if attrs and isinstance(attrs, list) else "",
            (p.get("full_description") or p.get("Description") or "").strip(),
        ))


def bigbasket(data, out):
    desc = {}
    with gzip.open(os.path.join(data, "bigbasket-products/bigbasket_products_first6079_with_description.csv.gz"),
                   "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            desc[row["index"]] = (row.get("description") or "").replace("\r", "").strip()
    with gzip.open(os.path.join(data, "bigbasket-products/bigbasket_products_27555.csv.gz"), "rt",
                   encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            out.add(lines_of(
                row["product"].strip(),
                "Brand: " + row["brand"].strip() if row.get("brand") else "",
                "Category: " + " > ".join(x.strip() for x in (row["category"], row["sub_category"], row["type"]) if x),
                "Price: Rs " + row["sale_price"] if row.get("sale_price") else "",
                "Rating: " + row["rating"] + "/5" if row.get("rating") else "",
                desc.get(row["index"], ""),
            ))


def fewsum(data, reviews, text):
    with gzip.open(os.path.join(data, "fewsum-amazon/train.csv.gz"), "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            for k in range(1, 9):
                r = row.get(f"rev{k}", "")
                rating = row.get(f"rating{k}", "")
                out_text = lines_of("Rating: %s/5" % rating.replace(".0", "") if rating else "", r.strip())
                reviews.add(out_text)
            for k in range(1, 4):
                s = row.get(f"summ{k}", "")
                if s.strip():
                    text.add("Summary of the reviews: " + s.strip())


def subjqa(data, reviews):
    seen = set()
    for dom in ("electronics", "grocery"):  # books and movies have no train split here
        with gzip.open(os.path.join(data, f"subjqa/{dom}/train.csv.gz"), "rt", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                rid = row["review_id"]
                if rid in seen:
                    continue
                seen.add(rid)
                r = row["review"].replace("ANSWERNOTFOUND", "").strip()
                reviews.add(r)


def mcauley(data, qa):
    seen = set()
    for cat in ("Appliances", "Video_Games"):
        for line in gz_lines(os.path.join(data, f"mcauley-amazon-qa/qa_{cat}.jsonl.gz")):
            if line in seen:
                continue
            seen.add(line)
            r = json.loads(line)
            qa.add(lines_of("Question: " + r["question"].strip(), "Answer: " + r["answer"].strip()))


def coqasum(data, qa, text):
    for line in gz_lines(os.path.join(data, "coqasum/coqasum_products.jsonl.gz")):
        p = json.loads(line)
        if p.get("split") != "train":
            continue
        order, answers = [], {}
        for pair in p.get("qa", []):
            q = pair["question"].strip()
            if q not in answers:
                order.append(q)
                answers[q] = []
            if pair.get("answer") and pair["answer"].strip():
                answers[q].append(pair["answer"].strip())
        for q in order:
            qa.add(lines_of("Question: " + q, "\n".join("Answer: " + a for a in answers[q])))
        for s in p.get("summary", []):
            if s and s.strip():
                text.add("Product summary: " + s.strip())


def webshop_goals(data, text):
    with gzip.open(os.path.join(data, "webshop-goals/human_goals.json.gz"), "rt", encoding="utf-8") as f:
        goals = json.load(f)
    seen = set()
    for g in goals:
        g = g.strip()
        if g and g not in seen:
            seen.add(g)
            text.add("Shopping request: " + g)


def main(argv):
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../shared/data")
    include_nc = False
    args = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__)
            return 0
        if a == "--data" and i + 1 < len(argv):
            data = argv[i + 1]
            i += 2
            continue
        if a == "--include-nc":
            include_nc = True
        else:
            args.append(a)
        i += 1
    if len(args) != 1:
        print("usage: scripts/corpus-text.py [--data DIR] [--include-nc] OUT_DIR", file=sys.stderr)
        return 2
    out_dir = args[0]
    if not os.path.isdir(os.path.join(data, "coqasum")):
        print(f"corpus-text.py: no shared data sets under {data} (give --data DIR)", file=sys.stderr)
        return 1
    os.makedirs(out_dir, exist_ok=True)
    outs = {k: Out(os.path.join(out_dir, k + ".jsonl.gz")) for k in ("catalog", "reviews", "qa", "text")}
    webshop_products(data, outs["catalog"])
    if include_nc:
        bigbasket(data, outs["catalog"])
    fewsum(data, outs["reviews"], outs["text"])
    subjqa(data, outs["reviews"])
    mcauley(data, outs["qa"])
    coqasum(data, outs["qa"], outs["text"])
    webshop_goals(data, outs["text"])
    for o in outs.values():
        o.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

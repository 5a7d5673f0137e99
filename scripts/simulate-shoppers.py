#!/usr/bin/env python3
"""simulate-shoppers.py - shoppers who ask the store's community questions in the
web chat's API and vote on the answers, so that preference tuning
(aisle train --prefs, docs/TRAIN.md) can be measured end to end: the real
server, its answers database, aisle feedback export.

Each simulated shopper asks one real community question about its product
(POST /api/chat with the product page, the same conversation id for every
answer to that question, so two answers to it share their prompt and can
become a DPO pair), reads the streamed answer, and judges it against the
community's own answers: the token F1 of the answer's text (markup removed)
with the best-matching community answer. With --vote, every answer whose F1
is at least the threshold gets a thumbs up and every other one a thumbs down
(POST /api/feedback); the threshold defaults to the median F1 of this run's
answers, so about half are up. With --max-words N the shopper is also
impatient: an answer of more than N words, or one cut at the length limit,
is voted down whatever its F1 (without it, F1 against long community answers
rewards length, and preference tuning learns to ramble).

Products are split by a hash of their id: --split eval takes one in five
(crc32(id) % 5 == 0), train the rest, so the two never share a product.

Usage:
  simulate-shoppers.py --url http://127.0.0.1:8080 --db STORE.db --split train
                       [--questions N] [--answers K] [--vote] [--threshold F]
                       [--max-words N] [--clients C] [--seed S] [--out FILE.jsonl]

Prints one summary line (JSON) on stdout; --out gets one JSON line per answer.
Standard library only.
"""
import argparse
import json
import random
import re
import sqlite3
import sys
import threading
import time
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

WORD = re.compile(r"[a-z0-9]+|[^\x00-\x7f]+")


def words(s):
    return WORD.findall(s.lower())


def f1(a, b):
    """SQuAD token F1 of two texts (multiset overlap)."""
    wa, wb = words(a), words(b)
    if not wa and not wb:
        return 1.0
    if not wa or not wb:
        return 0.0
    counts = {}
    for w in wb:
        counts[w] = counts.get(w, 0) + 1
    common = 0
    for w in wa:
        if counts.get(w, 0) > 0:
            counts[w] -= 1
            common += 1
    if not common:
        return 0.0
    p, r = common / len(wa), common / len(wb)
    return 2 * p * r / (p + r)


def questions(db, split, n, seed):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    rows = con.execute(
        "SELECT q.id, q.product_id, q.question, a.text FROM questions q JOIN answers a ON a.question_id = q.id"
        " ORDER BY q.id, a.ord").fetchall()
    con.close()
    by_q = {}
    for qid, pid, text, ans in rows:
        if len(text) > 300 or not text.strip():
            continue
        is_eval = zlib.crc32(pid.encode()) % 5 == 0
        if is_eval != (split == "eval"):
            continue
        by_q.setdefault(qid, (pid, text, []))[2].append(ans)
    qs = sorted(by_q.items())
    random.Random(seed).shuffle(qs)
    return [(qid, pid, text, answers) for qid, (pid, text, answers) in qs[:n]]


def ask(url, qid, pid, question, k):
    body = json.dumps({"messages": [{"role": "user", "content": question}], "product_id": pid,
                       "conversation_id": "sim-%s" % re.sub(r"[^A-Za-z0-9_.-]", "_", qid)[:56]}).encode()
    req = urllib.request.Request(url + "/api/chat", data=body, headers={"Content-Type": "application/json"})
    text, cites, done, err = [], 0, {}, None
    for attempt in range(5):
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                event = None
                for raw in r:
                    line = raw.decode("utf-8").rstrip("\n")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        d = json.loads(line[6:])
                        if event == "text":
                            text.append(d["text"])
                        elif event == "citation":
                            cites += 1
                        elif event == "done":
                            done = d
                        elif event == "error":
                            err = d
            break
        except urllib.error.HTTPError as e:
            if e.code != 429:
                raise
            time.sleep(1 + attempt)
    return {"text": "".join(text), "citations": cites, "answer_id": done.get("answer_id"),
            "finish": done.get("finish"), "error": err, "answer": k}


def vote(url, answer_id, up):
    body = json.dumps({"answer_id": answer_id, "rating": "up" if up else "down"}).encode()
    req = urllib.request.Request(url + "/api/feedback", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--db", required=True, help="the store database (questions and their community answers)")
    ap.add_argument("--split", choices=["train", "eval"], required=True)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--answers", type=int, default=2, help="answers asked per question")
    ap.add_argument("--vote", action="store_true", help="vote on every answer")
    ap.add_argument("--threshold", type=float, help="F1 for a thumbs up (default: this run's median)")
    ap.add_argument("--max-words", type=int, help="longer answers (and cut ones) are voted down")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    a = ap.parse_args()

    qs = questions(a.db, a.split, a.questions, a.seed)
    if not qs:
        sys.exit("simulate-shoppers: no questions in %s for split %s" % (a.db, a.split))
    jobs = [(q, k) for q in qs for k in range(a.answers)]
    results, lock, t0 = [], threading.Lock(), time.time()

    def one(job):
        (qid, pid, question, answers), k = job
        r = ask(a.url, qid, pid, question, k)
        r.update(qid=qid, product_id=pid, question=question, f1=max(f1(r["text"], x) for x in answers))
        with lock:
            results.append(r)
            n = len(results)
            if n % 20 == 0 or n == len(jobs):
                el = time.time() - t0
                sys.stderr.write("\r%d/%d answers  %.1f/s  ETA %ds   " % (n, len(jobs), n / el,
                                                                          (len(jobs) - n) / (n / el)))
        return r

    with ThreadPoolExecutor(a.clients) as ex:
        list(ex.map(one, jobs))
    sys.stderr.write("\n")
    results.sort(key=lambda r: (r["qid"], r["answer"]))
    scores = sorted(r["f1"] for r in results)
    median = scores[len(scores) // 2]
    th = a.threshold if a.threshold is not None else median
    ups = 0
    for r in results:
        r["words"] = len(words(r["text"]))
        r["up"] = r["f1"] >= th and (a.max_words is None or (r["words"] <= a.max_words and r["finish"] != "length"))
        ups += r["up"]
        if a.vote and r["answer_id"]:
            vote(a.url, r["answer_id"], r["up"])
            r["voted"] = True
    pairs = 0
    by_q = {}
    for r in results:
        by_q.setdefault(r["qid"], []).append(r["up"])
    for v in by_q.values():
        pairs += sum(v) * (len(v) - sum(v))
    if a.out:
        with open(a.out, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    n = len(results)
    print(json.dumps({"split": a.split, "questions": len(qs), "answers": n,
                      "mean_f1": round(sum(scores) / n, 4), "median_f1": round(median, 4), "threshold": round(th, 4),
                      "up_share": round(ups / n, 4), "up_down_pairs": pairs,
                      "cut": round(sum(r["finish"] == "length" for r in results) / n, 4),
                      "citations_per_answer": round(sum(r["citations"] for r in results) / n, 3),
                      "words_per_answer": round(sum(r["words"] for r in results) / n, 1),
                      "stored": sum(1 for r in results if r["answer_id"]),
                      "errors": sum(1 for r in results if r["error"]),
                      "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fits the recall reranker's weights (crates/core/src/pipeline/rerank.rs, WEIGHTS).

Input: the feature rows `astrocyte eval locomo --dump-features FILE` writes (one JSON object
per question: its candidates' feature rows and which are evidence). Conversations are split
in two by index: weights are fitted on the training half (pairwise logistic loss: every
evidence candidate should outscore every other candidate of its question) and the figure
that matters, evidence recall at k, is reported on the held-out half only, beside the
un-reranked order on the same half. Pure Python: no packages needed.

Usage: python3 scripts/fit-reranker.py FILE [--train-below 5] [--epochs 30] [--seed 7]
"""
import argparse
import json
import math
import random


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def frac_at(question, order, k):
    """Fraction of the question's evidence found in the top k of `order`."""
    found = set()
    for pos in order[:k]:
        for hit_id in question["hit_ids"][pos]:
            if hit_id in question["evidence_ids"]:
                found.add(hit_id)
    return len(found) / question["evidence"]


def reranked(question, weights):
    scores = [sum(w * x for w, x in zip(weights, row)) for row in question["rows"]]
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def report(questions, weights, label):
    by_path = {}
    for q in questions:
        if not 1 <= q["category"] <= 4:
            continue
        base = list(range(len(q["rows"])))
        order = reranked(q, weights) if weights else base
        t = by_path.setdefault(q["path"], {"n": 0, **{k: 0.0 for k in (1, 5, 10, 20)}})
        t["n"] += 1
        for k in (1, 5, 10, 20):
            t[k] += frac_at(q, order, k)
    for path, t in sorted(by_path.items()):
        n = max(t["n"], 1)
        print(f"{label:<12} {path:<9} n={t['n']:<5} " + "  ".join(
            f"frac@{k} {t[k] / n:.3f}" for k in (1, 5, 10, 20)))


def fit(questions, features, epochs, seed, l2=1e-4, lr=0.05):
    rng = random.Random(seed)
    pairs = []
    for q in questions:
        pos = [i for i, label in enumerate(q["labels"]) if label]
        neg = [i for i, label in enumerate(q["labels"]) if not label]
        for p in pos:
            for n in neg:
                pairs.append((q["rows"][p], q["rows"][n]))
    w = [0.0] * features
    w[4] = 1.0  # start from the fused order
    for epoch in range(epochs):
        rng.shuffle(pairs)
        step = lr / (1 + epoch)
        for a, b in pairs:
            margin = sum(wi * (x - y) for wi, x, y in zip(w, a, b))
            g = -1.0 / (1.0 + math.exp(min(margin, 30.0)))
            for i in range(features):
                w[i] -= step * (g * (a[i] - b[i]) + l2 * w[i])
    return w


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--train-below", type=int, default=5,
                        help="conversations with a smaller index train, the rest test")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    questions = load(args.file)
    train = [q for q in questions if q["conversation"] < args.train_below]
    test = [q for q in questions if q["conversation"] >= args.train_below]
    features = len(questions[0]["rows"][0])
    weights = fit([q for q in train if q["rows"]], features, args.epochs, args.seed)
    scale = max(abs(w) for w in weights) or 1.0
    weights = [w / scale for w in weights]
    print("weights:", "[" + ", ".join(f"{w:.4f}" for w in weights) + "]")
    report(train, None, "train fused")
    report(train, weights, "train rerank")
    report(test, None, "test fused")
    report(test, weights, "test rerank")


if __name__ == "__main__":
    main()

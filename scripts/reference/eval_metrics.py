#!/usr/bin/env python3
"""Expected evaluation metrics for core/src/eval, from the Python reference packages.

Reads tests/data/eval_cases.jsonl (one {"id", "kind", "lang", "prediction",
"reference"} object per line; "kind" is "text" or "choice", and choice records
carry a hand-written "expected_choice": the letter A-E a reader sees in the
generation, or null) and writes tests/data/eval_expected.json with

  records[i]      per record: rouge1/rouge2/rougeL/rougeLsum {precision, recall,
                  fmeasure} from rouge-score (use_stemmer=False, the package's
                  score(target=reference, prediction=prediction)); SQuAD v1.1
                  exact_match / f1 / precision / recall (the official functions,
                  reproduced below); sentence_bleu (sacrebleu.sentence_bleu
                  defaults); the rouge tokens (space-joined) and the 13a
                  tokenization of both sides
  corpus_bleu     sacrebleu.corpus_bleu(hyps, [refs]) defaults over all records,
                  over the "text" records and over the Portuguese "text" records
  means           the mean over all records of each per-record value
  accuracy        mean over "choice" records of (expected_choice == reference)

Run from the repository root:

    python scripts/reference/eval_metrics.py
"""

from __future__ import annotations

import argparse
import json
import re
import string
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import sacrebleu
from rouge_score import rouge_scorer, tokenize
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from common import write_json

GENERATOR = "scripts/reference/eval_metrics.py"
DEFAULT_CASES = "tests/data/eval_cases.jsonl"
DEFAULT_OUT = "tests/data/eval_expected.json"
ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


# --- SQuAD v1.1 (evaluate-v1.1.py), f1_score extended to return precision and recall ---

def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_precision_recall(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0, 0.0, 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1, precision, recall


def exact_match_score(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


# --- helpers ---

def bleu_dict(score) -> dict:
    return {
        "score": score.score,
        "counts": list(score.counts),
        "totals": list(score.totals),
        "precisions": list(score.precisions),
        "bp": score.bp,
        "sys_len": score.sys_len,
        "ref_len": score.ref_len,
    }


def corpus_bleu(records) -> dict:
    hyps = [r["prediction"] for r in records]
    refs = [r["reference"] for r in records]
    out = bleu_dict(sacrebleu.corpus_bleu(hyps, [refs]))
    out["ids"] = [r["id"] for r in records]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=DEFAULT_CASES)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    cases = []
    with open(args.cases, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                case = json.loads(line)
                if case["kind"] == "choice":
                    assert case["reference"] in list("ABCDE"), f"line {n}: reference letter"
                    assert case["expected_choice"] in [None, *"ABCDE"], f"line {n}"
                cases.append(case)

    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=False)
    tok13a = Tokenizer13a()
    records = []
    for case in cases:
        pred, ref = case["prediction"], case["reference"]
        rouge = scorer.score(ref, pred)
        f1, precision, recall = f1_precision_recall(pred, ref)
        records.append({
            "id": case["id"],
            **{k: {"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure}
               for k, s in rouge.items()},
            "exact_match": 1.0 if exact_match_score(pred, ref) else 0.0,
            "f1": f1,
            "precision": precision,
            "recall": recall,
            "sentence_bleu": sacrebleu.sentence_bleu(pred, [ref]).score,
            # sacrebleu right-strips each segment before tokenizing.
            "tokens_13a": {"prediction": tok13a(pred.rstrip()), "reference": tok13a(ref.rstrip())},
            # rouge tokens are [a-z0-9]+, so joining them with spaces loses nothing.
            "tokens_rouge": {"prediction": " ".join(tokenize.tokenize(pred, None)),
                             "reference": " ".join(tokenize.tokenize(ref, None))},
        })

    n = len(records)
    means = {k: sum(r[k]["fmeasure"] for r in records) / n for k in ROUGE_TYPES}
    for k in ["exact_match", "f1", "precision", "recall"]:
        means[k] = sum(r[k] for r in records) / n

    text = [c for c in cases if c["kind"] == "text"]
    choice = [c for c in cases if c["kind"] == "choice"]
    accuracy = sum(1.0 if c["expected_choice"] == c["reference"] else 0.0
                   for c in choice) / len(choice)

    bleu = {
        "all": corpus_bleu(cases),
        "text": corpus_bleu(text),
        "text_pt": corpus_bleu([c for c in text if c["lang"] == "pt"]),
    }
    write_json(Path(args.out), {
        "generator": GENERATOR,
        "rouge_score": version("rouge-score"),
        "sacrebleu": version("sacrebleu"),
        "cases": args.cases,
        "records": records,
        "corpus_bleu": bleu,
        "means": means,
        "accuracy": accuracy,
    })
    print(f"{args.out}: {n} records ({len(text)} text, {len(choice)} choice), "
          f"corpus BLEU {bleu['all']['score']:.4f}, accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()

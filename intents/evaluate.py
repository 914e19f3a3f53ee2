"""Evaluation on Rasa-format NLU data: intent report, entity scores, confusion matrix.

Gold ``out_of_scope`` and predicted ``nlu_fallback`` are the same thing (Rasa convention:
out-of-scope messages should fall back), so both are mapped to ``nlu_fallback``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .loader import Example, NLUData
from .model import FALLBACK, OUT_OF_SCOPE

CONTRACT_ENTITIES = ("account_number", "phone_number", "work_order_id", "month", "date", "amount")


def _canon(intent: str) -> str:
    return FALLBACK if intent in (OUT_OF_SCOPE, FALLBACK) else intent


def _same_value(gold: Any, pred: Any) -> bool:
    try:
        return abs(float(gold) - float(pred)) < 1e-6
    except (TypeError, ValueError):
        return str(gold).strip().lower() == str(pred).strip().lower()


def _gold_value(ent: dict) -> Any:
    """Gold values for number entities are normalised the way the contract says."""
    v = ent["value"]
    if ent["entity"] == "phone_number":
        digits = "".join(c for c in str(v) if c.isdigit())
        return digits[-11:]
    if ent["entity"] == "work_order_id":
        return re.sub(r"[^A-Z0-9]", "", str(v).upper())  # "WO-2026-000318" is "WO2026000318"
    if ent["entity"] == "amount":
        m = re.search(r"\d+(?:\.\d+)?", str(v).replace(",", ""))
        return float(m.group()) if m else v
    return v


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1-score": round(f, 4)}


HISTOGRAM_BINS = 10


def confidence_histogram(gold: list[str], pred: list[str], conf: list[float],
                         bins: int = HISTOGRAM_BINS) -> list[dict[str, Any]]:
    """Rasa's intent histogram as figures: per confidence bin [lo, hi) (the last one closed),
    how many predictions were right and how many wrong."""
    out = [{"from": round(i / bins, 4), "to": round((i + 1) / bins, 4), "correct": 0, "wrong": 0}
           for i in range(bins)]
    for g, p, c in zip(gold, pred, conf):
        i = min(bins - 1, max(0, int(float(c) * bins)))
        out[i]["correct" if g == p else "wrong"] += 1
    return out


def format_histogram(hist: list[dict[str, Any]], width: int = 40) -> str:
    """The histogram as text: one line per bin, '#' for right and 'x' for wrong predictions."""
    most = max([b["correct"] + b["wrong"] for b in hist] or [0]) or 1
    lines = ["confidence histogram (# correct, x wrong):"]
    for b in hist:
        n_ok = round(b["correct"] * width / most)
        n_bad = round(b["wrong"] * width / most)
        if b["correct"] and not n_ok:
            n_ok = 1
        if b["wrong"] and not n_bad:
            n_bad = 1
        lines.append(f"  {b['from']:.1f}–{b['to']:.1f}  {b['correct']:5d} {b['wrong']:5d}  " + "#" * n_ok + "x" * n_bad)
    return "\n".join(lines)


def confused_with(gold: list[str], pred: list[str], label: str, top: int = 3) -> dict[str, int]:
    """Rasa's per-intent ``confused_with``: the intents a gold ``label`` was most often
    predicted as, with counts (at most ``top``)."""
    wrong = Counter(p for g, p in zip(gold, pred) if g == label and p != label)
    return dict(wrong.most_common(top))


def evaluate(examples: list[Example], parse: Callable[[str], dict]) -> dict[str, Any]:
    gold, pred, errors = [], [], []
    conf: list[float] = []
    ent_tp: Counter[str] = Counter()
    ent_fp: Counter[str] = Counter()
    ent_fn: Counter[str] = Counter()
    for ex in examples:
        res = parse(ex.text)
        g, p = _canon(ex.intent), res["intent"]["name"]
        gold.append(g)
        pred.append(p)
        conf.append(float(res["intent"].get("confidence") or 0.0))
        if g != p:
            errors.append({"text": ex.text, "intent": g, "predicted": p,
                           "confidence": res["intent"]["confidence"]})
        preds = list(res["entities"])
        for ge in ex.entities:
            match = next((pe for pe in preds if pe["entity"] == ge["entity"]
                          and pe["start"] < ge["end"] and ge["start"] < pe["end"]
                          and _same_value(_gold_value(ge), pe["value"])), None)
            if match is not None:
                ent_tp[ge["entity"]] += 1
                preds.remove(match)
            else:
                ent_fn[ge["entity"]] += 1
                errors.append({"text": ex.text, "entity": ge["entity"], "gold": ge["value"],
                               "predicted": [(e["entity"], e["value"]) for e in res["entities"]]})
        for pe in preds:
            ent_fp[pe["entity"]] += 1
    labels = sorted(set(gold) | set(pred))
    report: dict[str, Any] = {}
    for lab in labels:
        tp = sum(1 for g, p in zip(gold, pred) if g == p == lab)
        fp = sum(1 for g, p in zip(gold, pred) if p == lab and g != lab)
        fn = sum(1 for g, p in zip(gold, pred) if g == lab and p != lab)
        report[lab] = dict(prf(tp, fp, fn), support=sum(1 for g in gold if g == lab),
                           confused_with=confused_with(gold, pred, lab))
    accuracy = float(np.mean([g == p for g, p in zip(gold, pred)])) if gold else 0.0
    macro = {k: round(float(np.mean([report[l][k] for l in labels if report[l]["support"]])), 4)
             for k in ("precision", "recall", "f1-score")} if labels else {}
    report["accuracy"] = round(accuracy, 4)
    report["macro avg"] = dict(macro, support=len(gold))
    in_scope = [(g, p) for g, p in zip(gold, pred) if g != FALLBACK]
    oos = [(g, p) for g, p in zip(gold, pred) if g == FALLBACK]
    entities = {}
    for name in sorted(set(ent_tp) | set(ent_fn) | set(ent_fp)):
        entities[name] = dict(prf(ent_tp[name], ent_fp[name], ent_fn[name]),
                              support=ent_tp[name] + ent_fn[name],
                              exact_match=round(ent_tp[name] / (ent_tp[name] + ent_fn[name]), 4)
                              if ent_tp[name] + ent_fn[name] else None)
    contract = [n for n in CONTRACT_ENTITIES if n in entities and entities[n]["support"]]
    return {
        "intent_report": report,
        "accuracy": round(accuracy, 4),
        "in_scope_accuracy": round(float(np.mean([g == p for g, p in in_scope])), 4) if in_scope else None,
        "out_of_scope_recall": round(float(np.mean([p == FALLBACK for _, p in oos])), 4) if oos else None,
        "entity_report": entities,
        "entity_exact_match": round(sum(ent_tp[n] for n in contract) /
                                    max(1, sum(ent_tp[n] + ent_fn[n] for n in contract)), 4),
        "errors": errors,
        "labels": labels,
        "confusion": _confusion(gold, pred, labels),
        "confidence_histogram": confidence_histogram(gold, pred, conf),
        "n": len(gold),
    }


def _confusion(gold: list[str], pred: list[str], labels: list[str]) -> list[list[int]]:
    idx = {l: i for i, l in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, pred):
        m[idx[g]][idx[p]] += 1
    return m


def plot_confusion(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, m = result["labels"], np.array(result["confusion"])
    fig, ax = plt.subplots(figsize=(max(8, len(labels) * 0.45), max(7, len(labels) * 0.42)))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"Intent confusion matrix (accuracy {result['accuracy']:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict[str, Any], report_dir: str | Path, extra: dict | None = None) -> None:
    d = Path(report_dir)
    d.mkdir(parents=True, exist_ok=True)
    out = dict(result["intent_report"])
    payload = {**out, "entity_scores": result["entity_report"],
               "in_scope_accuracy": result["in_scope_accuracy"],
               "out_of_scope_recall": result["out_of_scope_recall"],
               "entity_exact_match": result["entity_exact_match"],
               "confidence_histogram": result.get("confidence_histogram", []), **(extra or {})}
    (d / "intent_report.json").write_text(json.dumps(payload, ensure_ascii=False, indent=2), "utf-8")
    (d / "entity_report.json").write_text(
        json.dumps(result["entity_report"], ensure_ascii=False, indent=2), "utf-8")
    (d / "intent_errors.json").write_text(
        json.dumps(result["errors"], ensure_ascii=False, indent=2), "utf-8")
    plot_confusion(result, d / "intent_confusion_matrix.png")


def cross_validate(data: NLUData, folds: int, reference_date: dt.date | None = None,
                   seed: int = 13) -> dict[str, Any]:
    """Stratified k-fold: train on k-1 folds (full pipeline incl. threshold CV), test on 1."""
    from sklearn.model_selection import StratifiedKFold

    from .model import Interpreter, train

    y = [e.intent for e in data.examples]
    counts = Counter(y)
    k = max(2, min(folds, min(counts.values())))
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    merged: dict[str, Any] = defaultdict(list)
    all_ex: list[Example] = []
    preds: dict[int, dict] = {}
    for tr, te in skf.split(np.zeros(len(y)), y):
        sub = NLUData([data.examples[i] for i in tr], data.synonyms, data.regexes, data.lookups)
        interp = Interpreter(train(sub))
        for i in te:
            preds[id(data.examples[i])] = interp.parse(data.examples[i].text, reference_date)
        all_ex.extend(data.examples[i] for i in te)
        merged["folds"].append(len(te))
    return evaluate(all_ex, lambda t, _it=iter(all_ex): preds[id(next(_it))])

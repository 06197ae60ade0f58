"""Spam scorer benchmark: quality, latency, model load time/size, score saturation.

    .venv/bin/python benchmarks/spam_bench.py [--corpus DIR|TAR.GZ] [--json] [--baselines]

(a) quality: stratified, seeded 5-fold CV and the cross-folder split (train on
    easy_ham + spam, test on the rest), each fold trained and calibrated from scratch;
(b) median score latency per ~4 KB message, parse excluded and included, over several
    runs (median of the per-run medians);
(c) shipped model file size and load time;
(d) fraction of scores in [0, 0.01] U [0.99, 1] (out-of-fold and shipped-model scores);
(e) out-of-distribution check: the shipped model on the hand-written "modern" set in
    ``tests/data/spam/modern/{ham,spam}`` (short present-day transactional / QA mail and
    present-day spam, nothing from the training corpus): highest ham score, ham above 0.5,
    share of spam above 0.5 and AUC.  The unit tests require every modern ham < 0.5 and
    most modern spam > 0.5.
``--baselines`` adds scikit-learn MultinomialNB / ComplementNB on the same tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailsac.mime import parse_message  # noqa: E402
from mailsac.spam.api import DEFAULT_MODEL_PATH  # noqa: E402
from mailsac.spam.bayes import SpamModel, message_hashes  # noqa: E402
from mailsac.spam.corpus import Sample, load_corpus  # noqa: E402
from mailsac.spam.evaluate import (  # noqa: E402
    auc,
    cross_validate,
    default_folder_split,
    folder_split,
    metrics,
)
from mailsac.spam.train import stratified_folds  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "spam-corpus"
FIXTURES = ROOT / "tests" / "data" / "spam"
MODERN = FIXTURES / "modern"


def _latency(model: SpamModel, raws: list[bytes], runs: int) -> dict[str, float]:
    parsed = [parse_message(r) for r in raws]
    excl: list[float] = []
    incl: list[float] = []
    for _ in range(runs):
        times = []
        for raw, msg in zip(raws, parsed, strict=True):
            t = time.perf_counter()
            model.score(raw, msg)
            times.append(time.perf_counter() - t)
        excl.append(statistics.median(times))
        times = []
        for raw in raws:
            t = time.perf_counter()
            model.score(raw)
            times.append(time.perf_counter() - t)
        incl.append(statistics.median(times))
    return {
        "messages": len(raws),
        "mean_bytes": float(np.mean([len(r) for r in raws])),
        "median_ms_parse_excluded": statistics.median(excl) * 1e3,
        "median_ms_parse_included": statistics.median(incl) * 1e3,
    }


def _load_time(path: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        SpamModel.load(path)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _modern(model: SpamModel, root: Path) -> dict[str, Any]:
    """The shipped model on the hand-written present-day set (out of distribution)."""
    scores = {
        label: {p.stem: model.score(p.read_bytes()) for p in sorted((root / label).glob("*.eml"))}
        for label in ("ham", "spam")
    }
    ham = np.array(list(scores["ham"].values()))
    spam = np.array(list(scores["spam"].values()))
    if ham.size == 0 or spam.size == 0:
        return {}
    y = np.array([False] * ham.size + [True] * spam.size)
    worst = max(scores["ham"], key=lambda k: scores["ham"][k])
    missed = sorted(k for k, v in scores["spam"].items() if v <= 0.5)
    return {
        "ham": int(ham.size),
        "spam": int(spam.size),
        "ham_max": float(ham.max()),
        "ham_max_message": worst,
        "ham_median": float(np.median(ham)),
        "ham_above_half": int((ham > 0.5).sum()),
        "spam_detected": float((spam > 0.5).mean()),
        "spam_median": float(np.median(spam)),
        "spam_missed": missed,
        "auc": auc(np.concatenate([ham, spam]), y),
    }


def _baselines(docs: list[Any], y: np.ndarray, folds: int, seed: int) -> dict[str, Any]:
    import scipy.sparse as sp  # type: ignore[import-untyped]
    from sklearn.naive_bayes import ComplementNB, MultinomialNB  # type: ignore[import-untyped]

    vocab, inverse = np.unique(np.concatenate(docs), return_inverse=True)
    rows = np.repeat(np.arange(len(docs)), [d.size for d in docs])
    x = sp.csr_matrix((np.ones(rows.size), (rows, inverse)), shape=(len(docs), vocab.size))
    out: dict[str, Any] = {}
    for name, cls in (("MultinomialNB", MultinomialNB), ("ComplementNB", ComplementNB)):
        scores = np.zeros(y.size)
        for test in stratified_folds(y.tolist(), folds, seed):
            train = np.ones(y.size, dtype=bool)
            train[test] = False
            scores[test] = cls(alpha=1.0).fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        m = metrics(scores, y)
        out[name] = {**m.to_json(), "exact_0_or_1": float(((scores == 0) | (scores == 1)).mean())}
    return out


def run(corpus: Path | None, runs: int, baselines: bool) -> dict[str, Any]:
    report: dict[str, Any] = {}
    model = SpamModel.load(DEFAULT_MODEL_PATH)
    report["model"] = {
        "path": str(DEFAULT_MODEL_PATH.relative_to(ROOT)),
        "bytes": DEFAULT_MODEL_PATH.stat().st_size,
        "tokens": len(model.base),
        "load_ms": _load_time(DEFAULT_MODEL_PATH),
    }
    report["modern"] = _modern(model, MODERN)
    samples: list[Sample] = []
    if corpus is not None and corpus.exists():
        samples = load_corpus(corpus)
    if samples:
        t = time.perf_counter()
        docs = [message_hashes(s.raw) for s in samples]
        report["extract_s"] = time.perf_counter() - t
        labels = [s.is_spam for s in samples]
        folders = [s.folder for s in samples]
        cv, _ = cross_validate(docs, labels, 5, 0)
        report["cv_5fold_seed0"] = cv.to_json()
        report["cv_5fold_other_seeds"] = {
            seed: cross_validate(docs, labels, 5, seed)[0].to_json() for seed in (1, 2)
        }
        split = folder_split(docs, labels, folders, default_folder_split(folders, labels))
        report["folder_split"] = {k: v.to_json() for k, v in split.items()}
        shipped = np.array([model.score_hashes(d) for d in docs])
        y = np.asarray(labels)
        report["shipped_model_on_training_corpus"] = {
            "auc": auc(shipped, y),
            "saturated": float(((shipped <= 0.01) | (shipped >= 0.99)).mean()),
        }
        if baselines:
            report["baselines"] = _baselines(docs, y, 5, 0)
        raws = [s.raw for s in samples if 3584 <= len(s.raw) <= 4608][:400]
    else:
        raws = [p.read_bytes() for p in sorted(FIXTURES.glob("**/*.eml"))]
    report["latency"] = _latency(model, raws, runs)
    return report


def _table(report: dict[str, Any]) -> str:
    lines = [f"{'metric':52s} value", "-" * 70]

    def add(name: str, value: object) -> None:
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{name:52s} {text}")

    for key in ("cv_5fold_seed0",):
        if key in report:
            for k in ("auc", "accuracy", "fpr", "fnr", "saturated"):
                add(f"5-fold CV (seed 0) {k}", report[key][k])
    for seed, m in report.get("cv_5fold_other_seeds", {}).items():
        add(f"5-fold CV (seed {seed}) auc / fpr / fnr", f"{m['auc']:.4f} / {m['fpr']:.4f} / "
            f"{m['fnr']:.4f}")  # fmt: skip
    for name, m in report.get("folder_split", {}).items():
        add(f"folder split [{name}] auc / fpr / fnr", f"{m['auc']:.4f} / {m['fpr']:.4f} / "
            f"{m['fnr']:.4f}")  # fmt: skip
    for name, m in report.get("baselines", {}).items():
        add(f"baseline {name} auc / fpr / sat / exact 0|1", f"{m['auc']:.4f} / {m['fpr']:.4f} / "
            f"{m['saturated']:.3f} / {m['exact_0_or_1']:.3f}")  # fmt: skip
    if "shipped_model_on_training_corpus" in report:
        add(
            "shipped model saturation on corpus",
            report["shipped_model_on_training_corpus"]["saturated"],
        )
    mod = report.get("modern") or {}
    if mod:
        add(
            f"modern ham ({mod['ham']}) max score / above 0.5",
            f"{mod['ham_max']:.3f} ({mod['ham_max_message']}) / {mod['ham_above_half']}",
        )
        add(
            f"modern spam ({mod['spam']}) detected / median",
            f"{mod['spam_detected']:.3f} / {mod['spam_median']:.3f}",
        )
        add("modern set auc", mod["auc"])
    lat = report["latency"]
    add(f"latency median ms, parse excluded ({lat['messages']} msgs, "
        f"{lat['mean_bytes'] / 1024:.1f} KB)", lat["median_ms_parse_excluded"])  # fmt: skip
    add("latency median ms, parse included", lat["median_ms_parse_included"])
    add("model file bytes", report["model"]["bytes"])
    add("model tokens", report["model"]["tokens"])
    add("model load ms", report["model"]["load_ms"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--runs", type=int, default=5, help="latency runs")
    parser.add_argument("--baselines", action="store_true", help="also run sklearn NB baselines")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.corpus, args.runs, args.baselines)
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

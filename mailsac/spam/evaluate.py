"""Quality measurement: stratified k-fold and by-folder splits of a labelled corpus.

Every split trains a model with :func:`mailsac.spam.train.fit` (calibration included,
on the training part only) and scores the held-out part with the run-time scorer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from mailsac.spam.bayes import HashArray
from mailsac.spam.train import fit, stratified_folds

__all__ = ["Metrics", "auc", "cross_validate", "default_folder_split", "folder_split", "metrics"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Metrics:
    """Ranking and decision quality of scores at the 0.5 decision point."""

    n: int
    spam: int
    auc: float
    accuracy: float
    fpr: float
    fnr: float
    saturated: float  # fraction of scores in [0, 0.01] U [0.99, 1]

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"n={self.n} spam={self.spam} AUC={self.auc:.4f} accuracy={self.accuracy:.4f} "
            f"FPR={self.fpr:.4f} FNR={self.fnr:.4f} saturated={self.saturated:.3f}"
        )


def auc(scores: FloatArray, labels: npt.NDArray[np.bool_]) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def metrics(scores: FloatArray, labels: npt.NDArray[np.bool_]) -> Metrics:
    flagged = scores > 0.5
    ham, spam = ~labels, labels
    return Metrics(
        n=int(labels.size),
        spam=int(spam.sum()),
        auc=auc(scores, labels),
        accuracy=float((flagged == labels).mean()),
        fpr=float((flagged & ham).sum() / max(1, ham.sum())),
        fnr=float((~flagged & spam).sum() / max(1, spam.sum())),
        saturated=float(((scores <= 0.01) | (scores >= 0.99)).mean()),
    )


def _train_and_score(
    docs: Sequence[HashArray], y: npt.NDArray[np.bool_], train: npt.NDArray[np.bool_]
) -> FloatArray:
    train_idx = np.flatnonzero(train).tolist()
    model = fit([docs[i] for i in train_idx], y[train].tolist())
    return np.array([model.score_hashes(docs[i]) for i in np.flatnonzero(~train).tolist()])


def cross_validate(
    docs: Sequence[HashArray], labels: Sequence[bool], folds: int = 5, seed: int = 0
) -> tuple[Metrics, FloatArray]:
    """Out-of-fold scores of a stratified, seeded k-fold split, and their metrics."""
    y = np.asarray(labels, dtype=bool)
    scores = np.zeros(y.size)
    for test in stratified_folds(y.tolist(), folds, seed):
        train = np.ones(y.size, dtype=bool)
        train[test] = False
        scores[test] = _train_and_score(docs, y, train)
    return metrics(scores, y), scores


def default_folder_split(folders: Sequence[str], labels: Sequence[bool]) -> set[str]:
    """Training folders: the alphabetically first folder of each class.

    For the SpamAssassin corpus that is ``easy_ham`` + ``spam`` (tested on
    ``easy_ham_2``, ``hard_ham``, ``spam_2``), the split its README suggests.
    """
    chosen: set[str] = set()
    for cls in (True, False):
        names = sorted({f for f, s in zip(folders, labels, strict=True) if s == cls})
        if len(names) > 1:
            chosen.add(names[0])
    return chosen


def folder_split(
    docs: Sequence[HashArray],
    labels: Sequence[bool],
    folders: Sequence[str],
    train_folders: set[str],
) -> dict[str, Metrics]:
    """Train on ``train_folders``, test on the rest: overall and per test folder."""
    y = np.asarray(labels, dtype=bool)
    names = np.asarray(folders)
    train = np.isin(names, sorted(train_folders))
    if train.all() or not train.any() or y[train].all() or not y[train].any():
        raise ValueError("the folder split needs spam and ham on both sides")
    scores = _train_and_score(docs, y, train)
    y_test, f_test = y[~train], names[~train]
    result = {"all": metrics(scores, y_test)}
    for name in sorted(set(f_test.tolist())):
        sel = f_test == name
        result[name] = metrics(scores[sel], y_test[sel])
    return result

"""Calibration metrics (pure functions on probabilities) and scikit-learn scorers."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import get_scorer as _sk_get_scorer

__all__ = [
    "expected_calibration_error",
    "maximum_calibration_error",
    "reliability_curve",
    "negative_log_likelihood",
    "brier_score",
    "ProbaScorer",
    "neg_ece_scorer",
    "neg_nll_scorer",
    "neg_brier_scorer",
    "SCORERS",
    "get_scorer",
]


def _as_indices_and_probs(y_true: Any, y_prob: Any, labels: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Encode ``y_true`` against ``labels`` and make ``y_prob`` 2-D (binary 1-D = positive class)."""
    p = np.asarray(y_prob, dtype=np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2:
        raise ValueError(f"y_prob must have shape (n,) or (n, n_classes); got {p.shape}.")
    y = np.asarray(y_true)
    if labels is None:
        if np.issubdtype(y.dtype, np.integer) and y.size and y.min() >= 0 and y.max() < p.shape[1]:
            return y.astype(np.int64), p
        labels = np.unique(y)
    labels = np.asarray(labels)
    if len(labels) != p.shape[1]:
        raise ValueError(
            f"y_prob has {p.shape[1]} columns but there are {len(labels)} labels {labels.tolist()}; "
            "pass labels=estimator.classes_."
        )
    idx = np.searchsorted(labels, y) if np.all(labels[:-1] <= labels[1:]) else None
    if idx is None or np.any(idx >= len(labels)) or np.any(labels[np.minimum(idx, len(labels) - 1)] != y):
        lookup = {v: i for i, v in enumerate(labels.tolist())}
        try:
            idx = np.array([lookup[v] for v in y.tolist()])
        except KeyError as exc:
            raise ValueError(f"y_true holds label {exc.args[0]!r} that is not in labels {labels.tolist()}.") from None
    return idx.astype(np.int64), p


def reliability_curve(y_true: Any, y_prob: Any, *, n_bins: int = 15, labels: Any = None):
    """Per-bin mean confidence, accuracy and count of the top-label prediction.

    Equal-width bins over [0, 1]; bin ``b`` holds the examples whose top-class
    probability lies in ``(b/B, (b+1)/B]`` (the first bin also holds 0).

    Returns
    -------
    confidence, accuracy, count : ndarrays of shape (n_bins,) (NaN where a bin is empty)
    """
    y, p = _as_indices_and_probs(y_true, y_prob, labels)
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
        confidence = np.bincount(bins, weights=conf, minlength=n_bins) / count
    return confidence, accuracy, count


def _bin_gaps(y_true, y_prob, n_bins, labels):
    confidence, accuracy, count = reliability_curve(y_true, y_prob, n_bins=n_bins, labels=labels)
    return np.nan_to_num(np.abs(accuracy - confidence)), count


def expected_calibration_error(y_true: Any, y_prob: Any, *, n_bins: int = 15, labels: Any = None) -> float:
    """Top-label expected calibration error with equal-width bins.

    ``ECE = sum_b (n_b / n) |acc(b) - conf(b)|`` where bin ``b`` holds the
    examples whose top-class probability lies in ``(b/B, (b+1)/B]``.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Labels (values of ``labels``, or indices ``0..C-1``).
    y_prob : array-like of shape (n, C), or (n,) for the positive class of a binary task
    n_bins : int, default=15
    labels : array-like of shape (C,), optional
        Label of each column of ``y_prob`` (e.g. ``estimator.classes_``).

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> expected_calibration_error([0, 1], [[0.9, 0.1], [0.2, 0.8]], n_bins=10)
    0.15000000000000002
    """
    gap, count = _bin_gaps(y_true, y_prob, n_bins, labels)
    return float(np.sum(gap * count) / max(count.sum(), 1))


def maximum_calibration_error(y_true: Any, y_prob: Any, *, n_bins: int = 15, labels: Any = None) -> float:
    """Largest per-bin gap ``max_b |acc(b) - conf(b)|`` over non-empty bins (same bins as ECE)."""
    gap, _ = _bin_gaps(y_true, y_prob, n_bins, labels)
    return float(gap.max())


def negative_log_likelihood(y_true: Any, y_prob: Any, *, labels: Any = None, eps: float = 1e-12) -> float:
    """Mean ``-log p(y_i | x_i)`` in nats (probabilities clipped at ``eps``)."""
    y, p = _as_indices_and_probs(y_true, y_prob, labels)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], eps, 1.0))))


def brier_score(y_true: Any, y_prob: Any, *, labels: Any = None) -> float:
    """Multi-class Brier score ``(1/n) sum_i sum_c (p_ic - 1[y_i = c])^2`` (in [0, 2])."""
    y, p = _as_indices_and_probs(y_true, y_prob, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


class ProbaScorer:
    """A scorer ``(estimator, X, y) -> -metric(y, estimator.predict_proba(X))``.

    Unlike ``make_scorer``, it keeps all probability columns and passes
    ``estimator.classes_`` as the labels, so it is exact for binary and
    multi-class tasks and for folds where a class is absent.

    Parameters
    ----------
    metric : callable ``(y_true, y_prob, *, labels) -> float``, lower is better
    """

    def __init__(self, metric):
        self.metric = metric

    def __call__(self, estimator, X, y, sample_weight=None) -> float:
        proba = estimator.predict_proba(X)
        return -float(self.metric(y, proba, labels=getattr(estimator, "classes_", None)))

    def __repr__(self) -> str:
        return f"ProbaScorer({self.metric.__name__})"


#: Negated ECE (higher is better), for ``GridSearchCV(scoring=...)``.
neg_ece_scorer = ProbaScorer(expected_calibration_error)
#: Negated NLL (higher is better).
neg_nll_scorer = ProbaScorer(negative_log_likelihood)
#: Negated multi-class Brier score (higher is better).
neg_brier_scorer = ProbaScorer(brier_score)

SCORERS = {"neg_ece": neg_ece_scorer, "neg_nll": neg_nll_scorer, "neg_brier": neg_brier_scorer}


def get_scorer(scoring: str | Any):
    """Resolve ``"neg_ece"``, ``"neg_nll"``, ``"neg_brier"`` or any scikit-learn scorer name.

    scikit-learn's own registry of scorer strings is private, so pass
    ``scoring=get_scorer("neg_ece")`` (or ``scoring=neg_ece_scorer``) to
    ``GridSearchCV`` / ``cross_val_score``.
    """
    if isinstance(scoring, str) and scoring in SCORERS:
        return SCORERS[scoring]
    return _sk_get_scorer(scoring)

"""Calibration metrics (pure functions on probabilities) and scikit-learn scorers."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, make_scorer
from sklearn.metrics import get_scorer as _sk_get_scorer

__all__ = [
    "expected_calibration_error",
    "maximum_calibration_error",
    "reliability_curve",
    "negative_log_likelihood",
    "brier_score",
    "risk_coverage_curve",
    "aurc",
    "accuracy_at_coverage",
    "ood_auroc",
    "proba_scorer",
    "neg_ece_scorer",
    "neg_nll_scorer",
    "neg_brier_scorer",
    "SCORERS",
    "get_scorer",
]


def _as_indices_and_probs(y_true: Any, y_prob: Any, labels: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Map each label of ``y_true`` to its column of ``y_prob`` (binary 1-D ``y_prob`` = the second label's).

    Column ``c`` belongs to ``labels[c]``; without ``labels``, to the ``c``-th of the
    sorted distinct values of ``y_true`` (scikit-learn's convention). Integer
    labels are never read as column indices: with classes {1, 2, 3} the column
    of label 1 is column 0.

    Raises
    ------
    ValueError
        If the number of labels differs from the number of columns (e.g. a class
        is absent from ``y_true``: pass ``labels=estimator.classes_``), or if
        ``y_true`` holds a label outside ``labels``.
    """
    p = np.asarray(y_prob, dtype=np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2:
        raise ValueError(f"y_prob must have shape (n,) or (n, n_classes); got {p.shape}.")
    y = np.asarray(y_true)
    labels = np.unique(y) if labels is None else np.asarray(labels)
    if len(labels) != p.shape[1]:
        raise ValueError(
            f"y_prob has {p.shape[1]} columns but there are {len(labels)} labels {labels.tolist()}; "
            "pass labels=estimator.classes_ (the label of each column, in order)."
        )
    lookup = {v: i for i, v in enumerate(labels.tolist())}
    try:
        idx = np.fromiter((lookup[v] for v in y.tolist()), dtype=np.int64, count=len(y))
    except KeyError as exc:
        raise ValueError(f"y_true holds label {exc.args[0]!r} that is not in labels {labels.tolist()}.") from None
    return idx, p


def _weights(sample_weight: Any, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"sample_weight must be {n} finite non-negative numbers; got shape {w.shape}.")
    return w


def reliability_curve(y_true: Any, y_prob: Any, *, n_bins: int = 15, labels: Any = None, sample_weight: Any = None):
    """Per-bin mean confidence, accuracy and (weighted) count of the top-label prediction.

    Equal-width bins over [0, 1]; bin ``b`` holds the examples whose top-class
    probability lies in ``(b/B, (b+1)/B]`` (the first bin also holds 0).

    Returns
    -------
    confidence, accuracy, count : ndarrays of shape (n_bins,) (NaN where a bin is empty)
    """
    y, p = _as_indices_and_probs(y_true, y_prob, labels)
    w = _weights(sample_weight, len(y))
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, weights=w, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(bins, weights=w * correct, minlength=n_bins) / count
        confidence = np.bincount(bins, weights=w * conf, minlength=n_bins) / count
    accuracy[count == 0] = confidence[count == 0] = np.nan
    return confidence, accuracy, count


def _bin_gaps(y_true, y_prob, n_bins, labels, sample_weight=None):
    confidence, accuracy, count = reliability_curve(
        y_true, y_prob, n_bins=n_bins, labels=labels, sample_weight=sample_weight
    )
    return np.nan_to_num(np.abs(accuracy - confidence)), count


def expected_calibration_error(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, labels: Any = None, sample_weight: Any = None
) -> float:
    """Top-label expected calibration error with equal-width bins.

    ``ECE = sum_b (n_b / n) |acc(b) - conf(b)|`` where bin ``b`` holds the
    examples whose top-class probability lies in ``(b/B, (b+1)/B]``.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Labels.
    y_prob : array-like of shape (n, C), or (n,) for the positive class of a binary task
    n_bins : int, default=15
    labels : array-like of shape (C,), optional
        Label of each column of ``y_prob`` (e.g. ``estimator.classes_``); default:
        the sorted distinct labels of ``y_true``, which must then number ``C``.
    sample_weight : array-like of shape (n,), optional
        Weights of the examples in the bins' counts, accuracies and confidences.

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> expected_calibration_error([0, 1], [[0.9, 0.1], [0.2, 0.8]], n_bins=10)
    0.15000000000000002
    """
    gap, count = _bin_gaps(y_true, y_prob, n_bins, labels, sample_weight)
    return float(np.sum(gap * count) / count.sum()) if count.sum() > 0 else 0.0


def maximum_calibration_error(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, labels: Any = None, sample_weight: Any = None
) -> float:
    """Largest per-bin gap ``max_b |acc(b) - conf(b)|`` over non-empty bins (same bins as ECE)."""
    gap, _ = _bin_gaps(y_true, y_prob, n_bins, labels, sample_weight)
    return float(gap.max())


def negative_log_likelihood(y_true: Any, y_prob: Any, *, labels: Any = None, sample_weight: Any = None) -> float:
    """Mean ``-log p(y_i | x_i)`` in nats: :func:`sklearn.metrics.log_loss`, after the explicit label mapping."""
    y, p = _as_indices_and_probs(y_true, y_prob, labels)
    return float(log_loss(y, p, labels=np.arange(p.shape[1]), sample_weight=sample_weight))


def brier_score(y_true: Any, y_prob: Any, *, labels: Any = None, sample_weight: Any = None) -> float:
    """Multi-class Brier score ``(1/n) sum_i sum_c (p_ic - 1[y_i = c])^2`` (in [0, 2]).

    :func:`sklearn.metrics.brier_score_loss` with ``scale_by_half=False``, after the explicit label mapping.
    """
    y, p = _as_indices_and_probs(y_true, y_prob, labels)
    labels_idx = np.arange(p.shape[1])
    return float(brier_score_loss(y, p, labels=labels_idx, sample_weight=sample_weight, scale_by_half=False))


def risk_coverage_curve(
    y_true: Any, y_prob: Any, *, uncertainty: Any = None, labels: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Selective prediction: the error rate among the ``k`` most certain inputs, for ``k = 1..n``.

    A model that may abstain answers the inputs it is most certain of. With the
    inputs sorted by ``uncertainty`` (ascending; ties keep the input order),
    ``risk_k = (1/k) sum_{i <= k} [argmax p_i != y_i]`` at ``coverage_k = k / n``.

    Parameters
    ----------
    y_true : array-like of shape (n,)
    y_prob : array-like of shape (n, n_classes)
    uncertainty : array-like of shape (n,), optional
        The score to abstain by (higher = less certain); default ``1 - max_c p_c``.
    labels : array-like, optional
        The label of each column (see :func:`expected_calibration_error`).

    Returns
    -------
    coverage, risk : ndarrays of shape (n,)
    """
    idx, p = _as_indices_and_probs(y_true, y_prob, labels)
    u = 1.0 - p.max(1) if uncertainty is None else np.asarray(uncertainty, dtype=np.float64)
    if u.shape != (len(idx),):
        raise ValueError(f"uncertainty must have shape ({len(idx)},); got {u.shape}.")
    errors = (p.argmax(1) != idx)[np.argsort(u, kind="stable")]
    k = np.arange(1, len(idx) + 1)
    return k / len(idx), np.cumsum(errors) / k


def aurc(y_true: Any, y_prob: Any, *, uncertainty: Any = None, labels: Any = None) -> float:
    """Area under the risk-coverage curve, ``(1/n) sum_k risk_k`` (lower is better).

    Geifman, Uziel & El-Yaniv, "Bias-reduced uncertainty estimation for deep
    neural classifiers", ICLR 2019. Parameters as in :func:`risk_coverage_curve`.
    """
    return float(risk_coverage_curve(y_true, y_prob, uncertainty=uncertainty, labels=labels)[1].mean())


def accuracy_at_coverage(
    y_true: Any, y_prob: Any, coverage: float, *, uncertainty: Any = None, labels: Any = None
) -> float:
    """Accuracy on the ``ceil(coverage * n)`` most certain inputs (the rest abstained on).

    Parameters as in :func:`risk_coverage_curve`; ``coverage`` in (0, 1].
    """
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1]; got {coverage!r}.")
    cov, risk = risk_coverage_curve(y_true, y_prob, uncertainty=uncertainty, labels=labels)
    k = int(np.ceil(coverage * len(cov) - 1e-9))
    return float(1.0 - risk[max(k, 1) - 1])


def ood_auroc(in_scores: Any, out_scores: Any) -> float:
    """How well a score ranks out-of-distribution inputs above in-distribution ones (ROC AUC).

    0.5 is chance; 1 puts every unfamiliar input above every familiar one; below
    0.5 the score ranks them the wrong way round.
    """
    from sklearn.metrics import roc_auc_score

    a, b = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    return float(roc_auc_score(np.r_[np.zeros(a.size), np.ones(b.size)], np.r_[a, b]))


def proba_scorer(metric, **kwargs: Any):
    """A scikit-learn scorer ``-metric(y, estimator.predict_proba(X))`` built by :func:`sklearn.metrics.make_scorer`.

    scikit-learn supplies the sign (higher is better), ``sample_weight`` and
    metadata routing; for a binary task it passes the positive class's column.
    ``kwargs`` go to ``metric``: pass ``labels=classes`` when a fold may miss a class.
    """
    return make_scorer(metric, greater_is_better=False, response_method="predict_proba", **kwargs)


#: Negated ECE (higher is better), for ``GridSearchCV(scoring=...)``.
neg_ece_scorer = proba_scorer(expected_calibration_error)
#: Negated NLL (higher is better).
neg_nll_scorer = proba_scorer(negative_log_likelihood)
#: Negated multi-class Brier score (higher is better).
neg_brier_scorer = proba_scorer(brier_score)

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

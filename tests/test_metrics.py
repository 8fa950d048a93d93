import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import brier_score_loss, log_loss

from subspace_bayes.metrics import (
    brier_score,
    expected_calibration_error,
    get_scorer,
    maximum_calibration_error,
    negative_log_likelihood,
)


def _ece_reference(y, p, n_bins):
    """Loop-based reference: equal-width bins (b/B, (b+1)/B], top-label confidence."""
    conf, pred = p.max(1), p.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        in_bin = (conf > lo) & (conf <= hi) if b > 0 else (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs((pred[in_bin] == y[in_bin]).mean() - conf[in_bin].mean())
    return total


@pytest.mark.parametrize("n_classes", [2, 4])
def test_ece_matches_loop_reference(n_classes):
    rng = np.random.RandomState(0)
    p = rng.dirichlet(np.ones(n_classes) * 0.5, size=500)
    y = rng.randint(n_classes, size=500)
    assert np.isclose(expected_calibration_error(y, p), _ece_reference(y, p, 15))
    assert np.isclose(expected_calibration_error(y, p, n_bins=7), _ece_reference(y, p, 7))
    assert maximum_calibration_error(y, p) >= expected_calibration_error(y, p)


def test_perfectly_calibrated_predictions_have_small_ece():
    rng = np.random.RandomState(1)
    q = rng.uniform(0.5, 1.0, size=200_000)
    y = (rng.uniform(size=q.size) < q).astype(int)  # P(y=1) = q exactly
    p = np.stack([1 - q, q], 1)
    assert expected_calibration_error(y, p) < 0.01


def test_nll_and_brier_match_sklearn_and_string_labels():
    rng = np.random.RandomState(2)
    p = rng.dirichlet(np.ones(3), size=100)
    y = rng.randint(3, size=100)
    labels = np.array(["a", "b", "c"])
    assert np.isclose(negative_log_likelihood(y, p), log_loss(y, p, labels=[0, 1, 2]))
    assert np.isclose(negative_log_likelihood(labels[y], p, labels=labels), log_loss(y, p, labels=[0, 1, 2]))
    # Binary: multi-class Brier = 2 x sklearn's binary Brier score.
    pb = rng.uniform(size=100)
    yb = rng.randint(2, size=100)
    assert np.isclose(brier_score(yb, pb), 2 * brier_score_loss(yb, pb))


def test_label_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="labels"):
        expected_calibration_error(["x", "y"], [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])


def test_get_scorer_resolves_ours_and_sklearn():
    assert "expected_calibration_error" in repr(get_scorer("neg_ece"))
    assert get_scorer("accuracy") is not None


def test_integer_labels_are_never_read_as_column_indices():
    # Regression: classes {1, 2, 3}, y = [1, 1, 2] was read as columns 1, 1, 2 (NLL 2.53 instead of 0.18).
    p = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.85, 0.05]])
    y = np.array([1, 1, 2])
    expected = -np.mean(np.log([0.9, 0.8, 0.85]))
    assert np.isclose(negative_log_likelihood(y, p, labels=[1, 2, 3]), expected)
    with pytest.raises(ValueError, match=r"3 columns but there are 2 labels.*labels=estimator\.classes_"):
        negative_log_likelihood(y, p)  # two distinct labels cannot name three columns
    y_full = np.array([1, 2, 3])
    assert np.isclose(brier_score(y_full, p), brier_score(y_full, p, labels=[1, 2, 3]))


class _Fixed(ClassifierMixin, BaseEstimator):
    """A fitted stand-in with fixed probabilities, for scorer tests."""

    classes_ = np.array([0, 1])

    def __init__(self, proba=None):
        self.proba = proba

    def predict_proba(self, X):
        return self.proba[: len(X)]

    def fit(self, X, y):
        return self


def test_scorers_honour_sample_weight_and_sign():
    from subspace_bayes.metrics import neg_brier_scorer, neg_ece_scorer, neg_nll_scorer

    rng = np.random.RandomState(0)
    q = rng.uniform(0.05, 0.95, size=40)
    proba, y = np.stack([1 - q, q], 1), rng.randint(2, size=40)
    w = rng.uniform(0, 3, size=40)
    est, X = _Fixed(proba), np.zeros((40, 1))
    assert np.isclose(neg_nll_scorer(est, X, y, sample_weight=w), -log_loss(y, proba, sample_weight=w))
    assert np.isclose(neg_brier_scorer(est, X, y, sample_weight=w), -2 * brier_score_loss(y, q, sample_weight=w))
    assert neg_ece_scorer(est, X, y, sample_weight=w) != neg_ece_scorer(est, X, y)  # weights change the bins
    dup = np.repeat(np.arange(40), 2)  # weight 2 everywhere = every example twice
    assert np.isclose(
        neg_ece_scorer(est, X, y, sample_weight=np.full(40, 2.0)), -expected_calibration_error(y[dup], proba[dup])
    )


def test_risk_coverage_aurc_and_accuracy_at_coverage_by_hand():
    from subspace_bayes.metrics import accuracy_at_coverage, aurc, risk_coverage_curve

    y = np.array([0, 1, 1, 0])
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.45, 0.55]])  # wrong on the two least certain
    cov, risk = risk_coverage_curve(y, p)
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0, 0, 1 / 3, 2 / 4])
    assert aurc(y, p) == pytest.approx((0 + 0 + 1 / 3 + 1 / 2) / 4)
    assert accuracy_at_coverage(y, p, 0.5) == 1.0 and accuracy_at_coverage(y, p, 0.6) == pytest.approx(2 / 3)
    # A score that ranks the errors first is worse; labels map columns as everywhere else.
    assert aurc(y, p, uncertainty=[3, 2, 1, 0]) > aurc(y, p)
    assert aurc(np.array(["a", "b", "b", "a"]), p, labels=["a", "b"]) == aurc(y, p)
    with pytest.raises(ValueError, match="coverage"):
        accuracy_at_coverage(y, p, 0.0)


def test_ood_auroc_orientation():
    from subspace_bayes.metrics import ood_auroc

    assert ood_auroc([0.1, 0.2], [0.3, 0.4]) == 1.0 and ood_auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert ood_auroc([0.1, 0.3], [0.2, 0.4]) == 0.75

"""Figures: reliability diagrams and uncertainty histograms.

matplotlib is imported lazily and only through its object API (``Figure``):
the user's backend is never switched, so ``plt.show()`` in a script keeps
working. Pass ``ax=`` to draw into a pyplot figure of your own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .metrics import expected_calibration_error, reliability_curve

__all__ = ["plot_reliability", "plot_uncertainty_histograms", "plot_spectrum"]


def _tidy(fig):
    """Tight layout for a figure we made or one without a layout engine; a user's engine is kept."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    return fig


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _axes(ax: Any, figsize: tuple[float, float]):
    """``ax``, or the axes of a new pyplot-free figure of ``figsize``."""
    return _figure(figsize=figsize).subplots() if ax is None else ax


def plot_reliability(
    y_true: Any, probas: Mapping[str, np.ndarray], *, n_bins: int = 15, labels: Any = None, ax: Any = None
):
    """Reliability diagram of several models on the same labels.

    Parameters
    ----------
    y_true : array-like of shape (n,)
    probas : dict of name -> ndarray of shape (n, n_classes)
    n_bins : int, default=15
    labels : array-like, optional
        Column labels of the probabilities.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Figure
    """
    ax = _axes(ax, (5.5, 5))
    fig = ax.figure
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    for name, p in probas.items():
        conf, acc, count = reliability_curve(y_true, p, n_bins=n_bins, labels=labels)
        ok = count > 0
        ece = expected_calibration_error(y_true, p, n_bins=n_bins, labels=labels)
        ax.plot(conf[ok], acc[ok], marker="o", ms=4, label=f"{name} (ECE {ece:.3f})")
    ax.set(
        xlabel="confidence (top-class probability)",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
        title="Reliability diagram",
    )
    ax.legend(loc="upper left", fontsize=8)
    return _tidy(fig)


#: Axis labels of the scores that are not entropies (``predict_uncertainty``'s feature scores).
_UNITS = {
    "feature_distance": "squared Mahalanobis distance",
    "knn_distance": "cosine distance to the k-th nearest training example",
    "novelty": "fraction of familiar inputs nearer",
}


def plot_uncertainty_histograms(
    in_dist: Mapping[str, np.ndarray], out_dist: Mapping[str, np.ndarray], *, bins: int = 30, axes: Any = None
):
    """Histograms of an uncertainty score on in-distribution vs out-of-distribution inputs, one panel per key.

    Parameters
    ----------
    in_dist, out_dist : dict of score name -> ndarray of shape (n,)
    bins : int, default=30
    axes : sequence of matplotlib Axes, optional
        One per key; a new figure by default.

    Returns
    -------
    matplotlib Figure
    """
    keys = list(in_dist)
    if axes is None:
        fig = _figure(figsize=(4.5 * len(keys), 3.6))
        axes = fig.subplots(1, len(keys), squeeze=False)[0]
    fig = axes[0].figure
    for ax, key in zip(axes, keys, strict=True):
        a, b = np.asarray(in_dist[key]), np.asarray(out_dist[key])
        edges = np.histogram_bin_edges(np.concatenate([a, b]), bins=bins)
        ax.hist(a, bins=edges, alpha=0.6, density=True, label="in-distribution")
        ax.hist(b, bins=edges, alpha=0.6, density=True, label="out-of-distribution")
        ax.set(title=key, xlabel=_UNITS.get(key, "nats"), ylabel="density")
        ax.legend(fontsize=8)
    return _tidy(fig)


def plot_spectrum(source: Any, *, ax: Any = None):
    """Eigenvalues of posterior covariances over ``theta``, largest first, on a log scale.

    The paper's second finding is that these fall off fast: a few directions
    carry most of the variance. The legend gives each spectrum's entropy
    effective rank and the share of the variance in its top 4 directions.

    Parameters
    ----------
    source : fitted estimator, array of shape (D,), or dict of name -> either
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Figure

    Raises
    ------
    ValueError
        For a spectrum without a positive eigenvalue, such as a MAP fit's (a point
        estimate has no covariance to draw).
    """
    from .posteriors import entropy_effective_rank

    items = list(source.items() if isinstance(source, Mapping) else [("", source)])
    spectra = {}
    for name, item in items:
        lam = np.sort(
            np.asarray(item.posterior_spectrum() if hasattr(item, "posterior_spectrum") else item, dtype=np.float64)
        )[::-1]
        if not (lam > 0).any():
            what = f"{name!r}" if name else "this source"
            raise ValueError(
                f"plot_spectrum: {what} has no positive posterior variance to draw (a point estimate such as "
                "posterior='map' has no covariance); fit with posterior='vi', 'swag' or 'laplace'."
            )
        spectra[name] = lam
    ax = _axes(ax, (5.5, 4))
    for name, lam in spectra.items():
        positive = lam[lam > 0]
        share = positive[:4].sum() / positive.sum() if positive.size else 0.0
        label = f"{name + ': ' if name else ''}eff. rank {entropy_effective_rank(lam):.1f}, top-4 share {share:.0%}"
        ax.semilogy(np.arange(1, positive.size + 1), positive, marker=".", ms=3, label=label)
    ax.set(
        xlabel="direction (eigenvalue rank)",
        ylabel="posterior variance (eigenvalue)",
        title="Posterior covariance spectrum over the cores",
    )
    ax.legend(fontsize=8)
    return _tidy(ax.figure)

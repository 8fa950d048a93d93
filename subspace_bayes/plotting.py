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

__all__ = ["plot_reliability", "plot_uncertainty_histograms"]


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


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
    if ax is None:
        fig = _figure(figsize=(5.5, 5))
        ax = fig.subplots()
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
    fig.tight_layout()
    return fig


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
        ax.set(title=key, xlabel="nats", ylabel="density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

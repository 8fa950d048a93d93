"""How far an input's pooled features lie from the training data: a score for unfamiliar inputs.

The class-conditional Gaussian of Lee et al. (2018, arXiv:1807.03888): class means ``m_c`` and one
covariance ``S`` shared by the classes, fitted to the pooled backbone features of the training
split at the posterior mean, and the distance

``d(x) = min_c (phi(x) - m_c)^T S^{-1} (phi(x) - m_c)``.

It looks at the representation, not at the predicted probabilities, so it can flag an input that
the head maps confidently to a class (see docs/benchmarks.md for where it beats the predictive's
own scores and where it does not).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from .predictive import _in_callers_order

__all__ = ["FeatureGaussian", "fit_feature_gaussian", "mahalanobis_distance", "MAX_RANK"]

#: Eigen-directions of ``S`` kept exactly; the rest share their mean eigenvalue. 1024 keeps encoders
#: up to RoBERTa-large exact and bounds the stored basis of a 4096-wide LLM at 16 MB (float32).
MAX_RANK = 1024


def fit_feature_gaussian(
    features: Tensor, labels: Tensor, n_classes: int, *, max_rank: int = MAX_RANK, ridge: float = 1e-6
) -> dict[str, Tensor]:
    """Class means and the shared within-class covariance, in eigen form.

    ``m_c = mean{phi_i : y_i = c}`` and ``S = (1/N) sum_i (phi_i - m_{y_i})(phi_i - m_{y_i})^T``,
    stored as ``S ~= U diag(lam) U^T + lam_perp (I - U U^T)``: the top ``k = min(H, max_rank)``
    eigenpairs and the mean ``lam_perp`` of the remaining eigenvalues (so ``tr S`` is kept; exact
    when ``k = H``). Every eigenvalue is floored at ``ridge * tr(S) / H``, which makes ``S``
    invertible when ``N <= H``.

    Parameters
    ----------
    features : Tensor of shape (N, H)
    labels : Tensor of shape (N,)
        Class indices in ``[0, n_classes)``.
    n_classes : int
    max_rank : int, default=MAX_RANK
    ridge : float, default=1e-6

    Returns
    -------
    dict with ``means`` (C, H; NaN rows for classes without examples), ``basis`` (H, k),
    ``eigenvalues`` (k,) and ``residual`` (a scalar tensor, ``lam_perp``), in float64.
    """
    phi = features.detach().double().cpu()
    y = labels.detach().long().cpu()
    H = phi.shape[1]
    means = torch.full((n_classes, H), float("nan"), dtype=torch.float64)
    for c in y.unique().tolist():
        means[c] = phi[y == c].mean(0)
    centred = phi - means[y]
    S = centred.T @ centred / max(len(phi), 1)
    eig, vec = torch.linalg.eigh(S)  # ascending
    eig, vec = eig.flip(0), vec.flip(1)
    floor = ridge * max(float(S.trace()), 1e-300) / H
    k = min(H, int(max_rank))
    rest = eig[k:]
    residual = torch.tensor(float(rest.mean()) if len(rest) else floor, dtype=torch.float64).clamp_min(floor)
    basis, eigenvalues = vec[:, :k].contiguous(), eig[:k].clamp_min(floor)
    return {"means": means, "basis": basis, "eigenvalues": eigenvalues, "residual": residual}


def mahalanobis_distance(
    features: Tensor, means: Tensor, basis: Tensor, eigenvalues: Tensor, residual: Tensor
) -> Tensor:
    """``min_c (phi - m_c)^T S^{-1} (phi - m_c)`` for each row, with the ``S`` of :func:`fit_feature_gaussian`.

    ``S^{-1} = U diag(1/lam) U^T + (I - U U^T) / lam_perp``; classes with NaN means are skipped.

    Returns
    -------
    Tensor of shape (N,), float64
    """
    phi = features.detach().double().cpu()
    means, basis = means.double().cpu(), basis.double().cpu()
    present = ~torch.isnan(means).any(1)
    d = phi[:, None, :] - means[present][None]  # (N, C', H)
    inside = d @ basis  # (N, C', k)
    dist = (inside.pow(2) / eigenvalues.double().cpu()).sum(-1)
    if basis.shape[1] < basis.shape[0]:  # the directions off the kept basis share lam_perp
        outside = (d.pow(2).sum(-1) - inside.pow(2).sum(-1)).clamp_min(0.0)
        dist = dist + outside / residual.double().cpu()
    return dist.min(1).values


class FeatureGaussian(nn.Module):
    """The fitted class-conditional Gaussian of a module's pooled features (buffers, saved with the adapter).

    Empty until :meth:`set_statistics`; then holds the four tensors of :func:`fit_feature_gaussian`
    (float32) and scores features with :func:`mahalanobis_distance`.
    """

    KEYS = ("means", "basis", "eigenvalues", "residual")

    def __init__(self) -> None:
        super().__init__()
        for key in self.KEYS:
            self.register_buffer(key, None)

    @property
    def fitted(self) -> bool:
        return self.means is not None

    def set_statistics(self, stats: dict[str, Tensor]) -> None:
        """Install ``stats`` (the output of :func:`fit_feature_gaussian`, or a saved ``state_dict``)."""
        missing = [k for k in self.KEYS if k not in stats]
        if missing:
            raise ValueError(f"Feature statistics lack {missing}; refit the estimator.")
        for key in self.KEYS:  # scored on the CPU in float64 (mahalanobis_distance), so kept there
            setattr(self, key, stats[key].detach().float().cpu())

    def forward(self, features: Tensor) -> Tensor:
        if not self.fitted:
            raise RuntimeError(
                "No feature statistics: fit the estimator first (adapters saved by earlier versions lack them)."
            )
        return mahalanobis_distance(features, self.means, self.basis, self.eigenvalues, self.residual)


@torch.no_grad()
def collect_features(module: nn.Module, batches: Iterable[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
    """Pooled features at the posterior mean and the labels of ``batches`` (each with a ``labels`` entry).

    Batches are those of :class:`~subspace_bayes.inference.base.TrainingData` (a ``sample_weight``
    entry is ignored).
    """
    theta = module.posterior.mean.detach()[None]
    feats, labels = [], []
    for batch in batches:
        batch = dict(batch)
        batch.pop("sample_weight", None)
        labels.append(torch.as_tensor(batch.pop("labels")).cpu())
        feats.append(module.features(theta, **batch).float().cpu())
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def feature_distances(
    module: nn.Module,
    batches: Iterable[dict[str, Tensor]],
    posterior: nn.Module | None = None,
    *,
    order: np.ndarray,
    **_,
) -> np.ndarray:
    """:meth:`FeatureGaussian.forward` of the features at the posterior mean, rows in the caller's order.

    Takes (and ignores) the other arguments of :func:`~subspace_bayes.predictive.predictive_samples`,
    so the estimator runs it the same way.
    """
    theta = module.posterior.mean.detach()[None]
    dist = torch.cat([module.feature_gaussian(module.features(theta, **b)) for b in batches]).numpy()
    return _in_callers_order(dist, order, axis=0)

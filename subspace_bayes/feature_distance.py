"""How far an input's pooled features lie from the training data: the scores for unfamiliar inputs.

Two scores, both on the pooled backbone features ``phi(x)`` (the input to the head):

- **nearest neighbours** (the one to act on; Sun et al. 2022, arXiv:2204.06507): the cosine
  distance from ``phi(x)`` to its ``k``-th nearest training example,
  ``d_k(x) = 1 - <z(x), z_(k)>`` with ``z = phi / ||phi||``, and its **novelty**, the fraction of
  familiar inputs (training examples, each left out of its own neighbours) that lie nearer than
  ``x``: ``novelty(x) = #{i : d_k^{-i} < d_k(x)} / M``. A novelty of 0.99 means "farther than 99%
  of familiar inputs", on every task, so one threshold (e.g. flag above 0.95) means the same
  everywhere.
- **Mahalanobis** (Lee et al. 2018, arXiv:1807.03888): class means ``m_c`` and one covariance ``S``
  shared by the classes, ``d(x) = min_c (phi(x) - m_c)^T S^{-1} (phi(x) - m_c)``, with ``S``
  shrunk towards a multiple of the identity (Ledoit & Wolf 2004), so it stays well conditioned
  when there are fewer training examples than feature dimensions.

Both look at the representation, not at the predicted probabilities, so they can flag an input
that the head maps confidently to a class; docs/benchmarks.md measures where each wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn

from .predictive import _in_callers_order, concat_scores

__all__ = [
    "FeatureGaussian",
    "FeatureNeighbours",
    "fit_feature_gaussian",
    "mahalanobis_distance",
    "normalise_features",
    "kth_neighbour_distance",
    "novelty",
    "collect_features",
    "feature_scores",
    "familiarity_scores",
    "MAX_RANK",
    "MAX_REFERENCE",
    "KNN_K",
]

#: Eigen-directions of ``S`` kept exactly; the rest share their mean eigenvalue. 1024 keeps encoders
#: up to RoBERTa-large exact and bounds the stored basis of a 4096-wide LLM at 16 MB (float32).
MAX_RANK = 1024

#: Training examples kept as neighbours (a seeded subsample beyond it): 10,000 x H float32 is
#: 15 MB for H = 384 (MiniLM), 31 MB for H = 768, 41 MB for H = 1024, stored with the adapter.
MAX_REFERENCE = 10_000

#: ``k`` of the nearest-neighbour distance, chosen on dev pairs (docs/benchmarks.md, the OOD section:
#: the best mean dev AUROC over k in {1, 5, 10, 20, 50}, raw or centred cosine; 5 and 10 differed by 0.0005).
KNN_K = 5


def fit_feature_gaussian(
    features: Tensor,
    labels: Tensor,
    n_classes: int,
    *,
    max_rank: int = MAX_RANK,
    shrinkage: str | float = "ledoit-wolf",
    ridge: float = 1e-6,
) -> dict[str, Tensor]:
    """Class means and the shared within-class covariance, shrunk, in eigen form.

    ``m_c = mean{phi_i : y_i = c}``, ``S = (1/N) sum_i (phi_i - m_{y_i})(phi_i - m_{y_i})^T`` and
    ``S_a = (1 - a) S + a (tr S / H) I``, stored as ``S_a ~= U diag(lam) U^T + lam_perp (I - U U^T)``:
    the top ``k = min(H, max_rank)`` eigenpairs and the mean ``lam_perp`` of the remaining
    eigenvalues (so the trace is kept; exact when ``k = H``). Shrinkage moves every eigenvalue
    towards their mean, so ``S_a`` is invertible and its small eigenvalues are not noise when
    ``N <= H``; each eigenvalue is also floored at ``ridge * tr(S) / H`` (for ``a = 0``).

    Parameters
    ----------
    features : Tensor of shape (N, H)
    labels : Tensor of shape (N,)
        Class indices in ``[0, n_classes)``.
    n_classes : int
    max_rank : int, default=MAX_RANK
    shrinkage : "ledoit-wolf" or float in [0, 1], default="ledoit-wolf"
        ``a``: the Ledoit-Wolf estimate (:func:`sklearn.covariance.ledoit_wolf_shrinkage` of the
        class-centred features), or a fixed value (0: the sample covariance).
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
    a = _shrinkage(centred, shrinkage)
    mu = max(float(S.trace()), 1e-300) / H
    eig, vec = torch.linalg.eigh(S)  # ascending
    eig, vec = (1 - a) * eig.flip(0) + a * mu, vec.flip(1)
    floor = ridge * mu
    k = min(H, int(max_rank))
    rest = eig[k:]
    residual = torch.tensor(float(rest.mean()) if len(rest) else floor, dtype=torch.float64).clamp_min(floor)
    basis, eigenvalues = vec[:, :k].contiguous(), eig[:k].clamp_min(floor)
    return {"means": means, "basis": basis, "eigenvalues": eigenvalues, "residual": residual}


def _shrinkage(centred: Tensor, shrinkage: str | float) -> float:
    """``a`` of :func:`fit_feature_gaussian`: Ledoit-Wolf's estimate for ``"ledoit-wolf"``, else the number given."""
    if isinstance(shrinkage, str):
        if shrinkage != "ledoit-wolf":
            raise ValueError(f"shrinkage must be 'ledoit-wolf' or a number in [0, 1]; got {shrinkage!r}.")
        if len(centred) < 2:
            return 1.0
        from sklearn.covariance import ledoit_wolf_shrinkage

        return float(ledoit_wolf_shrinkage(centred.numpy(), assume_centered=True))
    if not 0.0 <= float(shrinkage) <= 1.0:
        raise ValueError(f"shrinkage must lie in [0, 1]; got {shrinkage}.")
    return float(shrinkage)


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


def normalise_features(features: Tensor, centre: Tensor | None = None) -> Tensor:
    """``z = (phi - c) / ||phi - c||`` row by row (``c = 0`` when ``centre`` is None), in float32."""
    phi = features.detach().float()
    if centre is not None:
        phi = phi - centre.to(phi.device, phi.dtype)
    return phi / phi.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def kth_neighbour_distance(
    queries: Tensor, reference: Tensor, k: int, *, leave_self_out: bool = False, chunk: int = 2048
) -> Tensor:
    """Cosine distance ``1 - <z, r_(k)>`` from each unit-norm query to its ``k``-th nearest reference row.

    With ``leave_self_out`` the queries are the reference rows themselves and each skips its own
    row (it takes the ``(k + 1)``-th largest similarity; an exact duplicate of a row still counts
    as a neighbour). ``k`` is capped at the number of rows available. Computed in chunks of
    ``chunk`` queries, so memory stays ``chunk x M``.

    Parameters
    ----------
    queries : Tensor of shape (N, H), unit rows (:func:`normalise_features`)
    reference : Tensor of shape (M, H), unit rows
    k : int
    leave_self_out : bool, default=False
    chunk : int, default=2048

    Returns
    -------
    Tensor of shape (N,), float32, in ``[0, 2]``
    """
    M = reference.shape[0] - int(leave_self_out)
    if M < 1:
        raise ValueError("Nearest neighbours need at least one reference row besides the query itself.")
    rank = min(int(k), M) + int(leave_self_out)
    reference = reference.to(queries.device, queries.dtype)
    out = [1.0 - (q @ reference.T).topk(rank, dim=1).values[:, -1] for q in queries.split(max(1, int(chunk)))]
    return torch.cat(out).clamp(0.0, 2.0) if out else queries.new_zeros(0)


def novelty(distances: Tensor, familiar: Tensor) -> Tensor:
    """The fraction of ``familiar`` distances below each distance: ``#{i : f_i < d} / M``, in ``[0, 1]``.

    ``familiar`` is sorted ascending (:class:`FeatureNeighbours` stores it so).
    """
    familiar = familiar.to(distances.device, distances.dtype)
    return torch.searchsorted(familiar, distances.contiguous(), side="left").double() / max(len(familiar), 1)


class _FeatureStatistics(nn.Module):
    """Statistics of the training features, as buffers named ``KEYS`` (saved with the adapter); empty until set."""

    KEYS: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        for key in self.KEYS:
            self.register_buffer(key, None)

    @property
    def fitted(self) -> bool:
        return getattr(self, self.KEYS[0]) is not None

    def _check_keys(self, stats: dict[str, Tensor]) -> None:
        missing = [k for k in self.KEYS if k not in stats]
        if missing:
            raise ValueError(f"Feature statistics lack {missing}; refit the estimator.")


class FeatureGaussian(_FeatureStatistics):
    """The fitted class-conditional Gaussian of a module's pooled features (buffers, saved with the adapter).

    Empty until :meth:`set_statistics`; then holds the four tensors of :func:`fit_feature_gaussian`
    (float32) and scores features with :func:`mahalanobis_distance`.
    """

    KEYS = ("means", "basis", "eigenvalues", "residual")

    def set_statistics(self, stats: dict[str, Tensor]) -> None:
        """Install ``stats`` (the output of :func:`fit_feature_gaussian`, or a saved ``state_dict``)."""
        self._check_keys(stats)
        for key in self.KEYS:  # scored on the CPU in float64 (mahalanobis_distance), so kept there
            setattr(self, key, stats[key].detach().float().cpu())

    def forward(self, features: Tensor) -> Tensor:
        if not self.fitted:
            raise RuntimeError(
                "No feature statistics: fit the estimator first (adapters saved by earlier versions lack them)."
            )
        return mahalanobis_distance(features, self.means, self.basis, self.eigenvalues, self.residual)


class FeatureNeighbours(_FeatureStatistics):
    """The training features as nearest neighbours, and the distances of familiar inputs (buffers).

    Empty until :meth:`fit` (or :meth:`set_statistics` with a saved ``state_dict``); then holds
    ``reference`` (M, H): unit-norm training features (at most :data:`MAX_REFERENCE`, a seeded
    subsample beyond), ``familiar`` (M,): each reference row's own leave-one-out distance, sorted,
    and ``k``. Calling it on features gives ``(knn_distance, novelty)``.
    """

    KEYS = ("reference", "familiar", "k")

    def fit(
        self, features: Tensor, *, k: int = KNN_K, max_reference: int = MAX_REFERENCE, generator=None
    ) -> FeatureNeighbours:
        """Keep (a subsample of) ``features`` (N, H) as the reference and their leave-one-out distances."""
        z = normalise_features(features)
        if len(z) > max_reference:
            z = z[torch.randperm(len(z), generator=generator)[:max_reference].sort().values]
        familiar = kth_neighbour_distance(z, z, k, leave_self_out=True).sort().values
        self.set_statistics({"reference": z, "familiar": familiar, "k": torch.tensor(int(k))})
        return self

    def set_statistics(self, stats: dict[str, Tensor]) -> None:
        """Install a saved ``state_dict`` (or what :meth:`fit` computed)."""
        self._check_keys(stats)
        device = self.reference.device if self.fitted else stats["reference"].device
        self.reference = stats["reference"].detach().float().to(device)
        self.familiar = stats["familiar"].detach().float().to(device)
        self.k = stats["k"].detach().long().cpu()

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        if not self.fitted:
            raise RuntimeError("No training neighbours: fit the estimator first.")
        if self.reference.device != features.device:  # once, after the module moved (kept where it is used)
            self.reference, self.familiar = self.reference.to(features.device), self.familiar.to(features.device)
        dist = kth_neighbour_distance(normalise_features(features), self.reference, int(self.k))
        return dist, novelty(dist, self.familiar)


def familiarity_scores(module: nn.Module, features: Tensor) -> dict[str, np.ndarray]:
    """The scores for unfamiliar inputs that ``module`` has statistics for, of pooled ``features`` (N, H).

    ``novelty`` and ``knn_distance`` (:class:`FeatureNeighbours`; absent from modules fitted or
    pickled before they existed), and ``feature_distance`` (:class:`FeatureGaussian`).
    """
    out = {}
    neighbours = getattr(module, "feature_neighbours", None)
    if neighbours is not None and neighbours.fitted:
        dist, novel = neighbours(features)
        out["novelty"], out["knn_distance"] = novel.cpu().numpy(), dist.double().cpu().numpy()
    if module.feature_gaussian.fitted:
        out["feature_distance"] = module.feature_gaussian(features).numpy()
    return out


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
def feature_scores(
    module: nn.Module,
    batches: Iterable[dict[str, Tensor]],
    posterior: nn.Module | None = None,
    *,
    order: np.ndarray,
    scorer: Callable[[nn.Module, Tensor], dict[str, np.ndarray]] = familiarity_scores,
    **_,
) -> dict[str, np.ndarray]:
    """:func:`familiarity_scores` of the features at the posterior mean (one forward pass), in the caller's order.

    Takes (and ignores) the other arguments of :func:`~subspace_bayes.predictive.predictive_samples`,
    so the estimator runs it the same way.
    """
    theta = module.posterior.mean.detach()[None]
    scores = concat_scores([scorer(module, module.features(theta, **b)) for b in batches])
    return {key: _in_callers_order(v, order, axis=0) for key, v in scores.items()}

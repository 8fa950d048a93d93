"""Post-hoc Laplace approximation over the subspace cores (L-LoRA-XS).

At the MAP ``theta*`` the posterior precision is the generalised Gauss-Newton
matrix of the training NLL plus the prior precision,

.. math::

    P = sum_i J_i^T H_i J_i + delta I,
    \\qquad H_i = diag(p_i) - p_i p_i^T,

with ``J_i = d f(x_i) / d theta`` the logit Jacobian (C x D) and ``p_i`` the
softmax output. ``D`` is small, so the full GGN is exact and cheap; ``"diag"``
keeps its diagonal. The prior precision ``delta`` can be tuned by maximising
the Laplace evidence

.. math::

    log p(data | delta) ~ -NLL(theta*) - delta/2 ||theta*||^2 + D/2 log delta
                          - 1/2 sum_j log(lambda_j + delta),

where ``lambda_j`` are the GGN eigenvalues (the diagonal entries for ``"diag"``).

Reference: Daxberger et al., "Laplace Redux", NeurIPS 2021, arXiv:2106.14806;
Immer et al., "Scalable Marginal Likelihood Estimation", ICML 2021.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from ..posteriors import DiagGaussian, FullGaussian, GaussianPosterior

__all__ = [
    "softmax_hessian_root",
    "ggn",
    "log_marginal_likelihood",
    "tune_prior_precision",
    "laplace_posterior",
    "ggn_eigenvalues",
]

STRUCTURES = ("full", "diag")


def softmax_hessian_root(probs: Tensor) -> Tensor:
    """``V`` with ``V V^T = diag(p) - p p^T`` for each row: ``V = diag(sqrt p) - p sqrt(p)^T``.

    Parameters
    ----------
    probs : Tensor of shape (N, C)

    Returns
    -------
    Tensor of shape (N, C, C)
    """
    root = probs.clamp_min(0).sqrt()
    return torch.diag_embed(root) - probs[:, :, None] * root[:, None, :]


def ggn(module, batches: Iterable[dict[str, Tensor]], theta: Tensor, structure: str = "full"):
    """Generalised Gauss-Newton of the summed NLL over ``batches`` at ``theta``.

    Returns
    -------
    G : Tensor, (D, D) for "full" or (D,) for "diag" (float64, CPU)
    nll : float, the summed NLL at ``theta`` (targets from ``batch["labels"]``)
    n : int, the number of examples
    """
    if structure not in STRUCTURES:
        raise ValueError(f"Unknown Laplace structure {structure!r}; use one of {STRUCTURES}.")
    D = theta.numel()
    G = torch.zeros((D, D) if structure == "full" else (D,), dtype=torch.float64)
    nll, n = 0.0, 0
    for batch in batches:
        labels = batch.pop("labels")
        logits, J = module.logit_jacobians(batch, theta)
        probs = torch.softmax(logits.double(), dim=-1)
        U = softmax_hessian_root(probs).transpose(1, 2) @ J.double()  # (N, C, D): V^T J
        U = U.cpu().reshape(-1, D)
        G += U.T @ U if structure == "full" else U.pow(2).sum(0)
        nll += torch.nn.functional.cross_entropy(logits.double(), labels.to(logits.device), reduction="sum").item()
        n += labels.shape[0]
    return G, nll, n


def log_marginal_likelihood(prior_precision: float, eigenvalues: np.ndarray, theta_sq_norm: float,
                            nll: float) -> float:
    """Laplace evidence as a function of the prior precision (constants dropped)."""
    d = len(eigenvalues)
    lam = np.clip(eigenvalues, 0.0, None)
    return float(-nll - 0.5 * prior_precision * theta_sq_norm + 0.5 * d * np.log(prior_precision)
                 - 0.5 * np.sum(np.log(lam + prior_precision)))


def tune_prior_precision(eigenvalues: np.ndarray, theta_sq_norm: float, nll: float,
                         bounds: tuple[float, float] = (1e-4, 1e6)) -> float:
    """The prior precision maximising :func:`log_marginal_likelihood` (1-D search in log space)."""
    from scipy.optimize import minimize_scalar

    objective = lambda log_delta: -log_marginal_likelihood(np.exp(log_delta), eigenvalues, theta_sq_norm, nll)  # noqa: E731
    result = minimize_scalar(objective, bounds=np.log(bounds), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def laplace_posterior(mean: Tensor, G: Tensor, prior_precision: float) -> GaussianPosterior:
    """``N(mean, (G + delta I)^{-1})`` as a posterior object (full or diagonal by ``G``'s shape)."""
    if G.dim() == 1:
        return DiagGaussian.from_moments(mean, (1.0 / (G + prior_precision)).to(mean.dtype))
    evals, evecs = torch.linalg.eigh(G)
    cov = (evecs / (evals.clamp_min(0) + prior_precision)) @ evecs.T
    return FullGaussian.from_moments(mean, 0.5 * (cov + cov.T))


def ggn_eigenvalues(G: Tensor) -> np.ndarray:
    """Eigenvalues of the GGN (its diagonal for the diagonal structure)."""
    return (G if G.dim() == 1 else torch.linalg.eigvalsh(G)).numpy()

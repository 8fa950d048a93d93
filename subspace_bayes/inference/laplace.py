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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..adapters import ProjectedLinear
from ..options import LaplaceStructure, Posterior
from ..posteriors import DiagGaussian, FullGaussian, GaussianPosterior, PointMass
from .base import InferenceMethod, TrainingData

__all__ = [
    "Laplace",
    "softmax_hessian_factor",
    "ggn",
    "log_marginal_likelihood",
    "tune_prior_precision",
    "laplace_posterior",
    "ggn_eigenvalues",
    "LaplaceFit",
    "fit_laplace",
]

STRUCTURES = tuple(s.value for s in LaplaceStructure)


def softmax_hessian_factor(probs: Tensor) -> Tensor:
    """A rank-``(C-1)`` factor ``W`` with ``W W^T = diag(p) - p p^T`` (the Hessian has the null vector 1).

    Parameters
    ----------
    probs : Tensor of shape (N, C)

    Returns
    -------
    Tensor of shape (N, C, C - 1)
    """
    evals, evecs = torch.linalg.eigh(torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :])
    return evecs[:, :, 1:] * evals[:, None, 1:].clamp_min(0).sqrt()  # drop the smallest (zero) eigenvalue


def _factor_rows(module, batch: dict[str, Tensor], theta: Tensor, weight: Tensor | None = None, inputs_of=None):
    """Logits and the ``C - 1`` rows ``sqrt(w_i) W_k^T J_i`` of every example, one backward pass each.

    ``weight`` (N,) are the examples' weights ``w_i`` (1 without); the rows carry
    their square roots so that ``sum_k rows_k^T rows_k = sum_i w_i J_i^T H_i J_i``.
    ``inputs_of(thetas)`` may name other tensors to differentiate instead of ``thetas``
    (the Kronecker factors use the adapters' core outputs).
    """
    n = batch["input_ids"].shape[0]
    with torch.enable_grad():
        thetas = theta.detach().expand(n, -1).clone().requires_grad_(True)
        logits = module.per_input_logits(batch, thetas)
    W = softmax_hessian_factor(torch.softmax(logits.detach().double(), -1))
    if weight is not None:
        W = W * weight.to(W).clamp_min(0).sqrt()[:, None, None]
    W = W.to(logits.dtype)
    wrt = thetas if inputs_of is None else inputs_of()
    K = W.shape[2]
    rows = [torch.autograd.grad(logits, wrt, grad_outputs=W[:, :, k], retain_graph=k < K - 1) for k in range(K)]
    return logits.detach(), rows


def ggn(module, batches: Iterable[dict[str, Tensor]], theta: Tensor, structure: str = "full"):
    """Generalised Gauss-Newton of the summed (weighted) NLL over ``batches`` at ``theta``.

    ``G = sum_i w_i J_i^T H_i J_i`` with ``w_i`` from ``batch["sample_weight"]``
    (1 where a batch has none): a weighted example counts ``w_i`` times, as in
    the training loss.

    Returns
    -------
    G : Tensor, (D, D) for "full" and "kron" (block diagonal), (D,) for "diag" (float64, CPU)
    nll : float, the summed weighted NLL at ``theta`` (targets from ``batch["labels"]``)
    n : int, the number of examples
    """
    if structure not in STRUCTURES:
        raise ValueError(f"Unknown Laplace structure {structure!r}; use one of {STRUCTURES}.")
    if structure == "kron":
        return kron_ggn(module, batches, theta)
    D = theta.numel()
    G = torch.zeros((D, D) if structure == "full" else (D,), dtype=torch.float64)
    nll, n = 0.0, 0
    for batch in batches:
        labels, weight = batch.pop("labels"), batch.pop("sample_weight", None)
        logits, rows = _factor_rows(module, batch, theta, weight)
        U = torch.cat([r[0] for r in rows], dim=0).double().cpu()  # (N (C-1), D): rows sqrt(w_i) W_k^T J_i
        G += U.T @ U if structure == "full" else U.pow(2).sum(0)
        nll += _summed_nll(logits, labels, weight)
        n += labels.shape[0]
    return G, nll, n


@contextmanager
def _core_records(adapters: Sequence[ProjectedLinear], mask: Tensor) -> Iterator[dict]:
    """Watch every adapter's core product with forward hooks during one forward pass.

    Yields a dict ``adapter -> (abar, h)``: the token-mean core input ``abar``
    (N, r), float64, and the core output ``h`` (N, T, r), kept in the graph.
    """
    records: dict[ProjectedLinear, tuple[Tensor, Tensor]] = {}

    def watch(adapter: ProjectedLinear):
        def hook(_module, inputs, output):
            abar = (inputs[0].detach().double() * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            records[adapter] = (abar, output)

        return hook

    handles = [a.core_product.register_forward_hook(watch(a)) for a in adapters]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def kron_ggn(module, batches: Iterable[dict[str, Tensor]], theta: Tensor):
    """Kronecker-factored GGN (K-FAC, "reduce" variant for weight sharing over tokens), block diagonal over layers.

    For layer ``l`` with core input ``a = A x`` and core-output gradient ``g``,
    per example ``i``: ``abar_i`` = mean of ``a`` over its tokens and
    ``gbar_ik`` = sum of ``g`` over its tokens, for each column ``k`` of the
    softmax Hessian factor ``W_i`` (:func:`softmax_hessian_factor`). Then (``vec(R)`` row-major)

    .. math::

        G_l ~ (sum_{i,k} w_i gbar_ik gbar_ik^T) kron ((1 / sum_i w_i) sum_i w_i abar_i abar_i^T),

    with example weights ``w_i`` (``batch["sample_weight"]``, else 1).
    Exact for one example of one token. Reference: Eschenhagen et al.,
    "Kronecker-Factored Approximate Curvature for Modern Neural Network
    Architectures", NeurIPS 2023, arXiv:2311.00636.

    Returns
    -------
    G : Tensor of shape (D, D), block diagonal (float64, CPU)
    nll : float
    n : int
    """
    adapters = module.adapters
    A_fac = [torch.zeros(a.rank, a.rank, dtype=torch.float64) for a in adapters]
    G_fac = [torch.zeros(a.rank, a.rank, dtype=torch.float64) for a in adapters]
    nll, n = 0.0, 0
    total_weight = 0.0
    for batch in batches:
        labels, weight = batch.pop("labels"), batch.pop("sample_weight", None)
        w = torch.ones(labels.shape[0], dtype=torch.float64) if weight is None else weight.double().cpu()
        mask = batch["attention_mask"][..., None].double()
        with _core_records(adapters, mask) as records:
            logits, rows = _factor_rows(module, batch, theta, weight, lambda: [records[a][1] for a in adapters])
        for grads in rows:
            for G, g in zip(G_fac, grads, strict=True):
                gbar = (g.double() * mask).sum(1)  # (N, r), carries sqrt(w_i) through the rows
                G += (gbar.T @ gbar).cpu()
        for A, a in zip(A_fac, adapters, strict=True):
            abar = records[a][0].cpu()
            A += abar.T @ (w[:, None] * abar)
        nll += _summed_nll(logits, labels, weight)
        n, total_weight = n + labels.shape[0], total_weight + float(w.sum())
    scale = 1.0 / max(total_weight, 1e-12)
    return torch.block_diag(*[torch.kron(G, A * scale) for G, A in zip(G_fac, A_fac, strict=True)]), nll, n


def _summed_nll(logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> float:
    nll = torch.nn.functional.cross_entropy(logits.double(), labels.to(logits.device), reduction="none")
    return float((nll if weight is None else nll * weight.to(nll)).sum())


def log_marginal_likelihood(prior_precision: float, eigenvalues: np.ndarray, theta_sq_norm: float, nll: float) -> float:
    """Laplace evidence as a function of the prior precision (constants dropped)."""
    d = len(eigenvalues)
    lam = np.clip(eigenvalues, 0.0, None)
    return float(
        -nll
        - 0.5 * prior_precision * theta_sq_norm
        + 0.5 * d * np.log(prior_precision)
        - 0.5 * np.sum(np.log(lam + prior_precision))
    )


def tune_prior_precision(
    eigenvalues: np.ndarray, theta_sq_norm: float, nll: float, bounds: tuple[float, float] = (1e-4, 1e6)
) -> float:
    """The prior precision maximising :func:`log_marginal_likelihood` (1-D search in log space)."""
    from scipy.optimize import minimize_scalar

    objective = lambda log_delta: -log_marginal_likelihood(np.exp(log_delta), eigenvalues, theta_sq_norm, nll)
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


@dataclass
class LaplaceFit:
    """Result of :func:`fit_laplace`."""

    posterior: GaussianPosterior
    prior_precision: float
    log_marginal_likelihood: float


def fit_laplace(
    module, batches: Iterable[dict[str, Tensor]], structure: str = "full", prior_precision: float | str = "auto"
) -> LaplaceFit:
    """Laplace approximation at the module's current (MAP) ``theta``.

    Parameters
    ----------
    module : SubspaceClassifierModule
    batches : iterable of dict
        Tokenised training batches with integer ``labels``.
    structure : {"full", "diag", "kron"}
    prior_precision : float or "auto"
        "auto" maximises :func:`log_marginal_likelihood`.
    """
    mean = module.posterior.mean.detach()
    G, nll, _ = ggn(module, batches, mean, structure)
    eig = ggn_eigenvalues(G)
    sq_norm = float(mean.double().pow(2).sum())
    delta = tune_prior_precision(eig, sq_norm, nll) if prior_precision == "auto" else float(prior_precision)
    return LaplaceFit(
        laplace_posterior(mean.cpu().float(), G, delta), delta, log_marginal_likelihood(delta, eig, sq_norm, nll)
    )


@dataclass
class Laplace(InferenceMethod):
    """MAP training, then the Laplace approximation at the MAP cores (:func:`fit_laplace`).

    Parameters
    ----------
    structure : {"full", "diag", "kron"}, default="full"
    prior_precision : float or "auto", default="auto"
    """

    name = Posterior.LAPLACE.value
    parameters: ClassVar[Mapping[str, str]] = {"laplace_structure": "structure", "prior_precision": "prior_precision"}

    structure: str = LaplaceStructure.FULL.value
    prior_precision: float | str = "auto"
    result: LaplaceFit | None = field(default=None, init=False, repr=False)

    def cannot_cover_head(self) -> str | None:
        if LaplaceStructure(self.structure) is LaplaceStructure.KRON:
            return (
                "laplace_structure='kron' (K-FAC) covers the cores only; with bayesian_head=True use 'full' or 'diag'."
            )
        return None

    def restart(self, posterior: GaussianPosterior) -> GaussianPosterior:
        # Continue from the posterior mean as a point estimate; the approximation is rebuilt.
        return PointMass.from_mean(posterior.mean.detach())

    def finish(self, module: nn.Module, data: TrainingData) -> GaussianPosterior:
        module.eval()
        self.result = fit_laplace(module, data.batches(), self.structure, self.prior_precision)
        return self.result.posterior

    def fitted_attributes(self) -> dict[str, Any]:
        if self.result is None:
            return {}
        return {
            "prior_precision_": self.result.prior_precision,
            "log_marginal_likelihood_": self.result.log_marginal_likelihood,
        }

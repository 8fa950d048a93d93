"""Variational inference: a Gaussian over the cores trained on the (negative) evidence lower bound."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..options import Covariance, Posterior
from .base import InferenceMethod

__all__ = ["VI", "ELBOLoss", "expected_nll", "convergence_problems"]


@dataclass
class VI(InferenceMethod):
    """Fit ``q(theta) = N(mu, Sigma)`` by stochastic gradient descent on :class:`ELBOLoss`.

    Parameters
    ----------
    covariance : {"diag", "lowrank", "full"}, default="lowrank"
    cov_rank : int, default=4
        Columns of the low-rank factor (``"lowrank"`` only).

    References
    ----------
    Blundell et al., "Weight Uncertainty in Neural Networks", ICML 2015, arXiv:1505.05424.
    """

    name = Posterior.VI.value
    trains_a_distribution = True
    parameters: ClassVar[Mapping[str, str]] = {"covariance": "covariance", "cov_rank": "cov_rank"}

    covariance: str = Covariance.LOWRANK.value
    cov_rank: int = 4

    def training_structure(self) -> tuple[str | None, int]:
        return (Covariance(self.covariance).value, self.cov_rank)


def expected_nll(logits: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
    """Monte Carlo estimate of ``E_q[NLL]`` per example, averaged over the batch.

    ``(1/N) sum_i w_i (1/S) sum_s -log softmax(f(x_i; theta_s))[y_i]``.

    Parameters
    ----------
    logits : Tensor of shape (S, N, C)
    target : Tensor of shape (N,), integer class indices
    sample_weight : Tensor of shape (N,), optional

    Returns
    -------
    Tensor, a scalar.
    """
    S, N, C = logits.shape
    nll = F.cross_entropy(logits.reshape(S * N, C).float(), target.repeat(S), reduction="none")
    nll = nll.reshape(S, N).mean(0)
    if sample_weight is not None:
        nll = nll * sample_weight.to(nll.dtype)
    return nll.mean()


class ELBOLoss(nn.Module):
    """Negative ELBO per training example: ``E_q[NLL(batch)] + beta * KL(q || p) / N``.

    For a :class:`~subspace_bayes.posteriors.PointMass` the KL term is the
    prior's negative log density, so the same loss is the MAP objective.

    Parameters
    ----------
    module : SubspaceClassifierModule
        Provides ``module.posterior``. Held by reference, not as a submodule: the
        criterion has no state of its own (``save_params(f_criterion=...)``
        writes nothing of the backbone).
    num_data : int or None
        ``N``, the number of examples in the training split (held-out examples
        excluded). None until the data is known; the loss refuses to run then.
    prior_std : float or "auto", default=1.0
        ``sigma_p`` of the prior ``N(0, sigma_p^2 I)`` over ``theta``; ``"auto"``
        re-estimates it at every step as the ELBO's optimum for the current
        posterior (:meth:`~subspace_bayes.posteriors.GaussianPosterior.empirical_bayes_prior_variance`,
        held fixed within the step: by the envelope theorem the gradient w.r.t.
        ``q`` is the same as if it were optimised jointly).
    kl_weight : float, default=1.0
        ``beta``.
    head_prior_std : float, "auto" or None, default=None
        With a Bayesian head: the prior scale of the head's entries of ``theta``, so the prior is
        ``N(0, sigma_p^2)`` on the cores and ``N(0, sigma_h^2)`` on the head (``"auto"``: the
        empirical-Bayes optimum of the head block alone). None: one prior ``prior_std`` for both.
    """

    def __init__(
        self,
        module: nn.Module,
        num_data: int | None,
        prior_std: float | str = 1.0,
        kl_weight: float = 1.0,
        head_prior_std: float | str | None = None,
    ):
        super().__init__()
        self.__dict__["module"] = module  # a reference; nn.Module would register (and save) it as a submodule
        self.num_data = None if num_data is None else int(num_data)
        self.prior_std = prior_std if prior_std == "auto" else float(prior_std)
        self.kl_weight = float(kl_weight)
        self.head_prior_std = head_prior_std if head_prior_std in (None, "auto") else float(head_prior_std)

    def _split_head(self) -> bool:
        """Whether the head's entries of ``theta`` have a prior of their own."""
        return self.head_prior_std is not None and bool(getattr(self.module, "bayesian_head", False))

    def _block_std(self, value: float | str, block: slice | None) -> float:
        if value != "auto":
            return float(value)
        variance = self.module.posterior.empirical_bayes_prior_variance(block).detach()
        return float(variance.clamp_min(1e-12).sqrt())

    def current_prior_std(self) -> float:
        """``sigma_p`` of the cores now: the fixed value, or the empirical-Bayes optimum for the current posterior."""
        return self._block_std(self.prior_std, slice(0, self.module.n_core) if self._split_head() else None)

    def current_head_prior_std(self) -> float | None:
        """``sigma_h`` of a Bayesian head's own prior now (None: the head shares ``sigma_p``)."""
        if not self._split_head():
            return None
        return self._block_std(self.head_prior_std, slice(self.module.n_core, self.module.n_theta))

    def prior_scale(self) -> float | Tensor:
        """The prior's standard deviation: a float, or per coordinate ``(D,)`` when the head has its own."""
        cores = self.current_prior_std()
        head = self.current_head_prior_std()
        if head is None:
            return cores
        posterior = self.module.posterior
        scale = torch.full((posterior.dim,), head, dtype=posterior.loc.dtype, device=posterior.loc.device)
        scale[: self.module.n_core] = cores
        return scale

    def kl(self) -> Tensor:
        return self.module.posterior.kl_to_prior(self.prior_scale())

    def forward(self, logits: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        if not self.num_data:
            raise RuntimeError("ELBOLoss needs num_data, the size of the training split; fit sets it.")
        nll = expected_nll(logits, target, sample_weight)
        kl_term = self.kl_weight * self.kl() / self.num_data
        #: The two terms of the last call, detached: the data term ``E_q[NLL]`` and ``beta * KL / N``.
        self.last_terms = (nll.detach(), kl_term.detach())
        return nll + kl_term


def convergence_problems(
    variance: Tensor, init_std: float, prior_std: float | Tensor, *, at_init: float = 0.5, above: float = 3.0
) -> list[str]:
    """Signs that a fitted VI posterior is not the ELBO's optimum, as sentences (empty when none).

    Two checks on the marginal variances ``diag(Sigma)``:

    - *still at the initialisation*: more than ``at_init`` of the coordinates have a standard
      deviation within a factor of 2 of ``init_std`` (the optimiser has barely moved them);
    - *far above the prior*: a marginal variance exceeds ``above * prior_std^2``. The optimum has
      ``Sigma^{-1} = I / sigma_p^2 + beta^{-1} N E_q[nabla^2 NLL]``: no variance above the prior where
      the loss is convex (with a Gauss-Newton curvature, nowhere), a little above it where the loss
      is locally concave; several times the prior means the optimiser is still wandering (the
      low-rank factor's full step once put four directions at 4-10x).

    Parameters
    ----------
    variance : Tensor of shape (D,)
    init_std : float
    prior_std : float or Tensor of shape (D,)
    at_init, above : float
        Thresholds of the two checks.
    """
    variance = variance.detach()
    std = variance.clamp_min(0).sqrt()
    problems = []
    still = float(((std / init_std).log().abs() <= math.log(2.0)).double().mean())
    if still > at_init:
        problems.append(
            f"{still:.0%} of the posterior's standard deviations are still at init_std={init_std}: the fit "
            "stopped before the variances moved; train longer (max_epochs) or on more data."
        )
    prior_var = torch.as_tensor(prior_std, dtype=variance.dtype, device=variance.device).pow(2).expand_as(variance)
    ratio = variance / prior_var
    worst = int(ratio.argmax())
    if float(ratio[worst]) > above:
        problems.append(
            f"a posterior variance ({float(variance[worst]):.3g}) is {float(ratio[worst]):.1f}x its prior's "
            f"({float(prior_var[worst]):.3g}); the optimum is rarely far above the prior, so the optimiser is "
            "probably still wandering: lower lr or train longer."
        )
    return problems

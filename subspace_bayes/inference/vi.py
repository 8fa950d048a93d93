"""Variational inference: a Gaussian over the cores trained on the (negative) evidence lower bound."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from ..options import Covariance, Posterior
from .base import InferenceMethod

__all__ = ["VI", "ELBOLoss", "expected_nll"]


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
    """

    def __init__(self, module: nn.Module, num_data: int | None, prior_std: float | str = 1.0, kl_weight: float = 1.0):
        super().__init__()
        self.__dict__["module"] = module  # a reference; nn.Module would register (and save) it as a submodule
        self.num_data = None if num_data is None else int(num_data)
        self.prior_std = prior_std if prior_std == "auto" else float(prior_std)
        self.kl_weight = float(kl_weight)

    def current_prior_std(self) -> float:
        """``sigma_p`` now: the fixed value, or the empirical-Bayes optimum for the current posterior."""
        if self.prior_std != "auto":
            return self.prior_std
        variance = self.module.posterior.empirical_bayes_prior_variance().detach()
        return float(variance.clamp_min(1e-12).sqrt())

    def kl(self) -> Tensor:
        return self.module.posterior.kl_to_prior(self.current_prior_std())

    def forward(self, logits: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        if not self.num_data:
            raise RuntimeError("ELBOLoss needs num_data, the size of the training split; fit sets it.")
        return expected_nll(logits, target, sample_weight) + self.kl_weight * self.kl() / self.num_data

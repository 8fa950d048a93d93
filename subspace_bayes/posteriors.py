"""Gaussian posteriors over the flat vector of subspace cores ``theta``.

All families share one interface (:class:`GaussianPosterior`): a mean, batched
reparameterised samples ``theta = mu + noise`` from a given
:class:`torch.Generator`, the dense covariance (for small ``D``), and the KL
divergence to the isotropic prior ``N(0, sigma_p^2 I)`` in closed form,

.. math::

    KL(q || p) = 1/2 [ tr(Sigma) / sigma_p^2 + ||mu||^2 / sigma_p^2 - D
                       + D log sigma_p^2 - log|Sigma| ].

Each family adds only its algebra: how to colour standard noise, the trace and
the log-determinant of its covariance. Scales go through softplus so variances
stay positive whatever the optimiser does.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .options import Covariance

__all__ = [
    "Covariance",
    "GaussianPosterior",
    "DiagGaussian",
    "LowRankGaussian",
    "FullGaussian",
    "PointMass",
    "make_posterior",
    "structure_of",
    "structure_of_state",
    "entropy_effective_rank",
]

#: Smallest standard deviation a softplus-parameterised scale can take.
MIN_STD = 1e-6

#: Learning rate of the raw standard deviations relative to the mean's (see
#: :meth:`GaussianPosterior.parameter_groups`; docs/method.md has the measurements behind it).
SCALE_LR_FACTOR = 5.0


def _positive(raw: Tensor) -> Tensor:
    return F.softplus(raw) + MIN_STD


def _inverse_positive(std: Tensor) -> Tensor:
    """``raw`` with ``_positive(raw) = std`` (stable for tiny and large ``std``)."""
    y = (std - MIN_STD).clamp_min(1e-12).double()
    return (y + torch.log(-torch.expm1(-y))).to(std.dtype)


class GaussianPosterior(nn.Module):
    """Base class: ``q(theta) = N(mu, Sigma)`` over ``theta in R^D``.

    Parameters
    ----------
    dim : int
        ``D``, the number of core entries over all adapted layers.

    Notes
    -----
    A family implements ``_colour`` (standard noise to noise with covariance
    ``Sigma``), ``_noise_dim``, ``trace_covariance``, ``logdet_covariance`` and
    ``covariance_matrix``; sampling, KL, the logit quadratic form and the
    spectrum are shared.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)
        self.loc = nn.Parameter(torch.zeros(self.dim))

    @property
    def mean(self) -> Tensor:
        """Posterior mean ``mu``, shape ``(D,)``."""
        return self.loc

    # -- family-specific algebra -------------------------------------------------
    def _noise_dim(self) -> int:
        raise NotImplementedError

    def _colour(self, eps: Tensor) -> Tensor:
        """Map standard noise of shape ``(S, noise_dim)`` to ``(S, D)`` with covariance ``Sigma``."""
        raise NotImplementedError

    def trace_covariance(self) -> Tensor:
        raise NotImplementedError

    def logdet_covariance(self) -> Tensor:
        raise NotImplementedError

    def covariance_matrix(self) -> Tensor:
        """Dense ``Sigma``, shape ``(D, D)`` (use only for small ``D``)."""
        raise NotImplementedError

    def _column_factor(self) -> nn.Parameter | None:
        """A covariance factor with ``D``-long columns (low-rank ``L``, dense Cholesky), if any."""
        return None

    def _scale_parameters(self) -> list[nn.Parameter]:
        """The raw standard deviations (``softplus(raw)``), if any."""
        return []

    # -- shared -----------------------------------------------------------------
    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups for learning rate ``lr``: one step size per kind of parameter.

        Adam moves every entry by about its learning rate per step, whatever the size of its
        gradient, so each kind gets the step that fits the distance it has to travel in the
        roughly 100 steps of a default fit:

        - the mean ``mu``: ``lr``;
        - the raw standard deviations: ``SCALE_LR_FACTOR * lr``. ``softplus(raw) ~ exp(raw)`` for
          small scales, so a step moves ``log sigma``; from ``init_std = 0.05`` a direction the data
          does not see must climb ``log(sigma_p / 0.05) = 3`` e-folds to the prior (a direction it
          pins down falls a few), which at ``lr = 1e-2`` takes 300 steps, not 100;
        - a factor with ``D``-long columns (low-rank ``L``, dense Cholesky ``L``): ``lr / sqrt(D)``.
          Each of a column's ``D`` entries moves about ``lr``, so the column's norm (the standard
          deviation along it) would change by ``lr * sqrt(D)`` per step: a random walk that reached
          variances 4 to 10 times the prior's within 100 steps (D = 1,538). With ``lr / sqrt(D)``
          a column moves about as far as one scale.
        """
        factor = self._column_factor()
        scales = self._scale_parameters()
        special = {id(p) for p in scales} | ({id(factor)} if factor is not None else set())
        groups = [{"params": [p for p in self.parameters() if id(p) not in special], "lr": lr}]
        if scales:
            groups.append({"params": scales, "lr": lr * SCALE_LR_FACTOR})
        if factor is not None:
            groups.append({"params": [factor], "lr": lr / math.sqrt(self.dim)})
        return groups

    def rsample(self, n: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` reparameterised samples ``theta = mu + Sigma^{1/2} eps``.

        Parameters
        ----------
        n : int, default=1
        generator : torch.Generator, optional
            Source of the standard noise (on the CPU or the posterior's device);
            the same generator state gives the same draws.

        Returns
        -------
        Tensor of shape (n, D)
        """
        gen_device = generator.device if generator is not None else self.loc.device
        eps = torch.randn(n, self._noise_dim(), generator=generator, device=gen_device, dtype=self.loc.dtype)
        return self.from_noise(eps)

    @property
    def noise_dim(self) -> int:
        """Length of the standard-normal vector behind one draw (``D``, plus ``k`` for a low-rank factor)."""
        return self._noise_dim()

    def from_noise(self, eps: Tensor) -> Tensor:
        """Draws ``theta = mu + Sigma^{1/2} eps`` for given standard noise ``eps`` of shape ``(S, noise_dim)``."""
        return self.loc + self._colour(eps.to(self.loc.device, self.loc.dtype))

    def variance(self) -> Tensor:
        """Marginal variances ``diag(Sigma)``, shape ``(D,)``."""
        return self.covariance_matrix().diagonal()

    def quadratic_form(self, J: Tensor) -> Tensor:
        """``J Sigma J^T`` for a batch of Jacobians, without forming ``Sigma`` where avoidable.

        Parameters
        ----------
        J : Tensor of shape (N, C, D)

        Returns
        -------
        Tensor of shape (N, C, C)
        """
        factor = self.covariance_factor()  # (D, k) with Sigma = F F^T (+ diagonal part)
        out = torch.zeros(J.shape[0], J.shape[1], J.shape[1], dtype=J.dtype, device=J.device)
        if factor is not None:
            JF = J @ factor.to(J.dtype)
            out = out + JF @ JF.transpose(1, 2)
        diag = self.diagonal_part()
        if diag is not None:
            out = out + (J * diag.to(J.dtype)) @ J.transpose(1, 2)
        return out

    def covariance_factor(self) -> Tensor | None:
        """A factor ``F`` (D, k) of the non-diagonal part of ``Sigma`` (None if there is none)."""
        return None

    def diagonal_part(self) -> Tensor | None:
        """The diagonal part of ``Sigma`` as a vector (None if there is none)."""
        return None

    def spectrum(self) -> Tensor:
        """Eigenvalues of ``Sigma`` in decreasing order, shape ``(D,)`` (dense; small ``D``)."""
        return torch.linalg.eigvalsh(self.covariance_matrix().detach().double()).flip(0).clamp_min(0.0)

    def effective_rank(self) -> float:
        """Entropy effective rank of ``Sigma`` (:func:`entropy_effective_rank` of :meth:`spectrum`)."""
        return entropy_effective_rank(self.spectrum())

    def empirical_bayes_prior_variance(self, block: slice | None = None) -> Tensor:
        """The prior variance that maximises the ELBO for this ``q``: ``sigma_p^2 = (||mu||^2 + tr Sigma) / D``.

        Setting ``d KL(q || N(0, s I)) / ds = 0`` with
        ``KL = 1/2 [(tr Sigma + ||mu||^2) / s - D + D log s - log|Sigma|]`` gives
        ``s = (tr Sigma + ||mu||^2) / D`` (global empirical Bayes; MacKay, 1992). With ``block``,
        the variance of a prior shared by those coordinates only (one scale per block of a
        block-wise prior ``N(0, diag(s_b))``): ``s_b = sum_{i in b} (mu_i^2 + Sigma_ii) / |b|``, the
        same stationarity condition restricted to the block.
        """
        if block is None:
            return (self.loc.pow(2).sum() + self.trace_covariance()) / self.dim
        return (self.loc[block].pow(2) + self.variance()[block]).mean()

    def kl_to_prior(self, prior_std: float | Tensor) -> Tensor:
        """Closed-form ``KL(q || N(0, diag(s^2)))`` (a scalar tensor).

        ``prior_std`` is ``s``: a float (the isotropic prior ``N(0, s^2 I)``) or a tensor of shape
        ``(D,)`` (one scale per coordinate, e.g. one for the cores and one for the head):
        ``KL = 1/2 [sum_i (Sigma_ii + mu_i^2) / s_i^2 - D + sum_i log s_i^2 - log|Sigma|]``.
        """
        if isinstance(prior_std, Tensor):
            var_p = prior_std.to(self.loc).pow(2)
            return 0.5 * (
                ((self.variance() + self.loc.pow(2)) / var_p).sum()
                - self.dim
                + var_p.log().sum()
                - self.logdet_covariance()
            )
        var_p = float(prior_std) ** 2
        return 0.5 * (
            (self.trace_covariance() + self.loc.pow(2).sum()) / var_p
            - self.dim
            + self.dim * math.log(var_p)
            - self.logdet_covariance()
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class DiagGaussian(GaussianPosterior):
    """Mean-field Gaussian: ``Sigma = diag(sigma^2)``, ``sigma = softplus(rho)``.

    Parameters
    ----------
    dim : int
    init_std : float, default=0.05
        Initial standard deviation of every coordinate.
    """

    def __init__(self, dim: int, init_std: float = 0.05, generator: torch.Generator | None = None):
        super().__init__(dim)
        self.raw_std = nn.Parameter(_inverse_positive(torch.full((self.dim,), float(init_std))))

    @property
    def std(self) -> Tensor:
        return _positive(self.raw_std)

    def _scale_parameters(self) -> list[nn.Parameter]:
        return [self.raw_std]

    def _noise_dim(self) -> int:
        return self.dim

    def _colour(self, eps: Tensor) -> Tensor:
        return eps * self.std

    def trace_covariance(self) -> Tensor:
        return self.std.pow(2).sum()

    def logdet_covariance(self) -> Tensor:
        return 2.0 * self.std.log().sum()

    def variance(self) -> Tensor:
        return self.std.pow(2)

    def diagonal_part(self) -> Tensor:
        return self.std.pow(2)

    def covariance_matrix(self) -> Tensor:
        return torch.diag(self.std.pow(2))

    def _set_std(self, std: Tensor) -> None:
        with torch.no_grad():
            self.raw_std.copy_(_inverse_positive(std))

    @classmethod
    def from_moments(cls, mean: Tensor, variance: Tensor) -> DiagGaussian:
        """A fixed ``N(mean, diag(variance))`` (e.g. a diagonal Laplace approximation)."""
        q = cls(mean.numel())
        with torch.no_grad():
            q.loc.copy_(mean)
        q._set_std(variance.clamp_min(MIN_STD**2).sqrt())
        return q


class LowRankGaussian(DiagGaussian):
    """Low-rank plus diagonal: ``Sigma = L L^T + diag(sigma^2)``, ``L in R^{D x k}``.

    The log-determinant uses the matrix determinant lemma,
    ``log|Sigma| = log|diag(sigma^2)| + log|I_k + L^T diag(sigma^-2) L|``, so
    nothing of size ``D x D`` is ever formed.

    Parameters
    ----------
    dim : int
    rank : int, default=4
        ``k``, the number of columns of ``L``.
    init_std : float, default=0.05
        Initial standard deviation of the diagonal part.
    init_factor_std : float, optional
        Entries of ``L`` start as ``N(0, init_factor_std^2)``; default
        ``init_std / sqrt(D)``, so each column's squared norm (the variance it
        adds along its direction) starts near ``init_std^2``: small, but
        non-zero so the columns differ.
    generator : torch.Generator, optional
        For the initial ``L``.
    """

    def __init__(
        self,
        dim: int,
        rank: int = 4,
        init_std: float = 0.05,
        init_factor_std: float | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__(dim, init_std=init_std)
        if not 1 <= rank <= dim:
            raise ValueError(f"cov_rank must be in [1, D={dim}]; got {rank}.")
        self.rank = int(rank)
        s = init_std / math.sqrt(self.dim) if init_factor_std is None else init_factor_std
        # A zero factor draws nothing (from_moments overwrites it; no global RNG is touched).
        factor = (
            torch.zeros(self.dim, self.rank) if s == 0 else s * torch.randn(self.dim, self.rank, generator=generator)
        )
        self.cov_factor = nn.Parameter(factor)

    def _noise_dim(self) -> int:
        return self.dim + self.rank

    def _colour(self, eps: Tensor) -> Tensor:
        return eps[:, : self.dim] * self.std + eps[:, self.dim :] @ self.cov_factor.T

    def trace_covariance(self) -> Tensor:
        return super().trace_covariance() + self.cov_factor.pow(2).sum()

    def logdet_covariance(self) -> Tensor:
        scaled = self.cov_factor / self.std[:, None]
        capacitance = torch.eye(self.rank, dtype=scaled.dtype, device=scaled.device) + scaled.T @ scaled
        return super().logdet_covariance() + 2.0 * torch.linalg.cholesky(capacitance).diagonal().log().sum()

    def variance(self) -> Tensor:
        return super().variance() + self.cov_factor.pow(2).sum(1)

    def covariance_factor(self) -> Tensor:
        return self.cov_factor

    def _column_factor(self) -> nn.Parameter:
        return self.cov_factor

    def covariance_matrix(self) -> Tensor:
        return super().covariance_matrix() + self.cov_factor @ self.cov_factor.T

    @classmethod
    def from_moments(cls, mean: Tensor, variance: Tensor, factor: Tensor) -> LowRankGaussian:
        """A fixed ``N(mean, factor factor^T + diag(variance))`` (e.g. SWAG)."""
        q = cls(mean.numel(), rank=factor.shape[1], init_factor_std=0.0)
        with torch.no_grad():
            q.loc.copy_(mean)
            q.cov_factor.copy_(factor)
        q._set_std(variance.clamp_min(MIN_STD**2).sqrt())
        return q

    def extra_repr(self) -> str:
        return f"dim={self.dim}, rank={self.rank}"


class FullGaussian(GaussianPosterior):
    """Full covariance through its Cholesky factor: ``Sigma = L L^T``.

    ``L`` is lower triangular with diagonal ``softplus(rho)``; the strictly
    lower part is free. Fine for ``D`` up to a few thousand.

    Parameters
    ----------
    dim : int
    init_std : float, default=0.05
        Initial diagonal of ``L`` (off-diagonal entries start at zero).
    """

    def __init__(self, dim: int, init_std: float = 0.05, generator: torch.Generator | None = None):
        super().__init__(dim)
        self.raw_diag = nn.Parameter(_inverse_positive(torch.full((self.dim,), float(init_std))))
        self.tril = nn.Parameter(torch.zeros(self.dim, self.dim))

    @property
    def scale_tril(self) -> Tensor:
        """The Cholesky factor ``L``, shape ``(D, D)``."""
        return torch.tril(self.tril, diagonal=-1) + torch.diag(_positive(self.raw_diag))

    def _noise_dim(self) -> int:
        return self.dim

    def _column_factor(self) -> nn.Parameter:
        return self.tril

    def _scale_parameters(self) -> list[nn.Parameter]:
        return [self.raw_diag]

    def _colour(self, eps: Tensor) -> Tensor:
        return eps @ self.scale_tril.T

    def trace_covariance(self) -> Tensor:
        return self.scale_tril.pow(2).sum()

    def logdet_covariance(self) -> Tensor:
        return 2.0 * _positive(self.raw_diag).log().sum()

    def variance(self) -> Tensor:
        return self.scale_tril.pow(2).sum(1)

    def covariance_factor(self) -> Tensor:
        return self.scale_tril

    def covariance_matrix(self) -> Tensor:
        L = self.scale_tril
        return L @ L.T

    @classmethod
    def from_moments(cls, mean: Tensor, covariance: Tensor) -> FullGaussian:
        """A fixed ``N(mean, covariance)`` (e.g. a full Laplace approximation)."""
        q = cls(mean.numel())
        L = torch.linalg.cholesky(covariance.double()).to(mean.dtype)
        with torch.no_grad():
            q.loc.copy_(mean)
            q.tril.copy_(torch.tril(L, diagonal=-1))
            q.raw_diag.copy_(_inverse_positive(L.diagonal()))
        return q


class PointMass(GaussianPosterior):
    """A point estimate (MAP, plain LoRA-XS): zero covariance.

    :meth:`kl_to_prior` returns the prior's negative log density up to a constant,
    ``||mu||^2 / (2 sigma_p^2)``, so that the same ``NLL + KL / N`` criterion is
    the MAP objective.
    """

    def _noise_dim(self) -> int:
        return 0

    def _colour(self, eps: Tensor) -> Tensor:
        return torch.zeros(eps.shape[0], self.dim, dtype=self.loc.dtype, device=self.loc.device)

    def trace_covariance(self) -> Tensor:
        return self.loc.new_zeros(())

    def variance(self) -> Tensor:
        return torch.zeros_like(self.loc)

    def covariance_matrix(self) -> Tensor:
        return torch.zeros(self.dim, self.dim, dtype=self.loc.dtype, device=self.loc.device)

    def spectrum(self) -> Tensor:
        return torch.zeros(self.dim, dtype=torch.float64)

    def kl_to_prior(self, prior_std: float | Tensor) -> Tensor:
        if isinstance(prior_std, Tensor):
            return 0.5 * (self.loc.pow(2) / prior_std.to(self.loc).pow(2)).sum()
        return 0.5 * self.loc.pow(2).sum() / float(prior_std) ** 2

    @classmethod
    def from_mean(cls, mean: Tensor) -> PointMass:
        """A point mass at ``mean``."""
        q = cls(mean.numel())
        with torch.no_grad():
            q.loc.copy_(mean)
        return q


def entropy_effective_rank(eigenvalues: Tensor) -> float:
    """Entropy effective rank ``exp(H(p))`` with ``p = lambda / sum(lambda)``.

    ``D`` for an isotropic covariance, 1 when one direction holds all the
    variance, and 0 for a zero covariance (a point estimate).

    Reference: Roy & Vetterli, "The effective rank: a measure of effective
    dimensionality", EUSIPCO 2007.
    """
    if not isinstance(eigenvalues, Tensor):
        eigenvalues = torch.from_numpy(np.array(eigenvalues, dtype=np.float64))  # a copy: any strides
    lam = eigenvalues.detach().to(torch.float64).clamp_min(0.0)
    total = lam.sum()
    if total <= 0:
        return 0.0
    p = lam[lam > 0] / total
    return float(torch.exp(-(p * p.log()).sum()))


def make_posterior(
    dim: int,
    covariance: str | None,
    *,
    cov_rank: int = 4,
    init_std: float = 0.05,
    generator: torch.Generator | None = None,
) -> GaussianPosterior:
    """Build a posterior family by name.

    Parameters
    ----------
    dim : int
    covariance : {"diag", "lowrank", "full"} or None
        ``None`` gives a :class:`PointMass` (MAP).
    cov_rank : int, default=4
        Columns of the low-rank factor (``"lowrank"`` only).
    init_std : float, default=0.05
    generator : torch.Generator, optional
    """
    if covariance is None:
        return PointMass(dim)
    try:
        kind = Covariance(covariance)
    except ValueError:
        raise ValueError(f"Unknown covariance {covariance!r}; use one of {[c.value for c in Covariance]}.") from None
    if kind is Covariance.LOWRANK:
        return LowRankGaussian(dim, rank=cov_rank, init_std=init_std, generator=generator)
    cls = DiagGaussian if kind is Covariance.DIAG else FullGaussian
    return cls(dim, init_std=init_std, generator=generator)


def structure_of_state(state: dict[str, Tensor], prefix: str = "posterior.") -> tuple[str | None, int]:
    """``(covariance, cov_rank)`` of the posterior whose ``state_dict`` (under ``prefix``) is ``state``."""
    if prefix + "cov_factor" in state:
        return ("lowrank", int(state[prefix + "cov_factor"].shape[1]))
    if prefix + "tril" in state:
        return ("full", 0)
    return ("diag", 0) if prefix + "raw_std" in state else (None, 0)


def structure_of(posterior: GaussianPosterior) -> tuple[str | None, int]:
    """``(covariance, cov_rank)`` such that :func:`make_posterior` rebuilds ``posterior``'s structure."""
    if isinstance(posterior, PointMass):
        return (None, 0)
    if isinstance(posterior, LowRankGaussian):
        return ("lowrank", posterior.rank)
    return ("full", 0) if isinstance(posterior, FullGaussian) else ("diag", 0)

"""Every option set of the library, as documented ``str`` Enums in one place.

The estimator keeps flat, scikit-learn-style string parameters
(``posterior="vi"``); these Enums are the single list of what each of them
may be, with what every value means. Because they subclass ``str``, a member
compares equal to its value (``Posterior.VI == "vi"``).
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "Posterior",
    "Covariance",
    "LaplaceStructure",
    "Predictive",
    "Draws",
    "Head",
    "Pooling",
    "Precision",
    "values",
]


class Posterior(str, Enum):
    """How the posterior over the cores ``theta`` is obtained (:mod:`subspace_bayes.inference`)."""

    #: Variational inference: a Gaussian fitted by maximising the ELBO.
    VI = "vi"
    #: A point estimate (plain LoRA-XS): the prior acts as weight decay.
    MAP = "map"
    #: SWAG over the cores after a MAP burn-in (B-LoRA-XS).
    SWAG = "swag"
    #: Post-hoc Laplace approximation at the MAP cores (L-LoRA-XS).
    LAPLACE = "laplace"


class Covariance(str, Enum):
    """Covariance structure of a variational Gaussian posterior."""

    #: Mean field: ``Sigma = diag(sigma^2)``.
    DIAG = "diag"
    #: ``Sigma = F F^T + diag(sigma^2)`` with ``F`` of ``cov_rank`` columns.
    LOWRANK = "lowrank"
    #: Dense, through a Cholesky factor.
    FULL = "full"


class LaplaceStructure(str, Enum):
    """Structure of the generalised Gauss-Newton matrix of a Laplace posterior."""

    #: The exact GGN over ``theta`` (cheap: ``D`` is a few hundred).
    FULL = "full"
    #: Its diagonal.
    DIAG = "diag"
    #: Per-layer Kronecker factors (K-FAC), block diagonal.
    KRON = "kron"


class Predictive(str, Enum):
    """How the posterior predictive is computed."""

    #: Monte Carlo: softmax averaged over draws of ``theta``.
    MC = "mc"
    #: Linearised (GLM) predictive: logits sampled from ``N(f(x; mu), J Sigma J^T)``.
    GLM = "glm"
    #: The GLM predictive's mean in closed form (pairwise probit approximation, no sampling).
    PROBIT = "probit"


class Draws(str, Enum):
    """How the ``S`` standard-normal vectors behind a prediction's draws are chosen (``draws=``)."""

    #: Independent draws: plain Monte Carlo.
    INDEPENDENT = "independent"
    #: Pairs ``eps, -eps``: every odd-order term of ``p(theta)`` around the mean cancels within a pair.
    ANTITHETIC = "antithetic"
    #: Scrambled Sobol points mapped through the normal inverse CDF (quasi-Monte Carlo).
    SOBOL = "sobol"


class Head(str, Enum):
    """What turns the pooled features into class logits."""

    #: A trained linear layer on the pooled features.
    LINEAR = "linear"
    #: The causal LM's own next-token logits of one label token per class (frozen: theta adapts alone).
    LM = "lm"


class Pooling(str, Enum):
    """How token states become one feature vector per input."""

    #: Mean pooling for encoders, the last token for decoder LMs.
    AUTO = "auto"
    #: Mean over non-padding tokens.
    MEAN = "mean"
    #: The first token.
    CLS = "cls"
    #: The last non-padding token.
    LAST = "last"


class Precision(str, Enum):
    """Precision of the frozen backbone's forward pass (``theta``, posterior, KL and head stay float32)."""

    FP32 = "fp32"
    BF16 = "bf16"
    #: Half precision without loss scaling; prefer ``bf16``.
    FP16 = "fp16"


def values(options: type[Enum]) -> tuple[str, ...]:
    """The plain string values of an option Enum, in declaration order."""
    return tuple(member.value for member in options)

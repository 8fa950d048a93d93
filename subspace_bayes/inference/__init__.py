"""Inference methods over the subspace cores: one small object per method, each yielding a posterior.

========  ==========================================  ===================================
name      trains                                      final posterior
========  ==========================================  ===================================
vi        a Gaussian ``q(theta)`` on the ELBO         the trained Gaussian
map       a point estimate                            the point estimate
swag      a point estimate, snapshots at constant lr  low-rank + diagonal from snapshots
laplace   a point estimate                            ``N(theta*, (GGN + delta I)^{-1})``
========  ==========================================  ===================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..options import Posterior
from .base import InferenceMethod, Schedule, TrainingData
from .laplace import Laplace
from .map import MAP
from .swag import SWAG
from .vi import VI, ELBOLoss

__all__ = [
    "InferenceMethod",
    "Schedule",
    "TrainingData",
    "VI",
    "MAP",
    "SWAG",
    "Laplace",
    "ELBOLoss",
    "METHODS",
    "make_inference",
]

#: The method class of each ``posterior=`` value.
METHODS: dict[Posterior, type[InferenceMethod]] = {Posterior(cls.name): cls for cls in (VI, MAP, SWAG, Laplace)}


def make_inference(params: Mapping[str, Any]) -> InferenceMethod:
    """The inference method selected by the estimator's flat parameters (``params["posterior"]``).

    Raises
    ------
    ValueError
        For an unknown ``posterior``; the message lists the valid ones.
    """
    try:
        kind = Posterior(params["posterior"])
    except ValueError:
        raise ValueError(
            f"Unknown posterior {params['posterior']!r}; use one of {[p.value for p in Posterior]}."
        ) from None
    return METHODS[kind].from_params(params)

"""MAP: a point estimate of the cores (plain LoRA-XS), the prior acting as weight decay."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import Posterior
from .base import InferenceMethod

__all__ = ["MAP"]


@dataclass
class MAP(InferenceMethod):
    """Train a :class:`~subspace_bayes.posteriors.PointMass` by minimising ``NLL + ||theta||^2 / (2 sigma_p^2 N)``."""

    name = Posterior.MAP.value

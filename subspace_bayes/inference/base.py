"""The interface every inference method implements: what to train, and what posterior to make of it.

The training loop itself (skorch) is the same for every method. A method
decides only

1. which posterior structure gradient descent trains (:meth:`InferenceMethod.training_structure`:
   a Gaussian for VI, a point estimate for MAP, SWAG and Laplace),
2. which callbacks watch training (:meth:`InferenceMethod.callbacks`: SWAG's snapshots),
3. what the final posterior is once training ends (:meth:`InferenceMethod.finish`:
   SWAG's moments, Laplace's curvature at the mode),
4. what to continue from on a warm start (:meth:`InferenceMethod.restart`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from skorch.callbacks import Callback
from torch import Tensor, nn

from ..posteriors import GaussianPosterior

__all__ = ["InferenceMethod", "Schedule", "TrainingData"]


@dataclass(frozen=True)
class Schedule:
    """The shape of one training run, as callbacks need it.

    Parameters
    ----------
    n_train : int
        Examples in the training split (held-out validation examples excluded).
    batch_size : int
    max_epochs : int
    """

    n_train: int
    batch_size: int
    max_epochs: int

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch, ``ceil(n_train / batch_size)`` (at least 1)."""
        return max(1, -(-self.n_train // self.batch_size))


@dataclass(frozen=True)
class TrainingData:
    """The training split, for methods that look at the data again after training.

    Parameters
    ----------
    batches : callable
        Returns a fresh iterable of in-order batches: dicts of input tensors on
        the module's device, with integer ``"labels"`` and, when the fit was
        weighted, ``"sample_weight"`` (mean 1 over the training split).
    n_examples : int
    """

    batches: Callable[[], Iterable[dict[str, Tensor]]]
    n_examples: int


class InferenceMethod:
    """Base class: one way to obtain a posterior over ``theta``.

    Subclasses are small dataclasses holding their own hyperparameters, built
    from the estimator's flat parameters by :meth:`from_params`.
    """

    #: The estimator's ``posterior=`` value that selects this method.
    name: ClassVar[str]
    #: Whether gradient descent trains a distribution over ``theta`` (VI), not a point estimate: only
    #: then does the ELBO have a prior variance to optimise (``prior_std="auto"``).
    trains_a_distribution: ClassVar[bool] = False
    #: The estimator parameters this method reads, as ``{estimator name: field name}``.
    parameters: ClassVar[Mapping[str, str]] = {}

    def cannot_cover_head(self) -> str | None:
        """Why this method cannot put a posterior on the head too (``bayesian_head=True``); None if it can."""
        return None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> InferenceMethod:
        """Build the method from the estimator's flat parameters (only the ones it reads)."""
        return cls(**{field: params[name] for name, field in cls.parameters.items()})

    def training_structure(self) -> tuple[str | None, int]:
        """``(covariance, cov_rank)`` of the posterior that gradient descent trains (None: a point estimate)."""
        return (None, 0)

    def callbacks(self, schedule: Schedule) -> list[tuple[str, Callback]]:
        """skorch callbacks that watch training (none by default)."""
        return []

    def restart(self, posterior: GaussianPosterior) -> GaussianPosterior:
        """The posterior to continue training from on a warm start (by default the current one)."""
        return posterior

    def finish(self, module: nn.Module, data: TrainingData) -> GaussianPosterior | None:
        """The final posterior once training has ended (None: keep the trained one)."""
        return None

    def fitted_attributes(self) -> dict[str, Any]:
        """Learned scalars the estimator exposes after :meth:`finish` (e.g. a tuned prior precision)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep to resume this method's bookkeeping mid-training."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

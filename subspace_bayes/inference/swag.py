"""SWAG over the subspace cores (B-LoRA-XS): snapshot moments -> low-rank + diagonal Gaussian.

After a burn-in of MAP training, snapshots ``theta_1..theta_n`` are collected at a constant
learning rate. With the mean ``mu = (1/n) sum_k theta_k``, the second moment
``s = (1/n) sum_k theta_k^2`` and the deviations of the last ``K`` snapshots
``D = [theta_k - mu]`` (a ``D x K`` matrix), the posterior is

.. math::

    q(theta) = N(mu, scale * [ 1/2 diag(s - mu^2) + 1/2 D D^T / (K - 1) ]).

Reference: Maddox et al., "A Simple Baseline for Bayesian Uncertainty in Deep
Learning", NeurIPS 2019, arXiv:1902.02476; Onal et al. (B-LoRA-XS), arXiv:2502.12122.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from skorch.callbacks import Callback
from torch import Tensor, nn

from ..options import Posterior
from ..posteriors import DiagGaussian, GaussianPosterior, LowRankGaussian, PointMass
from .base import InferenceMethod, Schedule, TrainingData

__all__ = ["SWAG", "SWAGMoments", "SWAGCollector"]


class SWAGMoments:
    """Running first and second moments of snapshots, and the last ``max_snapshots`` of them.

    Parameters
    ----------
    max_snapshots : int, default=20
        ``K``, the number of recent snapshots kept for the deviation matrix.
    """

    def __init__(self, max_snapshots: int = 20):
        if max_snapshots < 1:
            raise ValueError(f"swag_max_snapshots must be >= 1; got {max_snapshots}.")
        self.max_snapshots = int(max_snapshots)
        self.n = 0
        self.mean: Tensor | None = None
        self.sq_mean: Tensor | None = None
        self.recent: deque[Tensor] = deque(maxlen=self.max_snapshots)

    def update(self, theta: Tensor) -> None:
        """Add one snapshot ``theta`` of shape (D,)."""
        theta = theta.detach().to("cpu", torch.float64).clone()
        if self.mean is None:
            self.mean, self.sq_mean = torch.zeros_like(theta), torch.zeros_like(theta)
        self.n += 1
        self.mean += (theta - self.mean) / self.n
        self.sq_mean += (theta.pow(2) - self.sq_mean) / self.n
        self.recent.append(theta)

    def diagonal_variance(self) -> Tensor:
        """``s - mu^2`` (clamped at 0 against round-off)."""
        return (self.sq_mean - self.mean.pow(2)).clamp_min(0.0)

    def deviations(self) -> Tensor:
        """``D``: the last ``K`` snapshots minus the mean, shape (D, K)."""
        return torch.stack(list(self.recent), dim=1) - self.mean[:, None]

    def covariance_matrix(self, scale: float = 1.0) -> Tensor:
        """Dense SWAG covariance (small ``D`` only; for checks)."""
        dev = self.deviations()
        k = dev.shape[1]
        low = dev @ dev.T / max(k - 1, 1)
        return scale * (0.5 * torch.diag(self.diagonal_variance()) + 0.5 * low)

    def posterior(self, scale: float = 1.0, dtype: torch.dtype = torch.float32) -> GaussianPosterior:
        """The SWAG Gaussian as a posterior object (diagonal if fewer than 2 snapshots)."""
        if self.n == 0:
            raise RuntimeError(
                "SWAG collected no snapshot: make max_epochs larger than swag_start "
                "(collection runs from epoch swag_start to the end)."
            )
        var = 0.5 * scale * self.diagonal_variance()
        if len(self.recent) < 2:
            return DiagGaussian.from_moments(self.mean.to(dtype), var.to(dtype))
        factor = self.deviations() * math.sqrt(0.5 * scale / (len(self.recent) - 1))
        if factor.shape[1] > factor.shape[0]:  # more snapshots than cores: the same F F^T with D columns
            U, sv, _ = torch.linalg.svd(factor, full_matrices=False)
            factor = U * sv
        return LowRankGaussian.from_moments(self.mean.to(dtype), var.to(dtype), factor.to(dtype))


class SWAGCollector(Callback):
    """skorch callback: collect ``theta`` snapshots from epoch ``start_epoch`` on.

    ``max_snapshots`` snapshots are spread evenly over the training steps of the
    collection phase; the learning rate of the cores is switched to ``lr`` (if
    given) when collection starts, and kept constant. Epochs count from the start of
    each training call, so a ``partial_fit`` gets its own burn-in and collection
    phase (a checkpoint resume keeps the call it resumes).

    Parameters
    ----------
    start_epoch : int
        0-based epoch at which collection starts (the burn-in is ``start_epoch`` epochs).
    max_snapshots : int, default=20
    lr : float, optional
        Constant learning rate of the cores during collection.
    steps_per_epoch : int, default=1
        Optimizer steps per epoch of the training split (sets the snapshot spacing).
    """

    def __init__(self, start_epoch: int, max_snapshots: int = 20, lr: float | None = None, steps_per_epoch: int = 1):
        self.start_epoch = start_epoch
        self.max_snapshots = max_snapshots
        self.lr = lr
        self.steps_per_epoch = steps_per_epoch

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        restored = getattr(self, "restored_", None)
        self.restored_ = None
        if restored is not None:  # resuming from a checkpoint: keep what was collected
            self.moments_, self.interval_, self.step_, self.first_epoch_ = restored
            return
        self.first_epoch_ = len(net.history)  # epochs trained before this call (a partial_fit continues a fit)
        self.moments_ = SWAGMoments(self.max_snapshots)
        collection_epochs = max(1, net.max_epochs - self.start_epoch)
        self.interval_ = max(1, (collection_epochs * self.steps_per_epoch) // self.max_snapshots)
        self.step_ = 0

    def state_dict(self) -> dict:
        """Collected moments and counters (for checkpoints)."""
        m = self.moments_
        return {
            "n": m.n,
            "mean": m.mean,
            "sq_mean": m.sq_mean,
            "recent": list(m.recent),
            "interval": self.interval_,
            "step": self.step_,
            "first_epoch": self.first_epoch_,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        m = SWAGMoments(self.max_snapshots)
        m.n, m.mean, m.sq_mean = state["n"], state["mean"], state["sq_mean"]
        m.recent.extend(state["recent"])
        self.moments_ = m  # usable at once, also when no epoch is left to train
        self.restored_ = (m, state["interval"], state["step"], state.get("first_epoch", 0))

    def _epoch(self, net) -> int:
        """The current epoch, 0-based, counted from the start of this training call."""
        return len(net.history) - 1 - self.first_epoch_

    def on_epoch_begin(self, net, **kwargs):
        if self.lr is not None and self._epoch(net) == self.start_epoch:
            cores = {id(p) for p in net.module_.posterior.parameters()}
            for group in net.optimizer_.param_groups:  # the groups that hold the cores, wherever they are
                if any(id(p) in cores for p in group["params"]):
                    group["lr"] = self.lr

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if not training or self._epoch(net) < self.start_epoch:
            return
        self.step_ += 1
        if self.step_ % self.interval_ == 0:
            self.moments_.update(net.module_.posterior.mean)


@dataclass
class SWAG(InferenceMethod):
    """MAP training, then snapshot moments of the cores at a constant learning rate.

    Parameters
    ----------
    start : int or None, default=None
        Epoch (0-based) at which collection starts; None: half of ``max_epochs``.
    max_snapshots : int, default=20
    scale : float, default=1.0
        Multiplies the covariance.
    lr : float or None, default=None
        Constant learning rate of the cores during collection (None: unchanged).
    """

    name = Posterior.SWAG.value
    parameters: ClassVar[Mapping[str, str]] = {
        "swag_start": "start",
        "swag_max_snapshots": "max_snapshots",
        "swag_scale": "scale",
        "swag_lr": "lr",
    }

    start: int | None = None
    max_snapshots: int = 20
    scale: float = 1.0
    lr: float | None = None
    collector: SWAGCollector | None = field(default=None, init=False, repr=False)

    def callbacks(self, schedule: Schedule) -> list[tuple[str, Callback]]:
        start = schedule.max_epochs // 2 if self.start is None else self.start
        self.collector = SWAGCollector(start, self.max_snapshots, self.lr, schedule.steps_per_epoch)
        return [("swag", self.collector)]

    def restart(self, posterior: GaussianPosterior) -> GaussianPosterior:
        # Continue from the SWAG mean as a point estimate; the moments are collected afresh.
        return PointMass.from_mean(posterior.mean.detach())

    def finish(self, module: nn.Module, data: TrainingData) -> GaussianPosterior:
        return self.collector.moments_.posterior(self.scale)

    def state_dict(self) -> dict[str, Any]:
        return self.collector.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.collector.load_state_dict(state)

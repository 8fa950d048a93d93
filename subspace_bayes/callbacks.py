"""Training callbacks: progress bars over epochs and long predictions, and the cosine step-size decay."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

from skorch.callbacks import Callback

__all__ = ["CosineDecay", "EpochProgress", "cosine_factor", "progress"]

T = TypeVar("T")


class EpochProgress(Callback):
    """A tqdm bar over epochs with the loss and its terms, data NLL and KL / N (hidden when ``net.verbose`` is 0)."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=net.max_epochs, desc="fit", unit="epoch", disable=not net.verbose, leave=False)

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        shown = {key: row.get(f"train_{key}") for key in ("loss", "nll", "kl")}
        self.bar_.set_postfix({key: f"{v:.4f}" if v is not None else "n/a" for key, v in shown.items()})
        self.bar_.update(1)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.bar_.close()
        del self.bar_


def progress(batches: Iterable[T], n_batches: int, verbose: int, desc: str, min_batches: int = 21) -> Iterable[T]:
    """``batches`` wrapped in a tqdm bar when ``verbose`` and there are at least ``min_batches`` of them."""
    if not verbose or n_batches < min_batches:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, total=n_batches, desc=desc, unit="batch", leave=False)


def cosine_factor(step: int, total: int) -> float:
    """``1/2 (1 + cos(pi t / T))``: 1 at the first step, 0 after the last (clipped to ``[0, 1]``)."""
    if total <= 0:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(max(step, 0), total) / total))


class CosineDecay(Callback):
    """Decay every optimizer group's step to zero over a training call: ``lr_t = lr_0 cosine_factor(t, T)``.

    Stochastic gradient VI with a constant step does not converge: the variational parameters hover
    in a noise ball whose size grows with the step (Robbins and Monro's conditions ask for decaying
    steps). The estimator sets ``net.schedule_ = (t_0, T)`` before each training call: ``T`` optimizer
    steps in all and ``t_0`` already taken (a resumed checkpoint). Each group's ``lr_0`` is kept in the
    group as ``"base_lr"``, so it travels with the optimizer's state into checkpoints.
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.step_, self.total_ = getattr(net, "schedule_", (0, 0))
        for group in net.optimizer_.param_groups:
            group.setdefault("base_lr", group["lr"])
        self._apply(net)

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if training:
            self.step_ += 1
            self._apply(net)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        for group in net.optimizer_.param_groups:  # a later training call starts from the full step
            group["lr"] = group["base_lr"]

    def _apply(self, net) -> None:
        factor = cosine_factor(self.step_, self.total_)
        for group in net.optimizer_.param_groups:
            group["lr"] = group["base_lr"] * factor

"""Progress reporting: a bar over epochs during fit and over batches during long predictions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from skorch.callbacks import Callback

__all__ = ["EpochProgress", "progress"]

T = TypeVar("T")


class EpochProgress(Callback):
    """A tqdm bar over epochs with the running training loss (hidden when ``net.verbose`` is 0)."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=net.max_epochs, desc="fit", unit="epoch", disable=not net.verbose, leave=False)

    def on_epoch_end(self, net, **kwargs):
        loss = net.history[-1].get("train_loss")
        self.bar_.set_postfix(loss=f"{loss:.4f}" if loss is not None else "n/a")
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

"""Multi-GPU data-parallel training through Hugging Face Accelerate (skorch's ``AccelerateMixin``).

Launch a script that fits :class:`AcceleratedBayesianSubspaceClassifier` with
``accelerate launch --multi_gpu --num_processes 4 train.py``; every process gets
its own shard of each batch, gradients of ``theta`` and the head are averaged.
"""

from __future__ import annotations

from typing import Any

from skorch.hf import AccelerateMixin

from .estimator import BayesianSubspaceClassifier

__all__ = ["AcceleratedBayesianSubspaceClassifier"]


class AcceleratedBayesianSubspaceClassifier(AccelerateMixin, BayesianSubspaceClassifier):
    """:class:`BayesianSubspaceClassifier` trained through an ``accelerate.Accelerator``.

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        Owns device placement, distributed data parallelism and mixed precision
        (``Accelerator(mixed_precision="bf16")``); ``device`` must stay None.
    **kwargs
        Everything :class:`BayesianSubspaceClassifier` takes.

    Notes
    -----
    The accelerator is not pickled (it holds process-group state): a loaded model
    predicts as usual; pass ``set_params(accelerator=Accelerator())`` before
    training it further. ``clone`` (e.g. inside ``GridSearchCV``) keeps the same
    accelerator object, so all clones share it, as skorch recommends.

    Examples
    --------
    >>> from accelerate import Accelerator  # doctest: +SKIP
    >>> clf = AcceleratedBayesianSubspaceClassifier(accelerator=Accelerator(), rank=8)  # doctest: +SKIP
    """

    def __init__(self, backbone: str = "minilm", *, accelerator: Any, device: str | None = None, **kwargs: Any):
        super().__init__(backbone, accelerator=accelerator, device=device, **kwargs)

    #: The accelerator holds process-wide state and cannot be deep-copied: clones share it.
    _SHARED_BY_CLONES = (*BayesianSubspaceClassifier._SHARED_BY_CLONES, "accelerator")

    def _resolve_device(self) -> str:
        if self.accelerator is None:  # unpickled: the accelerator was not kept
            return super()._resolve_device()
        return str(self.accelerator.device)

    def initialize(self):
        self._begin_initialize()
        return AccelerateMixin.initialize(self)  # skorch's accelerated initialisation, which moves nothing itself

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["accelerator"] = None
        state["_wrapped_with_accelerator"] = False
        return state

"""Computing the frozen layers below the first adapter once for all draws of ``theta``.

In a folded forward pass the batch holds ``S`` copies of the same ``N`` inputs
(sample-major, see :class:`~subspace_bayes.adapters.ProjectedLinear`). A module
that sees no adapter gives the same output for every copy,
``f(tile(x)) = tile(f(x))``, so the modules *before* the first adapter (the
embeddings, and any unadapted blocks below it) need to run on ``N`` rows only.
This saves ``(S - 1) / S`` of their cost.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from torch import Tensor, nn

from .adapters import ProjectedLinear

__all__ = ["draw_independent_prefix", "shared_across_draws"]


def _holds_adapter(module: nn.Module) -> bool:
    return any(isinstance(m, ProjectedLinear) for m in module.modules())


def _layer_stack(model: nn.Module) -> nn.ModuleList | None:
    """The model's stack of transformer blocks: its longest ``nn.ModuleList`` of same-typed modules."""
    stacks = [
        m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0 and len({type(b) for b in m}) == 1
    ]
    return max(stacks, key=len, default=None)


def draw_independent_prefix(model: nn.Module) -> list[nn.Module]:
    """The frozen modules that run before any adapter, in order.

    First the input module: ``model.embeddings`` where the model has one
    (BERT, RoBERTa, DistilBERT, ...: token + position + type embeddings and
    their LayerNorm), else ``model.get_input_embeddings()`` (LLaMA-likes).
    Then every block of the layer stack before the first block that holds an
    adapter: with the default targets (every layer) there is none, with
    adapters on the top layers only the blocks below them. Their outputs are
    the same for every draw of ``theta``, so a folded forward pass need not
    compute them ``S`` times (:func:`shared_across_draws`). Empty when the
    input module itself holds an adapter.
    """
    inputs = getattr(model, "embeddings", None)
    if not isinstance(inputs, nn.Module):
        getter = getattr(model, "get_input_embeddings", None)
        inputs = getter() if callable(getter) else None
    if inputs is None or _holds_adapter(inputs):
        return []
    prefix = [inputs]
    for block in _layer_stack(model) or []:
        if _holds_adapter(block):
            break
        prefix.append(block)
    return prefix


def _map_tensors(fn, value):
    """Apply ``fn`` to every tensor in ``value``, looking into tuples and lists."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(fn, v) for v in value)
    return value


@contextmanager
def _computed_once(module: nn.Module, n_draws: int, n_rows: int) -> Iterator[None]:
    folded = n_draws * n_rows
    own = module.__dict__.get("forward")  # e.g. a hook-wrapped forward installed by another library
    original = module.forward

    def cut(t: Tensor) -> Tensor:
        return t[:n_rows] if t.dim() > 0 and t.shape[0] == folded else t

    def per_row(out) -> bool:
        tensors = []
        _map_tensors(tensors.append, out)
        return bool(tensors) and all(t.dim() > 0 and t.shape[0] == n_rows for t in tensors)

    def forward(*args, **kwargs):
        out = original(*_map_tensors(cut, args), **{k: _map_tensors(cut, v) for k, v in kwargs.items()})
        if not per_row(out):  # not a row-wise module after all: compute it in full (correct, slower)
            warnings.warn(
                f"{type(module).__name__} does not map input rows to output rows, so it is computed "
                "for every draw; please report this model type.",
                RuntimeWarning,
                stacklevel=2,
            )
            return original(*args, **kwargs)
        return _map_tensors(lambda t: t.repeat(n_draws, *([1] * (t.dim() - 1))), out)

    module.forward = forward
    try:
        yield
    finally:
        if own is None:
            del module.forward  # back to the class's forward
        else:
            module.forward = own


@contextmanager
def shared_across_draws(modules: Sequence[nn.Module], n_draws: int, n_rows: int) -> Iterator[None]:
    """Inside the block, each of ``modules`` runs once on the first ``n_rows`` rows and tiles its output.

    In a folded forward pass the batch holds ``n_draws`` copies of the same
    ``n_rows`` inputs (sample-major). A module that sees no adapter, fed tiled
    inputs, gives the same output for every copy: ``f(tile(x)) = tile(f(x))``,
    which saves ``(S - 1) / S`` of its cost. Tensor arguments (also inside
    tuples) whose first axis is ``n_draws * n_rows`` are cut to their first
    ``n_rows`` rows; others (broadcast masks, position ids) pass unchanged.
    ``modules`` must be a prefix of the network (:func:`draw_independent_prefix`).
    Nothing is shared when ``n_draws == 1`` or when a module has active dropout
    (its copies would then differ).
    """
    share = n_draws > 1 and not any(
        isinstance(m, nn.Dropout) and m.training and m.p > 0 for module in modules for m in module.modules()
    )
    with ExitStack() as stack:
        if share:
            for module in modules:
                stack.enter_context(_computed_once(module, n_draws, n_rows))
        yield

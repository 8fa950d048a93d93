"""Computing the layers below the first draw-dependent adapter once for all draws of ``theta``.

In a folded forward pass the batch holds ``S`` copies of the same ``N`` inputs
(sample-major, see :class:`~subspace_bayes.adapters.ProjectedLinear`). A module
whose output does not depend on the draw gives the same output for every copy,
``f(tile(x)) = tile(f(x))``, so the modules *before* the first adapter whose
core differs between draws (the embeddings, unadapted blocks, and blocks whose
cores are held at one value in every draw, see ``sampled_layers``) need to run
on ``N`` rows only. This saves ``(S - 1) / S`` of their cost.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from torch import Tensor, nn

from .adapters import ProjectedLinear

__all__ = ["adapted_blocks", "draw_independent_prefix", "same_in_every_draw", "shared_across_draws"]


def _adapters(module: nn.Module) -> list[ProjectedLinear]:
    return [m for m in module.modules() if isinstance(m, ProjectedLinear)]


def same_in_every_draw(adapter: ProjectedLinear, theta: Tensor) -> bool:
    """Whether ``adapter``'s core is the same in every draw of ``theta`` (S, D)."""
    cores = theta[:, adapter.offset : adapter.offset + adapter.n_core]
    return bool((cores == cores[:1]).all())


def _varies(module: nn.Module, theta: Tensor | None) -> bool:
    """Whether ``module`` holds an adapter whose core differs between draws (any adapter when ``theta`` is None)."""
    return any(theta is None or not same_in_every_draw(a, theta) for a in _adapters(module))


def _layer_stack(model: nn.Module) -> nn.ModuleList | None:
    """The model's stack of transformer blocks: its longest ``nn.ModuleList`` of same-typed modules."""
    stacks = [
        m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0 and len({type(b) for b in m}) == 1
    ]
    return max(stacks, key=len, default=None)


def adapted_blocks(model: nn.Module) -> list[list[ProjectedLinear]]:
    """The adapters of each block of the layer stack that holds any, bottom block first."""
    blocks = [_adapters(block) for block in _layer_stack(model) or []]
    return [adapters for adapters in blocks if adapters]


def draw_independent_prefix(model: nn.Module, theta: Tensor | None = None) -> list[nn.Module]:
    """The modules that run before any adapter whose core differs between draws, in order.

    First the input module: ``model.embeddings`` where the model has one
    (BERT, RoBERTa, DistilBERT, ...: token + position + type embeddings and
    their LayerNorm), else ``model.get_input_embeddings()`` (LLaMA-likes).
    Then every block of the layer stack before the first block that holds an
    adapter whose core is not the same in every draw of ``theta`` (with
    ``theta`` None: before the first block that holds an adapter). With the
    default targets (every layer) and every core drawn there is none; with
    adapters on the top layers only, or the lower layers' cores held at their
    mean (``sampled_layers``), the blocks below them. Their outputs are the
    same for every draw, so a folded forward pass need not compute them ``S``
    times (:func:`shared_across_draws`). Empty when the input module itself
    holds such an adapter.
    """
    inputs = getattr(model, "embeddings", None)
    if not isinstance(inputs, nn.Module):
        getter = getattr(model, "get_input_embeddings", None)
        inputs = getter() if callable(getter) else None
    if inputs is None or _varies(inputs, theta):
        return []
    prefix = [inputs]
    for block in _layer_stack(model) or []:
        if _varies(block, theta):
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

    banks = {id(a._bank): a._bank for a in _adapters(module)}.values()

    def forward(*args, **kwargs):
        with ExitStack() as first_draw:  # the module's adapters see the one core all draws share
            for bank in banks:
                if bank.theta is not None:
                    first_draw.enter_context(bank.bind(bank.theta[:1]))
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
    which saves ``(S - 1) / S`` of its cost. Adapters inside such a module (cores
    the same in every draw) see the first draw only while it runs. Tensor arguments (also inside
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

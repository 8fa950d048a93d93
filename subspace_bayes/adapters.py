"""Projected linear adapters and their injection into Hugging Face models.

A :class:`ProjectedLinear` wraps a frozen ``nn.Linear`` (or transformers' ``Conv1D``) and adds
``s * B R A x`` where ``R`` is this layer's slice of the current draw of
``theta``. Draws are shared by all adapters through a :class:`CoreBank`; the
sample axis ``S`` is folded into the batch axis (sample-major), so one forward
pass evaluates ``S`` draws at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .projections import Projection, make_projection, needs_input_moments

__all__ = [
    "CoreBank",
    "ProjectedLinear",
    "NoTargetModulesError",
    "DEFAULT_TARGET_MODULES",
    "default_target_modules",
    "find_target_modules",
    "inject_adapters",
    "collect_input_moments",
    "CoreProduct",
    "Conv1D",
    "ADAPTABLE",
    "dense_weight",
    "named_adapters",
]

#: Default adapted modules per ``config.model_type`` (attention query and value).
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "ernie": ["query", "value"],
    "mpnet": ["q", "v"],
    "distilbert": ["q_lin", "v_lin"],
    "deberta": ["in_proj"],
    "deberta-v2": ["query_proj", "value_proj"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "phi": ["q_proj", "v_proj"],
    "opt": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "falcon": ["query_key_value"],
    "modernbert": ["Wqkv"],
    "albert": ["query", "value"],
}


def _conv1d_type() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    return Conv1D


#: transformers' ``Conv1D`` (GPT-2 and relatives): a linear layer whose weight is stored ``in x out``.
Conv1D = _conv1d_type()
#: Layer types an adapter can wrap.
ADAPTABLE = (nn.Linear,) if Conv1D is None else (nn.Linear, Conv1D)


def dense_weight(layer: nn.Module) -> Tensor:
    """The weight of a linear layer as ``(d_out, d_in)`` (``nn.Linear``'s layout; ``Conv1D``'s is transposed)."""
    return layer.weight.T if Conv1D is not None and isinstance(layer, Conv1D) else layer.weight


class NoTargetModulesError(ValueError):
    """Raised when ``target_modules`` matches no linear layer (``nn.Linear`` or ``Conv1D``) of the model."""


class CoreBank:
    """Holds the current draws of ``theta`` (shape ``(S, D)``) for all adapters.

    A plain object (not a module) shared by reference: the classifier module
    binds a draw for the duration of one forward pass with :meth:`bind`.
    """

    def __init__(self) -> None:
        self.theta: Tensor | None = None

    @contextmanager
    def bind(self, theta: Tensor) -> Iterator[None]:
        """Make ``theta`` of shape ``(S, D)`` the current draw inside the block."""
        if theta.dim() != 2:
            raise ValueError(f"theta must have shape (S, D); got {tuple(theta.shape)}.")
        previous, self.theta = self.theta, theta
        try:
            yield
        finally:
            self.theta = previous


class CoreProduct(nn.Module):
    """``h R^T`` per draw: the one step of an adapter that involves ``theta``.

    A module of its own (with no state), so that curvature code can watch the
    core's inputs and outputs with ordinary forward hooks (K-FAC, see
    :func:`subspace_bayes.inference.laplace.kron_ggn`).
    """

    def forward(self, a: Tensor, R: Tensor) -> Tensor:
        """``a`` (S, M, r), ``R`` (S, r, r) -> ``a R^T`` (S, M, r)."""
        return torch.bmm(a, R.transpose(1, 2))


class ProjectedLinear(nn.Module):
    """``y = W0 x + b + s * B R A x`` around a frozen ``nn.Linear`` or ``Conv1D``.

    Parameters
    ----------
    base_layer : nn.Linear or Conv1D
        The pretrained layer; its parameters are frozen, never modified (and
        may be stored in reduced precision: the low-rank path runs in float32).
    projection : Projection
        Frozen bases; ``sqrt(projection.scale)`` is folded into both.
    bank : CoreBank
        Where the current ``theta`` draws are read from.
    offset : int
        Start of this layer's ``r*r`` core entries inside ``theta``.
    scaling : float, default=1.0
        ``s``.
    """

    def __init__(
        self, base_layer: nn.Linear, projection: Projection, bank: CoreBank, offset: int, scaling: float = 1.0
    ):
        super().__init__()
        self.base_layer = base_layer
        for p in base_layer.parameters():
            p.requires_grad_(False)
        # fp32 buffers: the bases are part of the saved adapter state (whitened and
        # random bases cannot be recomputed from W0 alone).
        A, B = self._bases(projection)
        self.register_buffer("lora_A", A)  # (r, d_in)
        self.register_buffer("lora_B", B)  # (d_out, r)
        self.rank = projection.rank
        self.offset = int(offset)
        self.scaling = float(scaling)
        self.core_product = CoreProduct()
        self._bank = bank

    @staticmethod
    def _bases(projection: Projection) -> tuple[Tensor, Tensor]:
        root = projection.scale.float().sqrt()
        return (root[:, None] * projection.A.float()).contiguous(), (projection.B.float() * root).contiguous()

    def set_projection(self, projection: Projection) -> None:
        """Replace the frozen bases (same rank), e.g. once data-dependent input statistics are known."""
        if projection.rank != self.rank:
            raise ValueError(f"set_projection needs rank {self.rank}; got {projection.rank}.")
        A, B = self._bases(projection)
        self.lora_A, self.lora_B = A.to(self.lora_A.device), B.to(self.lora_B.device)

    @property
    def n_core(self) -> int:
        """Number of core entries ``r^2``."""
        return self.rank * self.rank

    @property
    def in_features(self) -> int:
        return self.lora_A.shape[1]

    @property
    def out_features(self) -> int:
        return self.lora_B.shape[0]

    def get_base_layer(self) -> nn.Module:
        return self.base_layer

    def core(self, theta: Tensor) -> Tensor:
        """This layer's cores from ``theta`` (S, D) -> ``R`` (S, r, r)."""
        return theta[:, self.offset : self.offset + self.n_core].reshape(-1, self.rank, self.rank)

    def forward(self, x: Tensor) -> Tensor:
        out = self.base_layer(x)
        theta = self._bank.theta
        if theta is None:
            return out
        # The low-rank path runs in float32 at least, whatever the frozen weights' dtype or autocast say.
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            R = self.core(theta).to(dtype)  # (S, r, r)
            S = R.shape[0]
            h = F.linear(x.to(dtype), self.lora_A.to(dtype))  # (S*N, ..., r)
            lead = h.shape[:-1]
            # The leading axis is sample-major: rows [s*N:(s+1)*N] belong to draw s.
            h = self.core_product(h.reshape(S, -1, self.rank), R)  # (S, N*..., r): h R^T
            h = F.linear(h.reshape(*lead, self.rank), self.lora_B.to(dtype))  # (S*N, ..., d_out)
        return out + (self.scaling * h).to(out.dtype)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, offset={self.offset}, scaling={self.scaling}"


def named_adapters(model: nn.Module) -> list[tuple[str, ProjectedLinear]]:
    """``(name, adapter)`` for every :class:`ProjectedLinear` in ``model``, in model order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ProjectedLinear)]


def default_target_modules(model_type: str | None) -> list[str] | None:
    """The default target names for a ``config.model_type`` (None if unknown)."""
    return DEFAULT_TARGET_MODULES.get(model_type or "")


def _matches(name: str, targets: str | Sequence[str]) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def find_target_modules(model: nn.Module, target_modules: str | Sequence[str] | None = None) -> list[str]:
    """Names of the linear layers (``nn.Linear``, ``Conv1D``) of ``model`` that ``target_modules`` selects.

    Parameters
    ----------
    model : nn.Module
        A Hugging Face model (its ``config.model_type`` picks the default).
    target_modules : str, list of str or None
        A list matches module names by suffix (``"query"`` matches
        ``encoder.layer.0.attention.self.query``); a string is a regular
        expression matched against the full name. None uses
        :data:`DEFAULT_TARGET_MODULES`.

    Raises
    ------
    NoTargetModulesError
        If nothing matches; the message lists the available linear names.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if target_modules is None:
        target_modules = default_target_modules(model_type)
        if target_modules is None:
            raise NoTargetModulesError(
                f"No default target modules for model_type={model_type!r}; pass target_modules=[...] "
                f"from the linear modules of this model: {_linear_suffixes(model)}."
            )
    names = [n for n, m in model.named_modules() if isinstance(m, ADAPTABLE) and _matches(n, target_modules)]
    if not names:
        default = default_target_modules(model_type)
        raise NoTargetModulesError(
            f"target_modules={target_modules!r} matched no linear layer of this {model_type or 'model'}. "
            f"Available linear module names: {_linear_suffixes(model)}; "
            f"the default for model_type={model_type!r} is {default}."
        )
    return names


def _linear_suffixes(model: nn.Module) -> list[str]:
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, ADAPTABLE)})


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def inject_adapters(
    model: nn.Module,
    rank: int,
    *,
    projection: str = "svd",
    target_modules: str | Sequence[str] | None = None,
    scaling: float = 1.0,
    generator: torch.Generator | None = None,
    input_moments: dict[str, Tensor] | None = None,
    damping: float = 1e-2,
    bank: CoreBank | None = None,
) -> tuple[CoreBank, list[ProjectedLinear]]:
    """Replace the target linears of ``model`` (in place) with :class:`ProjectedLinear`.

    Every parameter of ``model`` is frozen; the adapters add buffers only.

    Parameters
    ----------
    model : nn.Module
    rank : int
        ``r`` of every adapter.
    projection : str, default="svd"
        See :func:`subspace_bayes.projections.make_projection`.
    target_modules : str, list of str or None
        See :func:`find_target_modules`.
    scaling : float, default=1.0
    generator : torch.Generator, optional
        For random projections.
    input_moments : dict of str to Tensor, optional
        Per-module input second moments, needed by whitened SVD.
    damping : float, default=1e-2
    bank : CoreBank, optional
        A bank to share; a new one by default.

    Returns
    -------
    bank : CoreBank
    adapters : list of ProjectedLinear
        In model order; adapter ``i`` reads ``theta[offset_i : offset_i + r^2]``
        and ``D = sum_i r^2``.
    """
    names = find_target_modules(model, target_modules)
    if needs_input_moments(projection) and (input_moments is None or any(n not in input_moments for n in names)):
        raise ValueError(
            "projection='whitened_svd' needs input second moments for every target module; "
            "gather them with collect_input_moments(model, names, batches)."
        )
    for p in model.parameters():
        p.requires_grad_(False)
    bank = CoreBank() if bank is None else bank
    adapters, offset = [], 0
    for name in names:
        base = model.get_submodule(name)
        moment = None if input_moments is None else input_moments.get(name)
        proj = make_projection(  # from W0 in float32 at least: an SVD in bf16 is not accurate enough
            dense_weight(base).float(), rank, projection, generator=generator, input_moment=moment, damping=damping
        )
        adapter = ProjectedLinear(base, proj, bank, offset, scaling).to(base.weight.device)
        _set_submodule(model, name, adapter)
        adapters.append(adapter)
        offset += adapter.n_core
    return bank, adapters


def collect_input_moments(
    model: nn.Module, names: Iterable[str], batches: Iterable[dict[str, Tensor]]
) -> dict[str, Tensor]:
    """Input second moments ``E[x x^T]`` of the named linears, over non-padding tokens.

    Parameters
    ----------
    model : nn.Module
        Called as ``model(**batch)``.
    names : iterable of str
        Linear modules to watch.
    batches : iterable of dict
        Tokenised batches; ``attention_mask`` (if present) drops padding tokens.

    Returns
    -------
    dict of str to Tensor of shape (d_in, d_in), float64 on the CPU.
    """
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    state: dict[str, Tensor | None] = {"mask": None}

    def hook(name: str):
        def fn(_module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
            x = inputs[0].detach()
            mask = state["mask"]
            x = x[mask.bool()] if mask is not None and mask.shape == x.shape[:-1] else x.reshape(-1, x.shape[-1])
            x = x.double().cpu()
            sums[name] = sums.get(name, 0) + x.T @ x
            counts[name] = counts.get(name, 0) + x.shape[0]

        return fn

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad():
            for batch in batches:
                state["mask"] = batch.get("attention_mask")
                model(**batch)
    finally:
        for h in handles:
            h.remove()
    return {n: sums[n] / max(counts[n], 1) for n in sums}

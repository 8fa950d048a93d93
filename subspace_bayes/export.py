"""Leaving the library: the posterior mean as a peft LoRA adapter, or merged into plain weights.

Every adapted layer computes ``W x = W0 x + s B R A x``. At the posterior mean ``R = mu`` that is
a LoRA update ``lora_B lora_A`` with ``lora_A = A`` (r x d_in) and ``lora_B = s B mu`` (d_out x r),
so standard tools can serve it: peft (``PeftModel.from_pretrained``), LoRA-capable servers, or a
merged ``save_pretrained`` folder with ``W0 + s B mu A`` and no adapter code at all.

What is lost: an exported model is the posterior mean, a point estimate. The Monte Carlo average
over the posterior and every uncertainty score need this library.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor, nn

from .adapters import Conv1D, named_adapters

__all__ = ["lora_factors", "plain_backbone", "write_peft_adapter", "write_merged", "write_head", "HEAD_FILE"]

#: The linear head and pooling of an exported linear-head model (safetensors, next to the weights).
HEAD_FILE = "classification_head.safetensors"


@torch.no_grad()
def lora_factors(module: nn.Module) -> dict[str, tuple[Tensor, Tensor]]:
    """``{adapter name: (lora_A, lora_B)}`` at the posterior mean: ``A`` and ``s B mu_R``.

    Names are relative to the backbone (``encoder.layer.0.attention.self.query``); ``lora_B @ lora_A``
    is the layer's weight update in ``nn.Linear``'s ``(d_out, d_in)`` layout.
    """
    mean = module.posterior.mean.detach().float()[None]
    out = {}
    for name, adapter in named_adapters(module.backbone):
        R = adapter.core(mean)[0].cpu()
        out[name] = (adapter.lora_A.float().cpu().clone(), adapter.scaling * adapter.lora_B.float().cpu() @ R)
    return out


def plain_backbone(module: nn.Module) -> nn.Module:
    """A copy of the module's backbone with every adapter replaced by its frozen base layer (``W0``)."""
    backbone = copy.deepcopy(module.backbone)
    for name, adapter in named_adapters(backbone):
        parent_name, _, child = name.rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        setattr(parent, child, adapter.get_base_layer())
    for p in backbone.parameters():
        p.requires_grad_(True)
    return backbone


@torch.no_grad()
def write_merged(module: nn.Module, model: nn.Module, prefix: str = "") -> nn.Module:
    """Add ``lora_B lora_A`` of the posterior mean to ``model``'s weights in place (``prefix``: the backbone's path).

    ``model`` is the plain backbone (:func:`plain_backbone`) or a model that contains it under
    ``prefix`` (a causal LM for ``head="lm"``). Conv1D weights (``in x out``) get the transpose.
    """
    for name, (A, B) in lora_factors(module).items():
        layer = model.get_submodule(prefix + name)
        delta = (B @ A).to(layer.weight.dtype)
        layer.weight += delta.T if Conv1D is not None and isinstance(layer, Conv1D) else delta
    return model


def write_peft_adapter(module: nn.Module, model: nn.Module, path: str | Path, base_name: str, prefix: str = "") -> Path:
    """Save the posterior mean as a peft LoRA adapter of ``model`` (a plain copy of the backbone or its causal LM).

    ``LoraConfig(r=rank, lora_alpha=rank)`` (peft's scaling ``alpha / r = 1``: ``s`` is folded into
    ``lora_B``), the adapted modules as target modules, ``fan_in_fan_out`` for Conv1D layers.

    Raises
    ------
    ImportError
        Without peft: ``pip install "subspace-bayes[export]"``.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError(
            'export_peft needs peft: pip install "subspace-bayes[export]" (or pip install peft).'
        ) from None
    factors = lora_factors(module)
    names = [prefix + n for n in factors]
    ranks = {A.shape[0] for A, _ in factors.values()}
    if len(ranks) != 1:
        raise ValueError(f"The adapters have different ranks {sorted(ranks)}; peft needs one rank per config.")
    rank = ranks.pop()
    conv = [n for n in names if Conv1D is not None and isinstance(model.get_submodule(n), Conv1D)]
    config = LoraConfig(
        r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=names, fan_in_fan_out=bool(conv), bias="none"
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, (A, B) in factors.items():
            layer = peft_model.base_model.model.get_submodule(prefix + name)
            layer.lora_A["default"].weight.copy_(A)
            layer.lora_B["default"].weight.copy_(B)
    peft_model.peft_config["default"].base_model_name_or_path = base_name
    folder = Path(path)
    peft_model.save_pretrained(folder)
    return folder


def write_head(module: nn.Module, path: str | Path) -> Path:
    """The linear head at the posterior mean (``weight`` C x H, ``bias`` C) and the pooling, as safetensors.

    Recipe without this library (documented in docs/share.md)::

        hidden = AutoModel.from_pretrained(folder)(**tokenizer(texts, ...)).last_hidden_state
        head = safetensors.torch.load_file(folder / "classification_head.safetensors")
        features = mean over non-padding tokens (pooling "mean"), the first token ("cls"), or the last ("last")
        probabilities = softmax(features @ head["weight"].T + head["bias"])
    """
    from safetensors.torch import save_file

    if getattr(module.head, "bias", None) is None:
        raise ValueError("The LM head (head='lm') is the LM's own output layer: export_merged saves it with the LM.")
    with torch.no_grad():
        if module.bayesian_head:
            Wb = module.head_rows(module.posterior.mean.detach().float()[None])[0]
            weight, bias = Wb[:, :-1], Wb[:, -1]
        else:
            weight, bias = module.head.weight, module.head.bias
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"weight": weight.detach().float().cpu().contiguous(), "bias": bias.detach().float().cpu().contiguous()}
    save_file(tensors, str(folder / HEAD_FILE), metadata={"pooling": module.pooling, "format": "subspace_bayes"})
    return folder

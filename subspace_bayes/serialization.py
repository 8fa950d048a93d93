"""Saving without pickle (safetensors + JSON) and per-epoch checkpoints for resuming a fit.

``save_adapter`` writes two files into a folder: ``adapter.safetensors`` (the
learned tensors: posterior, head and projection bases) and ``adapter.json``
(library version, backbone identifier, a fingerprint of the backbone's adapted
weights, classes, hyperparameters). Loading them executes no code, unlike
pickle/joblib files, which must only come from trusted sources.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback

__all__ = ["save_adapter", "load_adapter", "backbone_fingerprint", "EpochCheckpoint", "AdapterFormatError",
           "BackboneMismatchError"]

FORMAT_VERSION = 1
TENSORS_FILE = "adapter.safetensors"
META_FILE = "adapter.json"
CHECKPOINT_FILE = "checkpoint.pt"


class AdapterFormatError(ValueError):
    """A saved adapter is missing, truncated, corrupted or of an unknown format."""


class BackboneMismatchError(ValueError):
    """The saved adapter was fitted on a different backbone than the one found now."""


def backbone_fingerprint(module) -> str:
    """SHA-256 over the names, shapes and values of the frozen weights of the adapted layers."""
    h = hashlib.sha256()
    for name, m in module.backbone.named_modules():
        if hasattr(m, "base_layer") and hasattr(m, "lora_A"):
            w = m.base_layer.weight.detach().to("cpu", torch.float32).contiguous()
            h.update(name.encode())
            h.update(str(tuple(w.shape)).encode())
            h.update(w.numpy().tobytes())
    return h.hexdigest()


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _label_list(classes: np.ndarray) -> list:
    return [c.item() if isinstance(c, np.generic) else c for c in classes.tolist()]


def save_adapter(estimator, path: str | os.PathLike) -> Path:
    """Write a fitted estimator's learned state to the folder ``path`` (created if needed).

    Returns
    -------
    Path of the folder.
    """
    from safetensors.torch import save_file

    from . import __version__

    estimator.check_is_fitted()
    classes = _label_list(estimator.classes_)
    if not _jsonable(classes):
        raise TypeError(f"save_adapter needs JSON-representable class labels; got {classes[:3]}... Use joblib.")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in estimator.module_.adapter_state_dict().items()}
    params = {k: v for k, v in estimator.get_params(deep=False).items() if _jsonable(v) and not k.startswith("callbacks")}
    meta = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "backbone": estimator.backbone,
        "backbone_fingerprint": backbone_fingerprint(estimator.module_),
        "classes": classes,
        "params": params,
        "posterior_spec": list(estimator.posterior_spec_),
        "fitted": {k: getattr(estimator, k) for k in ("seed_", "predict_seed_", "n_train_", "prior_precision_",
                                                       "log_marginal_likelihood_") if hasattr(estimator, k)},
    }
    save_file(tensors, str(folder / TENSORS_FILE), metadata={"format": "subspace_bayes"})
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))
    return folder


def _read_meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except FileNotFoundError:
        raise AdapterFormatError(f"No {META_FILE} in {folder}: not a folder written by save_adapter.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterFormatError(f"{folder / META_FILE} is corrupted or truncated ({exc}).") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise AdapterFormatError(f"{folder / META_FILE} has an unknown format (expected format_version "
                                 f"{FORMAT_VERSION}).")
    return meta


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    file = folder / TENSORS_FILE
    if not file.is_file():
        raise AdapterFormatError(f"No {TENSORS_FILE} in {folder}: the adapter folder is incomplete.")
    try:
        return load_file(str(file))
    except Exception as exc:  # safetensors raises its own error types for bad headers and short files
        raise AdapterFormatError(f"{file} is corrupted or truncated and cannot be read ({exc}).") from None


def load_adapter(path: str | os.PathLike, **overrides: Any):
    """Rebuild a fitted :class:`BayesianSubspaceClassifier` from a folder written by :func:`save_adapter`.

    The backbone is loaded by its saved identifier and must be the same weights
    (checked by fingerprint). Parameters in ``overrides`` (e.g. ``device``,
    ``n_samples``, ``batch_size``) replace the saved ones.

    Raises
    ------
    AdapterFormatError
        Missing, truncated or corrupted files.
    BackboneMismatchError
        The backbone found now differs from the one the adapter was fitted on.
    """
    from .estimator import BayesianSubspaceClassifier

    folder = Path(path)
    meta = _read_meta(folder)
    tensors = _read_tensors(folder)
    params = {**meta["params"], **overrides}
    est = BayesianSubspaceClassifier(**params)
    est.classes_inferred_ = np.asarray(meta["classes"])
    for k, v in meta.get("fitted", {}).items():
        setattr(est, k, v)
    est.posterior_spec_ = (meta["posterior_spec"][0], int(meta["posterior_spec"][1]))
    est._attach(tensors)
    found = backbone_fingerprint(est.module_)
    if found != meta["backbone_fingerprint"]:
        raise BackboneMismatchError(
            f"The adapter in {folder} was fitted on a different backbone than the {meta['backbone']!r} found now "
            "(the weights of the adapted layers differ). Load it with the backbone it was trained on."
        )
    return est


class EpochCheckpoint(Callback):
    """Write the full training state to ``dirname/checkpoint.pt`` after every epoch (atomically).

    A later ``fit`` of an estimator with the same ``checkpoint_dir`` and settings
    resumes from it. Only the learned tensors, optimizer moments, random-generator
    states and the history are stored, never the frozen backbone.
    """

    def __init__(self, dirname: str | os.PathLike):
        self.dirname = dirname

    def on_epoch_end(self, net, **kwargs):
        folder = Path(self.dirname)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (CHECKPOINT_FILE + ".tmp")
        torch.save(net._training_state(), tmp)
        os.replace(tmp, folder / CHECKPOINT_FILE)


def read_checkpoint(dirname: str | os.PathLike) -> dict | None:
    """The checkpoint in ``dirname`` (None if there is none)."""
    file = Path(dirname) / CHECKPOINT_FILE
    if not file.is_file():
        return None
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise AdapterFormatError(f"Checkpoint {file} is corrupted ({exc}); delete it to start afresh.") from None

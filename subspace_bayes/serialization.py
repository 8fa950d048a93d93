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
           "BackboneMismatchError", "training_state", "resume_training_state", "fit_key"]

FORMAT_VERSION = 1
TENSORS_FILE = "adapter.safetensors"
META_FILE = "adapter.json"


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
    """Write the full training state to ``dirname/checkpoint-<fit key>.pt`` after every epoch (atomically).

    A later ``fit`` of an estimator with the same ``checkpoint_dir`` and settings
    resumes from it. Only the learned tensors, optimizer moments, random-generator
    states and the history are stored, never the frozen backbone.
    """

    def __init__(self, dirname: str | os.PathLike):
        self.dirname = dirname

    def on_epoch_end(self, net, **kwargs):
        file = checkpoint_path(net)
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".tmp{os.getpid()}")
        torch.save(training_state(net), tmp)
        os.replace(tmp, file)  # atomic: a killed process leaves the previous checkpoint intact


def read_checkpoint(file: str | os.PathLike) -> dict | None:
    """The checkpoint stored in ``file`` (None if there is none)."""
    file = Path(file)
    if not file.is_file():
        return None
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise AdapterFormatError(f"Checkpoint {file} is corrupted ({exc}); delete it to start afresh.") from None


#: Parameters that do not change what a fit computes (left out of its checkpoint key).
_NOT_IN_KEY = {"callbacks", "verbose", "checkpoint_dir", "device", "n_samples", "predictive", "warm_start"}


def fit_key(est, inputs, y_enc) -> str:
    """A short hash of the estimator's settings and the training data: one checkpoint file per fit.

    Parallel fits (cross-validation folds, grid points) sharing a ``checkpoint_dir``
    therefore never write the same file, and a repeated fit finds its own.
    """
    h = hashlib.sha256()
    params = est.get_params(deep=False)
    for k in sorted(params):
        if k not in _NOT_IN_KEY and not k.startswith("callbacks"):
            h.update(f"{k}={params[k]!r};".encode())
    for text in inputs.first + (inputs.second or []):
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    h.update(np.asarray(y_enc, dtype=np.int64).tobytes())
    h.update(repr(est.classes_.tolist()).encode())
    return h.hexdigest()[:16]


def checkpoint_path(est) -> Path:
    return Path(est.checkpoint_dir) / f"checkpoint-{est.fit_key_}.pt"


def training_state(est) -> dict:
    """Everything needed to continue a fit exactly where it stopped (tensors and plain data only)."""
    state = {
        "fit_key": est.fit_key_,
        "module": {k: v.detach().cpu() for k, v in est.module_.adapter_state_dict().items()},
        "optimizer": est.optimizer_.state_dict(),
        "train_generator": est.train_generator_.get_state(),
        "shuffle_generator": est.shuffle_generator_.get_state(),
        # JSON keeps the checkpoint loadable with torch.load(weights_only=True).
        "history": json.dumps(list(est.history), default=lambda v: v.item() if hasattr(v, "item") else str(v)),
    }
    swag = dict(est.callbacks_).get("swag")
    if swag is not None:
        state["swag"] = swag.state_dict()
    return state


def resume_training_state(est) -> int:
    """Restore the checkpoint in ``est.checkpoint_dir`` (if any) into ``est``; return the epochs it holds."""
    from skorch.history import History

    if est.checkpoint_dir is None:
        return 0
    file = checkpoint_path(est)
    state = read_checkpoint(file)
    if state is None:
        return 0
    if state.get("fit_key") != est.fit_key_:
        raise AdapterFormatError(f"Checkpoint {file} belongs to another fit; delete it.")
    est.module_.load_state_dict(state["module"], strict=False)
    est.optimizer_.load_state_dict(state["optimizer"])
    est.train_generator_.set_state(state["train_generator"])
    est.shuffle_generator_.set_state(state["shuffle_generator"])
    est.history_ = History(json.loads(state["history"]))
    if "swag" in state:
        dict(est.callbacks_)["swag"].load_state_dict(state["swag"])
    return len(est.history)

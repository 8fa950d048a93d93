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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback

from ._version import __version__
from .adapters import named_adapters

__all__ = [
    "AdapterState",
    "write_adapter",
    "read_adapter",
    "backbone_fingerprint",
    "check_backbone",
    "EpochCheckpoint",
    "write_checkpoint",
    "read_checkpoint",
    "checkpoint_file",
    "fit_key",
    "encode_history",
    "decode_history",
    "plain_labels",
    "save_tensors",
    "load_tensors",
    "jsonable",
    "AdapterFormatError",
    "BackboneMismatchError",
]

FORMAT_VERSION = 1
TENSORS_FILE = "adapter.safetensors"
META_FILE = "adapter.json"


class AdapterFormatError(ValueError):
    """A saved adapter is missing, truncated, corrupted or of an unknown format."""


class BackboneMismatchError(ValueError):
    """The saved adapter was fitted on a different backbone than the one found now."""


@dataclass
class AdapterState:
    """Everything a fitted estimator learned, as plain data: what :func:`write_adapter` stores.

    Parameters
    ----------
    backbone : str
        The backbone identifier to re-load the frozen weights by.
    backbone_fingerprint : str
        :func:`backbone_fingerprint` of the adapted module at save time.
    classes : list
        JSON-representable class labels.
    params : dict
        The estimator's JSON-representable parameters.
    posterior_spec : tuple
        ``(covariance, cov_rank)`` of the final posterior.
    fitted : dict
        Learned scalars (seeds, tuned prior precision, ...).
    tensors : dict of str to Tensor
        :meth:`SubspaceClassifierModule.adapter_state_dict`.
    """

    backbone: str
    backbone_fingerprint: str
    classes: list
    params: dict[str, Any]
    posterior_spec: tuple[str | None, int]
    fitted: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def backbone_fingerprint(module) -> str:
    """SHA-256 over the names, shapes and values of the frozen weights of the adapted layers."""
    h = hashlib.sha256()
    for name, adapter in named_adapters(module.backbone):
        w = adapter.get_base_layer().weight.detach().to("cpu", torch.float32).contiguous()  # (layout as stored)
        h.update(name.encode())
        h.update(str(tuple(w.shape)).encode())
        h.update(w.numpy().tobytes())
    return h.hexdigest()


def check_backbone(state: AdapterState, module, where: str | os.PathLike, loaded: str | None = None) -> None:
    """Raise :class:`BackboneMismatchError` unless ``module`` wraps the weights ``state`` was fitted on.

    ``loaded`` names the backbone loaded now (an override of the saved one); default: the saved name.
    """
    if backbone_fingerprint(module) != state.backbone_fingerprint:
        now = state.backbone if loaded is None else loaded
        found = "found now under that name" if now == state.backbone else f"loaded now, {now!r},"
        raise BackboneMismatchError(
            f"The adapter in {where} was fitted on the backbone {state.backbone!r}, but the one {found} has "
            "different weights in the adapted layers. Load it with the backbone it was trained on "
            "(load_adapter(path, backbone=<that model's folder or hub id>))."
        )


def jsonable(value: Any) -> bool:
    """Whether ``value`` survives ``json.dumps``."""
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def plain_labels(classes: np.ndarray) -> list:
    """Class labels as plain Python values (numpy scalars unwrapped), for JSON."""
    return [c.item() if isinstance(c, np.generic) else c for c in classes.tolist()]


def write_adapter(path: str | os.PathLike, state: AdapterState) -> Path:
    """Write ``state`` to the folder ``path`` (created if needed) as safetensors + JSON.

    Returns
    -------
    Path of the folder.
    """
    from safetensors.torch import save_file

    if not jsonable(state.classes):
        raise TypeError(f"save_adapter needs JSON-representable class labels; got {state.classes[:3]}... Use joblib.")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.tensors.items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        **{k: v for k, v in asdict(state).items() if k != "tensors"},
    }
    meta["posterior_spec"] = list(state.posterior_spec)
    save_file(tensors, str(folder / TENSORS_FILE), metadata={"format": "subspace_bayes"})
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))
    return folder


def save_tensors(tensors: dict[str, torch.Tensor], f, use_safetensors: bool = False) -> None:
    """Write a flat dict of tensors to the path or file object ``f`` (torch's format, or safetensors to a path)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    if use_safetensors:
        from safetensors.torch import save_file

        save_file(tensors, str(f))
    else:
        torch.save(tensors, f)


def load_tensors(f, use_safetensors: bool = False) -> dict[str, torch.Tensor]:
    """Read what :func:`save_tensors` wrote (no code is executed: ``weights_only`` / safetensors)."""
    if use_safetensors:
        from safetensors.torch import load_file

        return load_file(str(f))
    return torch.load(f, map_location="cpu", weights_only=True)


def _read_meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except FileNotFoundError:
        raise AdapterFormatError(f"No {META_FILE} in {folder}: not a folder written by save_adapter.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterFormatError(f"{folder / META_FILE} is corrupted or truncated ({exc}).") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise AdapterFormatError(
            f"{folder / META_FILE} has an unknown format (expected format_version {FORMAT_VERSION})."
        )
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


def read_adapter(path: str | os.PathLike) -> AdapterState:
    """Read a folder written by :func:`write_adapter`.

    Raises
    ------
    AdapterFormatError
        Missing, truncated or corrupted files.
    """
    folder = Path(path)
    meta = _read_meta(folder)
    try:
        spec = meta["posterior_spec"]
        return AdapterState(
            backbone=meta["backbone"],
            backbone_fingerprint=meta["backbone_fingerprint"],
            classes=meta["classes"],
            params=meta["params"],
            posterior_spec=(spec[0], int(spec[1])),
            fitted=meta.get("fitted", {}),
            tensors=_read_tensors(folder),
        )
    except (KeyError, IndexError, TypeError) as exc:
        raise AdapterFormatError(
            f"{folder / META_FILE} lacks a field ({exc}); it was not written by save_adapter."
        ) from None


class EpochCheckpoint(Callback):
    """Write the training state to ``dirname/checkpoint-<fit key>.pt`` after every epoch (atomically).

    Parameters
    ----------
    dirname : path
        The checkpoint folder; the file is :func:`checkpoint_file` of the state's ``"fit_key"``.
    state : callable
        Returns the state to write (tensors and plain data only, with a
        ``"fit_key"``); the estimator provides it, this callback only decides
        when and where it is written.
    """

    def __init__(self, dirname: str | os.PathLike, state: Callable[[], dict]):
        self.dirname = dirname
        self.state = state

    def on_epoch_end(self, net, **kwargs):
        state = self.state()
        write_checkpoint(checkpoint_file(self.dirname, state["fit_key"]), state)


def write_checkpoint(file: str | os.PathLike, state: dict) -> None:
    """``torch.save`` to ``file`` through a temporary file, so a killed process leaves the previous one intact."""
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, file)


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


def fit_key(params: dict[str, Any], inputs, y_enc, classes: np.ndarray) -> str:
    """A short hash of the estimator's settings and the training data: one checkpoint file per fit.

    Parallel fits (cross-validation folds, grid points) sharing a ``checkpoint_dir``
    therefore never write the same file, and a repeated fit finds its own.
    """
    h = hashlib.sha256()
    for k in sorted(params):
        if k not in _NOT_IN_KEY and not k.startswith("callbacks"):
            value = params[k]
            value = os.fspath(value) if isinstance(value, os.PathLike) else value
            value = (
                value
                if isinstance(value, (str, int, float, bool, type(None), dict, list, tuple))
                else (
                    f"<{type(value).__name__} {getattr(value, 'name_or_path', '')}>"  # objects by name, not by repr
                )
            )
            h.update(f"{k}={value!r};".encode())
    for text in inputs.first + (inputs.second or []):
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    h.update(np.asarray(y_enc, dtype=np.int64).tobytes())
    h.update(repr(classes.tolist()).encode())
    return h.hexdigest()[:16]


def checkpoint_file(dirname: str | os.PathLike, key: str) -> Path:
    """The checkpoint of the fit with key ``key`` (:func:`fit_key`) in ``dirname``."""
    return Path(dirname) / f"checkpoint-{key}.pt"


def encode_history(history: list) -> str:
    """skorch's history as JSON, so a checkpoint stays loadable with ``torch.load(weights_only=True)``."""
    return json.dumps(list(history), default=lambda v: v.item() if hasattr(v, "item") else str(v))


def decode_history(text: str) -> list:
    """Inverse of :func:`encode_history` (a list to wrap in ``skorch.history.History``)."""
    return json.loads(text)

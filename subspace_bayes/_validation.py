"""Declarative hyperparameter constraints with one message format, and label / weight checks."""

from __future__ import annotations

import difflib
import numbers
import os
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
from sklearn.utils.multiclass import type_of_target

__all__ = [
    "InvalidParameterError",
    "Interval",
    "Options",
    "Custom",
    "one_of",
    "is_device",
    "is_str_or_str_list",
    "is_path",
    "is_random_state",
    "validate_parameters",
    "check_parameter_names",
    "did_you_mean",
    "check_labels",
    "check_sample_weight",
    "sorted_labels",
    "encode_labels",
]


class InvalidParameterError(ValueError, TypeError):
    """A hyperparameter has a value outside its allowed set (a ValueError and a TypeError)."""


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` ("int" or "real") in ``[left, right]`` (None = unbounded; ``closed`` sides)."""

    kind: str
    left: float | None
    right: float | None
    closed: str = "both"  # "both", "left", "right", "neither"

    def __contains__(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return False
        if self.kind == "int" and not isinstance(v, numbers.Integral):
            return False
        if not np.isfinite(v) and self.kind == "int":
            return False
        lo_ok = self.left is None or (v >= self.left if self.closed in ("both", "left") else v > self.left)
        hi_ok = self.right is None or (v <= self.right if self.closed in ("both", "right") else v < self.right)
        return bool(lo_ok and hi_ok)

    def __str__(self) -> str:
        lb = "[" if self.closed in ("both", "left") and self.left is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        lo = "-inf" if self.left is None else self.left
        hi = "inf" if self.right is None else self.right
        return f"{'an int' if self.kind == 'int' else 'a float'} in the range {lb}{lo}, {hi}{rb}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    values: tuple

    def __contains__(self, v: Any) -> bool:
        try:
            return any(v == o and type(v) is type(o) for o in self.values) or (v is None and None in self.values)
        except Exception:
            return False

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class Custom:
    """A predicate with its description."""

    def __init__(self, predicate, description: str):
        self.predicate, self.description = predicate, description

    def __contains__(self, v: Any) -> bool:
        try:
            return bool(self.predicate(v))
        except Exception:
            return False

    def __str__(self) -> str:
        return self.description


def one_of(options: type[Enum]) -> Options:
    """The values of an option Enum (:mod:`subspace_bayes.options`) as an :class:`Options` constraint."""
    return Options(tuple(member.value for member in options))


def is_device(value: Any) -> bool:
    """``"auto"``, None or anything ``torch.device`` accepts (raises on nonsense, which :class:`Custom` reads as no)."""
    if value is None or value == "auto":
        return True
    import torch

    torch.device(value)
    return True


def is_str_or_str_list(value: Any) -> bool:
    """A string, or a non-empty list or tuple of strings."""
    if isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(t, str) for t in value)


def is_path(value: Any) -> bool:
    """A ``str`` or ``os.PathLike``."""
    return isinstance(value, (str, os.PathLike))


def is_random_state(value: Any) -> bool:
    """A ``numpy.random.RandomState``."""
    return isinstance(value, np.random.RandomState)


def validate_parameters(owner: str, params: dict[str, Any], constraints: dict[str, list]) -> None:
    """Check every constrained parameter; report all violations at once.

    Raises
    ------
    InvalidParameterError
        "The 'rank' parameter of Owner must be an int in the range [1, inf). Got 0 instead."
        (one line per bad parameter).
    """
    msgs = []
    for name, allowed in constraints.items():
        value = params.get(name)
        if any(value in c for c in allowed):
            continue
        desc = " or ".join(str(c) for c in allowed)
        msgs.append(f"The {name!r} parameter of {owner} must be {desc}. Got {value!r} instead.")
    if msgs:
        raise InvalidParameterError("\n".join(msgs))


def did_you_mean(name: str, candidates: list[str]) -> str:
    """``" (did you mean 'rank'?)"`` for the closest of ``candidates``, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_parameter_names(
    owner: str, given: set[str], known: list[str], prefixes: list[str], refused: dict[str, str]
) -> None:
    """Refuse keyword arguments that no parameter, routed prefix or refusal reason accounts for.

    Parameters
    ----------
    owner : str
        The estimator's class name, for the message.
    given : set of str
        The keyword arguments that reached the estimator's ``**kwargs``.
    known : list of str
        Every parameter name the estimator accepts.
    prefixes : list of str
        Routed prefixes: ``prefix__key`` goes to that component (``optimizer__betas``).
    refused : dict of str to str
        Prefixes the estimator builds itself (``module``, ``criterion``) with what to use instead.

    Raises
    ------
    InvalidParameterError
        One line per bad name, with the closest known name where one is close.
    """
    msgs = []
    for key in sorted(given):
        head, dunder, _ = key.partition("__")
        if dunder and head in refused:
            msgs.append(f"{key!r}: {refused[head]}")
        elif key in known or (dunder and head in prefixes):
            continue
        elif any(key.startswith(p) and key != p for p in prefixes):  # iterator_train_shuffle: a missing underscore
            prefix = max((p for p in prefixes if key.startswith(p)), key=len)
            routed = prefix + "__" + key[len(prefix) :].lstrip("_")
            msgs.append(f"{key!r} is not a parameter of {owner} (did you mean {routed!r}?)")
        else:
            msgs.append(f"{key!r} is not a parameter of {owner}{did_you_mean(key, known)}.")
    if msgs:
        raise InvalidParameterError("\n".join(msgs) + f"\nSee help({owner}) for the parameters.")


def check_labels(y: Any, n_samples: int) -> np.ndarray:
    """Return ``y`` as a 1-D object/array of hashable labels with ``n_samples`` entries."""
    if y is None:
        raise ValueError("y is required: this is a supervised classifier.")
    if isinstance(y, (list, tuple)):
        kinds = {_label_kind(v) for v in y}
        if len(kinds) > 1:
            raise TypeError(
                f"Labels must be mutually comparable (all strings, or all numbers); got mixed types {sorted(kinds)}."
            )
    arr = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-D (one label per text); got shape {arr.shape}.")
    if len(arr) != n_samples:
        raise ValueError(f"X has {n_samples} texts but y has {len(arr)} labels; they must have the same length.")
    for i, v in enumerate(arr):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            raise ValueError(f"y has a missing label (None/NaN) at row {i}; drop or fill it before fitting.")
    _check_class_labels(arr)
    return arr


def _label_kind(v: Any) -> str:
    """What a label is, for the mixed-types check: ``np.str_`` is a ``str``, ``np.int64`` a number."""
    if isinstance(v, (numbers.Number, np.number, np.bool_)):
        return "number"
    if isinstance(v, str):  # np.str_ subclasses str
        return "str"
    return type(v).__name__


def _check_class_labels(arr: np.ndarray) -> None:
    """Class labels, not a continuous or multi-output target (scikit-learn's ``type_of_target``)."""
    if arr.dtype == object:
        nested = next((v for v in arr.tolist() if isinstance(v, (list, tuple, set, dict, np.ndarray))), None)
        if nested is not None:
            raise ValueError(
                f"y holds a sequence per row ({nested!r}): multi-output targets are not supported; "
                "pass one label per text."
            )
        return  # strings or mixed objects: discrete by nature (mixed types are caught when sorting)
    if arr.dtype.kind in "USb":
        return
    kind = type_of_target(arr, input_name="y")
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            f"y looks like a {kind} target, not class labels (e.g. {arr[:3].tolist()}); this is a classifier. "
            "Bin a continuous target into classes first, or use a regressor."
        )


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray | None:
    """Validate ``sample_weight`` and normalise it to mean 1 (so ``KL / N`` keeps its scale)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n_samples, float(w))
    if w.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},); got {w.shape}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("sample_weight must be finite, non-negative and not all zero.")
    return w / w.mean()


def sorted_labels(labels: np.ndarray) -> np.ndarray:
    """The sorted distinct labels (``classes_``); mixed, un-comparable types are a TypeError."""
    try:
        return np.unique(labels)
    except TypeError:
        raise TypeError(
            "Labels must be mutually comparable (all strings, or all numbers); got mixed types "
            f"{sorted({type(v).__name__ for v in labels.tolist()})}."
        ) from None


def encode_labels(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Indices of ``labels`` in ``classes``; labels outside ``classes`` are a ValueError."""
    lookup = {v: i for i, v in enumerate(classes.tolist())}
    unseen = sorted({repr(v) for v in labels.tolist() if v not in lookup})
    if unseen:
        raise ValueError(
            f"y holds labels {', '.join(unseen[:5])} that are not among the fitted classes {classes.tolist()}; "
            "refit from scratch (warm_start=False) or pass classes=... to the first partial_fit."
        )
    return np.fromiter((lookup[v] for v in labels.tolist()), dtype=np.int64, count=len(labels))

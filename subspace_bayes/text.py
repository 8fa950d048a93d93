"""Text inputs: coercion of X, a torch Dataset, and a tokenising collate function."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skorch.dataset import Dataset as SkorchDataset
from torch import Tensor
from torch.utils.data import Sampler, Subset

__all__ = [
    "TextInputs",
    "coerce_texts",
    "input_form",
    "warn_empty_texts",
    "TextDataset",
    "TextCollator",
    "LengthBucketBatchSampler",
]


@dataclass
class TextInputs:
    """Coerced inputs: ``first`` texts and, for sentence-pair tasks, ``second`` texts."""

    first: list[str]
    second: list[str] | None = None

    def __len__(self) -> int:
        return len(self.first)

    def lengths(self) -> np.ndarray:
        """Character length of each example (both texts of a pair): a cheap proxy for its token count."""
        n = np.fromiter(map(len, self.first), dtype=np.int64, count=len(self.first))
        if self.second is not None:
            n = n + np.fromiter(map(len, self.second), dtype=np.int64, count=len(self.second))
        return n

    def by_length(self, lengths: np.ndarray | None = None) -> np.ndarray:
        """Indices that sort the examples by ``lengths`` (default: character length, a proxy for token count).

        Batching examples in this order pads each batch to a similar length,
        which saves most of the padding work when lengths vary; results are
        returned in the original order by the caller. The estimator passes the
        token counts of :meth:`TextCollator.lengths`.
        """
        return np.argsort(self.lengths() if lengths is None else np.asarray(lengths), kind="stable")

    def subset(self, idx: Sequence[int]) -> TextInputs:
        pick = lambda xs: None if xs is None else [xs[i] for i in idx]
        return TextInputs(pick(self.first), pick(self.second))


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isnan(v))


def _check_strings(values: Sequence[Any], what: str) -> list[str]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, (str, np.str_)):
            out.append(str(v))
            continue
        problem = "a missing value (None/NaN)" if _is_missing(v) else f"a {type(v).__name__}"
        raise TypeError(
            f"{what} must contain strings; row {i} is {problem}: {v!r}. "
            "Clean or drop such rows before fitting (e.g. X.fillna('') or X.dropna())."
        )
    return out


def _split_pairs(rows: Sequence[Any]) -> TextInputs:
    for i, r in enumerate(rows):
        if len(r) != 2:
            raise ValueError(
                f"Sentence-pair input must have exactly 2 texts per row; row {i} has {len(r)}. "
                "Pass one string per row for single-text tasks."
            )
    return TextInputs(_check_strings([r[0] for r in rows], "X[:, 0]"), _check_strings([r[1] for r in rows], "X[:, 1]"))


def _inputs_of_dataset(X: Any) -> TextInputs | None:
    """The texts of :class:`TextInputs`, a :class:`TextDataset` or a ``Subset`` of one (what skorch's
    scoring callbacks hand back to ``predict``); None for anything else."""
    if isinstance(X, TextInputs):
        return X
    if isinstance(X, TextDataset):
        return X.inputs
    if isinstance(X, Subset) and isinstance(X.dataset, TextDataset):
        return X.dataset.inputs.subset(list(X.indices))
    return None


def coerce_texts(X: Any) -> TextInputs:
    """Turn the accepted input types into :class:`TextInputs`.

    Accepted: a list / tuple / 1-D ndarray / pandas Series of ``str``; a
    sequence of 2-tuples ``(text_a, text_b)`` or an ``(n, 2)`` array for
    sentence pairs; a pandas DataFrame with 1 or 2 columns; a
    :class:`TextInputs`.

    Raises
    ------
    TypeError
        If an entry is not a string (the message names the first bad row).
    ValueError
        If X is empty, has a wrong shape or pairs of the wrong arity.
    """
    if (inputs := _inputs_of_dataset(X)) is not None:
        return inputs
    if hasattr(X, "iloc") and hasattr(X, "columns"):  # pandas DataFrame
        if X.shape[1] == 1:
            X = X.iloc[:, 0]
        elif X.shape[1] == 2:
            X = X.to_numpy(dtype=object)
        else:
            raise ValueError(
                f"A DataFrame X must have 1 column (texts) or 2 columns (sentence pairs); got {X.shape[1]}: "
                f"{list(X.columns)}. Select the text column(s) first, e.g. X[['sentence1', 'sentence2']]."
            )
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas Series
        X = X.to_numpy(dtype=object)
    if isinstance(X, str):
        raise ValueError("X must be a sequence of texts, not a single string; wrap it in a list: [text].")
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim == 2:
            if X.shape[1] != 2:
                raise ValueError(f"A 2-D X must have 2 columns (sentence pairs); got shape {X.shape}.")
            rows = list(map(tuple, X))
        elif X.ndim == 1:
            rows = list(X)
        else:
            raise ValueError(f"X must be 1-D (texts) or 2-D with 2 columns (pairs); got shape {X.shape}.")
    elif isinstance(X, (list, tuple)):
        rows = list(X)
    else:
        try:
            rows = list(X)
        except TypeError:
            raise TypeError(f"X must be a sequence of texts; got {type(X).__name__}.") from None
    if not rows:
        raise ValueError("X is empty: at least one text is needed.")
    if all(isinstance(r, (tuple, list, np.ndarray)) for r in rows):
        return _split_pairs(rows)
    return TextInputs(_check_strings(rows, "X"))


def input_form(inputs: TextInputs) -> str:
    """``"pair"`` for sentence pairs, ``"single"`` for one text per row."""
    return "single" if inputs.second is None else "pair"


def warn_empty_texts(inputs: TextInputs, where: str) -> None:
    """Warn when texts are empty or whitespace only: the model then sees its special tokens alone."""
    texts = inputs.first if inputs.second is None else [a + b for a, b in zip(inputs.first, inputs.second, strict=True)]
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        rows = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
        warnings.warn(
            f"{where}: {len(empty)} of {len(texts)} inputs are empty or whitespace only (rows {rows}); the model "
            "sees only its special tokens there, so their predictions carry no information about the text.",
            UserWarning,
            stacklevel=3,
        )


class TextDataset(SkorchDataset):
    """Examples as dicts ``{"first", "second", "sample_weight"}`` with integer targets.

    A skorch ``Dataset`` with ``X`` (the :class:`TextInputs`) and ``y`` (the labels, decoded
    when ``classes`` is given), so skorch's scoring callbacks can predict on it and compare.

    Parameters
    ----------
    inputs : TextInputs
    y : array-like of int, optional
        Encoded targets (0 where absent).
    sample_weight : array-like of float, optional
    classes : ndarray, optional
        The label of each encoded target (``classes_``).
    """

    def __init__(self, inputs: TextInputs, y: Any = None, sample_weight: Any = None, classes: Any = None):
        # skorch's Dataset.__init__ wraps arrays; these are texts, so its attributes are set here.
        self.inputs = inputs
        n = len(inputs)
        self.targets = np.zeros(n, dtype=np.int64) if y is None else np.asarray(y, dtype=np.int64)
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        self.classes = None if classes is None else np.asarray(classes)
        self.length = n
        self._token_lengths: tuple[Any, int, np.ndarray] | None = None

    def token_lengths(self, collator: TextCollator) -> np.ndarray:
        """:meth:`TextCollator.lengths` of these inputs, counted once (while the tokenizer and ``max_length`` stay)."""
        memo = self._token_lengths  # holds the tokenizer itself: an id() could be reused by another one
        if memo is None or memo[0] is not collator.tokenizer or memo[1] != collator.max_length:
            self._token_lengths = memo = (collator.tokenizer, collator.max_length, collator.lengths(self.inputs))
        return memo[2]

    @property
    def X(self) -> TextInputs:
        return self.inputs

    @property
    def y(self) -> np.ndarray:
        """The labels: ``classes[targets]``, or the encoded targets without ``classes``."""
        return self.targets if self.classes is None else self.classes[self.targets]

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, idx: Sequence[int]) -> TextDataset:
        """The examples ``idx``, with their sample weights rescaled to mean 1 over the subset."""
        idx = np.asarray(idx, dtype=np.int64)
        w = None if self.sample_weight is None else self.sample_weight[idx]
        if w is not None and w.size and w.sum() > 0:
            w = w / w.mean()
        return TextDataset(self.inputs.subset(idx), self.targets[idx], w, classes=self.classes)

    def __getitem__(self, i: int):
        item = {"first": self.inputs.first[i]}
        if self.inputs.second is not None:
            item["second"] = self.inputs.second[i]
        if self.sample_weight is not None:
            item["sample_weight"] = self.sample_weight[i]
        return item, self.targets[i]


class TextCollator:
    """Tokenise a list of examples with dynamic padding (to the longest in the batch).

    Parameters
    ----------
    tokenizer : transformers tokenizer
    max_length : int
        Longer texts are truncated.
    shown : set of str, optional
        Warnings already shown by the owner (an estimator): the truncation warning is
        shown once per owner, however many loaders it builds. Default: once per collator.
    """

    def __init__(self, tokenizer: Any, max_length: int, shown: set[str] | None = None):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.shown = set() if shown is None else shown

    def _warn_if_truncated(self, first: list[str], second: list[str] | None, lengths: Tensor) -> None:
        """One warning per collator when an input is longer than ``max_length`` tokens."""
        full = [i for i, n in enumerate(lengths.tolist()) if n >= self.max_length]
        if "truncation" in self.shown or not full:
            return
        pick = lambda xs: None if xs is None else [xs[i] for i in full]
        untruncated = self.tokenizer(pick(first), pick(second), truncation=False)["input_ids"]
        longest = max(len(ids) for ids in untruncated)
        if longest > self.max_length:
            self.shown.add("truncation")
            warnings.warn(
                f"Some inputs are longer than max_length={self.max_length} tokens (up to {longest}) and are "
                "truncated; raise max_length to keep them whole (this warning is shown once per model).",
                UserWarning,
                stacklevel=2,
            )

    def lengths(self, inputs: TextInputs, chunk: int = 4096) -> np.ndarray:
        """Tokens per example as a batch holds them (special tokens included, cut at ``max_length``).

        What padding to the longest in a batch depends on, so sorting by it pads less than sorting by
        characters (400 SST-2 phrases in batches of 32: 8% of the tokens are padding, against 25%).
        A fast (Rust) tokenizer counts 400 phrases in about 20 ms; with a slow (Python) one, the
        character length is returned instead, which costs nothing.
        """
        if not getattr(self.tokenizer, "is_fast", False):
            return inputs.lengths()
        out = np.empty(len(inputs), dtype=np.int64)
        for start in range(0, len(inputs), chunk):
            part = inputs.subset(range(start, min(start + chunk, len(inputs))))
            enc = self.tokenizer(part.first, part.second, truncation=True, max_length=self.max_length)
            out[start : start + len(part)] = [len(ids) for ids in enc["input_ids"]]
        return out

    def __call__(self, batch: list[tuple[dict, Any]]) -> tuple[dict[str, Tensor], Tensor]:
        items = [b[0] for b in batch]
        first = [it["first"] for it in items]
        second = [it["second"] for it in items] if "second" in items[0] else None
        enc = self.tokenizer(
            first, second, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        X = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        self._warn_if_truncated(first, second, X["attention_mask"].sum(1))
        if "sample_weight" in items[0]:
            X["sample_weight"] = torch.tensor([float(it["sample_weight"]) for it in items])
        y = torch.as_tensor(np.asarray([b[1] for b in batch], dtype=np.int64))
        return X, y


class LengthBucketBatchSampler(Sampler):
    """Training batches of similar length, in random order: far less padding, still random.

    Every epoch the examples are shuffled, cut into pools of ``pool_batches``
    batches, each pool is sorted by length and cut into batches, and all the
    batches are shuffled (the bucketing of fairseq's and AllenNLP's iterators).
    The shuffles draw from ``generator`` only, so a seeded generator gives the
    same batches run after run.

    Parameters
    ----------
    lengths : array-like of int, shape (n,)
        A length per example (the estimator's: :meth:`TextCollator.lengths`).
    batch_size : int
    generator : torch.Generator
    pool_batches : int, default=50
        Batches per pool: larger pools pad less and shuffle less.
    shuffle : bool, default=True
        False: no shuffling at all, the batches of the whole data sorted by length, in order.
    """

    def __init__(
        self, lengths: Any, batch_size: int, generator: torch.Generator, pool_batches: int = 50, shuffle: bool = True
    ):
        self.lengths = np.asarray(lengths)
        self.batch_size = int(batch_size)
        self.generator = generator
        self.shuffle = bool(shuffle)
        self.pool = max(1, int(pool_batches)) * self.batch_size if shuffle else max(1, len(self.lengths))

    def __iter__(self):
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            yield from (order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size))
            return
        order = torch.randperm(n, generator=self.generator).numpy()
        batches = []
        for start in range(0, n, self.pool):
            pool = order[start : start + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i : i + self.batch_size].tolist() for i in range(0, len(pool), self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]

    def __len__(self) -> int:
        n = len(self.lengths)
        full, rest = divmod(n, self.pool)
        return full * math.ceil(self.pool / self.batch_size) + math.ceil(rest / self.batch_size)

"""Bundled demo data (see ``subspace_bayes/data/DATA.md``) and loaders for GLUE-style TSV files."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["load_sst2", "load_agnews_ood", "load_tsv", "load_rte", "load_mrpc"]


def _read(path, **kwargs):
    import pandas as pd

    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, encoding="utf-8-sig", **kwargs)


def _bundled(name: str):
    with resources.as_file(resources.files("subspace_bayes") / "data" / name) as path:
        return _read(path)


def load_sst2(split: str = "train", n: int | None = None, random_state: int = 0) -> tuple[list[str], np.ndarray]:
    """SST-2 sentiment sentences bundled with the package.

    Parameters
    ----------
    split : {"train", "validation"}, default="train"
        ``"train"``: a 4,000-sentence sample of GLUE's training phrases (5+ words);
        ``"validation"``: GLUE's complete 872-sentence validation set.
    n : int, optional
        Return a random subset of this size.
    random_state : int, default=0
        Seed of the subset.

    Returns
    -------
    texts : list of str
    labels : ndarray of int (0 negative, 1 positive)
    """
    files = {"train": "sst2_train_sample.tsv.gz", "validation": "sst2_validation.tsv.gz"}
    if split not in files:
        raise ValueError(f"split must be one of {sorted(files)}; got {split!r}.")
    df = _bundled(files[split])
    if n is not None:
        df = df.sample(min(n, len(df)), random_state=random_state)
    return df["sentence"].tolist(), df["label"].to_numpy()


def load_agnews_ood(n: int | None = None, random_state: int = 0) -> list[str]:
    """News snippets (AG News sample) to use as out-of-distribution text for SST-2 models."""
    df = _bundled("agnews_ood_sample.tsv.gz")
    if n is not None:
        df = df.sample(min(n, len(df)), random_state=random_state)
    return df["text"].tolist()


def load_tsv(
    path: str | Path, text_column: str, label_column: str | None, pair_column: str | None = None
) -> tuple[list, np.ndarray | None]:
    """Load texts (or sentence pairs) and labels from a tab- or comma-separated file.

    Parameters
    ----------
    path : str or Path
        ``.csv`` is read as comma-separated, anything else as tab-separated; a header row names the columns.
    text_column : str
    label_column : str or None
        None: no labels (for prediction).
    pair_column : str, optional
        The second text of sentence-pair tasks.

    Returns
    -------
    X : list of str, or list of (str, str) when ``pair_column`` is given
    y : ndarray, or None without ``label_column``

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If a column is missing, or a text or label cell is empty (the message names the rows).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such data file: {path}")
    if path.suffix == ".csv":
        import pandas as pd

        df = pd.read_csv(path, encoding="utf-8-sig")
    else:
        df = _read(path)
    wanted = [c for c in (text_column, pair_column, label_column) if c is not None]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name} has no column(s) {missing}; its columns are {list(df.columns)}.")
    for column in wanted:
        empty = np.flatnonzero(df[column].isna().to_numpy())
        if empty.size:
            rows = ", ".join(str(i + 2) for i in empty[:5]) + (", ..." if empty.size > 5 else "")
            raise ValueError(
                f"{path.name}: column {column!r} is empty in {empty.size} row(s) (file lines {rows}); "
                "fill or drop them first."
            )
    first = df[text_column].astype(str).tolist()
    X = first if pair_column is None else list(zip(first, df[pair_column].astype(str).tolist(), strict=True))
    return X, None if label_column is None else df[label_column].to_numpy()


def load_rte(path: str | Path):
    """GLUE RTE file (``sentence1``, ``sentence2``, ``label``): sentence pairs and string labels."""
    return load_tsv(path, "sentence1", "label", pair_column="sentence2")


def load_mrpc(path: str | Path):
    """GLUE MRPC file (``#1 String``, ``#2 String``, ``Quality``): sentence pairs and 0/1 labels."""
    return load_tsv(path, "#1 String", "Quality", pair_column="#2 String")

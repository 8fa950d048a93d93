"""The evidence harness's tasks: text classification tasks MiniLM learns, each with three disjoint splits.

- ``train``: a pool the training budget is drawn from, with the seed (so seeds differ in their data);
- ``dev``: every choice (defaults, thresholds, ``k``, temperatures) is made here;
- ``test``: reported only, after the choices; never used for one.

dev and test are fixed (the same examples for every seed), so differences between methods pair up
by seed and by example. Where a source has no official split, one is made once with
``numpy.random.RandomState(SPLIT_SEED)`` and recorded here. Data: ``../shared/data`` (ASSETS.md);
``tasks_available()`` says which tasks can be built on this machine.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
#: The seed of the one-off splits of sources without an official one.
SPLIT_SEED = 20261130


@dataclass
class Task:
    """Texts and labels of one task's three splits (``pool`` is the training pool)."""

    name: str
    domain: str
    pool: tuple[list[str], np.ndarray]
    dev: tuple[list[str], np.ndarray]
    test: tuple[list[str], np.ndarray]
    #: Draw the training budget per class (CLINC150's few-shot protocol) rather than from the whole pool.
    per_class: bool = False

    def train(self, n: int, seed: int) -> tuple[list[str], np.ndarray]:
        """``n`` training examples drawn with ``seed`` from the pool (``n`` per class if ``per_class``)."""
        X, y = self.pool
        rng = np.random.RandomState(seed)
        if self.per_class:
            idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n] for c in np.unique(y)])
            idx = rng.permutation(idx)
        else:
            idx = rng.permutation(len(X))[:n]
        return [X[i] for i in idx], y[idx]


def _read(path: Path, header: bool = True) -> tuple[list[str], np.ndarray]:
    import pandas as pd

    kw = {} if header else {"header": None, "names": ["text", "label"]}
    df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, encoding="utf-8-sig", keep_default_na=False, **kw)
    text = "sentence" if "sentence" in df else "text"
    return df[text].astype(str).tolist(), df["label"].to_numpy()


def _split(X, y, sizes: tuple[int, int]) -> tuple[tuple, tuple, tuple]:
    """(pool, dev, test) of a source without an official split: ``sizes`` = (dev, test), the rest is the pool."""
    idx = np.random.RandomState(SPLIT_SEED).permutation(len(X))
    n_dev, n_test = sizes
    part = lambda ids: ([X[i] for i in ids], np.asarray(y)[ids])
    return part(idx[n_dev + n_test :]), part(idx[:n_dev]), part(idx[n_dev : n_dev + n_test])


def _sst2() -> Task:
    # pool: rows 0-2,999 of the bundled 4,000-phrase sample; dev: rows 3,000-3,499; test: GLUE validation
    from subspace_bayes.datasets import load_sst2

    X, y = load_sst2("train")
    test = load_sst2("validation")
    return Task("sst2", "movie reviews", (X[:3000], y[:3000]), (X[3000:3500], y[3000:3500]), (test[0], test[1]))


def _agnews() -> Task:
    X, y = _read(DATA / "agnews" / "test.tsv", header=False)
    return Task("agnews", "news", *_split(X, y, (500, 1000)))


def _trec() -> Task:
    X, y = _read(DATA / "trec" / "train.tsv")
    test = _read(DATA / "trec" / "test.tsv")
    pool, dev, _ = _split(X, y, (500, 0))
    return Task("trec", "questions", pool, dev, test)


def _subj() -> Task:
    return Task("subj", "movie reviews and plots", *_split(*_read(DATA / "subj" / "all.tsv"), (500, 1000)))


def _cr() -> Task:
    return Task("cr", "product reviews", *_split(*_read(DATA / "cr" / "all.tsv"), (500, 1000)))


def _clinc150() -> Task:
    d = DATA / "clinc150"
    pool, dev, test = _read(d / "train.tsv"), _read(d / "val.tsv"), _read(d / "test.tsv")
    return Task("clinc150", "assistant queries", pool, dev, test, per_class=True)


BUILDERS = {"sst2": _sst2, "agnews": _agnews, "trec": _trec, "subj": _subj, "cr": _cr, "clinc150": _clinc150}
FILES = {"agnews": "agnews", "trec": "trec", "subj": "subj", "cr": "cr", "clinc150": "clinc150", "sst2": None}


def load(name: str) -> Task:
    if name not in BUILDERS:
        raise ValueError(f"Unknown task {name!r}; choose from {sorted(BUILDERS)}.")
    return BUILDERS[name]()


def clinc_out_of_scope(split: str) -> list[str]:
    """CLINC150's out-of-scope queries of ``split`` ("val" or "test")."""
    return _read(DATA / "clinc150" / f"oos_{split}.tsv")[0]


def tasks_available() -> list[str]:
    return [t for t, folder in FILES.items() if folder is None or (DATA / folder).exists()]


def sample(texts: list[str], n: int, seed: int = SPLIT_SEED) -> list[str]:
    """A fixed subset of ``n`` texts (all of them when there are fewer)."""
    idx = np.random.RandomState(seed).permutation(len(texts))[:n]
    return [texts[i] for i in sorted(idx)]


# -- paired differences ----------------------------------------------------------------------------------

#: Two-sided 95% quantile of Student's t with n - 1 degrees of freedom, by n (``scipy.stats.t.ppf(0.975, n - 1)``,
#: three decimals); up to 30 pairs, enough for every (task, seed) pair of the protocol grid.
T_975 = {
    2: 12.706,
    3: 4.303,
    4: 3.182,
    5: 2.776,
    6: 2.571,
    7: 2.447,
    8: 2.365,
    9: 2.306,
    10: 2.262,
    11: 2.228,
    12: 2.201,
    13: 2.179,
    14: 2.160,
    15: 2.145,
    16: 2.131,
    17: 2.120,
    18: 2.110,
    19: 2.101,
    20: 2.093,
    21: 2.086,
    22: 2.080,
    23: 2.074,
    24: 2.069,
    25: 2.064,
    26: 2.060,
    27: 2.056,
    28: 2.052,
    29: 2.048,
    30: 2.045,
}


def t_interval(diffs) -> tuple[float, float, int] | None:
    """Mean of per-seed paired differences and the half-width of its 95% t-interval (None below 2 seeds)."""
    import math

    d = np.asarray(list(diffs), dtype=np.float64)
    if len(d) < 2:
        return None
    return float(d.mean()), T_975[len(d)] * float(d.std(ddof=1)) / math.sqrt(len(d)), len(d)


def verdict(diff: tuple[float, float, int] | None, lower_is_better: bool, missing: str = "n/a") -> str:
    """``"+0.012 ± 0.011 (worse)"``: a :func:`t_interval` with "better"/"worse" only where it excludes 0."""
    if diff is None:
        return missing
    mean, half, _ = diff
    text = f"{mean:+.3f} ± {half:.3f}"
    if abs(mean) <= half:
        return f"{text} (no difference detected)"
    return f"{text} ({'better' if (mean < 0) == lower_is_better else 'worse'})"


# -- resumable cells: one JSON file per (task, seed), safe for several processes -------------------------


def cell_path(results: Path, task: str, seed: int) -> Path:
    return results / f"{task}--seed{seed}.json"


def load_cells(results: Path, task_names, seeds) -> dict:
    """``(task, seed) -> cell`` of every stored cell among ``task_names`` x ``seeds``."""
    import json

    paths = {(t, s): cell_path(results, t, s) for t in task_names for s in seeds}
    return {key: json.loads(p.read_text()) for key, p in paths.items() if p.exists()}


def code_version() -> str:
    """The commit the benchmark code runs at (``git rev-parse --short HEAD``), ``+dirty`` with local changes."""
    import subprocess

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", "subspace_bayes", "benchmarks")
    return commit + ("+dirty" if changed else "")  # (new result files are untracked: not a change of code)


def _claim(lock: Path) -> bool:
    """Create ``lock`` for this process; False if a live process holds it (a dead holder's lock is taken over)."""
    import os

    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text() or 0), 0)
            return False  # its holder is alive
        except (ProcessLookupError, ValueError):
            lock.write_text(str(os.getpid()))  # left by a process that ended mid-cell
            return True
        except PermissionError:
            return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def run_cells(results: Path, keys: list[tuple[str, int]], run, worker: str = "0/1") -> None:
    """Run ``run(task, seed) -> dict`` for every key not stored yet, this worker's share (``"i/n"``) first.

    A cell is claimed with a lock file (``<cell>.lock``, holding the process id) while it runs, so
    any number of workers share the queue: each starts on its share, then takes the cells nobody
    holds. A lock left by a process that ended mid-cell is taken over. Each cell is written
    atomically (a temporary file, then a rename) with the commit its code ran at (``"code"``).
    """
    import json
    import os

    results.mkdir(parents=True, exist_ok=True)
    i, n = (int(v) for v in worker.split("/"))
    todo = [key for key in keys if not cell_path(results, *key).exists()]
    mine = todo[i::n]
    for task, seed in mine + [key for key in todo if key not in mine]:
        path = cell_path(results, task, seed)
        lock = path.with_suffix(".lock")
        if path.exists() or not _claim(lock):
            continue
        try:
            if path.exists():  # stored while this worker claimed it
                continue
            cell = {**run(task, seed), "code": code_version()}
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cell, indent=1) + "\n")
            os.replace(tmp, path)
            print(task, seed, flush=True)
        finally:
            lock.unlink(missing_ok=True)

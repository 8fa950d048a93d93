"""Fewer draws for the same predictive: independent vs antithetic vs Sobol draws against 64 independent ones.

    python benchmarks/draws.py --worker 0/2 &     # cells not stored yet; two processes share them
    python benchmarks/draws.py --worker 1/2 &
    python benchmarks/draws.py --table-only       # rewrite the docs block from the stored cells
    python benchmarks/draws.py --quick            # the bookkeeping on a few texts (nothing written)

Protocol (issue 29; tasks and splits of ``benchmarks/tasks.py``): per task and seed, the default model
on 500 training examples; on the dev split (where the choice of a default is made), the predictive of
64 independent draws is the reference, and every scheme predicts with S = 2, 4 and 8 draws, ``REPEATS``
times with different prediction seeds. Per call: ECE and NLL minus the reference's, and the mean
absolute difference of the per-example probabilities (mean |Δp|). The block reports, per scheme and S,
the mean over cells and repeats of the absolute differences and the worst cell.
Cells are stored one file each in benchmarks/results/draws/ (resumable, safe in parallel).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tasks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "draws"
PAGE = ROOT / "docs" / "cost.md"
START, END = "<!-- draws:start -->", "<!-- draws:end -->"
TASKS = ("sst2", "agnews", "trec", "subj", "cr")
SEEDS = (0, 1, 2)
SCHEMES = ("independent", "antithetic", "sobol")
SAMPLE_COUNTS = (2, 4, 8)
REPEATS = 3
N_TRAIN, N_DEV, REFERENCE_S = 500, 300, 64


def _scores(y: np.ndarray, p: np.ndarray) -> dict:
    from subspace_bayes.metrics import expected_calibration_error

    return {
        "ece": float(expected_calibration_error(y, p, labels=np.arange(p.shape[1]))),
        "nll": float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean()),
    }


def run_cell(task_name: str, seed: int, quick: bool = False) -> dict:
    import torch

    from subspace_bayes import BayesianSubspaceClassifier

    torch.set_num_threads(1)
    task = tasks.load(task_name)
    X, y = task.train(40 if quick else N_TRAIN, seed)
    X_dev = tasks.sample(task.dev[0], 20 if quick else N_DEV)
    where = {t: i for i, t in enumerate(task.dev[0])}
    extra = {"max_epochs": 1} if quick else {}
    start = time.time()
    clf = BayesianSubspaceClassifier(random_state=seed, verbose=0, **extra).fit(X, y)
    y_dev = np.searchsorted(clf.classes_, task.dev[1][[where[t] for t in X_dev]])
    reference = clf.set_params(n_samples=REFERENCE_S, draws="independent", random_state=10_000 + seed)
    p_ref = reference.predict_proba(X_dev)
    ref = _scores(y_dev, p_ref)
    cell = {"task": task_name, "seed": seed, "fit_seconds": round(time.time() - start, 1), "reference": ref}
    for scheme in SCHEMES:
        for S in SAMPLE_COUNTS:
            runs = []
            for r in range(REPEATS):
                p = clf.set_params(n_samples=S, draws=scheme, random_state=r).predict_proba(X_dev)
                got = _scores(y_dev, p)
                runs.append(
                    {**{f"d_{k}": got[k] - ref[k] for k in got}, "mean_abs_dp": float(np.abs(p - p_ref).mean())}
                )
            cell[f"{scheme}|{S}"] = runs
    return cell


def load_cells() -> dict:
    return tasks.load_cells(RESULTS, TASKS, SEEDS)


def render(cells: dict) -> str:
    lines = [
        START,
        "## Variance-reduced draws: how close S draws come to 64 independent ones (issue 29)",
        "",
        f"`python benchmarks/draws.py`: the default model on {N_TRAIN} training examples per task and seed; "
        f"{N_DEV} dev texts per task (`benchmarks/tasks.py`); {len(cells)} (task, seed) cells, {REPEATS} prediction "
        f"seeds each. Per call, the absolute difference of ECE to that of {REFERENCE_S} independent draws, the same "
        "for NLL, and the mean absolute difference of the per-example probabilities; mean over cells and "
        "repeats (worst cell's mean)."
        + (" One seed per task: illustrative." if len({seed for _, seed in cells}) < 2 else "")
        + " The default scheme stays `independent` until this table has every seed.",
        "",
        "| draws | S | ECE: abs. difference | NLL: abs. difference | mean abs. Δp |",
        "|---|---|---|---|---|",
    ]
    for scheme in SCHEMES:
        for S in SAMPLE_COUNTS:
            key = f"{scheme}|{S}"
            per_cell = {
                m: [np.mean([abs(r[m]) for r in c[key]]) for c in cells.values() if key in c]
                for m in ("d_ece", "d_nll", "mean_abs_dp")
            }
            if not per_cell["d_ece"]:
                continue
            cols = [f"{np.mean(v):.4f} (worst {max(v):.4f})" for v in per_cell.values()]
            lines.append(f"| {scheme} | {S} | " + " | ".join(cols) + " |")
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", default="0/1", help="i/n: run every n-th missing cell from the i-th")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="one tiny cell, nothing written: the bookkeeping")
    args = parser.parse_args()
    if args.quick:
        print(render({("sst2", 0): run_cell("sst2", 0, quick=True)}))
        return
    if not args.table_only:
        tasks.run_cells(RESULTS, [(t, s) for s in SEEDS for t in TASKS], run_cell, args.worker)
    cells = load_cells()
    if cells:
        from cost import write_block

        write_block(PAGE, render(cells), START, END)
        print(render(cells))


if __name__ == "__main__":
    main()

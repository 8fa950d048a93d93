"""Is the default VI fit converged, and what do the changes of issue 32 do to its predictions?

python benchmarks/vi_convergence.py --worker 0/2 &   # cells not stored yet; two processes share them
python benchmarks/vi_convergence.py --worker 1/2 &
python benchmarks/vi_convergence.py --table-only      # rewrite the docs block from the stored cells

Protocol (SST-2, MiniLM, the estimator's defaults unless a row says otherwise):

- train: 400 phrases drawn with the seed from rows 0-2,999 of the bundled SST-2 training sample;
- dev: rows 3,000-3,499 of that sample (500 phrases, never trained on): every choice is made here;
- test: GLUE's SST-2 validation set (872 sentences), reported after the choice, never used for it.

Five seeds (``random_state`` = seed, which also picks the training phrases). Each row is compared with
the previous release's default ("before") on the same seed and the same examples: the mean paired
difference and a 95% t-interval over seeds (t with n - 1 degrees of freedom). "before" rows run the
parent commit's code (``--code before`` with that commit's package first on ``PYTHONPATH``).
Cells are stored one file each in benchmarks/results/vi_convergence/ (resumable, safe in parallel);
the table goes into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tasks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "vi_convergence"
PAGE = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- vi-convergence:start -->", "<!-- vi-convergence:end -->"
SPECTRUM = ROOT / "benchmarks" / "results" / "vi_spectrum.json"
SPECTRUM_START, SPECTRUM_END = "<!-- vi-spectrum:start -->", "<!-- vi-spectrum:end -->"
SEEDS = (0, 1, 2, 3, 4)
N_TRAIN, DEV = 400, slice(3000, 3500)

#: row -> estimator settings ("before" runs the previous release's defaults).
ROWS = {
    "before: previous default": {},
    "MAP": {"posterior": "map", "prior_std": 1.0, "kl_weight": 1.0},
    "label prior": None,
    "after: σ_p = 1 (shared)": {"prior_std": 1.0, "head_prior_std": None, "kl_weight": 1.0},
    "after: σ_p = 0.3, σ_h = 1": {"prior_std": 0.3, "head_prior_std": 1.0, "kl_weight": 1.0},
    "after: σ_p = 0.3, σ_h = 1, β = 0.3": {"prior_std": 0.3, "head_prior_std": 1.0, "kl_weight": 0.3},
}
BEFORE = "before: previous default"
#: Settings whose default changed after these cells were stored, pinned so that the rows keep their meaning
#: (random training batches: bucket_by_length became the default in issue 31).
PINNED = {"bucket_by_length": False}
#: The row that became the default (chosen on dev by the rule in docs/benchmarks.md).
CHOSEN = "after: σ_p = 0.3, σ_h = 1, β = 0.3"


def splits(seed: int):
    from subspace_bayes.datasets import load_sst2

    X, y = load_sst2("train")
    X, y = np.asarray(X, dtype=object), np.asarray(y)
    idx = np.random.RandomState(seed).permutation(3000)[:N_TRAIN]
    X_test, y_test = load_sst2("validation")
    return (list(X[idx]), y[idx]), (list(X[DEV]), y[DEV]), (list(X_test), np.asarray(y_test))


def scores(y_enc: np.ndarray, P: np.ndarray) -> dict:
    from subspace_bayes.metrics import expected_calibration_error

    p_true = np.clip(P[np.arange(len(y_enc)), y_enc], 1e-12, None)
    onehot = np.eye(P.shape[1])[y_enc]
    return {
        "nll": float(-np.log(p_true).mean()),
        "ece": float(expected_calibration_error(y_enc, P)),
        "accuracy": float((P.argmax(1) == y_enc).mean()),
        "brier": float(((P - onehot) ** 2).sum(1).mean()),
    }


def run_cell(row: str, seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    (X, y), dev, test = splits(seed)
    settings = ROWS[row]
    if settings is None:  # the training class frequencies, for every input
        classes, counts = np.unique(y, return_counts=True)
        prior = counts / counts.sum()
        out = {}
        for name, (Xs, ys) in (("dev", dev), ("test", test)):
            out[name] = scores(np.searchsorted(classes, ys), np.tile(prior, (len(Xs), 1)))
        return out
    from subspace_bayes import BayesianSubspaceClassifier

    start = time.time()
    clf = BayesianSubspaceClassifier(random_state=seed, verbose=0, **{**PINNED, **settings}).fit(X, y)
    out = {"fit_seconds": round(time.time() - start, 1)}
    q, module = clf.module_.posterior, clf.module_
    if clf.posterior != "map":
        out["top_eigenvalues"] = [round(float(v), 4) for v in q.spectrum()[:4]]
        out["core_variance_median"] = float(q.variance().detach()[: module.n_core].median())
    for name, (Xs, ys) in (("dev", dev), ("test", test)):
        out[name] = scores(np.searchsorted(clf.classes_, ys), clf.predict_proba(Xs))
    return out


#: The fits of the spectrum table: the previous default, the new one, and the new code on the
#: previous default's model (prior 1 for cores and head, kl_weight 1), whose ELBO compares with it.
SPECTRUM_FITS = {
    "before": ("previous default", {}),
    "after": ("new default", {}),
    "after-same-model": (
        "new code, previous model (σ_p = 1 shared, β = 1)",
        {"prior_std": 1.0, "head_prior_std": None, "kl_weight": 1.0},
    ),
}


def spectrum_row(max_epochs: int, code: str) -> dict:
    """Issue 32's setting: the default fit on the first 400 phrases of the bundled sample, ``random_state=0``."""
    import torch

    from subspace_bayes import BayesianSubspaceClassifier
    from subspace_bayes.datasets import load_sst2

    torch.set_num_threads(1)
    X, y = load_sst2("train", n=400)
    settings = SPECTRUM_FITS[code][1]
    clf = BayesianSubspaceClassifier(random_state=0, verbose=0, max_epochs=max_epochs, **settings).fit(X, y)
    eigenvalues = clf.module_.posterior.spectrum()
    prior = getattr(clf.criterion_, "prior_scale", lambda: clf.prior_std_)()
    prior_var = (torch.as_tensor(prior, dtype=torch.float64) ** 2).max()
    return {
        "code": code,
        "epochs": max_epochs,
        "D": int(clf.n_theta_),
        "top_eigenvalues": [round(float(v), 4) for v in eigenvalues[:4]],
        "median_eigenvalue": float(eigenvalues.median()),
        "largest_prior_variance": float(prior_var),
        "train_elbo": _elbo(clf, X, y, prior),
    }


def _elbo(clf, X, y, prior) -> float:
    """``BayesianSubspaceClassifier.elbo`` written out, so that the previous release is measured the same way."""
    import torch

    probs = clf.predict_sample_proba(X, 32)
    y_enc = np.searchsorted(clf.classes_, y)
    loglik = np.log(np.clip(probs[:, np.arange(len(y_enc)), y_enc], 1e-300, None)).mean(0).sum()
    with torch.no_grad():
        return float(loglik - clf.module_.posterior.kl_to_prior(prior))


def render_spectrum(rows: list[dict]) -> str:
    lines = [
        SPECTRUM_START,
        "| fit | epochs | D | top eigenvalues of Σ | median eigenvalue | largest prior variance "
        "| training ELBO (its own prior, β = 1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        top = ", ".join(f"{v:.3g}" for v in r["top_eigenvalues"])
        lines.append(
            f"| {SPECTRUM_FITS[r['code']][0]} | {r['epochs']} | {r['D']} | {top} | {r['median_eigenvalue']:.4f} "
            f"| {r['largest_prior_variance']:.3g} | {r['train_elbo']:.0f} |"
        )
    lines.append(SPECTRUM_END)
    return "\n".join(lines)


def cell_file(row: str, seed: int) -> Path:
    slug = "-".join("".join(c if c.isascii() and c.isalnum() else " " for c in row).split())
    return RESULTS / f"{slug}--seed{seed}.json"


def load_cells() -> dict:
    cells = {}
    for row in ROWS:
        for seed in SEEDS:
            file = cell_file(row, seed)
            if file.exists():
                cells[(row, seed)] = json.loads(file.read_text())
    return cells


def paired(cells: dict, row: str, split: str, metric: str, against: str = BEFORE) -> tuple[float, float, int] | None:
    """Mean over seeds of ``row - against`` and the half-width of its 95% t-interval."""
    return tasks.t_interval(
        cells[(row, s)][split][metric] - cells[(against, s)][split][metric]
        for s in SEEDS
        if (row, s) in cells and (against, s) in cells
    )


#: A paired difference as text (shared with the other benchmarks).
verdict = tasks.verdict


def render(cells: dict) -> str:
    lines = [START]
    for split in ("dev", "test"):
        title = "dev (choices made here)" if split == "dev" else "test (reported after the choice)"
        lines += [
            "",
            f"**SST-2 {title}**, mean over seeds; against the previous default: paired difference ± 95% t-interval",
            "",
            "| row | seeds | NLL | ECE | accuracy | Brier | ΔNLL vs before | ΔECE vs before | Δaccuracy vs before |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in ROWS:
            have = [cells[(row, s)][split] for s in SEEDS if (row, s) in cells]
            if not have:
                continue
            mean = {m: np.mean([h[m] for h in have]) for m in ("nll", "ece", "accuracy", "brier")}
            if row == BEFORE:
                deltas = ["—", "—", "—"]
            else:
                deltas = [
                    verdict(paired(cells, row, split, "nll"), True),
                    verdict(paired(cells, row, split, "ece"), True),
                    verdict(paired(cells, row, split, "accuracy"), False),
                ]
            lines.append(
                f"| {row} | {len(have)} | {mean['nll']:.3f} | {mean['ece']:.3f} | {mean['accuracy']:.3f} "
                f"| {mean['brier']:.3f} | " + " | ".join(deltas) + " |"
            )
    lines += [
        "",
        f"**The new default ({CHOSEN}) against MAP**, paired over the same seeds and examples (± 95% t-interval)",
        "",
        "| split | ΔNLL | ΔECE | Δaccuracy | ΔBrier |",
        "|---|---|---|---|---|",
    ]
    for split in ("dev", "test"):
        cols = [
            verdict(paired(cells, CHOSEN, split, m, "MAP"), m != "accuracy")
            for m in ("nll", "ece", "accuracy", "brier")
        ]
        lines.append(f"| {split} | " + " | ".join(cols) + " |")
    spectra = [
        f"{row}: {np.mean([cells[(row, s)]['top_eigenvalues'][0] for s in SEEDS if (row, s) in cells]):.2f}"
        for row in ROWS
        if any((row, s) in cells and "top_eigenvalues" in cells[(row, s)] for s in SEEDS)
    ]
    if spectra:
        lines += ["", "Largest eigenvalue of the fitted covariance, mean over seeds: " + "; ".join(spectra) + "."]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--worker", default="0/1", help="i/n: run every n-th missing cell, starting at i")
    parser.add_argument("--code", choices=list(SPECTRUM_FITS), default="after")
    parser.add_argument("--spectrum", nargs="*", type=int, help="epochs: the spectrum of issue 32's setting instead")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cost import write_block  # the page update shared by the benchmarks

    if args.spectrum is not None:
        rows = json.loads(SPECTRUM.read_text()) if SPECTRUM.exists() else []
        for epochs in args.spectrum:
            rows = [r for r in rows if (r["code"], r["epochs"]) != (args.code, epochs)]
            rows.append(spectrum_row(epochs, args.code))
            rows.sort(key=lambda r: (list(SPECTRUM_FITS).index(r["code"]), r["epochs"]))
            SPECTRUM.write_text(json.dumps(rows, indent=1) + "\n")
        write_block(PAGE, render_spectrum(rows), SPECTRUM_START, SPECTRUM_END)
        return
    if not args.table_only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        i, n = (int(v) for v in args.worker.split("/"))
        rows = [BEFORE] if args.code == "before" else [r for r in ROWS if r != BEFORE]  # grid: before/after
        todo = [(r, s) for s in SEEDS for r in rows if not cell_file(r, s).exists()]
        for row, seed in todo[i::n]:
            result = {"row": row, "seed": seed, "code": args.code, **run_cell(row, seed)}
            tmp = cell_file(row, seed).with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=1) + "\n")
            os.replace(tmp, cell_file(row, seed))
            print(row, seed, result.get("dev"), flush=True)
    write_block(PAGE, render(load_cells()), START, END)
    if SPECTRUM.exists():
        write_block(PAGE, render_spectrum(json.loads(SPECTRUM.read_text())), SPECTRUM_START, SPECTRUM_END)


if __name__ == "__main__":
    sys.exit(main())

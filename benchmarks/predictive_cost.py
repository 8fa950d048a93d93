"""Which predictive should be the default: cost against MAP's prediction, quality against 64-draw MC.

    python benchmarks/predictive_cost.py --part quality      # SST-2, MRPC, RTE x 3 seeds (about an hour)
    python benchmarks/predictive_cost.py --part timing       # one model per task, alternating timed runs
    python benchmarks/predictive_cost.py --table-only

For each cell (task, seed) the default VI posterior is fitted once, and every candidate predictive
predicts the same test set: Monte Carlo with S = 4, 8, 16 draws (16 was the default), the GLM
predictive with 16 logit-space draws, its closed-form mean (``predictive="probit"``) and, for
reference, the prediction at the posterior mean (what a MAP model costs). The reference is MC
with 64 draws. The quality part reports ECE and NLL of each candidate minus the reference's
(mean over cells, and the largest absolute difference). The timing part measures seconds per
``predict_proba`` of each candidate against the prediction at the mean, in alternating order
(three rounds; median), with nothing else running.

Results go to ``benchmarks/results/predictive.json`` (cells are skipped when already there, for
the same protocol) and a block of docs/cost.md between its markers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.metrics import expected_calibration_error, negative_log_likelihood
from subspace_bayes.posteriors import PointMass

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import write_block  # one marked-block page update for every benchmark
from quality import DEFAULT_GLUE, by_length, cap, load_task  # the quality grid's data splits

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- predictive:start -->", "<!-- predictive:end -->"
REFERENCE = "MC, S=64"
CANDIDATES = {
    "MC, S=4": dict(predictive="mc", n_samples=4),
    "MC, S=8": dict(predictive="mc", n_samples=8),
    "MC, S=16": dict(predictive="mc", n_samples=16),
    "GLM, S=16": dict(predictive="glm", n_samples=16),
    "probit (GLM, closed form)": dict(predictive="probit"),
    "at the mean (MAP's cost)": None,
}
PROTOCOL = ("n_train", "epochs", "n_test", "max_length")


def predict(clf: BayesianSubspaceClassifier, X, params: dict | None) -> np.ndarray:
    """``predict_proba`` under ``params``; ``None`` predicts at the posterior mean (one forward pass)."""
    if params is None:
        posterior = clf.module_.posterior
        clf.module_.posterior = PointMass.from_mean(posterior.mean.detach()).to(clf.device_)
        try:
            return clf.predict_proba(X)
        finally:
            clf.module_.posterior = posterior
    old = {k: getattr(clf, k) for k in params}
    clf.set_params(**params)
    try:
        return clf.predict_proba(X)
    finally:
        clf.set_params(**old)


def fit(task: str, seed: int, args):
    X, y, _, _, X_test, y_test = load_task(task, args.glue_dir, args.n_train, seed)
    X_test, y_test = by_length(*cap(X_test, y_test, args.n_test, seed))
    clf = BayesianSubspaceClassifier(
        max_epochs=args.epochs,
        max_length=args.max_length,
        bucket_by_length=True,
        bayesian_head=False,  # the posterior the stored cells measured, whatever the estimator's default
        random_state=seed,
        verbose=0,
    ).fit(X, y)
    return clf, X_test, np.searchsorted(clf.classes_, y_test)


def quality_cell(task: str, seed: int, args) -> dict:
    clf, X_test, y = fit(task, seed, args)
    out = {}
    for name, params in {REFERENCE: dict(predictive="mc", n_samples=64), **CANDIDATES}.items():
        p = predict(clf, X_test, params)
        out[name] = {
            "accuracy": float(np.mean(p.argmax(1) == y)),
            "ece": expected_calibration_error(y, p),
            "nll": negative_log_likelihood(y, p),
        }
    return out


def timing_cell(task: str, args) -> dict:
    clf, X_test, _ = fit(task, 0, args)
    predict(clf, X_test[:32], CANDIDATES["probit (GLM, closed form)"])  # warm-up: allocator, autograd
    seconds: dict = {name: [] for name in CANDIDATES}
    for r in range(args.rounds):  # alternate the order round by round
        for name in list(CANDIDATES)[:: 1 if r % 2 == 0 else -1]:
            t0 = time.perf_counter()
            predict(clf, X_test, CANDIDATES[name])
            seconds[name].append(time.perf_counter() - t0)
    return {name: float(np.median(v)) for name, v in seconds.items()}


def block(results: dict, args) -> str:
    quality, timing = results.get("quality", {}), results.get("timing", {})
    cells = sorted(quality)
    tasks = sorted({c.split("|")[0] for c in cells})
    base = "at the mean (MAP's cost)"
    lines = [
        START,
        "## The default predictive: cost against MAP, quality against 64-draw MC",
        "",
        "`python benchmarks/predictive_cost.py --part quality timing`: the default VI posterior "
        f"(MiniLM, rank 8) fitted on {args.n_train} examples x {args.epochs} epochs, max_length {args.max_length}, "
        f"predicting at most {args.n_test} test examples of "
        + ", ".join(tasks)
        + f" ({len(cells)} task x seed cells). ECE and NLL are differences to MC with 64 draws on the same "
        "model: the signed mean over cells / the mean absolute difference / the worst cell. "
        "Time is the median of "
        f"{args.rounds} alternating `predict_proba` runs on one model per task (seed 0, 2 threads, nothing else "
        "running), divided by the prediction at the posterior mean (one forward pass: a MAP model's cost).",
        "",
        "| predictive | time / MAP (" + ", ".join(sorted(timing)) + ") | ECE − MC64: mean / mean abs / worst "
        "| NLL − MC64: mean / mean abs / worst | accuracy − MC64 | ≤ 3x MAP and within 0.005 |",
        "|---|---|---|---|---|---|",
    ]
    for name in CANDIDATES:
        ratios = [timing[t][name] / timing[t][base] for t in sorted(timing)]
        row = [name, ", ".join(f"{r:.2f}" for r in ratios) or "–"]
        ok = bool(ratios) and max(ratios) <= 3.0
        for metric in ("ece", "nll", "accuracy"):
            d = np.array([quality[c][name][metric] - quality[c][REFERENCE][metric] for c in cells])
            if d.size == 0:
                row.append("–")
                continue
            worst = int(np.abs(d).argmax())
            row.append(
                f"{d.mean():+.4f} / {np.abs(d).mean():.4f} / {d[worst]:+.4f} ({cells[worst].replace('|', ' seed ')})"
                if metric != "accuracy"
                else f"{d.mean():+.4f}"
            )
            if metric != "accuracy":
                ok = ok and np.abs(d).max() <= 0.005
        row.append("yes" if ok else "no")
        lines.append("| " + " | ".join(row) + " |")
    ref = {m: np.mean([quality[c][REFERENCE][m] for c in cells]) for m in ("accuracy", "ece", "nll")} if cells else {}
    if ref:
        lines += [
            "",
            f"MC64 itself, mean over the cells: accuracy {ref['accuracy']:.3f}, ECE {ref['ece']:.3f}, "
            f"NLL {ref['nll']:.3f}.",
        ]
    return "\n".join([*lines, END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", nargs="+", choices=["quality", "timing"], default=["quality", "timing"])
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc", "rte"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--glue-dir", type=Path, default=DEFAULT_GLUE)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "predictive.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "cost.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Some inputs are longer than max_length")
    protocol = {k: getattr(args, k) for k in PROTOCOL}
    results: dict = {"protocol": protocol, "quality": {}, "timing": {}}
    if args.output.exists():
        stored = json.loads(args.output.read_text())
        if stored.get("protocol") == protocol:
            results = stored

    def save():
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1))
        write_block(args.markdown, block(results, args), START, END)

    if not args.table_only:
        for seed in args.seeds if "quality" in args.part else []:
            for task in args.tasks:
                if f"{task}|{seed}" not in results["quality"]:
                    results["quality"][f"{task}|{seed}"] = quality_cell(task, seed, args)
                    print(f"[predictive] quality {task} seed {seed} done", flush=True)
                    save()
        for task in args.tasks if "timing" in args.part else []:
            torch.set_num_threads(2)
            results["timing"][task] = timing_cell(task, args)
            print(f"[predictive] timing {task}: {results['timing'][task]}", flush=True)
            save()
    save()
    print(block(results, args))


if __name__ == "__main__":
    main()

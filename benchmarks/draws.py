"""Cheaper Bayesian prediction: fewer or cheaper draws (antithetic, Sobol, top-k blocks) against 64 independent ones.

    python benchmarks/draws.py --worker 0/2 &     # cells not stored yet; two processes share them
    python benchmarks/draws.py --worker 1/2 &
    python benchmarks/draws.py --table-only       # rewrite the docs block from the stored cells
    python benchmarks/draws.py --quick            # the bookkeeping on a few texts (nothing written)
    python benchmarks/draws.py --cost             # each row's cost against a MAP prediction (idle machine)
    python benchmarks/draws.py --linearised --worker 0/1   # the linearised predictives (GLM, probit) on dev
    python benchmarks/draws.py --linearised --cost         # their cost (idle machine)

Protocol (issue 29; tasks and splits of ``benchmarks/tasks.py``): per task and seed, the default model
on 500 training examples; on the dev split (where the choice of a default is made), the predictive of
64 independent draws is the reference, and every scheme predicts with S = 2, 4 and 8 draws, and
``sampled_layers`` = 0-3 with 8 independent draws, ``REPEATS`` times with different prediction seeds.
Per call: ECE and NLL minus the reference's, and the mean absolute difference of the per-example
probabilities (mean |Δp|). The block reports, per scheme and S, the mean over cells and repeats of the
absolute differences and the worst cell; ``decide`` applies the rule for the default, fixed before
the cells were read.
Cells are stored one file each in benchmarks/results/draws/ (resumable, safe in parallel).

``--linearised`` asks the same question of the linearised predictives, to re-decide ``predictive``:
on fresh fits of the same tasks and seeds (today's defaults), the default (MC, 8 antithetic draws),
the GLM predictive (8 antithetic logit-space draws) and its closed form (probit), each against 64
independent MC draws of the same fit (benchmarks/results/draws_linearised/, with its own cost file).
``decide_predictive`` applies the rule below, fixed before these cells were read.
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
COST = ROOT / "benchmarks" / "results" / "draws_cost.json"
PAGE = ROOT / "docs" / "cost.md"
START, END = "<!-- draws:start -->", "<!-- draws:end -->"
TASKS = ("sst2", "agnews", "trec", "subj", "cr")
SEEDS = (0, 1)  # two seeds per task: 10 cells, about 2 hours of one core
SCHEMES = ("independent", "antithetic", "sobol")
SAMPLE_COUNTS = (2, 4, 8)
#: ``sampled_layers`` measured at S = 8 (MiniLM has 6 adapted blocks; None, every block, is the "independent|8" row).
SAMPLED_LAYERS = (0, 1, 2, 3)
REPEATS = 3
N_TRAIN, N_DEV, REFERENCE_S = 500, 300, 64


def _scores(y: np.ndarray, p: np.ndarray) -> dict:
    from subspace_bayes.metrics import expected_calibration_error

    return {
        "ece": float(expected_calibration_error(y, p, labels=np.arange(p.shape[1]))),
        "nll": float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean()),
    }


def _fit_with_reference(task_name: str, seed: int, quick: bool):
    """The default fit on one task and seed, its dev texts, and its 64-independent-draw reference.

    Returns ``(clf, X_dev, y_dev, p_ref, ref, seconds)``; ``seconds`` covers the fit and the reference.
    """
    import torch

    from subspace_bayes import BayesianSubspaceClassifier

    torch.set_num_threads(1)
    task = tasks.load(task_name)
    X, y = task.train(40 if quick else N_TRAIN, seed)
    X_dev = tasks.sample(task.dev[0], 20 if quick else N_DEV)
    where = {t: i for i, t in enumerate(task.dev[0])}
    start = time.time()
    clf = BayesianSubspaceClassifier(random_state=seed, verbose=0, **({"max_epochs": 1} if quick else {}))
    clf.fit(X, y)
    y_dev = np.searchsorted(clf.classes_, task.dev[1][[where[t] for t in X_dev]])
    p_ref = clf.set_params(n_samples=REFERENCE_S, draws="independent", random_state=10_000 + seed).predict_proba(X_dev)
    return clf, X_dev, y_dev, p_ref, _scores(y_dev, p_ref), time.time() - start


def run_cell(task_name: str, seed: int, quick: bool = False) -> dict:
    clf, X_dev, y_dev, p_ref, ref, seconds = _fit_with_reference(task_name, seed, quick)
    cell = {"task": task_name, "seed": seed, "fit_seconds": round(seconds, 1), "reference": ref}
    for scheme in SCHEMES:
        for S in SAMPLE_COUNTS:
            cell[f"{scheme}|{S}"] = _repeats(clf, X_dev, y_dev, p_ref, ref, n_samples=S, draws=scheme)
    for k in SAMPLED_LAYERS:
        cell[f"top {k}|8"] = _repeats(clf, X_dev, y_dev, p_ref, ref, n_samples=8, draws="independent", sampled_layers=k)
    return cell


def _repeats(clf, X_dev, y_dev, p_ref, ref, predict=None, **settings) -> list[dict]:
    """``REPEATS`` predictions under ``settings`` (prediction seeds 0, 1, ...), each against the reference.

    ``predict(clf, X)``, when given, replaces ``clf.predict_proba`` (a predictive the estimator does not offer).
    """
    predict = predict or (lambda model, X: model.predict_proba(X))
    runs = []
    for r in range(REPEATS):
        p = predict(clf.set_params(**settings, random_state=r), X_dev)
        got = _scores(y_dev, p)
        runs.append({**{f"d_{k}": got[k] - ref[k] for k in got}, "mean_abs_dp": float(np.abs(p - p_ref).mean())})
    clf.set_params(sampled_layers=None)
    return runs


#: (row key, estimator settings) timed by ``--cost``; the row keys are those of the quality table.
TIMED = {
    **{f"{scheme}|{S}": {"n_samples": S, "draws": scheme} for scheme in SCHEMES for S in SAMPLE_COUNTS},
    **{f"top {k}|8": {"n_samples": 8, "sampled_layers": k} for k in SAMPLED_LAYERS},
}
COST_REPEATS, COST_TEXTS = 5, 500


def run_cost(timed_rows: dict | None = None, reset: dict | None = None) -> dict:
    """Seconds of ``predict_proba`` per row of :data:`TIMED` (or ``timed_rows``) over the prediction at the mean.

    The default model on SST-2 (2 epochs: the cost of a prediction does not depend on training),
    ``COST_TEXTS`` dev texts, torch's default threads. Repetitions alternate the order of the rows;
    the ratio per repetition is to that repetition's prediction at the mean (one forward pass, the
    cost of a MAP prediction); median and range over repetitions.
    """
    import torch
    from cost import defaults_label, timed

    from subspace_bayes import BayesianSubspaceClassifier
    from subspace_bayes.predictive import FOLD_ROWS, mean_prediction

    task = tasks.load("sst2")
    clf = BayesianSubspaceClassifier(random_state=0, verbose=0, max_epochs=2).fit(*task.train(N_TRAIN, 0))
    X = tasks.sample(task.dev[0], COST_TEXTS)
    clf.predict_proba(X[:64])  # warm-up
    rows = TIMED if timed_rows is None else timed_rows
    reset = reset or {"sampled_layers": None, "n_samples": 8, "draws": "independent"}
    names = ["at the mean", *rows]
    ratios = {name: [] for name in rows}
    for rep in range(COST_REPEATS):
        seconds = {}
        for name in names if rep % 2 == 0 else names[::-1]:
            if name == "at the mean":
                seconds[name] = timed(lambda: clf._predict_with(mean_prediction, X))[1]
            else:
                run = rows[name]  # estimator settings, or a callable ``run(clf, X)``
                predict = (
                    (lambda r=run: r(clf, X)) if callable(run) else (lambda r=run: clf.set_params(**r).predict_proba(X))
                )
                seconds[name] = timed(predict)[1]
                clf.set_params(**reset)
        for name in rows:
            ratios[name].append(seconds[name] / seconds["at the mean"])
    return {
        "defaults": defaults_label(),
        "threads": torch.get_num_threads(),
        "texts": len(X),
        "fold_rows": FOLD_ROWS["cpu"],
        "ratios": {k: [round(float(v), 3) for v in r] for k, r in ratios.items()},
    }


def load_cells() -> dict:
    return tasks.load_cells(RESULTS, TASKS, SEEDS)


# -- the linearised predictives (re-deciding ``predictive``) ------------------------------------------

LINEARISED = ROOT / "benchmarks" / "results" / "draws_linearised"
LINEARISED_COST = ROOT / "benchmarks" / "results" / "draws_linearised_cost.json"
#: Rows of the linearised grid: today's default first, then the candidates to replace it.
PREDICTIVES = {
    "mc|8": {"predictive": "mc", "n_samples": 8, "draws": "antithetic"},
    "glm|8": {"predictive": "glm", "n_samples": 8, "draws": "antithetic"},
    "probit": {"predictive": "probit"},
}
PREDICTIVE_LABELS = {
    "mc|8": "MC, 8 antithetic draws (the default)",
    "glm|8": "GLM, 8 antithetic logit-space draws",
    "probit": "GLM mean in closed form (probit)",
}
#: The rule, fixed before the cells were read: a linearised row replaces MC when its mean absolute
#: ECE and NLL differences to 64 independent MC draws are both no larger than MC's and it costs less
#: (median ratio below MC's by more than ``COST_TIE``); among several, the cheapest.
PREDICTIVE_RULE = (
    "Rule (fixed before these cells were read): a linearised predictive replaces MC when its mean absolute "
    "ECE and NLL differences to 64 independent MC draws are both no larger than MC's and it costs less; "
    "among several, the cheapest."
)


def run_linearised_cell(task_name: str, seed: int, quick: bool = False) -> dict:
    """The default fit on one task and seed; each of :data:`PREDICTIVES` against 64 independent MC draws."""
    clf, X_dev, y_dev, p_ref, ref, _ = _fit_with_reference(task_name, seed, quick)
    cell = {"task": task_name, "seed": seed, "reference": ref}
    for key, settings in PREDICTIVES.items():
        cell[key] = _repeats(clf, X_dev, y_dev, p_ref, ref, **settings)
        clf.set_params(predictive="mc")
    return cell


def load_linearised() -> dict:
    return tasks.load_cells(LINEARISED, TASKS, SEEDS)


def run_linearised_cost() -> dict:
    """Seconds of ``predict_proba`` per row of :data:`PREDICTIVES` over a prediction at the mean (as ``--cost``)."""
    return run_cost(timed_rows=PREDICTIVES, reset={"predictive": "mc", "n_samples": 8, "draws": "antithetic"})


def decide_predictive(cells: dict, cost: dict | None) -> str:
    """The sentence that applies :data:`PREDICTIVE_RULE` to the linearised grid."""
    return cheaper_and_no_further(cells, cost, "mc|8", [k for k in PREDICTIVES if k != "mc|8"], PREDICTIVE_RULE) or (
        f"{PREDICTIVE_RULE} No linearised predictive qualifies: `predictive='mc'` stays."
    )


def cheaper_and_no_further(cells: dict, cost: dict | None, base_key: str, candidates: list[str], rule: str) -> str:
    """``rule`` applied: the cheapest candidate no further from 64 draws than ``base_key`` in mean absolute ECE
    and NLL that costs less (median ratio below the base's by more than ``COST_TIE``), as a sentence;
    "" when none qualifies."""
    median = {key: float(np.median(v)) for key, v in (cost or {}).get("ratios", {}).items()}
    if not cells or {base_key, *candidates} - set(median):
        return "Not decided: cells or their cost are missing."
    base = {m: _mean_abs(cells, base_key, m) for m in ("d_ece", "d_nll")}
    eligible = [
        key
        for key in candidates
        if median[key] * COST_TIE < median[base_key] and all(_mean_abs(cells, key, m) <= base[m] for m in base)
    ]
    if not eligible:
        return ""
    best = min(eligible, key=median.get)
    return f"{rule} Chosen: `{best}` ({median[best]:.2f}× a MAP prediction against {median[base_key]:.2f}×)."


def predictive_table(cells: dict, cost: dict | None, labels: dict) -> list[str]:
    """Per row of ``labels``: its cost over MAP and its mean absolute differences to 64 draws (worst cell)."""
    lines = [
        "| predictive | cost / MAP | ECE: abs. difference | NLL: abs. difference | mean abs. Δp |",
        "|---|---|---|---|---|",
    ]
    for key, label in labels.items():
        per_cell = [[np.mean([abs(r[m]) for r in c[key]]) for c in cells.values() if key in c] for m in _DIFFS]
        if per_cell[0]:
            cols = [f"{np.mean(v):.4f} (worst {max(v):.4f})" for v in per_cell]
            lines.append(f"| {label} | {_cost_column(cost, key)} | " + " | ".join(cols) + " |")
    return lines


def render_linearised(cells: dict, cost: dict | None) -> list[str]:
    """The linearised predictives' table (inside the draws block)."""
    lines = [
        "",
        "### The linearised predictives against 64 independent draws",
        "",
        f"`python benchmarks/draws.py --linearised`: fresh default fits (today's defaults; {len(cells)} cells of "
        f"the same tasks and seeds, {N_DEV} dev texts, {REPEATS} prediction seeds), so the MC row here is this "
        "grid's own." + (f" Cost measured under {cost['defaults']}." if cost and "defaults" in cost else ""),
        "",
        *predictive_table(cells, cost, PREDICTIVE_LABELS),
    ]
    return [*lines, "", decide_predictive(cells, cost)]


_DIFFS = ("d_ece", "d_nll", "mean_abs_dp")


def _rows() -> list[tuple[str, str, str]]:
    """(row key, draws label, S label) of the table, in order."""
    rows = [(f"{scheme}|{S}", scheme, str(S)) for scheme in SCHEMES for S in SAMPLE_COUNTS]
    return rows + [(f"top {k}|8", f"independent, top {k} blocks (`sampled_layers={k}`)", "8") for k in SAMPLED_LAYERS]


def _cost_column(cost: dict | None, key: str) -> str:
    ratios = (cost or {}).get("ratios", {}).get(key)
    if not ratios:
        return "–"
    return f"{np.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"


def render(cells: dict, cost: dict | None = None, linearised: dict | None = None, linearised_cost=None) -> str:
    lines = [
        START,
        "## Cheaper Bayesian prediction: how close fewer or cheaper draws come to 64 independent ones (issue 29)",
        "",
        f"`python benchmarks/draws.py`: the default model on {N_TRAIN} training examples per task and seed; "
        f"{N_DEV} dev texts per task (`benchmarks/tasks.py`); {len(cells)} (task, seed) cells, {REPEATS} prediction "
        f"seeds each. Per call, the absolute difference of ECE to that of {REFERENCE_S} independent draws, the same "
        "for NLL, and the mean absolute difference of the per-example probabilities; mean over cells and "
        "repeats (worst cell's mean). `top k blocks`: the cores of MiniLM's top k of 6 adapted blocks drawn, "
        "the lower ones held at their mean and computed once for all draws (the Bayesian head always drawn)."
        + (" One seed per task: illustrative." if len({seed for _, seed in cells}) < 2 else ""),
    ]
    if cost:
        lines += [
            "",
            f"Cost: `predict_proba` seconds over a prediction at the posterior mean (one forward pass, a MAP "
            f"prediction's cost) on {cost['texts']} SST-2 dev texts, {cost['threads']} threads, median (range) of "
            f"{len(next(iter(cost['ratios'].values())))} alternating repetitions (`--cost`; folded passes of at most "
            f"{cost.get('fold_rows', 64)} sequences). "
            f"Measured under {cost['defaults']}.",
        ]
    lines += [
        "",
        "| draws | S | cost / MAP | ECE: abs. difference | NLL: abs. difference | mean abs. Δp |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, S in _rows():
        per_cell = {
            m: [np.mean([abs(r[m]) for r in c[key]]) for c in cells.values() if key in c]
            for m in ("d_ece", "d_nll", "mean_abs_dp")
        }
        if not per_cell["d_ece"]:
            continue
        cols = [f"{np.mean(v):.4f} (worst {max(v):.4f})" for v in per_cell.values()]
        lines.append(f"| {label} | {S} | {_cost_column(cost, key)} | " + " | ".join(cols) + " |")
    if cost:
        lines += ["", decide(cells, cost)[1]]
    if linearised:
        lines += render_linearised(linearised, linearised_cost)
    lines.append(END)
    return "\n".join(lines)


#: The default being decided, and the rule, fixed before the cells were read: a row can replace the
#: default when its mean absolute ECE and NLL differences to 64 independent draws (on dev) are both
#: no larger than the default's and it costs no more (within ``COST_TIE``, the timing noise between
#: rows of equal work); among those, the cheapest, and among rows within ``COST_TIE`` of the cheapest,
#: the one closest to 64 draws in NLL. The default stays when no other row qualifies.
DEFAULT_ROW = "independent|8"
COST_TIE = 1.05


def _mean_abs(cells: dict, key: str, metric: str) -> float | None:
    per_cell = [np.mean([abs(r[metric]) for r in c[key]]) for c in cells.values() if key in c]
    return float(np.mean(per_cell)) if per_cell else None


def decide(cells: dict, cost: dict | None) -> tuple[str, str]:
    """``(row key, sentence)``: the row the rule above chooses, and why."""
    median = {key: float(np.median(v)) for key, v in (cost or {}).get("ratios", {}).items()}
    base = {m: _mean_abs(cells, DEFAULT_ROW, m) for m in ("d_ece", "d_nll")}
    if None in base.values() or DEFAULT_ROW not in median:
        return DEFAULT_ROW, "Not decided: the default row or its cost is missing."
    eligible = [
        key
        for key, _, _ in _rows()
        if key in median
        and median[key] <= COST_TIE * median[DEFAULT_ROW]
        and all((_mean_abs(cells, key, m) or np.inf) <= base[m] for m in base)
    ]
    cheapest = min(median[key] for key in eligible)
    best = min((k for k in eligible if median[k] <= COST_TIE * cheapest), key=lambda k: _mean_abs(cells, k, "d_nll"))
    rule = (
        "Rule (fixed before the cells were read): a row replaces the default (independent, S = 8) only if its mean "
        "absolute ECE and NLL differences are both no larger and it costs no more; the cheapest such row, and "
        "among rows of equal cost the one closest in NLL."
    )
    if best == DEFAULT_ROW:
        return best, f"{rule} No other row qualifies: the default stays."
    return best, f"{rule} Chosen: `{best}` ({median[best]:.2f}× a MAP prediction against {median[DEFAULT_ROW]:.2f}×)."


def load_cost(path: Path = COST) -> dict | None:
    import json

    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", default="0/1", help="i/n: run every n-th missing cell from the i-th")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="one tiny cell, nothing written: the bookkeeping")
    parser.add_argument("--cost", action="store_true", help="time each row against a MAP prediction (idle machine)")
    parser.add_argument("--linearised", action="store_true", help="the linearised predictives' grid (or cost)")
    args = parser.parse_args()
    if args.cost:
        from quality import write_json_atomic

        write_json_atomic(*((LINEARISED_COST, run_linearised_cost()) if args.linearised else (COST, run_cost())))
    if args.quick:
        cell = {("sst2", 0): run_cell("sst2", 0, quick=True)}
        print(render(cell, linearised={("sst2", 0): run_linearised_cell("sst2", 0, quick=True)}))
        return
    if not args.table_only and not args.cost:
        run, folder = (run_linearised_cell, LINEARISED) if args.linearised else (run_cell, RESULTS)
        tasks.run_cells(folder, [(t, s) for s in SEEDS for t in TASKS], run, args.worker)
    cells = load_cells()
    if cells:
        from cost import write_block

        block = render(cells, load_cost(), load_linearised(), load_cost(LINEARISED_COST))
        write_block(PAGE, block, START, END)
        print(block)


if __name__ == "__main__":
    main()

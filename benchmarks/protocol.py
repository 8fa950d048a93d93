"""The evidence protocol (issue 25): the rows a reader compares, on learnable tasks, chosen on dev, reported on test.

    python benchmarks/protocol.py --worker 0/2 &   # cells not stored yet; two processes share them
    python benchmarks/protocol.py --worker 1/2 &
    python benchmarks/protocol.py --table-only      # rewrite docs/protocol.md from the stored cells
    python benchmarks/protocol.py --quick           # one tiny cell on MiniLM, nothing written: the bookkeeping
    python benchmarks/protocol.py --cost            # the draw counts' prediction cost (idle machine)

Tasks and splits: ``benchmarks/tasks.py`` (SST-2, AG News, TREC-6, SUBJ, CR; a train pool, a dev split
of 500 texts where every choice is made, and a test split of 500-1,000 texts read only for
reporting). Per task and seed: ``N_TRAIN`` training examples drawn with the seed, MiniLM, today's
estimator defaults unless a row says otherwise. Rows:

- *label prior*: the training class frequencies for every input;
- *MAP*: the posterior mean of the Laplace fit below (one training run: MAP, then its curvature);
- *MAP + temperature*: MAP with one temperature fitted on the dev split (500 texts; scikit-learn's
  ``CalibratedClassifierCV(method="temperature")`` on the frozen model);
- *deep ensemble (5 MAP)*: that MAP run and four more with other seeds, probabilities averaged;
- *Laplace (L-LoRA-XS, GLM)*: the full Laplace approximation at the MAP, linearised predictive;
- *SWAG (B-LoRA-XS)*: MAP burn-in for half the epochs, then constant-rate snapshots;
- *default*: ``BayesianSubspaceClassifier()`` at the cells' commit (VI, low-rank + diagonal, Bayesian head,
  SVD, 8 draws);
- candidates for the defaults being decided (each a change of one setting from the default:
  point-estimate head, head prior 0.3, diagonal covariance, random projection, empirical-Bayes priors),
  and the default fit predicting with 4 and 16 draws. ``RULE`` decides each on dev; it was fixed in
  code before any cell of the grid was read.

Metrics per split: accuracy, ECE (15 equal-width bins), NLL, Brier, AURC (risk-coverage by
``1 - max p``). Intervals: the mean over seeds of the per-seed paired difference (same seed, same
examples) with a 95% t-interval (t with n - 1 degrees of freedom). "better"/"worse" only where the
interval excludes 0; otherwise "no difference detected". Cells (one JSON per task and seed) are
resumable and safe to run in parallel. Budget: about 20 minutes of one core per cell.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tasks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "protocol"
PAGE = ROOT / "docs" / "protocol.md"
COST = ROOT / "benchmarks" / "results" / "protocol_cost.json"
TASKS = ("sst2", "agnews", "trec", "subj", "cr")
SEEDS = (0, 1, 2, 3, 4)
N_TRAIN, ENSEMBLE = 500, 5
METRICS = ("accuracy", "ece", "nll", "brier", "aurc")
METRIC_LABELS = {"accuracy": "accuracy", "ece": "ECE", "nll": "NLL", "brier": "Brier", "aurc": "AURC"}
LOWER_IS_BETTER = {"accuracy": False, "ece": True, "nll": True, "brier": True, "aurc": True}
#: One setting changed from the default, per default being decided.
CANDIDATES = {
    "default, point-estimate head": {"bayesian_head": False},
    "default, head prior 0.3": {"head_prior_std": 0.3},
    "default, diagonal covariance": {"covariance": "diag"},
    "default, random projection": {"projection": "random"},
    "default, empirical-Bayes priors": {"prior_std": "auto", "head_prior_std": "auto", "bayesian_head": True},
}
#: The default fit, predicting with other numbers of draws.
DRAW_COUNTS = (4, 16)
BASELINES = ("label prior", "MAP", "MAP + temperature", f"deep ensemble ({ENSEMBLE} MAP)")
BAYESIAN = ("Laplace (L-LoRA-XS, GLM)", "SWAG (B-LoRA-XS)", "default")
_CANDIDATE_ROWS = (*CANDIDATES, *(f"default, {S} draws" for S in DRAW_COUNTS))
#: The default each candidate row would change (the rule below decides it; fixed before any cell was read).
DECIDES = {
    "default, point-estimate head": "bayesian_head",
    "default, head prior 0.3": "head_prior_std",
    "default, diagonal covariance": "covariance / cov_rank",
    "default, random projection": "projection",
    "default, empirical-Bayes priors": "prior_std",
    "default, 4 draws": "n_samples",
    "default, 16 draws": "n_samples",
}
#: Candidates that cost less than the default (fewer variational parameters, half the prediction passes):
#: they may replace it on a tie; every other candidate must be better.
CHEAPER = ("default, diagonal covariance", "default, 4 draws")
RULE = (
    "A candidate replaces the default when, on **dev**, it is worse on no task (no per-task interval of NLL, ECE "
    "or accuracy excludes 0 on the worse side, nor the pooled one) and either its pooled NLL is better (interval "
    "over all task-seed pairs excludes 0) or it costs less (diagonal covariance, 4 draws) and no pooled "
    "difference in NLL or ECE is detected. A decision is final with all 25 cells; before that it is interim. "
    "Where several candidates for one default qualify, the one with the lowest pooled dev NLL is taken (this "
    "ordering was added after 3 interim cells had been read; it orders qualifying candidates and cannot make "
    "one qualify)."
)


def chosen(cells: dict) -> dict[str, str | None]:
    """Per default being decided, the qualifying candidate with the lowest pooled dev NLL (None: the default stays)."""
    out: dict[str, str | None] = {}
    for row in _CANDIDATE_ROWS:
        out.setdefault(DECIDES[row], None)
        if decide(cells, row).startswith("replaces"):
            best = out[DECIDES[row]]
            nll = lambda r: pooled(cells, r, "default", "dev", "nll")[0]
            out[DECIDES[row]] = row if best is None or nll(row) < nll(best) else best
    return out


def scores(y: np.ndarray, p: np.ndarray) -> dict:
    """The five metrics of one split's predictive probabilities ``p`` (N, C) for labels ``y`` (indices)."""
    from subspace_bayes.metrics import aurc, brier_score, expected_calibration_error, negative_log_likelihood

    labels = np.arange(p.shape[1])
    return {
        "accuracy": float((p.argmax(1) == y).mean()),
        "ece": float(expected_calibration_error(y, p, labels=labels)),
        "nll": float(negative_log_likelihood(y, p, labels=labels)),
        "brier": float(brier_score(y, p, labels=labels)),
        "aurc": float(aurc(y, p, labels=labels)),
    }


def _splits(task, seed: int, quick: bool):
    X, y = task.train(40 if quick else N_TRAIN, seed)
    n = 20 if quick else None
    dev = (task.dev[0][:n], task.dev[1][:n]) if quick else task.dev
    test = (task.test[0][:n], task.test[1][:n]) if quick else task.test
    return (X, y), dev, test


def run_cell(task_name: str, seed: int, quick: bool = False, **overrides) -> dict:
    """Every row's dev and test metrics for one task and seed (``overrides``: estimator settings for every fit)."""
    import torch
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    from subspace_bayes import BayesianSubspaceClassifier
    from subspace_bayes.posteriors import PointMass

    torch.set_num_threads(1)
    (X, y), (X_dev, y_dev), (X_test, y_test) = _splits(tasks.load(task_name), seed, quick)
    common = {"random_state": seed, "verbose": 0, **({"max_epochs": 1} if quick else {}), **overrides}
    cell, seconds = {"task": task_name, "seed": seed, "rows": {}}, {}

    def record(row: str, model, predict, t: float) -> None:
        enc = {name: np.searchsorted(model.classes_, ys) for name, ys in (("dev", y_dev), ("test", y_test))}
        cell["rows"][row] = {name: scores(enc[name], predict(Xs)) for name, Xs in (("dev", X_dev), ("test", X_test))}
        seconds[row] = round(t, 1)

    classes, counts = np.unique(y, return_counts=True)
    prior = counts / counts.sum()
    cell["rows"]["label prior"] = {
        name: scores(np.searchsorted(classes, ys), np.tile(prior, (len(ys), 1)))
        for name, ys in (("dev", y_dev), ("test", y_test))
    }

    start = time.perf_counter()
    laplace = BayesianSubspaceClassifier(posterior="laplace", predictive="glm", **common).fit(X, y)
    t_map = time.perf_counter() - start
    posterior = laplace.module_.posterior
    laplace.module_.posterior = PointMass.from_mean(posterior.mean.detach())  # MAP: the Laplace fit's mode
    record("MAP", laplace, laplace.predict_proba, t_map)
    temperature = CalibratedClassifierCV(FrozenEstimator(laplace), method="temperature").fit(X_dev, y_dev)
    record("MAP + temperature", laplace, temperature.predict_proba, t_map)
    members, t_ens = [laplace], t_map
    for k in range(1, ENSEMBLE):
        start = time.perf_counter()
        member = BayesianSubspaceClassifier(posterior="map", **{**common, "random_state": 1000 * k + seed})
        members.append(member.fit(X, y))
        t_ens += time.perf_counter() - start
    ensemble = lambda Z: np.mean([m.predict_proba(Z) for m in members], axis=0)
    record(f"deep ensemble ({ENSEMBLE} MAP)", laplace, ensemble, t_ens)
    laplace.module_.posterior = posterior
    record("Laplace (L-LoRA-XS, GLM)", laplace, laplace.predict_proba, t_map)

    for row, settings in {"SWAG (B-LoRA-XS)": {"posterior": "swag"}, "default": {}, **CANDIDATES}.items():
        start = time.perf_counter()
        model = BayesianSubspaceClassifier(**{**common, **settings}).fit(X, y)
        record(row, model, model.predict_proba, time.perf_counter() - start)
        if row == "default":
            for S in DRAW_COUNTS:
                record(f"default, {S} draws", model, model.set_params(n_samples=S).predict_proba, 0.0)
            model.set_params(n_samples=8)
    cell["fit_seconds"] = seconds
    return cell


def load_cells() -> dict:
    return tasks.load_cells(RESULTS, TASKS, SEEDS)


def paired(cells: dict, task: str, row: str, against: str, split: str, metric: str) -> tuple[float, float, int] | None:
    """Mean over seeds of ``row - against`` on one task, and the half-width of its 95% t-interval."""
    return tasks.t_interval(
        c["rows"][row][split][metric] - c["rows"][against][split][metric]
        for (t, _), c in sorted(cells.items())
        if t == task and row in c["rows"] and against in c["rows"]
    )


def verdict(diff: tuple[float, float, int] | None, metric: str) -> str:
    return tasks.verdict(diff, LOWER_IS_BETTER[metric], missing="–")


def pooled(cells: dict, row: str, against: str, split: str, metric: str) -> tuple[float, float, int] | None:
    """Mean over every (task, seed) pair of ``row - against``, with its 95% t-interval half-width."""
    return tasks.t_interval(
        c["rows"][row][split][metric] - c["rows"][against][split][metric]
        for _, c in sorted(cells.items())
        if row in c["rows"] and against in c["rows"]
    )


def screen(cells: dict, row: str, against: str, task_names) -> str:
    """The dev screen of ``row`` against ``against`` shared by the protocol's rule and base_size's projection rule.

    One of "not measured" (fewer than 2 cells), "worse on a task" (a per-task interval of NLL, ECE or
    accuracy excludes 0 on the worse side), "worse pooled" (the same over all task-seed pairs), "better"
    (pooled NLL better), "tie" (no pooled difference detected in NLL or ECE) or "not better".
    """
    if pooled(cells, row, against, "dev", "nll") is None:
        return "not measured"

    def worse(diff, metric) -> bool:
        return diff is not None and "(worse)" in verdict(diff, metric)

    metrics = ("nll", "ece", "accuracy")
    if any(worse(paired(cells, t, row, against, "dev", m), m) for t in task_names for m in metrics):
        return "worse on a task"
    if any(worse(pooled(cells, row, against, "dev", m), m) for m in metrics):
        return "worse pooled"
    nll, ece = (pooled(cells, row, against, "dev", m) for m in ("nll", "ece"))
    if "(better)" in verdict(nll, "nll"):
        return "better"
    tie = all(d is not None and "(no difference detected)" in verdict(d, m) for d, m in ((nll, "nll"), (ece, "ece")))
    return "tie" if tie else "not better"


def decide(cells: dict, row: str) -> str:
    """The rule (``RULE``) applied on dev to one candidate row: "replaces the default", "keeps the default"."""
    outcome = screen(cells, row, "default", sorted({t for t, _ in cells}))
    if outcome == "not measured":
        return "no decision yet (fewer than 2 cells)"
    if outcome == "better":
        return "replaces the default (better pooled NLL)"
    if outcome == "tie" and row in CHEAPER:
        return "replaces the default (cheaper, no difference detected)"
    return f"keeps the default ({'not better' if outcome == 'tie' else outcome})"


def _commits(cells: dict) -> str:
    """The commits the stored cells were computed at, as one comma-separated string."""
    return ", ".join(sorted({c.get("code", "unrecorded") for c in cells.values()}))


def core_hours(cells: dict) -> float:
    """Hours of one core that the stored cells' fits took (each row's fit seconds, shared fits counted once)."""
    return sum(sum(_fits(c)) for c in cells.values()) / 3600


def _fits(cell: dict) -> list[float]:
    """Seconds of each distinct fit of a cell: rows reusing one fit (MAP, temperature, Laplace; the draw
    counts, recorded as 0) are counted once, the deep ensemble's time less the MAP run it includes."""
    seconds = dict(cell.get("fit_seconds", {}))
    t_map = seconds.get("MAP", 0.0)
    ensemble = seconds.get(f"deep ensemble ({ENSEMBLE} MAP)", t_map) - t_map
    shared = {"MAP", "MAP + temperature", "Laplace (L-LoRA-XS, GLM)", f"deep ensemble ({ENSEMBLE} MAP)"}
    return [t_map, ensemble, *(v for k, v in seconds.items() if k not in shared)]


def beats_label_prior(cells: dict, task: str) -> bool:
    """Whether any trained row has a lower mean test NLL than the label prior (else the task is reported apart)."""
    mine = [c for (t, _), c in cells.items() if t == task]
    mean = lambda row: np.mean([c["rows"][row]["test"]["nll"] for c in mine if row in c["rows"]])
    return any(mean(row) < mean("label prior") for row in mine[0]["rows"] if row != "label prior")


def _task_table(cells: dict, task: str, split: str) -> list[str]:
    mine = [c for (t, _), c in sorted(cells.items()) if t == task]
    rows = (*BASELINES, *BAYESIAN, *_CANDIDATE_ROWS)
    lines = [
        f"| row ({split}, mean of {len(mine)} seeds) | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for row in rows:
        values = [[c["rows"][row][split][m] for c in mine if row in c["rows"]] for m in METRICS]
        if values[0]:
            lines.append(f"| {row} | " + " | ".join(f"{np.mean(v):.3f}" for v in values) + " |")
    return lines


def _paired_table(cells: dict, task: str, split: str, comparisons: list[tuple[str, str]]) -> list[str]:
    lines = ["| comparison | " + " | ".join(f"Δ {m}" for m in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for row, against in comparisons:
        lines.append(
            f"| {row} − {against} | "
            + " | ".join(verdict(paired(cells, task, row, against, split, m), m) for m in METRICS)
            + " |"
        )
    return lines


def render(cells: dict) -> str:
    tasks_done = sorted({t for t, _ in cells}, key=TASKS.index)
    lines = [
        "# The evidence protocol (issue 25)",
        "",
        "Generated by `python benchmarks/protocol.py` from benchmarks/results/protocol/ (one JSON per task and "
        "seed); its docstring states the protocol. Candidates are compared with the default on **dev**, where "
        "the choice is made; the default is compared with MAP and MAP + temperature on **test**, read only for "
        "reporting. Differences: mean over seeds of the paired per-seed difference, 95% t-interval; fewer than "
        "5 seeds is an interim reading. Cells computed at commit "
        + _commits(cells)
        + f". Fits took {core_hours(cells):.1f} core-hours over these {len(cells)} cells (the sum of every fit's "
        "seconds, each on one core, next to other work; prediction and scoring not included).",
    ]
    final = len(cells) == len(TASKS) * len(SEEDS)
    lines += [
        "",
        "## Decisions (dev)"
        if final
        else f"## Decisions (dev; interim, {len(cells)} of {len(TASKS) * len(SEEDS)} cells)",
        "",
        RULE,
        "",
        "| candidate | default it decides | pooled Δ NLL (dev) | pooled Δ ECE (dev) | decision |",
        "|---|---|---|---|---|",
    ]
    for row in _CANDIDATE_ROWS:
        nll, ece = (verdict(pooled(cells, row, "default", "dev", m), m) for m in ("nll", "ece"))
        lines.append(f"| {row} | `{DECIDES[row]}` | {nll} | {ece} | {decide(cells, row)} |")
    lines += ["", "Per default: " + "; ".join(f"`{d}`: {r or 'the default stays'}" for d, r in chosen(cells).items())]
    lines += ["", cost] if (cost := cost_sentence(load_cost(), settings=True)) else []
    learned = [t for t in tasks_done if beats_label_prior(cells, t)]
    for title, group in (
        ("Tasks the backbone learns at this budget", learned),
        ("Tasks where nothing beats the label prior (reported apart)", [t for t in tasks_done if t not in learned]),
    ):
        if not group:
            continue
        lines += ["", f"## {title}"]
        for task in group:
            lines += ["", f"### {task}", "", *_task_table(cells, task, "test"), ""]
            lines += _paired_table(cells, task, "test", [("default", "MAP"), ("default", "MAP + temperature")])
            lines += ["", "Candidates against the default, on dev:", ""]
            lines += _paired_table(cells, task, "dev", [(row, "default") for row in _CANDIDATE_ROWS])
    return "\n".join(lines) + "\n"


#: Where the summaries go: README's defaults (under its table) and docs/benchmarks.md's headline.
README = ROOT / "README.md"
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
DECISIONS = ROOT / "docs" / "decisions.md"
README_START, README_END = "<!-- protocol-defaults:start -->", "<!-- protocol-defaults:end -->"
SUMMARY_START, SUMMARY_END = "<!-- protocol-summary:start -->", "<!-- protocol-summary:end -->"


def candidate_settings(row: str) -> dict:
    """The estimator settings a candidate row changes from the default (``n_samples`` for the draw rows)."""
    return CANDIDATES.get(row) or {"n_samples": int(row.split()[1])}


def defaults_follow(cells: dict, params: dict) -> list[str]:
    """Where the estimator defaults ``params`` differ from what a final protocol chose (empty while interim)."""
    if len(cells) < len(TASKS) * len(SEEDS):
        return []
    out = []
    for row in filter(None, chosen(cells).values()):
        for key, value in candidate_settings(row).items():
            if params.get(key) != value:
                out.append(f"{key}={params.get(key)!r}, the protocol chose {value!r}")
    return out


def run_prediction_cost() -> dict:
    """Seconds of ``predict_proba`` with 8 draws and with each of ``DRAW_COUNTS``, over a MAP prediction.

    The cost the ``n_samples`` decision trades against: ``benchmarks/draws.py``'s timing (the default
    model on SST-2, 500 dev texts, repetitions in alternating order, median and range of the ratios).
    """
    from draws import run_cost

    counts = sorted({8, *DRAW_COUNTS})
    return run_cost(timed_rows={f"{S} draws": {"n_samples": S} for S in counts}, reset={"n_samples": 8})


def load_cost() -> dict | None:
    return json.loads(COST.read_text()) if COST.exists() else None


def cost_sentence(cost: dict | None, settings: bool = False) -> str:
    """The measured prediction cost of each draw count, as one sentence (empty when not measured).

    ``settings``: add the estimator settings the timing ran under.
    """
    if not cost:
        return ""
    parts = [f"{k}: {np.median(v):.1f}× ({min(v):.1f}–{max(v):.1f}×)" for k, v in cost["ratios"].items()]
    return (
        "Prediction cost over a MAP prediction (`python benchmarks/protocol.py --cost`: "
        f"{cost['texts']} SST-2 dev texts, {cost['threads']} threads, median (range) of "
        f"{len(next(iter(cost['ratios'].values())))} alternating repetitions): " + "; ".join(parts) + "."
    ) + (f" Measured under {cost['defaults']}." if settings else "")


def _status(cells: dict) -> str:
    n, total = len(cells), len(TASKS) * len(SEEDS)
    return "final" if n == total else f"interim: {n} of {total} cells"


def readme_block(cells: dict, docs: str = "docs/") -> str:
    """README's table of the defaults the protocol decides: dev evidence, decision, and the test read after it.

    ``docs``: the path from the page holding the table to docs/ (README: ``"docs/"``; a docs page: ``""``).
    """
    picks = chosen(cells)
    lines = [
        README_START,
        f"Defaults decided by the evidence protocol ({_status(cells)}; 5 tasks × 5 seeds, chosen on dev, "
        f"reported on test; rule and tables in [{docs}protocol.md]({docs}protocol.md)). Each candidate changes one "
        "setting of the default; Δ is the candidate minus the default, pooled over task-seed pairs, 95% t-interval. "
        "The default here is the estimator's at the cells' commit ("
        + _commits(cells)
        + "), with `projection='svd'`; whitened SVD replaced it later, decided on the base-size cells (issue 30).",
        "",
        "| default | candidate | Δ NLL (dev) | Δ ECE (dev) | decision "
        "| Δ NLL / Δ ECE / Δ accuracy (test, after the choice) |",
        "|---|---|---|---|---|---|",
    ]
    for row in _CANDIDATE_ROWS:
        setting = ", ".join(f"`{k}={v!r}`" for k, v in candidate_settings(row).items())
        dev = [verdict(pooled(cells, row, "default", "dev", m), m) for m in ("nll", "ece")]
        taken, final = picks[DECIDES[row]] == row, len(cells) == len(TASKS) * len(SEEDS)
        test = " / ".join(verdict(pooled(cells, row, "default", "test", m), m) for m in ("nll", "ece", "accuracy"))
        decision = ("**chosen**" if final else "ahead (interim)") if taken else decide(cells, row)
        test = test if taken and final else "– (read once final)" if taken else "–"
        lines.append(f"| `{DECIDES[row]}` | {setting} | {dev[0]} | {dev[1]} | {decision} | {test} |")
    cost = cost_sentence(load_cost())
    return "\n".join([*lines, *(["", cost] if cost else []), README_END])


def summary_block(cells: dict) -> str:
    """docs/benchmarks.md's headline: on test, the default against MAP and MAP + temperature, per task."""
    learned = [t for t in sorted({t for t, _ in cells}, key=TASKS.index) if beats_label_prior(cells, t)]
    lines = [
        SUMMARY_START,
        f"## The default against MAP and MAP + temperature, on test ({_status(cells)})",
        "",
        "`python benchmarks/protocol.py` (the evidence protocol of issue 25; every row, the dev decisions and the "
        "per-task tables are in [The evidence protocol](protocol.md)). MiniLM, 500 training examples per task and "
        "seed; test splits read only for reporting; MAP + temperature fits its temperature on the 500 dev texts. "
        "Δ: the default minus the row (accuracy as a fraction), mean over seeds of the paired difference, 95% "
        "t-interval; "
        '"no difference detected" where it includes 0.',
        "",
        "| task | seeds | label prior NLL | MAP NLL | default NLL | against | "
        + " | ".join(f"Δ {METRIC_LABELS[m]}" for m in METRICS)
        + " |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in learned:
        mine = [c for (t, _), c in cells.items() if t == task]
        mean = lambda row, mine=mine: np.mean([c["rows"][row]["test"]["nll"] for c in mine])
        head = f"| {task} | {len(mine)} | {mean('label prior'):.3f} | {mean('MAP'):.3f} | {mean('default'):.3f}"
        for against in ("MAP", "MAP + temperature"):
            diffs = [verdict(paired(cells, task, "default", against, "test", m), m) for m in METRICS]
            lines.append(f"{head} | {against} | " + " | ".join(diffs) + " |")
            head = "| | | | |"
    for against in ("MAP", "MAP + temperature"):
        diffs = [verdict(pooled(cells, "default", against, "test", m), m) for m in METRICS]
        lines.append(f"| pooled (task-seed pairs) | {len(cells)} | | | | {against} | " + " | ".join(diffs) + " |")
    apart = sorted({t for t, _ in cells} - set(learned))
    if apart:
        lines += ["", "Tasks where nothing beats the label prior, reported apart: " + ", ".join(apart) + "."]
    return "\n".join([*lines, SUMMARY_END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", default="0/1", help="i/n: run every n-th missing cell from the i-th")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="one tiny cell, nothing written: the bookkeeping")
    parser.add_argument("--cost", action="store_true", help="time predictions with each draw count (idle machine)")
    args = parser.parse_args()
    if args.cost:
        COST.write_text(json.dumps(run_prediction_cost(), indent=1) + "\n")
    if args.quick:
        print(render({("sst2", 0): run_cell("sst2", 0, quick=True), ("sst2", 1): run_cell("sst2", 1, quick=True)}))
        return
    if not (args.table_only or args.cost):
        tasks.run_cells(RESULTS, [(t, s) for s in SEEDS for t in TASKS], run_cell, args.worker)
    cells = load_cells()
    if cells:
        from cost import write_block

        PAGE.write_text(render(cells))
        write_block(README, readme_block(cells), README_START, README_END)
        write_block(DECISIONS, readme_block(cells, docs=""), README_START, README_END)
        write_block(BENCHMARKS, summary_block(cells), SUMMARY_START, SUMMARY_END)
        print(render(cells))


if __name__ == "__main__":
    main()

"""Does it hold at base size? (issue 30) The default, the unfamiliar-inputs score and the projections, per backbone.

    python benchmarks/base_backbone.py                                  # once: fetch all-mpnet-base-v2
    python benchmarks/base_size.py --backbone mpnet-base --worker 0/2 &  # cells not stored yet
    python benchmarks/base_size.py --backbone mpnet-base --worker 1/2 &
    python benchmarks/base_size.py --backbone minilm                     # the same cells on MiniLM
    python benchmarks/base_size.py --table-only                          # rewrite the docs blocks
    python benchmarks/base_size.py --quick                               # the bookkeeping, nothing written

The same cells on each backbone, so that a difference between backbones is the backbone's: tasks
SST-2 and TREC-6 of ``benchmarks/tasks.py`` (learnable, short texts), seeds 0-2, ``N_TRAIN``
training examples drawn with the seed, ``MAX_EPOCHS`` epochs, ``MAX_LENGTH`` tokens (AG News
snippets, scored as unfamiliar texts only, are cut there), the first ``N_DEV`` dev and ``N_TEST``
test texts. Estimator defaults otherwise. A cell is one task, seed and projection (about 15
minutes of one core on MPNet-base; 24 cells, about 6 core-hours; MiniLM about a fifth). Rows:

- *label prior* (the training class frequencies);
- per projection (SVD, whitened SVD, DCT, random; rank 8): a Laplace fit (L-LoRA-XS: MAP, then the
  full Laplace approximation, GLM predictive) and a default fit (VI, Bayesian head);
- from the SVD Laplace fit: *MAP* (its mode) and *MAP + temperature* (one temperature fitted on dev);
- unfamiliar inputs, on one far-shift pair per task (SST-2 -> AG News, TREC-6 -> CR; test texts):
  AUROC of the default score ``novelty`` and of max-probability, for MAP and for the default.

Reported: the default against MAP and MAP + temperature on test, and each projection against SVD
(Laplace and default alike) on dev and test, as the mean over seeds of per-seed paired differences
with a 95% t-interval ("better"/"worse" only where it excludes 0). Cells: one JSON per task and seed
in ``benchmarks/results/base_size/<backbone>/``, named ``<task>@<projection>--seed<seed>.json``
(resumable, safe in parallel).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tasks
from base_backbone import resolve_backbone
from protocol import LOWER_IS_BETTER, METRICS, paired, scores, screen, verdict  # metrics, differences, dev screen

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "base_size"
PAGE = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- base-size:start -->", "<!-- base-size:end -->"
FINDINGS = ROOT / "docs" / "findings.md"
FINDINGS_START, FINDINGS_END = "<!-- base-size-findings:start -->", "<!-- base-size-findings:end -->"
BACKBONES = ("minilm", "mpnet-base")
TASKS = ("sst2", "trec")
SEEDS = (0, 1, 2)
N_TRAIN, MAX_EPOCHS, MAX_LENGTH = 300, 6, 64
N_DEV, N_TEST, N_OUT = 300, 500, 300
PROJECTIONS = ("svd", "whitened_svd", "dct", "random")
#: The far-shift pair of each task: its test texts are in-distribution, the other task's are not.
FAR = {"sst2": "agnews", "trec": "cr"}
#: How the default projection is decided on these cells (fixed when 5 of the 24 MPNet-base cells were stored).
PROJECTION_RULE = (
    "A projection replaces SVD as the default when, on **dev** and with the default posterior (VI, Bayesian "
    "head), on every backbone it is worse on no task (no per-task interval of NLL, ECE or accuracy against SVD "
    "excludes 0 on the worse side, nor the pooled one) and its pooled NLL is better (the interval over all "
    "task-seed pairs excludes 0). Better on one backbone only is reported, and SVD stays: one size is not a "
    "trend. Where several qualify, the lowest pooled dev NLL (averaged over backbones) is taken. The decision "
    "is final with all 3 seeds of both tasks on every backbone; before that it is interim."
)


def _auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    return float(roc_auc_score(y, np.r_[in_scores, out_scores]))


def _unfamiliar(p_in, u_in, p_out, u_out) -> dict:
    """AUROC of ``novelty`` and of max-probability (1 - max p), in- vs out-of-distribution texts."""
    return {
        "novelty": _auroc(u_in["novelty"], u_out["novelty"]),
        "max-probability": _auroc(1 - p_in.max(1), 1 - p_out.max(1)),
    }


def _data(task_name: str, seed: int, quick: bool):
    task = tasks.load(task_name)
    n_dev, n_test, n_out = (16, 16, 16) if quick else (N_DEV, N_TEST, N_OUT)
    X, y = task.train(40 if quick else N_TRAIN, seed)
    dev = (task.dev[0][:n_dev], task.dev[1][:n_dev])
    test = (task.test[0][:n_test], task.test[1][:n_test])
    return (X, y), dev, test, tasks.load(FAR[task_name]).test[0][:n_out]


def cell_key(task: str, projection: str) -> str:
    """The stored name of one task's cells for one projection: ``"sst2@svd"``."""
    return f"{task}@{projection}"


def run_cell(key: str, seed: int, backbone: str = "minilm", quick: bool = False, **overrides) -> dict:
    """One task, seed and projection (``key`` from :func:`cell_key`): a Laplace fit and a default fit.

    Each row's dev and test metrics; with the SVD projection also MAP, MAP + temperature and the
    unfamiliar-input AUROCs of MAP and the default (one prediction pass gives a model's test
    metrics and its in-distribution scores). About 15 minutes of one core on MPNet-base.
    """
    import torch
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    from subspace_bayes import BayesianSubspaceClassifier
    from subspace_bayes.posteriors import PointMass

    torch.set_num_threads(1)
    task_name, projection = key.split("@")
    (X, y), (X_dev, y_dev), (X_test, y_test), X_out = _data(task_name, seed, quick)
    common = {"backbone": resolve_backbone(backbone), "random_state": seed, "verbose": 0, "projection": projection}
    common |= {"max_epochs": 1 if quick else MAX_EPOCHS, "max_length": MAX_LENGTH, **overrides}
    cell = {"task": task_name, "projection": projection, "seed": seed, "backbone": backbone, "rows": {}}
    cell |= {"unfamiliar": {}, "fit_seconds": {}}
    svd = projection == "svd"

    def record(row: str, model, predict=None, ood: str | None = None) -> None:
        enc = lambda ys: np.searchsorted(model.classes_, ys)
        if ood:  # test metrics and in-distribution scores from one pass, then the unfamiliar texts
            _, p_test, u_test = model.predict(X_test, return_proba=True, return_uncertainty=True)
            _, p_out, u_out = model.predict(X_out, return_proba=True, return_uncertainty=True)
            cell["unfamiliar"][ood] = _unfamiliar(p_test, u_test, p_out, u_out)
        else:
            p_test = (predict or model.predict_proba)(X_test)
        dev = scores(enc(y_dev), (predict or model.predict_proba)(X_dev))
        cell["rows"][row] = {"dev": dev, "test": scores(enc(y_test), p_test)}

    if svd:
        classes, counts = np.unique(y, return_counts=True)
        cell["rows"]["label prior"] = {
            name: scores(np.searchsorted(classes, ys), np.tile(counts / counts.sum(), (len(ys), 1)))
            for name, ys in (("dev", y_dev), ("test", y_test))
        }
    start = time.perf_counter()
    laplace = BayesianSubspaceClassifier(posterior="laplace", predictive="glm", **common).fit(X, y)
    cell["fit_seconds"][f"Laplace ({projection})"] = round(time.perf_counter() - start, 1)
    record(f"Laplace ({projection})", laplace)
    if svd:
        posterior = laplace.module_.posterior
        laplace.module_.posterior = PointMass.from_mean(posterior.mean.detach())  # MAP: the Laplace fit's mode
        record("MAP", laplace, ood="MAP")
        temperature = CalibratedClassifierCV(FrozenEstimator(laplace), method="temperature").fit(X_dev, y_dev)
        record("MAP + temperature", laplace, temperature.predict_proba)
    start = time.perf_counter()
    default = BayesianSubspaceClassifier(**common).fit(X, y)
    cell["fit_seconds"][f"default ({projection})"] = round(time.perf_counter() - start, 1)
    record(f"default ({projection})", default, ood="default" if svd else None)
    return cell


def load_cells(backbone: str) -> dict:
    """``{(task, seed): cell}`` with the rows of every projection stored so far merged into one cell."""
    parts = tasks.load_cells(RESULTS / backbone, [cell_key(t, p) for t in TASKS for p in PROJECTIONS], SEEDS)
    return merge(parts)


def merge(parts: dict) -> dict:
    """Per-projection cells ``{("sst2@svd", seed): cell}`` merged into ``{("sst2", seed): cell}``."""
    cells: dict = {}
    for (key, seed), part in sorted(parts.items()):
        cell = cells.setdefault((key.split("@")[0], seed), {"rows": {}, "unfamiliar": {}, "fit_seconds": {}})
        for field in ("rows", "unfamiliar", "fit_seconds"):
            cell[field].update(part[field])
        cell.setdefault("code", set()).add(part.get("code", "unrecorded"))
    return cells


def _mean(cells: dict, task: str, row: str, split: str, metric: str) -> str:
    v = [c["rows"][row][split][metric] for (t, _), c in cells.items() if t == task and row in c["rows"]]
    return f"{np.mean(v):.3f}" if v else "–"


def _rows_table(cells: dict, task: str) -> list[str]:
    rows = (
        "label prior",
        "MAP",
        "MAP + temperature",
        *(f"{k} ({p})" for k in ("Laplace", "default") for p in PROJECTIONS),
    )
    lines = ["| row (test) | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    return lines + [f"| {r} | " + " | ".join(_mean(cells, task, r, "test", m) for m in METRICS) + " |" for r in rows]


def _comparisons(cells: dict, task: str) -> list[str]:
    pairs = [(f"default ({p})", a, "test") for p in ("svd", "whitened_svd") for a in ("MAP", "MAP + temperature")]
    pairs += [(f"{k} ({p})", f"{k} (svd)", split) for k in ("Laplace", "default") for p in PROJECTIONS[1:]
              for split in ("dev", "test")]  # fmt: skip
    lines = ["| comparison | split | " + " | ".join(f"Δ {m}" for m in METRICS) + " |"]
    lines.append("|---|---|" + "---|" * len(METRICS))
    for row, against, split in pairs:
        diffs = " | ".join(verdict(paired(cells, task, row, against, split, m), m) for m in METRICS)
        lines.append(f"| {row} − {against} | {split} | {diffs} |")
    return lines


def _unfamiliar_table(by_backbone: dict) -> list[str]:
    lines = ["| backbone | pair (test) | MAP: novelty | MAP: max-probability | default: novelty |"
             " default: max-probability | default: novelty − max-probability (paired by seed) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for backbone, cells in by_backbone.items():
        for task in TASKS:
            mine = [c["unfamiliar"] for (t, _), c in sorted(cells.items()) if t == task]
            if not mine:
                continue
            v = [np.mean([u[m][s] for u in mine]) for m in ("MAP", "default") for s in ("novelty", "max-probability")]
            gap = tasks.t_interval(u["default"]["novelty"] - u["default"]["max-probability"] for u in mine)
            cols = [f"{x:.3f}" for x in v] + [tasks.verdict(gap, lower_is_better=False, missing="–")]
            lines.append(f"| {backbone} | {task} → {FAR[task]} | " + " | ".join(cols) + " |")
    return lines


def _seed_diffs(cells: dict, task: str | None, row: str, against: str, split: str, metric: str) -> dict:
    """``{(task, seed): row - against}`` over the cells holding both rows (every task when ``task`` is None)."""
    return {
        key: c["rows"][row][split][metric] - c["rows"][against][split][metric]
        for key, c in cells.items()
        if (task is None or key[0] == task) and row in c["rows"] and against in c["rows"]
    }


def size_change(small: dict, large: dict, task: str, against: str, metric: str):
    """Mean over seeds of ``(default - against)`` on ``large`` minus the same on ``small``, with its t-interval.

    The seeds draw the same training examples on both backbones, so the difference is paired by seed:
    below 0 in NLL or ECE (above 0 in accuracy) the default's edge over ``against`` grows with size.
    """
    a, b = (_seed_diffs(cells, task, "default (svd)", against, "test", metric) for cells in (small, large))
    return tasks.t_interval(b[k] - a[k] for k in sorted(a.keys() & b.keys()))


def _size_table(by_backbone: dict) -> list[str]:
    names = list(by_backbone)
    change = f" | {names[-1]} − {names[0]} (paired by seed)" if len(names) > 1 else ""
    lines = ["| task | default (svd) against | metric (test) | " + " | ".join(names) + change + " |"]
    lines.append("|---|---|---|" + "---|" * (len(names) + bool(change)))
    for task, against, m in ((t, a, m) for t in TASKS for a in ("MAP", "MAP + temperature") for m in METRICS[:3]):
        per = [verdict(paired(cells, task, "default (svd)", against, "test", m), m) for cells in by_backbone.values()]
        if change:
            per.append(verdict(size_change(by_backbone[names[0]], by_backbone[names[-1]], task, against, m), m))
        lines.append(f"| {task} | {against} | {m} | " + " | ".join(per) + " |")
    return lines


def _projection_table(by_backbone: dict) -> list[str]:
    """Each projection against SVD, pooled over tasks and seeds, per backbone and posterior."""
    lines = [
        "| backbone | posterior | projection − svd | Δ nll (dev) | Δ nll (test) | Δ ece (test) | Δ accuracy (test) |"
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for backbone, cells in by_backbone.items():
        for kind, p in ((k, p) for k in ("Laplace", "default") for p in PROJECTIONS[1:]):
            row, svd = f"{kind} ({p})", f"{kind} (svd)"
            cols = [("dev", "nll"), ("test", "nll"), ("test", "ece"), ("test", "accuracy")]
            diffs = [verdict(tasks.t_interval(_seed_diffs(cells, None, row, svd, s, m).values()), m) for s, m in cols]
            lines.append(f"| {backbone} | {kind} | {p} | " + " | ".join(diffs) + " |")
    return lines


def decide_projection(cells: dict, projection: str) -> str:
    """``PROJECTION_RULE`` on one backbone's cells: "better", "worse on a task", "worse pooled", "not better"."""
    outcome = screen(cells, f"default ({projection})", "default (svd)", TASKS)
    return {"not measured": "not measured (fewer than 2 cells)", "tie": "not better"}.get(outcome, outcome)


def is_final(by_backbone: dict) -> bool:
    """Every backbone holds every task, seed and projection."""
    full = {(t, s) for t in TASKS for s in SEEDS}
    return set(by_backbone) == set(BACKBONES) and all(
        set(cells) == full and all(f"default ({p})" in c["rows"] for c in cells.values() for p in PROJECTIONS)
        for cells in by_backbone.values()
    )


def chosen_projection(by_backbone: dict) -> str:
    """The default projection ``PROJECTION_RULE`` picks: SVD unless another qualifies on every backbone."""
    qualify = [p for p in PROJECTIONS[1:] if all(decide_projection(c, p) == "better" for c in by_backbone.values())]
    dev_nll = lambda p: np.mean(
        [
            np.mean(list(_seed_diffs(c, None, f"default ({p})", "default (svd)", "dev", "nll").values()))
            for c in by_backbone.values()
        ]
    )
    return min(qualify, key=dev_nll) if qualify else "svd"


def _decision_lines(by_backbone: dict) -> list[str]:
    lines = ["| projection (default posterior, dev) | " + " | ".join(by_backbone) + " |"]
    lines.append("|---|" + "---|" * len(by_backbone))
    for p in PROJECTIONS[1:]:
        lines.append(f"| {p} | " + " | ".join(decide_projection(c, p) for c in by_backbone.values()) + " |")
    status = "final" if is_final(by_backbone) else "interim: cells are missing"
    return [
        PROJECTION_RULE,
        "",
        *lines,
        "",
        f"Default projection by this rule: **{chosen_projection(by_backbone)}** ({status}).",
    ]


def render(by_backbone: dict) -> str:
    """The docs block: per backbone and task, the rows on test, the paired comparisons, the AUROCs."""
    lines = [
        START,
        "## At base size: MiniLM (22.7 M) and MPNet-base (110 M) on the same cells (issue 30)",
        "",
        f"`python benchmarks/base_size.py`: SST-2 and TREC-6, seeds {SEEDS[0]}-{SEEDS[-1]}, {N_TRAIN} training "
        f"examples, {MAX_EPOCHS} epochs, max_length {MAX_LENGTH}, the first {N_DEV} dev and {N_TEST} test texts "
        "(`benchmarks/tasks.py`); the estimator defaults of the cells' commit otherwise (VI, low-rank covariance, "
        "Bayesian head, rank 8, 8 draws). "
        "MAP is the Laplace (SVD) fit's mode; MAP + temperature fits one temperature on the dev texts. "
        "Differences: mean over seeds of the per-seed paired difference, 95% t-interval; fewer than 3 seeds "
        "is an interim reading. Projections are compared with SVD on dev (where a default would be chosen) "
        "and on test (reported). Cells computed at commit "
        + ", ".join(sorted({v for cells in by_backbone.values() for c in cells.values() for v in c["code"]}))
        + ".",
    ]
    for backbone, cells in by_backbone.items():
        for task in TASKS:
            n = sum(t == task for t, _ in cells)
            if n:
                lines += ["", f"### {backbone}, {task} ({n} seeds)", "", *_rows_table(cells, task), ""]
                lines += _comparisons(cells, task)
    lines += ["", *_summary(by_backbone)]
    return "\n".join([*lines, END])


_COMBOS = [(t, a, m) for t in TASKS for a in ("MAP", "MAP + temperature") for m in METRICS[:3]]


def _size_reading(by_backbone: dict) -> list[str]:
    """Generated sentences: per backbone, how the default's comparisons fall; with size, which change detectably."""
    lines = []
    for backbone, cells in by_backbone.items():
        v = [verdict(paired(cells, t, "default (svd)", a, "test", m), m) for t, a, m in _COMBOS]
        n = {w: sum(f"({w})" in x for x in v) for w in ("better", "worse", "no difference detected")}
        missing = f"; {v.count('–')} not yet measured" if "–" in v else ""
        lines.append(
            f"- **{backbone}**: of the {len(_COMBOS)} comparisons of the default with MAP and MAP + temperature "
            f"(accuracy, ECE, NLL; test), better in {n['better']}, worse in {n['worse']}, no difference detected in "
            f"{n['no difference detected']}{missing}."
        )
    names = list(by_backbone)
    if len(names) > 1:
        small, large = by_backbone[names[0]], by_backbone[names[-1]]
        moved = []
        for t, a, m in _COMBOS:
            d = size_change(small, large, t, a, m)
            if d is not None and abs(d[0]) > d[1]:
                verb = "grows" if (d[0] < 0) == LOWER_IS_BETTER[m] else "shrinks"
                moved.append(f"{t} {m} against {a}: the edge {verb} ({d[0]:+.3f} ± {d[1]:.3f})")
        lines.append(
            f"- **With size** ({names[-1]} − {names[0]}, paired by seed), the default's edge changes detectably in "
            f"{len(moved)} of {len(_COMBOS)}" + (": " + "; ".join(moved) + "." if moved else ".")
        )
    return lines


def _summary(by_backbone: dict) -> list[str]:
    return [
        "### What changes with size: the default's edge over MAP, per backbone (test)",
        "",
        *_size_table(by_backbone),
        "",
        *_size_reading(by_backbone),
        "",
        "### Unfamiliar inputs (AUROC, mean over seeds; far-shift pairs; test texts)",
        "",
        *_unfamiliar_table(by_backbone),
        "",
        "### Each projection against SVD, pooled over tasks and seeds",
        "",
        *_projection_table(by_backbone),
        "",
        "### The default projection, decided on dev",
        "",
        *_decision_lines(by_backbone),
    ]


def core_hours(cells: dict) -> float:
    """Hours of one core the stored cells' fits took (each row's fit seconds; every fit is its own)."""
    return sum(sum(c["fit_seconds"].values()) for c in cells.values()) / 3600


def findings_block(by_backbone: dict) -> str:
    """docs/findings.md's base-size section: the summaries of :func:`render` (the per-task tables stay there)."""
    seeds = {b: len(cells) for b, cells in by_backbone.items()}
    return "\n".join(
        [
            FINDINGS_START,
            "## 3. At base size: do the findings hold on a 110 M backbone? (issue 30)",
            "",
            "Generated by `python benchmarks/base_size.py` (protocol in its docstring; per-task tables in "
            "[benchmarks](benchmarks.md#at-base-size-minilm-227-m-and-mpnet-base-110-m-on-the-same-cells-issue-30)). "
            "(task, seed) cells per backbone: " + ", ".join(f"{b} {n}" for b, n in seeds.items()) + ". "
            "Mean over seeds of paired differences, 95% t-interval; fewer than 3 seeds per task is interim. "
            "The fits took "
            + ", ".join(f"{core_hours(c):.1f} core-hours on {b}" for b, c in by_backbone.items())
            + " (fit seconds only, one core per worker; predicting and scoring the rows is not counted).",
            "",
            *_summary(by_backbone),
            FINDINGS_END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="mpnet-base", choices=BACKBONES)
    parser.add_argument("--worker", default="0/1", help="i/n: run every n-th missing cell from the i-th")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="one tiny cell on MiniLM, nothing written")
    args = parser.parse_args()
    if args.quick:
        parts = {(cell_key("sst2", p), 0): run_cell(cell_key("sst2", p), 0, "minilm", quick=True) for p in PROJECTIONS}
        print(render({"minilm (quick)": merge(parts)}))
        return
    if not args.table_only:
        run = lambda key, seed: run_cell(key, seed, args.backbone)
        keys = [(cell_key(t, p), s) for s in SEEDS for t in TASKS for p in PROJECTIONS]
        tasks.run_cells(RESULTS / args.backbone, keys, run, args.worker)
    by_backbone = {b: cells for b in BACKBONES if (cells := load_cells(b))}
    if by_backbone:
        from cost import write_block

        block = render(by_backbone)
        write_block(PAGE, block, START, END)
        write_block(FINDINGS, findings_block(by_backbone), FINDINGS_START, FINDINGS_END)
        print(block)


if __name__ == "__main__":
    main()

"""Calibration quality of every method on GLUE tasks with the MiniLM backbone, mean ± std over seeds.

    python benchmarks/quality.py                               # SST-2, RTE, MRPC x 3 seeds (hours on 2 CPU cores)
    python benchmarks/quality.py --datasets sst2 --seeds 0     # one cell of the grid
    python benchmarks/quality.py --glue-dir path/to/glue       # RTE and MRPC from another folder

Results accumulate in the JSON file: a run with the same protocol (training size, epochs, samples,
test/OOD sizes) skips the (dataset, seed) cells already there, so the grid can be filled in several
runs (``--fresh`` starts over). The table in docs/benchmarks.md is rewritten between its markers after
every cell; the rest of that page is left alone.

Methods: MAP (LoRA-XS); MAP + temperature scaling; MC dropout on the MAP model; a deep ensemble of
3 MAP models; VI (diag, lowrank, full, and lowrank with ``bayesian_head=True``), SWAG (all with the
MC predictive); Laplace (full, kron, diag) with MC and GLM predictives.
MAP, temperature scaling, MC dropout and both Laplace variants share one MAP training run per seed
(Laplace is post-hoc), so they differ only in how they predict. Metrics: accuracy, ECE (15 bins),
NLL, Brier; selective prediction (AURC, accuracy at 80% and 90% coverage) and OOD AUROC for each
score (1 - max probability, total entropy, mutual information, logit variance) against every OOD set
of the task (SST-2: AG News, MRPC sentences, RTE hypotheses; MRPC/RTE: the other task's pairs and
SST-2 sentence pairs), with the Mahalanobis distance of the MAP model's pooled features as the
non-Bayesian reference.

Writes docs/benchmarks.md (the table) and benchmarks/results/quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.datasets import load_agnews_ood, load_mrpc, load_rte, load_sst2
from subspace_bayes.inference.laplace import ggn, ggn_eigenvalues, laplace_posterior, tune_prior_precision
from subspace_bayes.metrics import (
    accuracy_at_coverage,
    aurc,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    ood_auroc,
)
from subspace_bayes.posteriors import PointMass
from subspace_bayes.predictive import UNCERTAINTY_SCORES, mc_probabilities, uncertainty_scores
from subspace_bayes.text import TextCollator, TextDataset, coerce_texts

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLUE = ROOT.parent / "shared" / "data" / "glue"


def device_name() -> str:
    """Where a cell ran, for the JSON: the GPU's name, or the CPU and its cores."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"


def load_task(name: str, glue_dir: Path, n_train: int, seed: int):
    """(X_train, y_train, X_cal, y_cal, X_test, y_test); the calibration split comes out of the training file."""
    rng = np.random.RandomState(seed)
    if name == "sst2":
        X, y = load_sst2("train")
        X_test, y_test = load_sst2("validation")
    elif name == "rte":
        X, y = load_rte(glue_dir / "RTE" / "train.tsv")
        X_test, y_test = load_rte(glue_dir / "RTE" / "dev.tsv")
    elif name == "mrpc":
        X, y = load_mrpc(glue_dir / "MRPC" / "train.tsv")
        X_test, y_test = load_mrpc(glue_dir / "MRPC" / "dev.tsv")
    else:
        raise ValueError(f"Unknown dataset {name!r}; use sst2, rte or mrpc.")
    idx = rng.permutation(len(X))
    tr, cal = idx[:n_train], idx[n_train : n_train + 200]
    pick = lambda ids: ([X[i] for i in ids], np.asarray(y)[ids])
    return (*pick(tr), *pick(cal), X_test, np.asarray(y_test))


def cap(X, y, n, seed):
    """At most ``n`` examples, drawn without replacement (all of them when ``n`` is None)."""
    if n is None or len(X) <= n:
        return X, np.asarray(y)
    idx = np.sort(np.random.RandomState(seed).permutation(len(X))[:n])
    return [X[i] for i in idx], np.asarray(y)[idx]


def by_length(X, y=None):
    """Sort examples by character length (shortest first): far less padding per batch, same metrics."""
    order = coerce_texts(X).by_length()
    X = [X[i] for i in order]
    return X if y is None else (X, np.asarray(y)[order])


def _batches(clf, X):
    loader = torch.utils.data.DataLoader(
        TextDataset(coerce_texts(X)), batch_size=clf.batch_size, collate_fn=TextCollator(clf.tokenizer_, clf.max_length)
    )
    return [{k: v.to(clf.device_) for k, v in Xi.items()} for Xi, _ in loader]


def at_mean(clf, X):
    """MAP predictions of a model trained as a point estimate (e.g. before its Laplace step)."""
    return mc_probabilities(clf.module_.eval(), _batches(clf, X), clf.module_.posterior.mean.detach()[None])


def mc_dropout(clf, X, p=0.1, S=16):
    """Monte Carlo dropout on the MAP model: dropout switched on at test time only."""
    module = clf.module_
    drops = [m for m in module.backbone.modules() if isinstance(m, torch.nn.Dropout)]
    old = [m.p for m in drops]
    torch.manual_seed(0)
    try:
        for m in drops:
            m.p = p
        module.eval()
        module.backbone.train()
        mean = module.posterior.mean.detach()[None]
        return np.concatenate([mc_probabilities(module, _batches(clf, X), mean) for _ in range(S)])
    finally:
        for m, q in zip(drops, old, strict=True):
            m.p = q
        module.eval()


def laplace_variant(lap_clf, X_train, y_train, structure):
    """Post-hoc Laplace of another structure on the same MAP model (shares its training run)."""
    enc = np.searchsorted(lap_clf.classes_, y_train)
    data = TextDataset(coerce_texts(X_train), enc)
    loader = torch.utils.data.DataLoader(
        data, batch_size=lap_clf.batch_size, collate_fn=TextCollator(lap_clf.tokenizer_, lap_clf.max_length)
    )
    mean = lap_clf.module_.posterior.mean.detach()
    G, nll, _ = ggn(lap_clf.module_, ({**X, "labels": y} for X, y in loader), mean, structure)
    delta = tune_prior_precision(ggn_eigenvalues(G), float(mean.double().pow(2).sum()), nll)
    return laplace_posterior(mean.cpu().float(), G, delta)


SCORES = UNCERTAINTY_SCORES
#: The row of the feature distance of the MAP model (recorded in every cell).
REFERENCE_ROW = "Mahalanobis (MAP features)"
#: The model's own feature distance (``predict_feature_distance``), recorded per row next to SCORES.
FEATURE_SCORE = "feature_distance"

#: Laplace structures fitted post hoc on the MAP run. Kron and diag were measured on the first grid
#: (docs/benchmarks.md, "First grid") and never beat full at D = 768, so this grid keeps full only.
LAPLACE_STRUCTURES = ("full",)

#: Settings every row starts from, pinned so that a change of the estimator's defaults cannot change
#: what a stored row measured (the rows below override them by name).
PINNED = dict(
    bayesian_head=False,
    prior_std=1.0,
    head_prior_std=None,
    kl_weight=1.0,
    covariance="lowrank",
    cov_rank=4,
    projection="svd",
    bucket_by_length=False,  # random training batches, as when the stored rows were measured
)

#: The trained Bayesian rows: the default (VI, low rank + diagonal, k = 4), the prior tuned by
#: empirical Bayes, the head in theta, both together, and SWAG. VI diag and full were compared on the
#: first grid and in docs/findings.md (the cov_rank ablation), where low rank + diagonal did best.
VI_ROWS = [
    ("VI lowrank (k=4)", dict(covariance="lowrank")),
    ("VI lowrank, prior auto", dict(covariance="lowrank", prior_std="auto")),
    ("VI lowrank, Bayesian head", dict(covariance="lowrank", bayesian_head=True)),
    ("VI lowrank, Bayesian head, prior auto", dict(covariance="lowrank", bayesian_head=True, prior_std="auto")),
    ("SWAG", dict(posterior="swag")),
]


def ood_sets(task: str, glue_dir: Path, n: int, seed: int) -> dict:
    """Out-of-distribution inputs for a model of ``task``, of the same form (single texts or pairs).

    SST-2 (single sentences): AG News snippets, MRPC's first sentences, RTE's hypotheses.
    MRPC and RTE (pairs): the other task's pairs, and pairs of SST-2 sentences.
    """
    rng = np.random.RandomState(seed)
    sst2 = load_sst2("validation")[0]
    pairs = lambda name: (load_mrpc if name == "MRPC" else load_rte)(glue_dir / name / "dev.tsv")[0]
    if task == "sst2":
        sets = {
            "AG News": load_agnews_ood(n=n, random_state=seed),
            "MRPC sentences": [a for a, _ in pairs("MRPC")],
            "RTE hypotheses": [b for _, b in pairs("RTE")],
        }
    else:
        other = "RTE" if task == "mrpc" else "MRPC"
        shuffled = [sst2[i] for i in rng.permutation(len(sst2))]
        sets = {f"{other} pairs": pairs(other), "SST-2 pairs": list(zip(shuffled[::2], shuffled[1::2], strict=False))}
    return {name: by_length(cap(X, np.zeros(len(X)), n, seed)[0]) for name, X in sets.items()}


def metrics(y, samples, ood_samples: dict) -> dict:
    """Accuracy, calibration, selective prediction per score, and OOD AUROC per pair and score."""
    p = samples.mean(0)
    scores = uncertainty_scores(samples)
    ood_scores = {name: uncertainty_scores(s) for name, s in ood_samples.items()}
    selective = {
        k: {
            "aurc": aurc(y, p, uncertainty=scores[k]),
            "acc80": accuracy_at_coverage(y, p, 0.8, uncertainty=scores[k]),
            "acc90": accuracy_at_coverage(y, p, 0.9, uncertainty=scores[k]),
        }
        for k in SCORES
    }
    ood = {name: {k: ood_auroc(scores[k], o[k]) for k in SCORES} for name, o in ood_scores.items()}
    return {
        "accuracy": float(np.mean(p.argmax(1) == y)),
        "ece": expected_calibration_error(y, p),
        "nll": negative_log_likelihood(y, p),
        "brier": brier_score(y, p),
        "ood_auroc": next(iter(ood.values()))["total"],  # the first pair by total entropy, as before
        "selective": selective,
        "ood": ood,
    }


#: The constant predictor every method is compared with: the training class frequencies for every input.
LABEL_PRIOR = "label prior (training class frequencies)"


def label_prior_metrics(y_train, y_test, ood_sizes: dict) -> dict:
    """:func:`metrics` of the constant predictive ``p(y | x) = n_y / n`` (training class frequencies).

    One "draw" per input, so every uncertainty score is constant: OOD AUROCs are 0.5 and the
    selective-prediction curve is flat.
    """
    classes, counts = np.unique(np.asarray(y_train), return_counts=True)  # a classifier's ``classes_``
    prior = counts / counts.sum()
    tile = lambda n: np.tile(prior, (1, n, 1))
    y = np.searchsorted(classes, np.asarray(y_test))
    return metrics(y, tile(len(y_test)), {name: tile(n) for name, n in ood_sizes.items()})


def add_label_prior(results: dict, glue_dir: Path, args) -> dict:
    """Every stored cell with its label-prior row first (computed from the cell's own splits; nothing is fitted)."""
    for task, per_seed in results.items():
        for cell in per_seed:
            _, y, _, _, X_test, y_test = load_task(task, glue_dir, args.n_train, cell["seed"])
            y_test = cap(X_test, y_test, args.n_test, cell["seed"])[1]
            sizes = {name: len(X) for name, X in ood_sets(task, glue_dir, args.n_ood, cell["seed"]).items()}
            rows = {k: v for k, v in cell["metrics"].items() if k != LABEL_PRIOR}
            cell["metrics"] = {LABEL_PRIOR: label_prior_metrics(y, y_test, sizes), **rows}
    return results


#: The one MAP (Laplace) training run of a seed, shared by the MAP, temperature, dropout, Laplace and ensemble rows.
MAP_RUN = "the MAP run"


class FeatureAUROCs:
    """OOD AUROC of ``predict_feature_distance`` per fitted model, keyed by the model's *name*.

    Not by ``id(clf)``: CPython reuses the id of a freed model, which once gave SWAG the numbers of
    the VI model fitted before it (issue 25).
    """

    def __init__(self, X_test, ood: dict):
        self.X_test, self.ood, self.values = X_test, ood, {}

    def of(self, model: str, clf) -> dict:
        if model not in self.values:
            d_test = clf.predict_feature_distance(self.X_test)
            self.values[model] = {k: ood_auroc(d_test, clf.predict_feature_distance(v)) for k, v in self.ood.items()}
        return self.values[model]


def run_seed(task, glue_dir, seed, args):
    X, y, X_cal, y_cal, X_test, y_test = load_task(task, glue_dir, args.n_train, seed)
    X_test, y_test = by_length(*cap(X_test, y_test, args.n_test, seed))
    ood = ood_sets(task, glue_dir, args.n_ood, seed)
    S = args.n_samples
    common = dict(max_epochs=args.epochs, n_samples=S, random_state=seed, verbose=0, max_length=args.max_length)
    common.update(PINNED)  # the rows name what they change from these, whatever the estimator's defaults
    out, seconds = {}, {}

    distances = FeatureAUROCs(X_test, ood)

    def record(name, clf, predict, t, model=None):
        """``predict(X) -> (S, n, C)`` on the test set and every OOD set; the model's feature distance too.

        ``model`` names the fitted model when several rows share one (default: the row's own name).
        """
        y_enc = np.searchsorted(clf.classes_, y_test)
        out[name] = metrics(y_enc, predict(X_test), {k: predict(v) for k, v in ood.items()})
        for pair, value in distances.of(model or name, clf).items():
            out[name]["ood"][pair][FEATURE_SCORE] = value
        seconds[name] = t

    t0 = time.perf_counter()
    lap = BayesianSubspaceClassifier(posterior="laplace", **common).fit(X, y)
    t_lap = time.perf_counter() - t0
    record("MAP (LoRA-XS)", lap, lambda Z: at_mean(lap, Z), t_lap, model=MAP_RUN)
    # the non-Bayesian reference: the MAP model's own feature distance, which record() just measured
    out[REFERENCE_ROW] = {"ood": {k: {"mahalanobis": v[FEATURE_SCORE]} for k, v in out["MAP (LoRA-XS)"]["ood"].items()}}
    point = lap.module_.posterior  # MAP + temperature and MC dropout need the point estimate
    lap.module_.posterior = PointMass.from_mean(point.mean.detach())
    cal = CalibratedClassifierCV(FrozenEstimator(lap), method="temperature").fit(X_cal, y_cal)
    record("MAP + temperature", lap, lambda Z: cal.predict_proba(Z)[None], t_lap, model=MAP_RUN)
    record("MC dropout (p=0.1)", lap, lambda Z: mc_dropout(lap, Z, S=S), t_lap, model=MAP_RUN)
    lap.module_.posterior = point
    for structure in LAPLACE_STRUCTURES:
        if structure != "full":
            lap.module_.posterior = laplace_variant(lap, X, y, structure).to(lap.device_)
        for predictive in ("mc", "glm"):
            lap.set_params(predictive=predictive)
            record(f"Laplace {structure}, {predictive.upper()}", lap, lap.predict_sample_proba, t_lap, model=MAP_RUN)

    lap.module_.posterior, models, t_ens = PointMass.from_mean(point.mean.detach()), [lap], t_lap
    for k in (1, 2):
        t0 = time.perf_counter()
        member = BayesianSubspaceClassifier(posterior="map", **{**common, "random_state": 1000 * k + seed})
        models.append(member.fit(X, y))
        t_ens += time.perf_counter() - t0
    record(
        "Deep ensemble (3 MAP)",
        lap,
        lambda Z: np.concatenate([m.predict_sample_proba(Z) for m in models]),
        t_ens,
        model=MAP_RUN,
    )

    for name, kw in VI_ROWS:
        t0 = time.perf_counter()
        clf = BayesianSubspaceClassifier(**{**common, "posterior": "vi", "predictive": "mc", **kw}).fit(X, y)
        record(name, clf, clf.predict_sample_proba, time.perf_counter() - t0)
    return out, seconds


def _cell(values: list) -> str:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return "–"
    return f"{v.mean():.3f} ± {v.std():.3f}" if v.size > 1 else f"{v.mean():.3f}"


def _get(metrics: dict, *path):
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def table(results: dict) -> str:
    """Markdown tables per dataset, mean ± std over seeds: calibration and selective prediction, then
    OOD AUROC per OOD set and score. (Fit seconds stay in the JSON only: the cells run for hours next
    to other work, so wall-clock times are not comparable; see cost.md.)"""
    lines = []
    for task, per_seed in results.items():
        methods = list(per_seed[0]["metrics"])
        columns = [("accuracy",), ("ece",), ("nll",), ("brier",), ("ood_auroc",)]
        columns += [("selective", "max_probability", k) for k in ("aurc", "acc80", "acc90")]
        lines += [
            f"### {task} ({len(per_seed)} seed{'s' if len(per_seed) > 1 else ''})",
            "",
            "| method | accuracy | ECE | NLL | Brier | OOD AUROC | AURC | acc @ 80% | acc @ 90% |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for m in methods:
            if "accuracy" in per_seed[0]["metrics"][m]:
                cells = [_cell([_get(r["metrics"][m], *c) for r in per_seed]) for c in columns]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
        pairs = list(_get(per_seed[0]["metrics"][methods[0]], "ood") or {})
        if pairs:
            lines += [
                "",
                f"OOD AUROC ({task} model) per score: 1 − max probability / total entropy / mutual information "
                "/ logit variance [/ the model's `predict_feature_distance`, in cells run since it exists] "
                "(Mahalanobis: the feature distance of the MAP model).",
                "",
                "| method | " + " | ".join(pairs) + " |",
                "|---|" + "---|" * len(pairs),
            ]
            has_feature = any(_get(r["metrics"][m], "ood", pairs[0], FEATURE_SCORE) for r in per_seed for m in methods)
            scores = SCORES + ((FEATURE_SCORE,) if has_feature else ())
            for m in methods:
                row = []
                for pair in pairs:
                    keys = ("mahalanobis",) if "accuracy" not in per_seed[0]["metrics"][m] else scores
                    row.append(
                        " / ".join(_cell([_get(r["metrics"][m], "ood", pair, k) for r in per_seed]) for k in keys)
                    )
                lines.append(f"| {m} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


#: The grids run before the uncertainty measures: their JSON, the markers of their page block, and
#: whether the block shows fit seconds (the one-seed grid does; its note says what shared the machine).
EARLIER_GRIDS = {
    "first-grid": ("quality_first_grid.json", False),
    "sst2-larger": ("quality_sst2_seed0_n1000_e12.json", True),
}


def earlier_grid_block(name: str) -> str:
    """The page block of an earlier grid: per task, method, accuracy, ECE, NLL, Brier, OOD AUROC [, fit s]."""
    file, with_seconds = EARLIER_GRIDS[name]
    results = json.loads((ROOT / "benchmarks" / "results" / file).read_text())["results"]
    columns = ("accuracy", "ece", "nll", "brier", "ood_auroc")
    head = "| method | accuracy | ECE | NLL | Brier | OOD AUROC |" + (" fit s |" if with_seconds else "")
    lines = [f"<!-- {name}:start -->"]
    for task, per_seed in results.items():
        if len(results) > 1:
            lines += [f"### {task} ({len(per_seed)} seed{'s' if len(per_seed) > 1 else ''})", ""]
        lines += [head, "|---" * (6 + with_seconds) + "|"]
        for m in per_seed[0]["metrics"]:
            cells = [_cell([r["metrics"][m][c] for r in per_seed]) for c in columns]
            if with_seconds:
                cells.append(f"{np.mean([r['seconds'][m] for r in per_seed]):.0f}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join([*lines[:-1], f"<!-- {name}:end -->"])


#: The row that is the estimator's default, and the scores its docs name for abstaining and for OOD
#: ranking: what the verdicts judge against MAP (docs/benchmarks.md says why these).
DEFAULT_ROW = "VI lowrank, Bayesian head"
ABSTAIN_SCORE = "max_probability"
OOD_SCORE = "feature_distance"


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def verdicts(results: dict, row: str = DEFAULT_ROW) -> tuple[str, int, int]:
    """Issue 17's targets for ``row`` against MAP, one line per (task, seed); returns (table, met, total).

    ECE <= 0.5 x MAP's and <= MAP + temperature's; NLL < MAP's; accuracy >= MAP's - 0.01; AURC (by
    ``ABSTAIN_SCORE``) <= MAP's (by 1 - max probability); OOD AUROC (by ``OOD_SCORE``) >= MAP's
    (by 1 - max probability) on every OOD set of the task.
    """
    lines, met, total, header_pairs = [], 0, 0, None
    for task, per_seed in results.items():
        pairs = list(_get(per_seed[0]["metrics"].get("MAP (LoRA-XS)", {}), "ood") or {})
        if pairs != header_pairs:  # a header per set of OOD columns (single-text and pair tasks differ)
            header_pairs = pairs
            lines += [
                "",
                "| task | seed | ECE / MAP ≤ 0.5 | ECE ≤ MAP + T | NLL < MAP | accuracy ≥ MAP − 1 pt | AURC ≤ MAP | "
                + " | ".join(f"OOD ≥ MAP: {p}" for p in pairs)
                + " |",
                "|---" * (7 + len(pairs)) + "|",
            ]
        for r in per_seed:
            m = r["metrics"]
            if row not in m or "MAP (LoRA-XS)" not in m or "MAP + temperature" not in m:
                continue
            d, b, t = m[row], m["MAP (LoRA-XS)"], m["MAP + temperature"]
            checks = [
                (d["ece"] / b["ece"] <= 0.5, f"{d['ece'] / b['ece']:.3f}"),
                (d["ece"] <= t["ece"], f"{d['ece']:.3f} vs {t['ece']:.3f}"),
                (d["nll"] < b["nll"], f"{d['nll']:.3f} vs {b['nll']:.3f}"),
                (d["accuracy"] >= b["accuracy"] - 0.01, f"{100 * (d['accuracy'] - b['accuracy']):+.1f} pt"),
            ]
            a, ab = _get(d, "selective", ABSTAIN_SCORE, "aurc"), _get(b, "selective", "max_probability", "aurc")
            if a is not None and ab is not None:
                checks.append((a <= ab, f"{a:.3f} vs {ab:.3f}"))
            for pair in pairs:
                o, ob, mark = _get(d, "ood", pair, OOD_SCORE), _get(b, "ood", pair, "max_probability"), ""
                if o is None and OOD_SCORE == FEATURE_SCORE:  # a cell from before the row recorded its own
                    o, mark = _get(m.get(REFERENCE_ROW, {}), "ood", pair, "mahalanobis"), "†"
                if o is not None and ob is not None:
                    checks.append((o >= ob, f"{o:.3f}{mark} vs {ob:.3f}"))
            met += sum(ok for ok, _ in checks)
            total += len(checks)
            cells = " | ".join(f"{_mark(ok)} {text}" for ok, text in checks)
            lines.append(f"| {task} | {r['seed']} | {cells} |")
    return "\n".join(lines[1:]), met, total


BEGIN, END = "<!-- quality-table:begin -->", "<!-- quality-table:end -->"
PROTOCOL = ("n_train", "epochs", "n_samples", "n_test", "n_ood", "max_length")
#: Bumped when what a cell measures changes (2: OOD sets per task and selective prediction).
MEASURES = 2


def verdict_section(results: dict) -> str:
    """The verdict table under its heading, or nothing when no cell has the rows it needs."""
    text, met, total = verdicts(results)
    if not total:
        return ""
    return (
        f"\n### Targets: `{DEFAULT_ROW}` (the default) against MAP, per cell\n\n"
        f"AURC by {ABSTAIN_SCORE.replace('_', ' ')} of the default, OOD AUROC by "
        f"{OOD_SCORE.replace('_', ' ')} of the default, each against MAP's 1 − max probability"
        + (" († the MAP model's feature distance: cells run before rows recorded their own)" if "†" in text else "")
        + f". {met} of {total} checks met.\n\n{text}\n"
    )


def write_markdown(path: Path, args, results: dict) -> None:
    """Rewrite the block between the markers of ``path`` (created when missing); keep the rest."""
    done = {task: sorted(r["seed"] for r in per_seed) for task, per_seed in results.items()}
    protocol = "".join(f" --{k.replace('_', '-')} {getattr(args, k)}" for k in PROTOCOL if getattr(args, k) is not None)
    by_seeds: dict = {}  # one command per set of seeds, so the commands run exactly these cells
    for task, seeds in done.items():
        by_seeds.setdefault(tuple(seeds), []).append(task)
    command = "\n".join(
        f"python benchmarks/quality.py --datasets {' '.join(tasks)} --seeds {' '.join(map(str, seeds))}{protocol}"
        for seeds, tasks in by_seeds.items()
    )
    block = (
        f"{BEGIN}\nRegenerate this table with (a cell already in `benchmarks/results/quality.json` is skipped):"
        f"\n\n```bash\n{command}\n```\n\n"
        f"MiniLM-L6 backbone, rank 8, {args.n_train} training examples, {args.epochs} epochs, "
        f"{args.n_samples} posterior samples, at most {args.n_test or 'all'} test examples, "
        f"{args.n_ood} inputs per OOD set, max_length {args.max_length}; "
        "ECE with 15 equal-width bins; OOD AUROC separates the test set from each OOD set by a score "
        "(the first table: total entropy against the first OOD set). "
        "Mean ± std over the seeds run for each dataset (seeds per dataset: "
        + ", ".join(f"{t} {s}" for t, s in done.items())
        + ").\n\n"
        + table(results)
        + verdict_section(results)
        + f"\n{END}"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def save(path: Path, protocol: dict, results: dict) -> dict:
    """Write ``results`` merged with the cells another run wrote meanwhile (runs may share the file).

    Cells are (task, seed); a cell in ``results`` replaces the stored one of the same task and seed.
    Returns the merged results, seeds in ascending order per task.
    """
    merged, extra = {}, {}
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("protocol") == protocol:
            merged = {task: {r["seed"]: r for r in per_seed} for task, per_seed in stored["results"].items()}
            extra = {k: v for k, v in stored.items() if k not in ("protocol", "results")}  # e.g. "dropped"
    for task, per_seed in results.items():
        merged.setdefault(task, {}).update({r["seed"]: r for r in per_seed})
    merged = {task: [cells[s] for s in sorted(cells)] for task, cells in merged.items()}
    write_json_atomic(path, {"protocol": protocol, "results": merged, **extra}, indent=2)
    return merged


def write_json_atomic(path: Path, obj, indent: int | None = None) -> None:
    """Write ``obj`` as JSON through a per-process temporary file: readers and parallel runs never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=indent))
    tmp.replace(path)


def stored_results(path: Path, protocol: dict, fresh: bool = False) -> dict:
    """The cells stored in ``path`` for ``protocol``; empty for another protocol, a missing file or ``fresh``."""
    if fresh or not path.exists():
        return {}
    stored = json.loads(path.read_text())
    if stored.get("protocol") != protocol:
        print(f"[{path.stem}] {path} holds another protocol; starting over", flush=True)
        return {}
    return stored["results"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["sst2", "rte", "mrpc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n-samples", type=int, default=8, help="posterior samples per prediction")
    parser.add_argument("--n-test", type=int, default=400, help="cap on test examples (default: all)")
    parser.add_argument("--n-ood", type=int, default=200, help="inputs per OOD set")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--glue-dir", type=Path, default=DEFAULT_GLUE)
    parser.add_argument("--fresh", action="store_true", help="ignore cells already in the JSON file")
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="rewrite the Markdown table from the JSON file without running anything",
    )
    parser.add_argument("--label-prior", action="store_true", help="add the label-prior row to every stored cell")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "quality.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Some inputs are longer than max_length")
    protocol = {**{k: getattr(args, k) for k in PROTOCOL}, "measures": MEASURES}
    results = stored_results(args.output, protocol, args.fresh)
    if args.label_prior:
        results = save(args.output, protocol, add_label_prior(results, args.glue_dir, args))
    if args.table_only or args.label_prior:
        if not results:
            raise SystemExit(f"No results for this protocol in {args.output}; run without --table-only first.")
        write_markdown(args.markdown, args, results)
        print(table(results))
        return
    for seed in args.seeds:  # seed-major: every dataset gets a first seed before any gets a second
        for task in args.datasets:
            if any(r["seed"] == seed for r in results.get(task, [])):
                continue
            print(f"[quality] {task}, seed {seed}", flush=True)
            t0 = time.perf_counter()
            m, s = run_seed(task, args.glue_dir, seed, args)
            results.setdefault(task, []).append({"seed": seed, "metrics": m, "seconds": s, "device": device_name()})
            results = save(args.output, protocol, results)
            write_markdown(args.markdown, args, results)
            print(
                table({task: results[task]}),
                f"\n[quality] {task}, seed {seed}: {time.perf_counter() - t0:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Flagging unfamiliar inputs: every score of MAP and of the default, on CLINC150 and on pairs of tasks.

    python benchmarks/ood.py --worker 0/2 &    # cells not stored yet; two processes share them
    python benchmarks/ood.py --worker 1/2 &
    python benchmarks/ood.py --table-only      # rewrite the docs block from the stored cells
    python benchmarks/ood.py --quick           # the bookkeeping on a few texts (CI)

Protocol (MiniLM, the estimator's defaults unless a row says otherwise; tasks and splits of
``benchmarks/tasks.py``): per task and seed, a MAP fit and a default fit on the training budget
(500 examples; CLINC150: 20 per intent, 3,000). Each model scores its task's in-distribution texts
and out-of-distribution texts: CLINC150's out-of-scope queries, and the texts of every other task
(a *pair* ``in -> out``). Far pairs cross domains (reviews, news, questions); near pairs stay among
the review tasks (SST-2, SUBJ, CR). Metrics: AUROC, AUPR (out-of-distribution as the positive
class) and FPR at 95% TPR (the fraction of in-distribution texts flagged when 95% of the
unfamiliar ones are).

Choose on dev, report on test: ``k``, the normalisation of the nearest-neighbour distance and the
documented default score are chosen on the *choice pairs* (``CHOICE_PAIRS``), scored on the dev
splits; the table reports the other pairs on the test splits, and lists the choice pairs' test
numbers apart. Three seeds; differences are paired by seed, with a 95% t-interval.
Cells are stored one file each in benchmarks/results/ood/ (resumable, safe in parallel).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tasks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ood"
PAGE = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- ood:start -->", "<!-- ood:end -->"
SEEDS = (0, 1, 2)
SINGLE = ("sst2", "agnews", "trec", "subj", "cr")
REVIEWS = {"sst2", "subj", "cr"}
N_TRAIN = {"clinc150": 20}  # per intent; the other tasks: DEFAULT_N_TRAIN examples
DEFAULT_N_TRAIN = 500
#: Texts scored per split: the task's own, and each other task's (CLINC150: all out-of-scope queries).
N_IN = {"dev": 300, "test": 800}
N_OUT = {"dev": 150, "test": 300}
N_IN_CLINC = {"dev": 1500, "test": 2250}
#: (in, out) pairs on which k, the normalisation and the default score are chosen (dev splits only).
CHOICE_PAIRS = (
    ("clinc150", "oos"),
    ("sst2", "trec"),
    ("agnews", "cr"),
    ("trec", "subj"),
    ("subj", "agnews"),
    ("cr", "sst2"),
)
METHODS = {"MAP": {"posterior": "map"}, "default": {}}
KS = (1, 5, 10, 20, 50)


def shift(task: str, out: str) -> str:
    if out == "oos":
        return "out-of-scope"
    return "near" if {task, out} <= REVIEWS else "far"


def eval_sets(task_name: str, quick: bool) -> dict[str, dict[str, list[str]]]:
    """split -> {"in": texts, out-source: texts}."""
    task = tasks.load(task_name)
    cap = (lambda n: min(n, 20)) if quick else (lambda n: n)
    sets = {}
    for split in ("dev", "test"):
        own = getattr(task, split)[0]
        if task_name == "clinc150":
            oos = tasks.clinc_out_of_scope("val" if split == "dev" else split)
            sets[split] = {"in": tasks.sample(own, cap(N_IN_CLINC[split])), "oos": tasks.sample(oos, cap(len(oos)))}
            continue
        sets[split] = {"in": tasks.sample(own, cap(N_IN[split]))}
        for other in SINGLE:
            if other != task_name:
                texts = getattr(tasks.load(other), split)[0]
                sets[split][other] = tasks.sample(texts, cap(N_OUT[split]))
    return sets


def _grab(module, feats):
    """The scorer handed to the library's prediction pass: its own scores, the features and the energy."""
    import torch

    from subspace_bayes.feature_distance import familiarity_scores

    theta = module.posterior.mean.detach()[None]
    logits = module.head_logits(feats, theta).double()
    return {
        **familiarity_scores(module, feats),
        "features": feats.float().cpu().numpy(),
        "energy": (-torch.logsumexp(logits, -1)).cpu().numpy(),
    }


def predict_all(clf, texts: list[str]) -> dict:
    """Per-draw probabilities and the draw-averaged features of one prediction pass (the library's own)."""
    from subspace_bayes.predictive import predictive_samples_and_scores

    fn = functools.partial(predictive_samples_and_scores, scorer=_grab)
    probs, scores = clf._predict_many({"s": fn}, texts)["s"]
    return {"probs": probs, **scores}


def training_features(clf, X) -> np.ndarray:
    import torch

    from subspace_bayes.feature_distance import collect_features
    from subspace_bayes.text import TextDataset, coerce_texts

    loader = clf._loader(TextDataset(coerce_texts(X)))
    batches = (
        {**{k: v.to(clf.device_) for k, v in Xi.items()}, "labels": torch.zeros(len(Xi["input_ids"]))}
        for Xi, _ in loader
    )
    return collect_features(clf.module_, batches)[0].numpy()


def _unit(F: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
    F = F if centre is None else F - centre
    return F / np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-12)


def knn_variants(train: np.ndarray, query: np.ndarray) -> dict[str, np.ndarray]:
    """The k-th neighbour cosine distance for every k of KS, on raw and on centred features."""
    import torch

    from subspace_bayes.feature_distance import kth_neighbour_distance

    out = {}
    for norm, centre in (("cosine", None), ("centred cosine", train.mean(0))):
        ref, q = (torch.from_numpy(_unit(a, centre)).float() for a in (train, query))
        for k in KS:
            out[f"kNN {norm}, k={k}"] = kth_neighbour_distance(q, ref, k).double().numpy()
    return out


def relative_mahalanobis(clf, train: np.ndarray, query: np.ndarray, class_distance: np.ndarray) -> np.ndarray:
    """``min_c MD_c(x) - MD_0(x)`` (Ren et al. 2021): ``MD_0`` of one Gaussian fitted to all training features."""
    import torch

    from subspace_bayes.feature_distance import fit_feature_gaussian, mahalanobis_distance

    background = fit_feature_gaussian(torch.from_numpy(train), torch.zeros(len(train)), 1)
    return class_distance - mahalanobis_distance(torch.from_numpy(query), **background).numpy()


def all_scores(clf, method: str, train: np.ndarray, out: dict) -> dict[str, np.ndarray]:
    """Every score of one set of texts under one model (higher = less familiar)."""
    from subspace_bayes.predictive import uncertainty_scores

    probs = uncertainty_scores(out["probs"])
    scores = {"1 - max p": probs["max_probability"], "entropy": probs["total"]}
    if method == "MAP":
        scores["energy"] = out["energy"]
    else:
        scores["epistemic"] = probs["epistemic"]
    scores["Mahalanobis"] = out["feature_distance"]
    scores["relative Mahalanobis"] = relative_mahalanobis(clf, train, out["features"], out["feature_distance"])
    scores["novelty (library)"] = out["novelty"]
    scores["knn_distance (library)"] = out["knn_distance"]
    return {**scores, **knn_variants(train, out["features"])}


def detection(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR (out as positive) and the FPR at 95% TPR of a score (higher = flagged)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    s = np.r_[in_scores, out_scores]
    threshold = np.quantile(out_scores, 0.05)  # 95% of the unfamiliar texts score at least this
    return {
        "auroc": round(float(roc_auc_score(y, s)), 5),
        "aupr": round(float(average_precision_score(y, s)), 5),
        "fpr95": round(float(np.mean(in_scores >= threshold)), 5),
    }


def quality(clf, y_true, probs: np.ndarray) -> dict[str, float]:
    from subspace_bayes.metrics import expected_calibration_error

    y = np.searchsorted(clf.classes_, np.asarray(y_true))
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-12, None)
    return {
        "accuracy": round(float((probs.argmax(1) == y).mean()), 5),
        "nll": round(float(-np.log(p_true).mean()), 5),
        "ece": round(float(expected_calibration_error(y, probs, labels=np.arange(probs.shape[1]))), 5),
    }


def _labels_of(task, texts: list[str], split: str) -> np.ndarray:
    X, y = getattr(task, split)
    where = {t: i for i, t in enumerate(X)}
    return y[[where[t] for t in texts]]


def run_method(task, method: str, X, y, seed: int, sets: dict, quick: bool) -> dict:
    from subspace_bayes import BayesianSubspaceClassifier

    extra = {"max_epochs": 1} if quick else {}
    start = time.time()
    clf = BayesianSubspaceClassifier(random_state=seed, verbose=0, **METHODS[method], **extra).fit(X, y)
    result = {"fit_seconds": round(time.time() - start, 1), "quality": {}, "detection": {}, "flagged": {}}
    train = training_features(clf, X)
    for split, named in sets.items():
        outputs = {name: predict_all(clf, texts) for name, texts in named.items()}
        scored = {name: all_scores(clf, method, train, out) for name, out in outputs.items()}
        s_in, probs_in = scored["in"], outputs["in"]["probs"].mean(0)
        result["quality"][split] = quality(clf, _labels_of(task, named["in"], split), probs_in)
        result["flagged"][split] = {
            f"{lvl}": round(float(np.mean(s_in["novelty (library)"] > lvl)), 5) for lvl in (0.9, 0.95, 0.99)
        }
        result["detection"][split] = {
            out: {score: detection(s_in[score], scored[out][score]) for score in s_in} for out in named if out != "in"
        }
    return result


def label_prior(task, y_train, sets: dict) -> dict:
    classes, counts = np.unique(np.asarray(y_train), return_counts=True)
    prior = counts / counts.sum()
    out = {}
    for split, named in sets.items():
        y = np.asarray(_labels_of(task, named["in"], split))
        idx = np.searchsorted(classes, y)
        known = (idx < len(classes)) & (classes[np.minimum(idx, len(classes) - 1)] == y)
        p_true = np.where(known, prior[np.minimum(idx, len(classes) - 1)], 1e-12)
        out[split] = {
            "accuracy": round(float(np.mean(y == classes[prior.argmax()])), 5),
            "nll": round(float(-np.log(p_true).mean()), 5),
        }
    return out


def run_cell(task_name: str, seed: int, quick: bool = False) -> dict:
    import torch

    torch.set_num_threads(1)
    task = tasks.load(task_name)
    X, y = task.train(N_TRAIN.get(task_name, DEFAULT_N_TRAIN), seed)
    if quick:
        X, y = task.train(4 if task_name == "clinc150" else 40, seed)
    sets = eval_sets(task_name, quick)
    cell = {"task": task_name, "seed": seed, "n_train": len(X), "label prior": label_prior(task, y, sets)}
    cell["sizes"] = {split: {k: len(v) for k, v in named.items()} for split, named in sets.items()}
    for method in METHODS:
        cell[method] = run_method(task, method, X, y, seed, sets, quick)
    return cell


def cell_file(task: str, seed: int) -> Path:
    return tasks.cell_path(RESULTS, task, seed)


def load_cells() -> dict:
    return tasks.load_cells(RESULTS, ("clinc150", *SINGLE), SEEDS)


def pairs_of(cells: dict) -> list[tuple[str, str]]:
    seen = []
    for (task, _), cell in sorted(cells.items()):
        for out in cell["default"]["detection"]["test"]:
            if (task, out) not in seen:
                seen.append((task, out))
    return seen


def values(cells: dict, method: str, score: str, pair: tuple[str, str], split: str, metric: str = "auroc") -> list:
    task, out = pair
    return [
        cells[(task, s)][method]["detection"][split][out][score][metric]
        for s in SEEDS
        if (task, s) in cells and score in cells[(task, s)][method]["detection"][split].get(out, {})
    ]


def candidates(cells: dict) -> list[tuple[str, str]]:
    """(method, score) of every score stored, MAP first."""
    some = next(iter(cells.values()))
    return [(m, sc) for m in METHODS for sc in some[m]["detection"]["dev"][next(iter(some[m]["detection"]["dev"]))]]


def choice_auroc(cells: dict, method: str, score: str) -> float:
    """Mean dev AUROC over the choice pairs and seeds (each pair weighs the same)."""
    per_pair = [np.mean(v) for pair in CHOICE_PAIRS if (v := values(cells, method, score, pair, "dev"))]
    return float(np.mean(per_pair)) if per_pair else float("nan")


def choose(cells: dict) -> dict:
    """The rule, fixed before the runs: the kNN variant with the best mean dev AUROC on the choice pairs
    (the default model), then the default score: the best of that variant, Mahalanobis, relative
    Mahalanobis and the predictive's scores, by the same number."""
    knn = [sc for m, sc in candidates(cells) if m == "default" and sc.startswith("kNN ")]
    best_knn = max(knn, key=lambda sc: choice_auroc(cells, "default", sc))
    pool = [best_knn, "Mahalanobis", "relative Mahalanobis", "1 - max p", "entropy", "epistemic"]
    best = max(pool, key=lambda sc: choice_auroc(cells, "default", sc))
    return {
        "knn": best_knn,
        "default_score": best,
        "dev_auroc": {sc: round(choice_auroc(cells, "default", sc), 4) for sc in [*knn, *pool[1:]]},
    }


def paired(a: list[float], b: list[float]) -> tuple[float, float, int] | None:
    """Paired by seed: ``a - b`` with its 95% t-interval (None unless both have the same seeds, at least 2)."""
    return tasks.t_interval(np.asarray(a) - np.asarray(b)) if len(a) == len(b) else None


def _diff_text(diff) -> str:
    return tasks.verdict(diff, lower_is_better=False)  # AUROC: higher is better


def _pair_name(pair: tuple[str, str]) -> str:
    task, out = pair
    return f"{task} → {'out-of-scope' if out == 'oos' else out}"


def row_scores(choice: dict) -> list[tuple[str, str, str]]:
    """(label, method, score) of the table's rows."""
    knn = choice["knn"]
    return [
        ("MAP: 1 − max p", "MAP", "1 - max p"),
        ("MAP: energy", "MAP", "energy"),
        ("MAP: Mahalanobis", "MAP", "Mahalanobis"),
        (f"MAP: {knn}", "MAP", knn),
        ("default: 1 − max p", "default", "1 - max p"),
        ("default: epistemic", "default", "epistemic"),
        ("default: Mahalanobis", "default", "Mahalanobis"),
        ("default: relative Mahalanobis", "default", "relative Mahalanobis"),
        (f"default: {knn}", "default", knn),
        ("default: novelty as stored (kNN cosine, k=10: the k before the choice)", "default", "novelty (library)"),
    ]


def _mean_text(v: list[float]) -> str:
    return f"{np.mean(v):.3f}" if v else "n/a"


def group_cells(cells: dict, method: str, score: str, pairs: list, metric: str = "auroc") -> str:
    """Mean over pairs and seeds, and the worst pair's mean (for more than one pair)."""
    means = [np.mean(v) for p in pairs if (v := values(cells, method, score, p, "test", metric))]
    if not means:
        return "n/a"
    return f"{np.mean(means):.3f}" + (f" (worst {min(means):.3f})" if len(means) > 1 else "")


def detection_table(cells: dict, choice: dict, reported: list) -> list[str]:
    oos = [p for p in reported if p[1] == "oos"]
    far = [p for p in reported if shift(*p) == "far"]
    near = [p for p in reported if shift(*p) == "near"]
    lines = [
        f"| score | CLINC150 out-of-scope AUROC | AUPR | FPR@95 | far pairs ({len(far)}) AUROC "
        f"| near pairs ({len(near)}) AUROC |",
        "|---|---|---|---|---|---|",
    ]
    for label, method, score in row_scores(choice):
        cols = [group_cells(cells, method, score, oos, m) for m in ("auroc", "aupr", "fpr95")]
        cols += [group_cells(cells, method, score, far), group_cells(cells, method, score, near)]
        lines.append(f"| {label} | " + " | ".join(cols) + " |")
    return lines


def pair_table(cells: dict, choice: dict, pairs: list) -> list[str]:
    best = choice["default_score"]
    lines = [
        f"| pair | shift | seeds | MAP 1 − max p | default {best} | difference, ± 95% t-interval |",
        "|---|---|---|---|---|---|",
    ]
    for pair in pairs:
        a, b = values(cells, "default", best, pair, "test"), values(cells, "MAP", "1 - max p", pair, "test")
        lines.append(
            f"| {_pair_name(pair)} | {shift(*pair)} | {len(a)} | {_mean_text(b)} | {_mean_text(a)} | "
            f"{_diff_text(paired(a, b))} |"
        )
    return lines


def headline(cells: dict, choice: dict, reported: list) -> str:
    """One generated sentence: how the chosen score fares against MAP's 1 - max p and the 0.95 goal."""
    best = choice["default_score"]
    verdicts: dict[str, list[str]] = {"better": [], "no difference detected": [], "worse": []}
    for pair in reported:
        text = _diff_text(
            paired(values(cells, "default", best, pair, "test"), values(cells, "MAP", "1 - max p", pair, "test"))
        )
        for verdict, names in verdicts.items():
            if text.endswith(f"({verdict})"):
                names.append(_pair_name(pair))
    far = [p for p in reported if shift(*p) in ("far", "out-of-scope")]
    low = [f"{_pair_name(p)} {np.mean(values(cells, 'default', best, p, 'test')):.3f}" for p in far]
    low = [t for t, p in zip(low, far, strict=True) if np.mean(values(cells, "default", best, p, "test")) < 0.95]
    parts = [
        f"{verdict} on {len(names)}" + (f" ({', '.join(names)})" if names and verdict != "better" else "")
        for verdict, names in verdicts.items()
    ]
    return (
        f"Headline (test, reported pairs): the default's {best} against MAP's 1 − max p: " + "; ".join(parts) + ". "
        f"Far-shift pairs and CLINC150 with a mean AUROC of at least 0.95: {len(far) - len(low)} of {len(far)}"
        + (f" (below: {', '.join(low)})." if low else ".")
    )


def task_table(cells: dict) -> list[str]:
    lines = [
        "| task | n train | seeds | label prior accuracy | MAP accuracy | default accuracy | "
        "in-distribution test texts with novelty > 0.95 | > 0.99 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in ("clinc150", *SINGLE):
        have = [cells[(task, s)] for s in SEEDS if (task, s) in cells]
        if not have:
            continue
        cols = [
            np.mean([c["label prior"]["test"]["accuracy"] for c in have]),
            np.mean([c["MAP"]["quality"]["test"]["accuracy"] for c in have]),
            np.mean([c["default"]["quality"]["test"]["accuracy"] for c in have]),
            np.mean([c["default"]["flagged"]["test"]["0.95"] for c in have]),
            np.mean([c["default"]["flagged"]["test"]["0.99"] for c in have]),
        ]
        lines.append(f"| {task} | {have[0]['n_train']} | {len(have)} | " + " | ".join(f"{v:.3f}" for v in cols) + " |")
    return lines


def render(cells: dict) -> str:
    choice = choose(cells)
    pairs = pairs_of(cells)
    # CLINC150's test split is reported with the others (only its validation split was among the choice pairs)
    reported = [p for p in pairs if p not in CHOICE_PAIRS or p[1] == "oos"]
    chosen = [p for p in pairs if p in CHOICE_PAIRS and p[1] != "oos"]
    seeds = sorted({s for _, s in cells})
    dev_rows = sorted(choice["dev_auroc"].items(), key=lambda kv: -kv[1])
    lines = [
        START,
        "## Unfamiliar inputs: which score flags them (issue 26)",
        "",
        "`python benchmarks/ood.py` (protocol in its docstring; tasks and splits in `benchmarks/tasks.py`). MiniLM, "
        f"seeds {seeds}; per task and seed a MAP fit and a default fit on {DEFAULT_N_TRAIN} training examples "
        f"(CLINC150: {N_TRAIN['clinc150']} per intent). In-distribution texts: {N_IN['test']} of the task's test split "
        f"(CLINC150: {N_IN_CLINC['test']}); unfamiliar texts: {N_OUT['test']} of each other task's test split, or "
        "CLINC150's 1,000 out-of-scope test queries. Far pairs cross domains (reviews / news / questions); near "
        "pairs stay among the review tasks (SST-2, SUBJ, CR). Feature scores read the features of the prediction "
        "pass itself (averaged over the default's 8 draws).",
        "",
        "**The choice (dev splits, choice pairs only):** "
        + ", ".join(_pair_name(p) for p in CHOICE_PAIRS)
        + f" ({N_IN['dev']} in-distribution dev texts against {N_OUT['dev']} of the other task's dev split; CLINC150: "
        f"{N_IN_CLINC['dev']} validation queries against its 100 out-of-scope validation queries). Rule fixed before "
        "the runs: the nearest-neighbour variant (k, raw or centred cosine) with the best mean dev AUROC on the choice "
        "pairs, then the default score by the same number. Mean dev AUROC, default model:",
        "",
        "| score | mean dev AUROC, choice pairs |",
        "|---|---|",
        *[f"| {sc} | {v:.3f} |" for sc, v in dev_rows],
        "",
        f"Chosen: **{choice['knn']}** as the nearest-neighbour variant, and **{choice['default_score']}** as the score "
        "to document.",
        "",
        "**Test (reported pairs: the choice pairs left out; CLINC150's test queries, whose validation split was "
        "among them, are reported)**, mean over seeds and pairs (worst pair's mean):",
        "",
        *detection_table(cells, choice, reported),
        "",
        headline(cells, choice, reported),
        "",
        "**Per pair (test)**: the chosen score against MAP's 1 − max p, paired by seed:",
        "",
        *pair_table(cells, choice, reported),
        "",
        "The choice pairs on their test splits (listed apart: their dev splits made the choice):",
        "",
        *pair_table(cells, choice, chosen),
        "",
        "**The tasks (test), and how many familiar inputs the novelty level flags** (a calibrated level flags 5% "
        "at 0.95 and 1% at 0.99; novelty as stored in the cells, k = 10):",
        "",
        *task_table(cells),
        *(["", *calibration_lines(json.loads(CALIBRATION.read_text()))] if CALIBRATION.exists() else []),
        *(["", *cost_lines(json.loads(COST.read_text()))] if COST.exists() else []),
        END,
    ]
    return "\n".join(lines)


COST = RESULTS / "cost.json"
CALIBRATION = RESULTS / "calibration.json"
LEVELS = (0.9, 0.95, 0.99)


def measure_calibration(seed: int = 0) -> dict:
    """How many familiar inputs each novelty level flags, with the library's ``k`` after the choice.

    The cells above stored the novelty of the ``k`` in force when they ran; this re-fits the default on each
    single-text task (seed ``seed``, the same training examples) and scores its in-distribution dev and test
    texts with today's ``KNN_K``.
    """
    from subspace_bayes import BayesianSubspaceClassifier
    from subspace_bayes.feature_distance import KNN_K

    out = {"k": KNN_K, "seed": seed, "tasks": {}}
    for name in SINGLE:
        task = tasks.load(name)
        X, y = task.train(DEFAULT_N_TRAIN, seed)
        clf = BayesianSubspaceClassifier(random_state=seed, verbose=0).fit(X, y)
        sets = eval_sets(name, quick=False)
        out["tasks"][name] = {
            split: {
                f"{lvl}": round(float(np.mean(clf.predict_uncertainty(sets[split]["in"])["novelty"] > lvl)), 5)
                for lvl in LEVELS
            }
            for split in ("dev", "test")
        }
        print(name, out["tasks"][name], flush=True)
    CALIBRATION.write_text(json.dumps(out, indent=1) + "\n")
    return out


def calibration_lines(cal: dict) -> list[str]:
    lines = [
        f"**The novelty levels with k = {cal['k']}** (`python benchmarks/ood.py --calibration`; the cells above "
        f"stored novelty with the k before the choice, 10): the default refitted on each single-text task (seed "
        f"{cal['seed']}, the same training examples), the fraction of its in-distribution texts flagged:",
        "",
        "| task | dev > 0.9 | dev > 0.95 | dev > 0.99 | test > 0.9 | test > 0.95 | test > 0.99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, splits in cal["tasks"].items():
        cols = [f"{splits[split][f'{lvl}']:.3f}" for split in ("dev", "test") for lvl in LEVELS]
        lines.append(f"| {name} | " + " | ".join(cols) + " |")
    return lines


def _seconds(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure_cost(n_train: int = 800, n_pred: int = 400) -> dict:
    """What the feature scores add to a prediction call: the same call with and without the statistics.

    The default model on ``n_train`` SST-2 sentences; timings on ``n_pred`` validation sentences, median of
    3, all threads of this machine. The 10,000-row row re-times with a reference of MAX_REFERENCE random unit
    rows installed (the cost depends only on its size), the most a fit keeps.
    """
    import copy

    import torch

    from subspace_bayes import BayesianSubspaceClassifier
    from subspace_bayes.datasets import load_sst2
    from subspace_bayes.feature_distance import MAX_REFERENCE, FeatureGaussian, FeatureNeighbours

    X, y = load_sst2("train", n=n_train, random_state=0)
    X_pred = load_sst2("validation")[0][:n_pred]
    clf = BayesianSubspaceClassifier(random_state=0, verbose=0).fit(X, y)
    bare = copy.deepcopy(clf)
    bare.module_.feature_gaussian, bare.module_.feature_neighbours = FeatureGaussian(), FeatureNeighbours()
    big = copy.deepcopy(clf)
    g = torch.Generator().manual_seed(0)
    H = clf.module_.feature_neighbours.reference.shape[1]
    big.module_.feature_neighbours.fit(torch.randn(MAX_REFERENCE, H, generator=g))
    both = lambda c: c.predict(X_pred, return_proba=True, return_uncertainty=True)
    out = {
        "n_train": n_train,
        "n_pred": n_pred,
        "threads": torch.get_num_threads(),
        "predict_proba": _seconds(lambda: clf.predict_proba(X_pred)),
        "all three, no feature scores": _seconds(lambda: both(bare)),
        f"all three, feature scores ({n_train} neighbours)": _seconds(lambda: both(clf)),
        f"all three, feature scores ({MAX_REFERENCE} neighbours)": _seconds(lambda: both(big)),
    }
    COST.write_text(json.dumps(out, indent=1) + "\n")
    return out


def cost_lines(cost: dict) -> list[str]:
    base, bare = cost["predict_proba"], cost["all three, no feature scores"]
    lines = [
        f"**What the scores cost** (`python benchmarks/ood.py --cost`): the default model on {cost['n_train']} SST-2 "
        f"sentences, {cost['n_pred']} validation sentences per call, median of 3, {cost['threads']} threads. "
        "`predict(X, return_proba=True, return_uncertainty=True)` with and without the feature statistics; the "
        "10,000-neighbour row uses random unit rows of that size (the cost depends only on the size).",
        "",
        "| call | seconds | / predict_proba | feature scores add, / predict_proba |",
        "|---|---|---|---|",
    ]
    for key, secs in cost.items():
        if key in ("n_train", "n_pred", "threads"):
            continue
        added = f"{(secs - bare) / base:+.1%}" if key.startswith("all three, feature") else ""
        lines.append(f"| {key} | {secs:.2f} | {secs / base:.3f} | {added} |")
    return lines


def write_block(block: str) -> None:
    text = PAGE.read_text()
    if START in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    PAGE.write_text(text)


def run_worker(worker: str) -> None:
    tasks.run_cells(RESULTS, [(t, s) for s in SEEDS for t in ("clinc150", *SINGLE)], run_cell, worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", default="0/1", help="i/n: run every n-th missing cell from the i-th")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="two tiny cells, nothing written: the bookkeeping")
    parser.add_argument("--cost", action="store_true", help="time the feature scores (on an idle machine)")
    parser.add_argument("--calibration", action="store_true", help="novelty levels with today's k (5 fits)")
    args = parser.parse_args()
    if args.calibration:
        print("\n".join(calibration_lines(measure_calibration())))
        return
    if args.cost:
        print("\n".join(cost_lines(measure_cost())))
        return
    if args.quick:
        cells = {(t, 0): run_cell(t, 0, quick=True) for t in ("clinc150", "sst2")}
        print(render(cells))
        return
    if not args.table_only:
        run_worker(args.worker)
    cells = load_cells()
    if cells:
        write_block(render(cells))
        print(render(cells))


if __name__ == "__main__":
    main()

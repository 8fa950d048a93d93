"""The demo: MAP vs MAP + temperature scaling vs Bayesian posteriors on bundled SST-2, with AG News as OOD."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import load_agnews_ood, load_sst2
from .metrics import (
    accuracy_at_coverage,
    aurc,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    ood_auroc,
)
from .options import Predictive
from .predictive import UNCERTAINTY_SCORES, uncertainty_scores

__all__ = ["DemoConfig", "run_demo", "format_table", "method_label"]

logger = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Sizes and settings of a demo run (defaults: the full run, about 13 minutes on 2 CPU cores)."""

    n_train: int = 800
    n_calibration: int = 300
    n_validation: int | None = None  # None: all 872 sentences
    n_ood: int = 300
    max_epochs: int = 12
    n_samples: int | None = None  # None: the estimator's default
    rank: int = 8
    backbone: str = "minilm"
    random_state: int = 0
    methods: tuple[str, ...] = ("map", "map+temperature", "vi", "swag", "laplace")
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls) -> DemoConfig:
        """About 2 minutes on 2 CPU cores."""
        return cls(n_train=200, n_calibration=100, n_validation=200, n_ood=100, max_epochs=4, n_samples=4)


_COVARIANCE_WORDS = {"diag": "diagonal", "lowrank": "low-rank", "full": "full"}


def _estimator_default(name: str) -> Any:
    """The default of one of ``BayesianSubspaceClassifier``'s parameters (the demo follows the estimator)."""
    from .estimator import BayesianSubspaceClassifier

    return BayesianSubspaceClassifier().get_params(deep=False)[name]


def method_label(key: str) -> str:
    """The demo's name for a method (the VI row names the estimator's default covariance)."""
    return {
        "map": "MAP (LoRA-XS)",
        "map+temperature": "MAP + temperature scaling",
        "vi": "VI, {covariance} covariance, Bayesian head",
        "swag": "SWAG (B-LoRA-XS)",
        "laplace": "Laplace, full GGN (L-LoRA-XS)",
    }[key].format(covariance=_COVARIANCE_WORDS[_estimator_default("covariance")])


#: The scores of the features rather than the predictive (``predict_uncertainty``'s).
FEATURE_SCORES = ("novelty", "feature_distance")


def _with_feature_scores(clf, X, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    features = clf.predict_uncertainty(X)
    return {**scores, **{k: features[k] for k in FEATURE_SCORES}}


def _row(name, y, proba, scores_in, scores_out, fit_s, predict_s) -> dict[str, Any]:
    """Metrics of one method: calibration, selective prediction and OOD AUROC per uncertainty score."""
    return {
        "method": name,
        "accuracy": float(np.mean(proba.argmax(1) == y)),
        "ece": expected_calibration_error(y, proba),
        "nll": negative_log_likelihood(y, proba),
        "brier": brier_score(y, proba),
        "aurc": aurc(y, proba),
        "accuracy_at_90": accuracy_at_coverage(y, proba, 0.9),
        **{f"ood_auroc_{k}": ood_auroc(scores_in[k], scores_out[k]) for k in (*UNCERTAINTY_SCORES, *FEATURE_SCORES)},
        "fit_seconds": fit_s,
        "predict_seconds": predict_s,
    }


def _calibrated_map(map_clf, X_cal, y_cal):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    # method="temperature" exists from scikit-learn 1.8 on (the floor in pyproject.toml).
    return CalibratedClassifierCV(FrozenEstimator(map_clf), method="temperature").fit(X_cal, y_cal)


@dataclass
class _DemoData:
    X_train: list[str]
    y_train: np.ndarray
    X_cal: list[str]
    y_cal: np.ndarray
    X_val: list[str]
    y_val: np.ndarray
    X_ood: list[str]


def _demo_data(cfg: DemoConfig) -> _DemoData:
    """Disjoint training and calibration draws from the bundled SST-2 sample; validation; AG News as OOD."""
    rng = np.random.RandomState(cfg.random_state)
    X_pool, y_pool = load_sst2("train")
    idx = rng.permutation(len(X_pool))
    tr, cal = idx[: cfg.n_train], idx[cfg.n_train : cfg.n_train + cfg.n_calibration]
    X_val, y_val = load_sst2("validation", n=cfg.n_validation, random_state=cfg.random_state)
    return _DemoData(
        [X_pool[i] for i in tr],
        y_pool[tr],
        [X_pool[i] for i in cal],
        y_pool[cal],
        X_val,
        y_val,
        load_agnews_ood(n=cfg.n_ood, random_state=cfg.random_state),
    )


def _run_method(key: str, data: _DemoData, common: dict[str, Any], fitted: dict[str, Any]):
    """Fit (or calibrate) one method; its validation probabilities, uncertainties in and out, and seconds."""
    from .estimator import BayesianSubspaceClassifier

    if key == "map+temperature":
        t0 = time.perf_counter()
        model = _calibrated_map(fitted["map"], data.X_cal, data.y_cal)
        fit_s = fitted["map_fit_s"] + time.perf_counter() - t0
        t0 = time.perf_counter()
        p_val, p_ood = model.predict_proba(data.X_val), model.predict_proba(data.X_ood)
        predict_s = time.perf_counter() - t0
        u_val, u_ood = uncertainty_scores(p_val[None]), uncertainty_scores(p_ood[None])
        # temperature scaling leaves the features alone: the MAP model's distances
        for key in FEATURE_SCORES:
            u_val[key], u_ood[key] = fitted["map_distances"][key]
        return p_val, u_val, u_ood, fit_s, predict_s
    clf = BayesianSubspaceClassifier(posterior=key, **common)
    t0 = time.perf_counter()
    clf.fit(data.X_train, data.y_train)
    fit_s = time.perf_counter() - t0
    fitted[key], fitted[f"{key}_fit_s"] = clf, fit_s
    t0 = time.perf_counter()  # the time a user waits for predict_proba, with the default predictive
    if Predictive(clf.predictive) is Predictive.PROBIT:  # a closed-form mean: the draws are extra work
        p_val = clf.predict_proba(data.X_val)
        predict_s = time.perf_counter() - t0
        s_val = clf.predict_sample_proba(data.X_val)
    else:  # predict_proba is the mean of these same draws: compute them once
        s_val = clf.predict_sample_proba(data.X_val)
        p_val = s_val.mean(0)
        predict_s = time.perf_counter() - t0
    s_ood = clf.predict_sample_proba(data.X_ood)
    u_val = _with_feature_scores(clf, data.X_val, uncertainty_scores(s_val))
    u_ood = _with_feature_scores(clf, data.X_ood, uncertainty_scores(s_ood))
    fitted[f"{key}_distances"] = {k: (u_val[k], u_ood[k]) for k in FEATURE_SCORES}
    return p_val, u_val, u_ood, fit_s, predict_s


def _write_outputs(out: Path, rows: list[dict], meta: dict, y_val: np.ndarray, probas: dict, uncertainties: dict):
    from .plotting import plot_reliability, plot_uncertainty_histograms

    (out / "results.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    (out / "results.md").write_text(_markdown(rows, meta))
    plot_reliability(y_val, probas).savefig(out / "reliability.png", dpi=120)
    bayes = [k for k in uncertainties if "VI" in k] or list(uncertainties)
    u_in, u_out = uncertainties[bayes[0]]  # uncertainty_scores of the validation and OOD texts
    keys = ("total", "epistemic", *FEATURE_SCORES)
    fig = plot_uncertainty_histograms({k: u_in[k] for k in keys}, {k: u_out[k] for k in keys})
    fig.suptitle(f"{bayes[0]}: SST-2 validation vs AG News", fontsize=9)
    fig.savefig(out / "uncertainty.png", dpi=120)


def run_demo(output_dir: str | Path, config: DemoConfig | None = None, verbose: int = 1) -> list[dict[str, Any]]:
    """Train and compare the methods; write ``results.md``, ``results.json``, two PNG figures and, for the
    default (VI) model, its adapter folder ``model/`` with a model card evaluated on the validation sentences.

    Returns
    -------
    list of dict, one row of metrics per method.
    """
    from .estimator import BayesianSubspaceClassifier

    cfg = config or DemoConfig()
    cfg = replace(cfg, n_samples=cfg.n_samples or _estimator_default("n_samples"))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _demo_data(cfg)
    common = dict(
        backbone=cfg.backbone,
        rank=cfg.rank,
        max_epochs=cfg.max_epochs,
        n_samples=cfg.n_samples,
        random_state=cfg.random_state,
        verbose=verbose,
        **cfg.extra,
    )
    rows, probas, uncertainties = [], {}, {}
    fitted: dict[str, Any] = {}
    for key in cfg.methods:
        label = method_label(key)
        logger.info("%s: training on %d sentences", label, len(data.X_train))
        p_val, u_val, u_ood, fit_s, predict_s = _run_method(key, data, common, fitted)
        rows.append(_row(label, data.y_val, p_val, u_val, u_ood, fit_s, predict_s))
        probas[label], uncertainties[label] = p_val, (u_val, u_ood)
        logger.info("%s\n%s", label, format_table(rows[-1:]))
    meta = {
        "config": asdict(cfg),
        "n_train": len(data.X_train),
        "n_validation": len(data.X_val),
        "n_ood": len(data.X_ood),
    }
    _write_outputs(out, rows, meta, data.y_val, probas, uncertainties)
    default = fitted.get(BayesianSubspaceClassifier().posterior)  # the default model, shared with its card
    if default is not None:
        default.save_adapter(out / "model", eval_data=(data.X_val, data.y_val))
    return rows


_COLUMNS = [
    ("method", "method", "{}"),
    ("accuracy", "acc", "{:.3f}"),
    ("ece", "ECE", "{:.3f}"),
    ("nll", "NLL", "{:.3f}"),
    ("brier", "Brier", "{:.3f}"),
    ("aurc", "AURC", "{:.3f}"),
    ("accuracy_at_90", "acc @ 90%", "{:.3f}"),
    ("ood_auroc_max_probability", "OOD AUROC (1 − max p)", "{:.3f}"),
    ("ood_auroc_total", "OOD AUROC (total)", "{:.3f}"),
    ("ood_auroc_epistemic", "OOD AUROC (epistemic)", "{:.3f}"),
    ("ood_auroc_logit_variance", "OOD AUROC (logit var.)", "{:.3f}"),
    ("ood_auroc_novelty", "OOD AUROC (novelty)", "{:.3f}"),
    ("ood_auroc_feature_distance", "OOD AUROC (feature dist.)", "{:.3f}"),
    ("fit_seconds", "fit s", "{:.0f}"),
    ("predict_seconds", "predict s", "{:.0f}"),
]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of result rows."""
    head = "| " + " | ".join(h for _, h, _ in _COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in _COLUMNS) + "|"
    body = [
        "| "
        + " | ".join("n/a" if isinstance(r[k], float) and math.isnan(r[k]) else f.format(r[k]) for k, _, f in _COLUMNS)
        + " |"
        for r in rows
    ]
    return "\n".join([head, sep, *body])


def _markdown(rows, meta) -> str:
    cfg = meta["config"]
    return (
        "# Demo results\n\n"
        f"Backbone `{cfg['backbone']}`, rank {cfg['rank']}, {meta['n_train']} SST-2 training sentences, "
        f"{cfg['max_epochs']} epochs, {cfg['n_samples']} posterior samples; metrics on {meta['n_validation']} "
        f"SST-2 validation sentences; OOD AUROC against {meta['n_ood']} AG News snippets, per uncertainty "
        "score (1 − max probability, total entropy, epistemic = mutual information, variance of the logits "
        "over draws, and `predict_uncertainty`'s novelty (nearest training neighbours) and feature distance "
        "(Mahalanobis)). AURC: area under the "
        "risk–coverage curve when abstaining by 1 − max probability "
        "(lower is better); acc @ 90%: accuracy on the 90% most confident sentences. "
        "predict s: the posterior draws on the validation sentences, whose mean is `predict_proba` (the "
        "time of one `predict_proba` call; the same draws give the scores). "
        "SWAG trains as MAP for the first half of the epochs and collects its snapshots over the last "
        f"{cfg['max_epochs'] - cfg['max_epochs'] // 2} (its default `swag_start`). Temperature scaling is fitted on "
        f"{cfg['n_calibration']} held-out training sentences. One seed (`random_state={cfg['random_state']}`): "
        "illustrative, not a comparison with intervals (docs/benchmarks.md has those). "
        "Written by `subspace-bayes demo`.\n\n"
        + format_table(rows)
        + "\n\n![reliability](reliability.png)\n\n![uncertainty](uncertainty.png)\n"
    )

"""Sharing a fitted model: its model card, and the Hugging Face Hub both ways.

The card (``README.md`` in an adapter folder) has YAML metadata that the Hub reads
(``library_name``, ``base_model``, ``pipeline_tag``, tags), what was fitted (posterior,
covariance, rank, projection, ``D``, effective rank, training size, classes) and, when held-out
data is given, accuracy, ECE, NLL, Brier and AURC of the Bayesian predictive next to the
prediction at the posterior mean, with a reliability diagram. Uploads and downloads go through
``huggingface_hub`` (``HfApi.upload_folder``, ``snapshot_download``); only the safetensors and JSON
files of an adapter are ever downloaded, never a pickle.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "write_model_card",
    "card_metrics",
    "download_adapter",
    "upload_adapter",
    "looks_like_repo_id",
    "base_model_id",
    "ADAPTER_FILES",
    "CARD_FILE",
]

CARD_FILE = "README.md"
FIGURE_FILE = "reliability.png"
#: What ``download_adapter`` fetches: the adapter, its card and figure; never a pickle.
ADAPTER_FILES = ["adapter.json", "adapter.safetensors", CARD_FILE, FIGURE_FILE]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def card_metrics(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Accuracy, ECE, NLL, Brier and AURC (abstaining by ``1 - max p``) of ``proba`` on labels ``y``."""
    from .metrics import aurc, brier_score, expected_calibration_error, negative_log_likelihood

    y = np.asarray(y)
    return {
        "accuracy": float(np.mean(classes[proba.argmax(1)] == y)),
        "ece": expected_calibration_error(y, proba, labels=classes),
        "nll": negative_log_likelihood(y, proba, labels=classes),
        "brier": brier_score(y, proba, labels=classes),
        "aurc": aurc(y, proba, labels=classes),
    }


def base_model_id(name: str) -> str | None:
    """The Hub id of the backbone for the card's ``base_model`` (None for a local folder)."""
    from .backbones import BUNDLED_HUB_ID, bundled_alias

    if bundled_alias(name) is not None:
        return BUNDLED_HUB_ID
    return name if looks_like_repo_id(name) else None


def _structure(spec: tuple) -> str:
    """``(covariance, cov_rank)`` of the fitted posterior, in words (None: a point estimate)."""
    covariance, rank = spec
    if covariance is None:
        return "none (a point estimate)"
    return f"`{covariance}`" + (f", rank {rank}" if covariance == "lowrank" else "")


def _method_rows(est: Any, backbone: str) -> list[tuple[str, str]]:
    rows = [
        ("backbone", f"`{backbone}`"),
        ("posterior", f"`{est.posterior}`; fitted covariance structure {_structure(est.posterior_spec_)}"),
        ("rank r, projection", f"{est.rank}, `{est.projection}`"),
        ("D (numbers with a posterior)", f"{est.n_theta_:,}"),
        ("effective rank of the posterior covariance", f"{est.effective_rank_:.1f}"),
        ("head", f"`{est.head}`" + (", in θ (Bayesian)" if est.module_.bayesian_head else ", point estimate")),
        ("training examples", f"{est.n_train_:,}"),
        ("classes", ", ".join(f"`{c}`" for c in est.classes_.tolist())),
        ("predictive", f"`{est.predictive}`, {est.n_samples} draws"),
    ]
    return rows


def write_model_card(
    est: Any, folder: str | os.PathLike, backbone: str, eval_data: tuple[Any, Any] | None = None
) -> Path:
    """Write ``README.md`` (and, with ``eval_data``, ``reliability.png``) for a fitted estimator into ``folder``.

    Parameters
    ----------
    est : fitted BayesianSubspaceClassifier
    folder : path
        The adapter folder.
    backbone : str
        The name the backbone re-loads by (an alias, a folder, a Hub id).
    eval_data : (X, y), optional
        Held-out data: the card reports the Bayesian predictive and the posterior mean on it.

    Returns
    -------
    Path of the card.
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    data = ModelCardData(
        library_name="subspace_bayes",
        base_model=base_model_id(backbone),
        pipeline_tag="text-classification",
        tags=["bayesian", "lora-xs", "uncertainty", "subspace-bayes", f"posterior-{est.posterior}"],
    )
    lines = ["---", data.to_yaml(), "---", *_description(est, folder, backbone)]
    if eval_data is not None:
        lines += _evaluation(est, folder, eval_data)
    lines += _usage(folder)
    ModelCard("\n".join(lines)).save(folder / CARD_FILE)
    return folder / CARD_FILE


def _description(est: Any, folder: Path, backbone: str) -> list[str]:
    from ._version import __version__

    return [
        "",
        f"# {folder.name}: a Bayesian text classifier (subspace_bayes {__version__})",
        "",
        "Fine-tuned with subspace_bayes in a projected subspace: every adapted layer is "
        "`W = W0 + s B R A` with the pretrained `W0` and the bases `A`, `B` frozen, and a Gaussian posterior "
        "over the small cores `R`. Predictions average the softmax over posterior draws.",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in _method_rows(est, backbone)],
    ]


def _usage(folder: Path) -> list[str]:
    return [
        "",
        "## Use",
        "",
        "```python",
        "from subspace_bayes import load_adapter",
        "",
        f'clf = load_adapter("{folder.name}")  # a local folder or a Hub id',
        "labels, proba, uncertainty = clf.predict(texts, return_proba=True, return_uncertainty=True)",
        "```",
        "",
        "`clf.export_peft(path)` and `clf.export_merged(path)` give the posterior mean to peft or to plain "
        "transformers; they are point estimates (the uncertainty needs subspace_bayes).",
    ]


def _evaluation(est: Any, folder: Path, eval_data: tuple[Any, Any]) -> list[str]:
    """The card's evaluation section (and the reliability figure) on held-out data."""
    X, y = eval_data
    from .predictive import mean_prediction

    proba, at_mean = est.predict_proba(X), est._predict_with(mean_prediction, X)
    rows = {"Bayesian predictive": card_metrics(y, proba, est.classes_)}
    rows["posterior mean (a point estimate)"] = card_metrics(y, at_mean, est.classes_)
    lines = [
        "",
        f"## Evaluation ({len(y):,} held-out examples given to `save_adapter`)",
        "",
        "| prediction | accuracy | ECE | NLL | Brier | AURC |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        lines.append(
            f"| {name} | {m['accuracy']:.3f} | {m['ece']:.3f} | {m['nll']:.3f} | {m['brier']:.3f} | {m['aurc']:.3f} |"
        )
    try:
        from .plotting import plot_reliability

        probas = {"Bayesian predictive": proba, "posterior mean": at_mean}
        plot_reliability(np.asarray(y), probas, labels=est.classes_).savefig(folder / FIGURE_FILE, dpi=110)
        lines += ["", f"![reliability diagram]({FIGURE_FILE})"]
    except ImportError:  # matplotlib is optional (the demo extra)
        pass
    return lines


def download_adapter(
    repo_id: str, *, revision: str | None = None, token: str | None = None, cache_dir: str | None = None
) -> Path:
    """The local folder of the adapter ``repo_id`` on the Hub (``snapshot_download``; ``HF_HUB_OFFLINE`` honoured).

    Only :data:`ADAPTER_FILES` are fetched: safetensors, JSON, the card and its figure.
    """
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = huggingface_hub.snapshot_download(
            repo_id, revision=revision, token=token, cache_dir=cache_dir, allow_patterns=ADAPTER_FILES
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        offline = huggingface_hub.constants.HF_HUB_OFFLINE
        raise ValueError(
            f"{repo_id!r} is not a local folder, and the adapter of that id could not be got from the Hugging Face "
            f"Hub ({type(exc).__name__}). "
            + (
                "Loading is offline (HF_HUB_OFFLINE=1), so only the local cache is read and it has no copy: go "
                "online once, or pass the folder written by save_adapter."
                if offline
                else "Check the id, the revision and the token (private repositories), or pass a local folder."
            )
        ) from exc
    if not (Path(folder) / "adapter.json").is_file():
        raise ValueError(f"{repo_id!r} on the Hub holds no adapter.json: it is not a subspace_bayes adapter.")
    return Path(folder)


def upload_adapter(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload the adapter folder (``HfApi.upload_folder``); returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        revision=revision,
        commit_message=commit_message or "Upload a subspace_bayes adapter",
        allow_patterns=ADAPTER_FILES,
    )
    return str(getattr(info, "commit_url", info))


def looks_like_repo_id(path: str | os.PathLike) -> bool:
    """``"user/name"`` that is not a local folder: a Hub id to download."""
    text = os.fspath(path)
    return not Path(text).exists() and bool(_REPO_ID.match(text))

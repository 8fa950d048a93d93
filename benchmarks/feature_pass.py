"""Why the feature statistics need their own pass: the last training epoch's features against it.

python benchmarks/feature_pass.py          # MiniLM, 400 SST-2 sentences, MAP and the default, 1 and 5 epochs

A fit ends with one forward pass over the training split at the final posterior mean, for the
statistics of ``feature_distance`` (class means and the shared covariance of the pooled features).
Issue 31 asked whether the last epoch's own forward passes could serve instead, saving that pass.
They run at the epoch's iterates (for VI at its posterior draws), not at the final mean. This
script fits each model once with a callback that keeps the last epoch's pooled training features,
computes the statistics both ways, and compares the distances they give on SST-2 validation
sentences and AG News snippets: the median and largest relative difference, the Spearman rank
correlation, and the OOD AUROC (SST-2 validation vs AG News) of each. It also times the pass.
Writes a block into docs/cost.md and JSON to benchmarks/results/feature_pass.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.datasets import load_agnews_ood, load_sst2
from subspace_bayes.feature_distance import collect_features, feature_scores, fit_feature_gaussian
from subspace_bayes.metrics import ood_auroc
from subspace_bayes.text import TextDataset, coerce_texts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import defaults_label, write_block  # the defaults label and page update shared by the benchmarks

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "feature_pass.json"
START, END = "<!-- feature-pass:start -->", "<!-- feature-pass:end -->"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (no ties expected in continuous distances)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


class LastEpochTap(Callback):
    """Keeps the pooled features (mean over the step's draws) and labels of the last epoch's training batches."""

    def on_epoch_begin(self, net, **kwargs):
        self.last, self.features, self.labels, self.pending = len(net.history) == net.max_epochs, [], [], []
        module = net.module_
        if self.last and "features" not in vars(module):
            original = type(module).features

            def tapped(theta, *args, **kw):
                out = original(module, theta, *args, **kw)
                if module.training:
                    self.pending.append(out.detach().reshape(theta.shape[0], -1, out.shape[-1]).mean(0))
                return out

            module.features = tapped

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if training and self.last and self.pending:
            self.features.append(torch.cat(self.pending))
            self.labels.append(torch.as_tensor(batch[1]))
        self.pending = []

    def on_train_end(self, net, **kwargs):
        vars(net.module_).pop("features", None)


def compare(posterior: str, epochs: int, X, y, X_in, X_out) -> dict:
    tap = LastEpochTap()
    clf = BayesianSubspaceClassifier(
        posterior=posterior, max_epochs=epochs, verbose=0, random_state=0, callbacks=[("tap", tap)]
    )
    t0 = time.perf_counter()
    clf.fit(X, y)
    fit_s = time.perf_counter() - t0
    last = fit_feature_gaussian(torch.cat(tap.features), torch.cat(tap.labels), 2)
    data = TextDataset(coerce_texts(X), np.searchsorted(clf.classes_, y))
    t0 = time.perf_counter()
    clf.module_.eval()
    separate = collect_features(clf.module_, clf._training_data(data.subset(data.inputs.by_length())).batches())
    pass_s = time.perf_counter() - t0
    out = {"posterior": posterior, "epochs": epochs, "fit_seconds": fit_s, "separate_pass_seconds": pass_s}
    scores = {}
    for name, stats in (("last epoch", last), ("separate pass", fit_feature_gaussian(*separate, 2))):
        clf.module_.feature_gaussian.set_statistics(stats)
        scores[name] = {
            k: clf._predict_with(feature_scores, Xs)["feature_distance"] for k, Xs in (("in", X_in), ("out", X_out))
        }
    a = np.concatenate([scores["last epoch"]["in"], scores["last epoch"]["out"]])
    b = np.concatenate([scores["separate pass"]["in"], scores["separate pass"]["out"]])
    rel = np.abs(a - b) / np.abs(b)
    out.update(
        median_relative_difference=float(np.median(rel)),
        max_relative_difference=float(rel.max()),
        spearman=spearman(a, b),
        auroc_last_epoch=ood_auroc(scores["last epoch"]["in"], scores["last epoch"]["out"]),
        auroc_separate_pass=ood_auroc(scores["separate pass"]["in"], scores["separate pass"]["out"]),
    )
    print(out, flush=True)
    return out


def block(result: dict) -> str:
    lines = [
        START,
        "## Why the feature statistics take a pass of their own",
        "",
        f"`python benchmarks/feature_pass.py`: MiniLM, {result['n']} SST-2 sentences, `random_state=0`, one fit "
        "per row (illustrative: one seed). The statistics of `feature_distance` come from a pass over the "
        "training split at the final posterior mean (in length-sorted batches). The alternative that would save "
        "it, the last training epoch's own forward passes (at that epoch's iterates; for VI at its draws), is "
        f"compared with it here: distances on {result['n_in']} SST-2 validation sentences and "
        f"{result['n_out']} AG News snippets; AUROC of SST-2 validation vs AG News. Estimator defaults: "
        f"{result['defaults']}.",
        "",
        "| model | epochs | fit s (with the pass) | the pass, s | median / largest relative difference "
        "| Spearman | AUROC, last epoch | AUROC, separate pass |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['posterior']} | {r['epochs']} | {r['fit_seconds']:.1f} | {r['separate_pass_seconds']:.1f} "
            f"| {r['median_relative_difference']:.3f} / {r['max_relative_difference']:.3f} | {r['spearman']:.4f} "
            f"| {r['auroc_last_epoch']:.3f} | {r['auroc_separate_pass']:.3f} |"
        )
    return "\n".join([*lines, END])


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if args.table_only:
        result = json.loads(RESULT.read_text())
    else:
        X, y = load_sst2("train", n=400)
        X_in, _ = load_sst2("validation", n=200)
        X_out = load_agnews_ood(n=200)
        rows = [compare(p, e, X, y, X_in, X_out) for e in (1, 5) for p in ("map", "vi")]
        result = {"rows": rows, "n": len(X), "n_in": len(X_in), "n_out": len(X_out), "defaults": defaults_label()}
        RESULT.write_text(json.dumps(result, indent=2))
    text = block(result)
    print(text)
    write_block(ROOT / "docs" / "cost.md", text, START, END)


if __name__ == "__main__":
    main()

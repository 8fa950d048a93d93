"""Selective prediction: abstain on the most uncertain inputs and watch accuracy rise.

Prints accuracy at each coverage (the share of inputs the model answers), ranking inputs by
total and by epistemic uncertainty, and saves the accuracy-coverage curve.

    python examples/selective_prediction.py           # about 4 minutes on 2 CPU cores
    python examples/selective_prediction.py --quick
"""

import argparse

import numpy as np

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.datasets import load_sst2
from subspace_bayes.predictive import uncertainty_decomposition

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--quick", action="store_true")
parser.add_argument("--backbone", default="minilm")
parser.add_argument("--output", default="selective_prediction.png")
args = parser.parse_args()
n_train, n_val, epochs = (48, 40, 1) if args.quick else (1000, None, 12)

X, y = load_sst2("train", n=n_train)
X_val, y_val = load_sst2("validation", n=n_val)
clf = BayesianSubspaceClassifier(backbone=args.backbone, max_epochs=epochs, random_state=0).fit(X, y)

samples = clf.predict_sample_proba(X_val)  # (S, n, C): one pass gives proba and uncertainty
correct = samples.mean(0).argmax(1) == y_val
uncertainty = uncertainty_decomposition(samples)
coverages = np.linspace(0.1, 1.0, 10)
print("coverage  acc(total)  acc(epistemic)")
curves = {}
for key in ("total", "epistemic"):
    order = np.argsort(uncertainty[key], kind="stable")  # most certain first
    curves[key] = [correct[order[: max(1, round(c * len(order)))]].mean() for c in coverages]
for c, a, b in zip(coverages, curves["total"], curves["epistemic"], strict=True):
    print(f"{c:8.1f}  {a:10.3f}  {b:14.3f}")

import matplotlib.pyplot as plt  # noqa: E402 - only needed for the figure

fig, ax = plt.subplots(figsize=(5, 3.5))
for key, acc in curves.items():
    ax.plot(coverages, acc, marker="o", label=f"ranked by {key} uncertainty")
ax.set(xlabel="coverage", ylabel="accuracy", title="Accuracy vs coverage (SST-2 validation)")
ax.legend()
fig.tight_layout()
fig.savefig(args.output, dpi=120)
print(f"saved {args.output}")

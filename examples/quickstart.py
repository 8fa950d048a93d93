"""Quickstart: fit a Bayesian subspace classifier on bundled SST-2 and look at its uncertainty.

python examples/quickstart.py            # about 3 minutes on 2 CPU cores
python examples/quickstart.py --quick    # seconds (a smoke run)
"""

import argparse

import pandas as pd

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.datasets import load_agnews_ood, load_sst2
from subspace_bayes.metrics import expected_calibration_error, negative_log_likelihood

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--quick", action="store_true")
parser.add_argument("--backbone", default="minilm")
args = parser.parse_args()
n_train, n_val, epochs = (64, 32, 1) if args.quick else (1000, None, 10)

X, y = load_sst2("train", n=n_train)
X_val, y_val = load_sst2("validation", n=n_val)
labels = pd.Series(y).map({0: "negative", 1: "positive"}).to_numpy()  # any hashable labels work

clf = BayesianSubspaceClassifier(backbone=args.backbone, rank=8, max_epochs=epochs, random_state=0)
clf.fit(X, labels)

proba = clf.predict_proba(X_val)
y_val_named = pd.Series(y_val).map({0: "negative", 1: "positive"}).to_numpy()
print(
    f"accuracy {clf.score(X_val, y_val_named):.3f}  "
    f"ECE {expected_calibration_error(y_val_named, proba, labels=clf.classes_):.3f}  "
    f"NLL {negative_log_likelihood(y_val_named, proba, labels=clf.classes_):.3f}"
)

texts = X_val[:3] + load_agnews_ood(n=3)
table = pd.DataFrame(clf.predict_uncertainty(texts))
table.insert(0, "prediction", clf.predict(texts))
table.insert(0, "text", [t[:50] for t in texts])
print(table.to_string(index=False))

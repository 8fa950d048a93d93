"""Sentence-pair classification (GLUE RTE: does the premise entail the hypothesis?).

python examples/sentence_pairs.py --data-dir path/to/RTE          # train.tsv and dev.tsv inside
python examples/sentence_pairs.py --data-dir path/to/RTE --quick
"""

import argparse
from pathlib import Path

import pandas as pd

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.datasets import load_rte
from subspace_bayes.metrics import expected_calibration_error

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/glue/RTE"))
parser.add_argument("--quick", action="store_true")
parser.add_argument("--backbone", default="minilm")
args = parser.parse_args()

X, y = load_rte(Path(args.data_dir) / "train.tsv")  # X: list of (premise, hypothesis)
X_dev, y_dev = load_rte(Path(args.data_dir) / "dev.tsv")
if args.quick:
    X, y, X_dev, y_dev = X[:48], y[:48], X_dev[:32], y_dev[:32]

# A 2-column DataFrame works as well as a list of pairs.
X_df = pd.DataFrame(X, columns=["premise", "hypothesis"])
clf = BayesianSubspaceClassifier(
    backbone=args.backbone, max_epochs=1 if args.quick else 8, max_length=160, random_state=0
)
clf.fit(X_df, y)
proba = clf.predict_proba(X_dev)
print(
    f"classes {list(clf.classes_)}; accuracy {clf.score(X_dev, y_dev):.3f}; "
    f"ECE {expected_calibration_error(y_dev, proba, labels=clf.classes_):.3f}"
)

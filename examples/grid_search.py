"""Pipeline + GridSearchCV over rank and prior_std, selected by expected calibration error.

python examples/grid_search.py           # about 10 minutes on 2 CPU cores
python examples/grid_search.py --quick
"""

import argparse

import pandas as pd
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.datasets import load_sst2
from subspace_bayes.metrics import get_scorer


def normalise(texts):
    return [" ".join(t.split()).lower() for t in texts]


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--quick", action="store_true")
parser.add_argument("--backbone", default="minilm")
args = parser.parse_args()
n_train, epochs, grid = (
    (48, 1, {"clf__rank": [2, 4], "clf__prior_std": [1.0]})
    if args.quick
    else (400, 6, {"clf__rank": [4, 8], "clf__prior_std": [0.5, 1.0]})
)

X, y = load_sst2("train", n=n_train)
pipe = Pipeline(
    [
        ("clean", FunctionTransformer(normalise)),
        (
            "clf",
            BayesianSubspaceClassifier(
                backbone=args.backbone, max_epochs=epochs, n_samples=4, random_state=0, verbose=0
            ),
        ),
    ]
)
search = GridSearchCV(pipe, grid, cv=2, scoring={"ece": get_scorer("neg_ece"), "accuracy": "accuracy"}, refit="ece")
search.fit(X, y)
cols = ["params", "mean_test_ece", "mean_test_accuracy", "mean_fit_time"]
print(pd.DataFrame(search.cv_results_)[cols].to_string(index=False))
print("best by ECE:", search.best_params_)

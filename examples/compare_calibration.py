"""The Bayesian posterior versus post-hoc calibration of the MAP model (CalibratedClassifierCV).

python examples/compare_calibration.py           # about 8 minutes on 2 CPU cores
python examples/compare_calibration.py --quick
"""

import argparse

from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.datasets import load_sst2
from subspace_bayes.metrics import brier_score, expected_calibration_error, negative_log_likelihood

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--quick", action="store_true")
parser.add_argument("--backbone", default="minilm")
args = parser.parse_args()
n_train, n_cal, n_val, epochs = (48, 32, 32, 1) if args.quick else (1000, 300, None, 12)

X_pool, y_pool = load_sst2("train", n=n_train + n_cal)
X, y, X_cal, y_cal = X_pool[:n_train], y_pool[:n_train], X_pool[n_train:], y_pool[n_train:]
X_val, y_val = load_sst2("validation", n=n_val)

common = dict(backbone=args.backbone, max_epochs=epochs, n_samples=8, random_state=0)
map_clf = BayesianSubspaceClassifier(posterior="map", **common).fit(X, y)
models = {
    "MAP (LoRA-XS)": map_clf,
    "MAP + temperature": CalibratedClassifierCV(FrozenEstimator(map_clf), method="temperature").fit(X_cal, y_cal),
    "MAP + isotonic": CalibratedClassifierCV(FrozenEstimator(map_clf), method="isotonic").fit(X_cal, y_cal),
    "VI (low-rank)": BayesianSubspaceClassifier(posterior="vi", **common).fit(X, y),
}
print(f"{'method':<20} {'acc':>6} {'ECE':>6} {'NLL':>6} {'Brier':>6}")
for name, model in models.items():
    p = model.predict_proba(X_val)
    acc = (p.argmax(1) == y_val).mean()
    print(
        f"{name:<20} {acc:6.3f} {expected_calibration_error(y_val, p):6.3f} "
        f"{negative_log_likelihood(y_val, p):6.3f} {brier_score(y_val, p):6.3f}"
    )

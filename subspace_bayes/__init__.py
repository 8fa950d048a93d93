"""subspace_bayes: Bayesian fine-tuning of transformers in projected subspaces, for scikit-learn."""

from importlib.metadata import PackageNotFoundError, version

from .adapters import NoTargetModulesError, ProjectedLinear, inject_adapters
from .estimator import BayesianSubspaceClassifier, NonFiniteLossError
from .metrics import brier_score, expected_calibration_error, negative_log_likelihood
from .posteriors import DiagGaussian, FullGaussian, GaussianPosterior, LowRankGaussian, PointMass
from .projections import Projection, make_projection
from .serialization import load_adapter, save_adapter

try:
    __version__ = version("subspace-bayes")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.1.0"

__all__ = [
    "BayesianSubspaceClassifier",
    "NonFiniteLossError",
    "NoTargetModulesError",
    "ProjectedLinear",
    "inject_adapters",
    "Projection",
    "make_projection",
    "GaussianPosterior",
    "DiagGaussian",
    "LowRankGaussian",
    "FullGaussian",
    "PointMass",
    "expected_calibration_error",
    "negative_log_likelihood",
    "brier_score",
    "save_adapter",
    "load_adapter",
    "__version__",
]

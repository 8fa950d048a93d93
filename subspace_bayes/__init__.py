"""subspace_bayes: Bayesian fine-tuning of transformers in projected subspaces, for scikit-learn."""

from ._version import __version__
from .adapters import NoTargetModulesError, ProjectedLinear, inject_adapters
from .estimator import BayesianSubspaceClassifier, load_adapter
from .exceptions import NonFiniteLossError
from .metrics import brier_score, expected_calibration_error, negative_log_likelihood
from .posteriors import DiagGaussian, FullGaussian, GaussianPosterior, LowRankGaussian, PointMass
from .projections import Projection, make_projection

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
    "load_adapter",
    "__version__",
]

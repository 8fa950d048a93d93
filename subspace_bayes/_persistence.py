"""The estimator's persistence: pickling without the backbone, safetensors adapters, checkpoints.

A mixin of :class:`~subspace_bayes.estimator.BayesianSubspaceClassifier`. It
turns the fitted estimator into plain states and back; writing and reading
files is :mod:`subspace_bayes.serialization`'s job.
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from skorch.history import History

from .backbones import backbone_name, bundled_alias, load_backbone, load_tokenizer, quiet_loading
from .export import plain_backbone, write_head, write_merged, write_peft_adapter
from .hub import base_model_id, download_adapter, looks_like_repo_id, upload_adapter, write_model_card
from .inference import make_inference
from .options import Head
from .posteriors import make_posterior, structure_of, structure_of_state
from .serialization import (
    AdapterFormatError,
    AdapterState,
    backbone_fingerprint,
    check_backbone,
    checkpoint_file,
    decode_history,
    encode_history,
    jsonable,
    load_tensors,
    plain_labels,
    read_adapter,
    read_checkpoint,
    save_tensors,
    write_adapter,
)

__all__ = ["PersistenceMixin", "portable_name"]

logger = logging.getLogger("subspace_bayes.estimator")


def portable_name(name: str | os.PathLike) -> str:
    """A backbone or tokenizer name that finds the same files from any working directory.

    An existing local folder becomes its absolute path (``"./models/bert"`` would only load from
    the directory it was fitted in); aliases and hub ids, which are not local folders, are kept.
    """
    text = os.fspath(name)
    if bundled_alias(text) is not None:
        return text  # an alias wins over a folder of the same name when loading too
    path = Path(text).expanduser()
    if path.is_dir() and not Path(text).is_absolute():
        return str(path.resolve())
    return text


class PersistenceMixin:
    """Saving, loading and resuming for :class:`~subspace_bayes.estimator.BayesianSubspaceClassifier`."""

    def save_params(self, f_params=None, use_safetensors: bool = False, **kwargs):
        """skorch's ``save_params``; ``f_params`` holds the learned state only (posterior, head, bases).

        The frozen backbone is never written (re-loaded by name). The other
        files (``f_optimizer``, ``f_history``, ``checkpoint``) are skorch's.
        """
        if f_params is not None:
            self.check_is_fitted()
            save_tensors(self.module_.adapter_state_dict(), f_params, use_safetensors)
        if any(v is not None for v in kwargs.values()):
            super().save_params(use_safetensors=use_safetensors, **kwargs)

    def load_params(self, f_params=None, use_safetensors: bool = False, **kwargs):
        """skorch's ``load_params`` into an initialised net (``initialize()`` needs ``classes=[...]`` before a fit).

        ``f_params`` is what :meth:`save_params` wrote; the posterior takes the
        structure that was saved (e.g. SWAG's low-rank + diagonal).
        """
        if f_params is not None:
            if not self.initialized_:
                raise ValueError("Call initialize() (with classes=[...]) or fit before load_params.")
            state = load_tensors(f_params, use_safetensors)
            spec = structure_of_state(state)
            if spec != structure_of(self.module_.posterior):
                self._install_posterior(
                    make_posterior(self.module_.n_theta, spec[0], cov_rank=spec[1], generator=torch.Generator())
                )
            self.module_.load_adapter_state_dict(state)
        if any(v is not None for v in kwargs.values()):
            super().load_params(use_safetensors=use_safetensors, **kwargs)

    @classmethod
    def from_adapter(
        cls,
        path: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | None = None,
        cache_dir: str | None = None,
        **overrides,
    ):
        """Rebuild a fitted estimator from a folder written by :meth:`save_adapter`, or from a Hub id.

        A ``"user/name"`` that is not a local folder is downloaded from the Hugging Face Hub
        (``snapshot_download`` with ``revision``, ``token``, ``cache_dir``; ``HF_HUB_OFFLINE=1``
        reads the local cache only): the safetensors and JSON files, never a pickle.
        The backbone is loaded by its saved identifier and must be the same weights
        (checked by fingerprint). Parameters in ``overrides`` (e.g. ``device``,
        ``n_samples``, ``batch_size``, ``backbone``) replace the saved ones.

        Raises
        ------
        AdapterFormatError
            Missing, truncated or corrupted files.
        BackboneMismatchError
            The backbone found now differs from the one the adapter was fitted on.
        """
        if looks_like_repo_id(path):
            path = download_adapter(os.fspath(path), revision=revision, token=token, cache_dir=cache_dir)
        state = read_adapter(path)
        est = cls(**{**cls._missing_parameters(state.params), **state.params, **overrides})
        est.classes_inferred_ = np.asarray(state.classes)
        for name, value in state.fitted.items():
            setattr(est, name, value)
        est.posterior_spec_ = state.posterior_spec
        est._restore(state.tensors)
        check_backbone(state, est.module_, path, loaded=backbone_name(est.backbone))
        return est

    #: What a parameter that an earlier release did not save meant then (it had no such parameter):
    #: no Bayesian head (before 0.1.0), the head under the cores' prior and a constant step (before
    #: head_prior_std and lr_schedule), independent prediction draws (before ``draws``). A parameter
    #: missing from this table takes today's default.
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {
        "bayesian_head": False,
        "head_prior_std": None,
        "lr_schedule": "constant",
        "draws": "independent",
    }

    @classmethod
    def _missing_parameters(cls, saved: dict) -> dict:
        """The parameters ``saved`` (an adapter's or a pickle's) lacks, with the meaning they had when it was saved."""
        defaults = {
            name: p.default
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        return {k: cls.LEGACY_DEFAULTS.get(k, v) for k, v in defaults.items() if k not in saved}

    def save_adapter(self, path: str | os.PathLike, eval_data: tuple[Any, Any] | None = None) -> Path:
        """Save the learned state without pickle (safetensors + JSON) and a model card; see :func:`load_adapter`.

        Parameters
        ----------
        path : folder
        eval_data : (X, y), optional
            Held-out data: the model card (``README.md``) then reports accuracy, ECE, NLL, Brier
            and AURC of the Bayesian predictive and of the posterior mean, with a reliability
            diagram (``reliability.png``).

        Returns
        -------
        Path of the folder.
        """
        self.check_is_fitted()
        params = {k: v for k, v in self.get_params(deep=False).items() if jsonable(v) and not k.startswith("callbacks")}
        params.update(self._names_of_objects())
        fitted = {k: getattr(self, k) for k in self._SAVED_FITTED if hasattr(self, k)}
        state = AdapterState(
            params["backbone"],
            backbone_fingerprint(self.module_),
            plain_labels(self.classes_),
            params,
            self.posterior_spec_,
            fitted,
            self.module_.adapter_state_dict(),
        )
        folder = write_adapter(path, state)
        write_model_card(self, folder, params["backbone"], eval_data)
        return folder

    def push_to_hub(
        self,
        repo_id: str,
        *,
        eval_data: tuple[Any, Any] | None = None,
        token: str | None = None,
        private: bool | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
    ) -> str:
        """Upload the adapter (safetensors + JSON) and its model card to the Hugging Face Hub.

        Creates ``repo_id`` if needed; ``load_adapter(repo_id)`` loads it back anywhere. A backbone
        saved as a local folder will have to be passed as ``backbone=`` by whoever loads it; a Hub id
        or alias loads by itself.

        Parameters
        ----------
        repo_id : str
            ``"user/name"``.
        eval_data : (X, y), optional
            Held-out data for the card's evaluation table (see :meth:`save_adapter`).
        token, private, revision, commit_message
            As in ``huggingface_hub.HfApi.upload_folder``.

        Returns
        -------
        str, the URL of the commit.
        """
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_adapter(Path(tmp) / repo_id.split("/")[-1], eval_data=eval_data)
            return upload_adapter(
                folder, repo_id, token=token, private=private, revision=revision, commit_message=commit_message
            )

    def export_peft(self, path: str | os.PathLike) -> Path:
        """Save the posterior mean as a peft LoRA adapter (``PeftModel.from_pretrained(base, path)`` loads it).

        ``lora_A = A`` and ``lora_B = s B mu`` for every adapted layer, ``lora_alpha = r``; for
        ``head="lm"`` the adapter is of the causal LM, so the LM's next-token logits of the label
        tokens are this model's class logits at the mean. The exported model is a point estimate:
        the Monte Carlo average and the uncertainty scores need this library. A linear head is not
        part of a LoRA adapter: :meth:`export_merged` writes it. Needs peft
        (``pip install "subspace-bayes[export]"``).

        Returns
        -------
        Path of the folder.
        """
        self.check_is_fitted()
        model, prefix = self._plain_model()
        name = self._names_of_objects()["backbone"]  # the name save_adapter stores
        return write_peft_adapter(self.module_, model, path, base_model_id(name) or name, prefix)

    def export_merged(self, path: str | os.PathLike) -> Path:
        """Save the posterior-mean model as a plain transformers folder: ``W0 + s B mu A`` merged, no adapter code.

        ``AutoModel.from_pretrained(path)`` (``AutoModelForCausalLM`` for ``head="lm"``) loads it, and
        the tokenizer is saved beside it. A linear head goes into ``classification_head.safetensors``
        with the pooling in its metadata (the recipe is in its docstring and docs/share.md). A point
        estimate: the uncertainty needs this library.

        Returns
        -------
        Path of the folder.
        """
        self.check_is_fitted()
        model, prefix = self._plain_model()
        write_merged(self.module_, model, prefix)
        folder = Path(path)
        model.save_pretrained(folder)
        self.tokenizer_.save_pretrained(folder)
        if Head(self.head) is Head.LINEAR:
            write_head(self.module_, folder)
        return folder

    def _plain_model(self):
        """A plain model to export into and the path of the backbone inside it: the backbone, or the causal LM."""
        if Head(self.head) is Head.LM:
            with quiet_loading(not self.verbose):
                model = load_backbone(self.backbone, backbone_kwargs=self.backbone_kwargs, causal_lm=True)
            return model, model.base_model_prefix + "."
        return plain_backbone(self.module_), ""

    def _names_of_objects(self) -> dict[str, str]:
        """``backbone`` and ``tokenizer`` as the names they re-load by, wherever the loading process runs.

        An object becomes its ``name_or_path``; a local folder (given relative or not) its absolute
        path, so that a saved model loads from any working directory; aliases and hub ids stay as
        they are.
        """
        names = {}
        for key in ("backbone", "tokenizer"):
            value = getattr(self, key, None)
            if value is None:
                continue
            if isinstance(value, (str, os.PathLike)):
                names[key] = portable_name(value)
                continue
            name = backbone_name(value) if key == "backbone" else str(getattr(value, "name_or_path", "") or "")
            if not name:
                raise TypeError(
                    f"The {key} object has no name_or_path to be re-loaded by, so it cannot be saved: save it "
                    f"with {key}.save_pretrained(folder) and pass {key}=folder."
                )
            names[key] = portable_name(name)
        return names

    _NON_PICKLED = ("module_", "criterion_", "optimizer_", "tokenizer_", "train_generator_", "shuffle_generator_")
    #: Learned scalars kept by save_adapter next to the tensors.
    _SAVED_FITTED = (
        "seed_",
        "predict_seed_",
        "n_train_",
        "prior_std_",
        "head_prior_std_",
        "prior_precision_",
        "log_marginal_likelihood_",
    )

    def _training_state(self) -> dict:
        """Everything needed to continue a fit exactly where it stopped (tensors and plain data only)."""
        return {
            "fit_key": self.fit_key_,
            "module": {k: v.detach().cpu() for k, v in self.module_.adapter_state_dict().items()},
            "optimizer": self.optimizer_.state_dict(),
            "train_generator": self.train_generator_.get_state(),
            "shuffle_generator": self.shuffle_generator_.get_state(),
            "history": encode_history(self.history),
            "inference": self.inference_.state_dict(),
        }

    def _resume_from_checkpoint(self) -> int:
        """Restore the checkpoint of this fit in ``checkpoint_dir`` if any; return the number of epochs it holds."""
        if self.checkpoint_dir is None:
            return 0
        file = checkpoint_file(self.checkpoint_dir, self.fit_key_)
        state = read_checkpoint(file)
        if state is None:
            return 0
        if state.get("fit_key") != self.fit_key_:
            raise AdapterFormatError(f"Checkpoint {file} belongs to another fit; delete it.")
        self.module_.load_state_dict(state["module"], strict=False)
        self.optimizer_.load_state_dict(state["optimizer"])
        self.train_generator_.set_state(state["train_generator"])
        self.shuffle_generator_.set_state(state["shuffle_generator"])
        self.history_ = History(decode_history(state["history"]))
        if state.get("inference"):
            self.inference_.load_state_dict(state["inference"])
        if self.verbose:
            logger.info("Resuming from the checkpoint in %s after epoch %d.", self.checkpoint_dir, len(self.history))
        return len(self.history)

    def __getstate__(self) -> dict:
        """Pickle the learned state only: posterior, head, bases, classes and the backbone *name*.

        The frozen backbone weights are re-loaded from ``backbone`` on unpickling,
        so the file stays small. Optimizer moments are not kept (a warm start
        after loading restarts AdamW's moments).
        """
        state = {k: v for k, v in self.__dict__.items() if k not in self._NON_PICKLED}
        state.update(self._names_of_objects())  # a backbone or tokenizer object is stored by name
        module = self.__dict__.get("module_")
        if module is not None:
            state["adapter_state_"] = {k: v.detach().cpu().clone() for k, v in module.adapter_state_dict().items()}
        return state

    def __setstate__(self, state: dict) -> None:
        adapter_state = state.pop("adapter_state_", None)
        self.__dict__.update({**self._missing_parameters(state), **state})
        if adapter_state is not None:
            self._restore(adapter_state)

    def _restore(self, adapter_state: dict) -> None:
        """Re-load the backbone by name and put the saved learned tensors around it."""
        try:
            self.device_ = self._resolve_device()
        except ValueError as exc:  # saved on a GPU machine, loaded on one without (skorch does the same)
            warnings.warn(f"{exc} Loading on the CPU instead (device='cpu').", UserWarning, stacklevel=3)
            self.device, self.device_ = "cpu", "cpu"
        with quiet_loading(not self.verbose):
            self.tokenizer_ = load_tokenizer(self.backbone, self.tokenizer, backbone_kwargs=self.backbone_kwargs)
            if getattr(self, "inference_", None) is None:
                self.inference_ = make_inference(self.get_params(deep=False))
            module = self._build_module(self.posterior_spec_, "svd")  # the saved bases replace the projection's
        module.load_adapter_state_dict(adapter_state)
        with self._current_init_context("module"):
            self.module_ = module.to(self.device_)
        self._make_generators()
        with self._current_init_context("criterion"):
            self.initialize_criterion()
        with self._current_init_context("optimizer"):
            self.initialize_optimizer()
        if getattr(self, "callbacks_", None) is None:
            self.initialize_callbacks()
        if self.history_ is None:
            self.initialize_history()
        self.initialized_ = True

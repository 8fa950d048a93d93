"""The torch module: frozen backbone + projected adapters + posterior over theta + head."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch
from torch import Tensor, nn

from .adapters import ProjectedLinear, draw_independent_prefix, inject_adapters, shared_across_draws
from .backbones import default_pooling, pool
from .posteriors import GaussianPosterior, make_posterior

__all__ = ["SubspaceClassifierModule"]

_ADAPTER_BUFFERS = (".lora_A", ".lora_B")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class SubspaceClassifierModule(nn.Module):
    """Frozen transformer with projected adapters whose cores ``theta`` follow a Gaussian posterior.

    Parameters
    ----------
    backbone : nn.Module
        A Hugging Face base model (``AutoModel``), modified in place: its target
        linears are wrapped by :class:`~subspace_bayes.adapters.ProjectedLinear`
        and all its parameters are frozen.
    n_classes : int
    rank : int, default=8
    projection : str, default="svd"
    target_modules : str, list of str or None
    covariance : {"diag", "lowrank", "full"} or None, default="lowrank"
        None gives a point estimate (MAP).
    cov_rank : int, default=4
    init_std : float, default=0.05
        Initial posterior standard deviation of each core entry.
    pooling : {"auto", "mean", "cls", "last"}, default="auto"
    scaling : float, default=1.0
    generator : torch.Generator, optional
        Randomness for random projections and the initial low-rank factor.
    input_moments : dict, optional
        For whitened SVD.

    Notes
    -----
    :meth:`forward` returns logits of shape ``(S, N, C)``: ``S`` draws of
    ``theta`` are folded into the batch axis, so the ``S`` draws cost one
    forward pass over ``S * N`` sequences.
    """

    def __init__(
        self,
        backbone: nn.Module,
        n_classes: int,
        *,
        rank: int = 8,
        projection: str = "svd",
        target_modules: str | Sequence[str] | None = None,
        covariance: str | None = "lowrank",
        cov_rank: int = 4,
        init_std: float = 0.05,
        pooling: str = "auto",
        scaling: float = 1.0,
        generator: torch.Generator | None = None,
        input_moments: dict[str, Tensor] | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.bank, adapters = inject_adapters(
            backbone,
            rank,
            projection=projection,
            target_modules=target_modules,
            scaling=scaling,
            generator=generator,
            input_moments=input_moments,
        )
        self.n_theta = sum(a.n_core for a in adapters)
        self.posterior: GaussianPosterior = make_posterior(
            self.n_theta, covariance, cov_rank=cov_rank, init_std=init_std, generator=generator
        )
        config = backbone.config
        self.pooling = default_pooling(config.model_type) if pooling == "auto" else pooling
        self.head = nn.Linear(config.hidden_size, n_classes)
        #: Autocast precision of the backbone ("fp32", "bf16", "fp16"); theta, the posterior,
        #: the KL and the head stay in float32.
        self.precision = "fp32"

    @property
    def adapters(self) -> list[ProjectedLinear]:
        return [m for m in self.backbone.modules() if isinstance(m, ProjectedLinear)]

    def sample_theta(self, n_samples: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """``n_samples`` draws of ``theta`` from the posterior, shape ``(S, D)``."""
        return self.posterior.rsample(n_samples, generator=generator)

    def features(self, theta: Tensor, input_ids: Tensor, attention_mask: Tensor, *, paired: bool = False,
                 **inputs: Tensor) -> Tensor:
        """Pooled backbone features ``(S * N, H)``, sample-major.

        By default every draw sees every input (the inputs are repeated ``S``
        times); the frozen modules before the first adapter (the embeddings,
        and any unadapted blocks below it) are then computed once and tiled
        (:func:`~subspace_bayes.adapters.shared_across_draws`).
        With ``paired=True`` draw ``i`` goes with input ``i`` only
        (``S == N``), which gives per-example gradients w.r.t. ``theta``.
        """
        S = theta.shape[0]
        if paired:
            if S != input_ids.shape[0]:
                raise ValueError(f"paired=True needs one draw per input; got {S} draws for {input_ids.shape[0]}.")
            fold = lambda t: t  # noqa: E731
        else:
            fold = lambda t: t.repeat(S, *([1] * (t.dim() - 1)))  # noqa: E731 - (N, T) -> (S*N, T)
        inputs = {k: fold(v) for k, v in inputs.items() if v is not None}
        mask = fold(attention_mask)
        dtype = PRECISIONS[self.precision]
        autocast = nullcontext() if dtype is None else torch.autocast(input_ids.device.type, dtype=dtype)
        shared = shared_across_draws([] if paired else draw_independent_prefix(self.backbone), S, input_ids.shape[0])
        with self.bank.bind(theta), autocast, shared:
            hidden = self.backbone(input_ids=fold(input_ids), attention_mask=mask, **inputs).last_hidden_state
        return pool(hidden.float(), mask, self.pooling)

    def paired_logits(self, batch: dict[str, Tensor], thetas: Tensor) -> Tensor:
        """Logits ``(N, C)`` with draw ``thetas[i]`` applied to input ``i`` only."""
        feats = self.features(thetas, paired=True, **batch)
        return self.head(feats.to(self.head.weight.dtype))

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        *,
        theta: Tensor | None = None,
        n_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Logits for ``S`` draws of ``theta``.

        Parameters
        ----------
        input_ids, attention_mask, token_type_ids : Tensor of shape (N, T)
        theta : Tensor of shape (S, D), optional
            Explicit draws; otherwise ``n_samples`` fresh draws from the posterior.
        n_samples : int, default=1
        generator : torch.Generator, optional

        Returns
        -------
        Tensor of shape (S, N, C)
        """
        if theta is None:
            theta = self.sample_theta(n_samples, generator)
        feats = self.features(theta, input_ids, attention_mask, token_type_ids=token_type_ids)
        logits = self.head(feats.to(self.head.weight.dtype))
        return logits.reshape(theta.shape[0], input_ids.shape[0], -1)

    def logit_jacobians(self, batch: dict[str, Tensor], theta: Tensor) -> tuple[Tensor, Tensor]:
        """Logits at ``theta`` and their per-example Jacobians ``J_i = d f(x_i) / d theta``.

        Each input gets its own copy of ``theta`` (:meth:`paired_logits`), so one
        backward pass per class yields the rows of all examples at once.

        Parameters
        ----------
        batch : dict of Tensor of shape (N, T)
        theta : Tensor of shape (D,)

        Returns
        -------
        logits : Tensor of shape (N, C)
        J : Tensor of shape (N, C, D)
        """
        n = batch["input_ids"].shape[0]
        with torch.enable_grad():
            thetas = theta.detach().expand(n, -1).clone().requires_grad_(True)
            logits = self.paired_logits(batch, thetas)
            C = logits.shape[1]
            rows = [torch.autograd.grad(logits[:, c].sum(), thetas, retain_graph=c < C - 1)[0] for c in range(C)]
        return logits.detach(), torch.stack(rows, dim=1)

    def adapter_state_dict(self) -> dict[str, Tensor]:
        """Everything learned or derived at fit time: posterior, head and adapter bases.

        The frozen backbone weights are left out; they are re-loaded by name.
        """
        return {
            k: v
            for k, v in self.state_dict().items()
            if k.startswith(("posterior.", "head.")) or k.endswith(_ADAPTER_BUFFERS)
        }

"""The torch module: frozen backbone + projected adapters + posterior over theta + head."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from .adapters import ProjectedLinear, collect_input_moments, dense_weight, inject_adapters, named_adapters
from .backbones import DECODER_TYPES, default_pooling, pool
from .draw_sharing import adapted_blocks, draw_independent_prefix, shared_across_draws
from .feature_distance import FeatureGaussian, FeatureNeighbours
from .options import Pooling, Precision
from .posteriors import GaussianPosterior, make_posterior, structure_of_state
from .projections import make_projection

__all__ = ["SubspaceClassifierModule", "AUTOCAST_DTYPES", "contrast_basis", "positions_from_mask"]

#: Autocast dtype of the backbone's forward pass per precision (None: no autocast).
AUTOCAST_DTYPES = {Precision.FP32: None, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}

#: How a Bayesian head's entries of ``theta`` map to the class rows ``[W | b]`` (see :func:`contrast_basis`).
HEAD_CONTRASTS, HEAD_CLASSES = "contrasts", "classes"


#: The submodules holding statistics of the training features (scores for unfamiliar inputs).
FEATURE_STATISTICS = ("feature_gaussian", "feature_neighbours")


def _pop_prefixed(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix cut off."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def contrast_basis(n_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Orthonormal sum-to-zero (Helmert) contrasts ``Q``, shape ``(C, C - 1)``: ``Q^T Q = I``, ``1^T Q = 0``.

    Column ``k`` (``k = 1 .. C - 1``) is ``(1, ..., 1, -k, 0, ..., 0) / sqrt(k (k + 1))`` with ``k``
    leading ones. The softmax is unchanged when one vector is added to every class row of the head,
    so ``[W | b] = Q Z`` with ``Z`` of shape ``(C - 1, H + 1)`` spans every head the likelihood can
    tell apart. Under an isotropic prior ``N(0, sigma_p^2 I)`` on ``[W | b]`` the omitted direction
    ``1 / sqrt(C)`` is orthogonal to ``Q``, so the prior factorises, the likelihood ignores that
    factor, and its posterior *is* the prior: it is integrated out exactly, and ``Z`` keeps the
    prior ``N(0, sigma_p^2 I)`` (logit differences have prior variance ``2 sigma_p^2 ||phi||^2``
    either way).
    """
    Q = torch.zeros(n_classes, n_classes - 1, dtype=dtype)
    for k in range(1, n_classes):
        Q[:k, k - 1] = 1.0
        Q[k, k - 1] = -float(k)
        Q[:, k - 1] /= (k * (k + 1)) ** 0.5
    return Q


def positions_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids ``(N, T)`` that count only the tokens: ``p_t = max(sum_{s <= t} m_s - 1, 0)``.

    With right padding they equal ``0, 1, 2, ...`` on every token; with left padding the first
    token is still position 0, so a padded row is encoded as it would be alone.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


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
    head_weight : Tensor of shape (C, H), optional
        A frozen head instead of a trained linear one: the rows of a causal LM's
        output embedding for the label tokens, so the logits are the LM's
        next-token logits of those tokens at the last position (``pooling="last"``).
    precision : {"fp32", "bf16", "fp16"}, default="fp32"
        Autocast precision of the backbone's forward pass (:attr:`precision`).
    bayesian_head : bool, default=False
        Put the linear head into ``theta`` after the cores, so every posterior
        and predictive covers cores and head together: ``(C - 1) * (H + 1)``
        more entries, the ``(C - 1) x (H + 1)`` matrix ``Z`` row-major with
        ``[W | b] = Q Z`` (:func:`contrast_basis`; the one direction the softmax
        cannot see is integrated out exactly). The :attr:`head` module then only
        supplies the initial value. Adapters saved before this layout keep the
        ``C x (H + 1)`` class rows (:attr:`head_basis` ``"classes"``).

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
        precision: str = "fp32",
        head_weight: Tensor | None = None,
        bayesian_head: bool = False,
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
        config = backbone.config
        if bayesian_head and head_weight is not None:
            raise ValueError("bayesian_head=True needs a trained linear head (head='linear'), not the LM's own.")
        self.pooling = default_pooling(config.model_type) if pooling == Pooling.AUTO else Pooling(pooling).value
        self.head = nn.Linear(config.hidden_size, n_classes)
        if head_weight is not None:  # the LM's own next-token logits of the label tokens: a frozen head
            self.head = nn.Linear(config.hidden_size, n_classes, bias=False)
            self.head.weight = nn.Parameter(head_weight.detach().float().clone(), requires_grad=False)
            self.pooling = Pooling.LAST.value
        #: Entries of ``theta`` that are cores; with ``bayesian_head`` the head's contrasts ``Z`` follow them.
        self.n_core = sum(a.n_core for a in adapters)
        self.bayesian_head = bool(bayesian_head)
        #: ``"contrasts"`` (``[W | b] = Q Z``) or, for adapters saved by earlier versions, ``"classes"``.
        self.head_basis = HEAD_CONTRASTS
        self.posterior: GaussianPosterior = make_posterior(
            self.n_theta, covariance, cov_rank=cov_rank, init_std=init_std, generator=generator
        )
        if self.bayesian_head:
            self.head.requires_grad_(False)
            with torch.no_grad():  # start where a point-estimate head would: its initial [W | b], in contrasts
                self.posterior.loc[self.n_core :] = self._head_to_theta(self._augmented_head())
        self.feature_gaussian = FeatureGaussian()  # the training features' class means and covariance (set by fit)
        self.feature_neighbours = FeatureNeighbours()  # the training features as nearest neighbours (set by fit)
        #: Autocast precision of the backbone ("fp32", "bf16", "fp16"); theta, the posterior,
        #: the KL and the head stay in float32. A plain attribute: it may change between calls.
        self.precision = Precision(precision).value
        self._inspect_inputs(backbone)

    def _inspect_inputs(self, backbone: nn.Module) -> None:
        """What the backbone's forward takes besides the ids and the mask."""
        forward_args = set(inspect.signature(backbone.forward).parameters)
        #: Optional inputs passed by name (token_type_ids is dropped where the backbone has none).
        self.optional_inputs = {"token_type_ids"} & forward_args
        #: Decoders number positions from the mask (:func:`positions_from_mask`): GPT-2's absolute
        #: positions and Llama's rotary ones would otherwise count left padding as text.
        self.positions_from_mask = backbone.config.model_type in DECODER_TYPES and "position_ids" in forward_args

    @property
    def n_theta(self) -> int:
        """``D``: the cores, then (``bayesian_head``) the head's ``(C - 1)(H + 1)`` contrasts (legacy ``C (H + 1)``)."""
        if not self.bayesian_head:
            return self.n_core
        C, H1 = self.head.out_features, self.head.in_features + 1
        return self.n_core + (C if self.head_basis == HEAD_CLASSES else C - 1) * H1

    def _head_to_theta(self, Wb: Tensor) -> Tensor:
        """A head ``[W | b]`` (C, H + 1) as its entries of ``theta``: ``Q^T [W | b]`` flattened (legacy: as is)."""
        if self.head_basis == HEAD_CLASSES:
            return Wb.flatten()
        return (contrast_basis(Wb.shape[0], Wb.dtype).T @ Wb).flatten()

    def head_rows(self, theta: Tensor) -> Tensor:
        """The class rows ``[W | b]`` of draws ``theta`` (S, D), shape ``(S, C, H + 1)``: ``Q Z`` (legacy: stored)."""
        C, H1 = self.head.out_features, self.head.in_features + 1
        Z = theta[:, self.n_core :].reshape(theta.shape[0], -1, H1)
        if self.head_basis == HEAD_CLASSES:
            return Z
        return torch.einsum("ck,skh->sch", contrast_basis(C, Z.dtype).to(Z.device), Z)

    @property
    def adapters(self) -> list[ProjectedLinear]:
        """The adapted layers, in model order (adapter ``i`` reads its slice of ``theta``)."""
        return [adapter for _, adapter in named_adapters(self.backbone)]

    def held_coordinates(self, sampled_layers: int | None) -> Tensor | None:
        """Which entries of ``theta`` stay at their mean when only the top ``sampled_layers`` blocks are drawn.

        The cores of the adapted blocks below the top ``sampled_layers`` (bottom to top, in the
        backbone's layer stack) are held; adapters outside the stack and a Bayesian head are
        always drawn. Returns a boolean mask of shape ``(D,)``, or None when nothing is held
        (``sampled_layers`` None or at least the number of adapted blocks).
        """
        blocks = adapted_blocks(self.backbone)
        if sampled_layers is None or sampled_layers >= len(blocks):
            return None
        held = torch.zeros(self.n_theta, dtype=torch.bool)
        for adapter in (a for block in blocks[: len(blocks) - sampled_layers] for a in block):
            held[adapter.offset : adapter.offset + adapter.n_core] = True
        return held

    def reproject(
        self,
        projection: str,
        batches: Iterable[dict[str, Tensor]],
        *,
        generator: torch.Generator | None = None,
        damping: float = 1e-2,
    ) -> None:
        """Recompute every adapter's bases with ``projection``, using input statistics of ``batches``.

        For data-dependent projections (whitened SVD): the input second moments
        of each adapted layer are gathered on this module's own backbone, with no
        ``theta`` bound (so the adapters pass their inputs through unchanged).
        """
        names = [name for name, _ in named_adapters(self.backbone)]
        moments = collect_input_moments(self.backbone, names, batches)
        for name, adapter in named_adapters(self.backbone):
            proj = make_projection(
                dense_weight(adapter.get_base_layer()).float(),
                adapter.rank,
                projection,
                generator=generator,
                input_moment=moments.get(name),
                damping=damping,
            )
            adapter.set_projection(proj)

    def load_adapter_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load what :meth:`adapter_state_dict` returned (posterior, head, bases, feature statistics).

        Raises
        ------
        ValueError
            If the keys or shapes do not fit this module (another backbone or configuration).
        """
        statistics = {name: _pop_prefixed(state, f"{name}.") for name in FEATURE_STATISTICS}
        state = {k: v for k, v in state.items() if not k.startswith(tuple(f"{n}." for n in FEATURE_STATISTICS))}
        self._match_head_basis(state)
        expected = {k for k in self.adapter_state_dict() if not k.startswith(tuple(FEATURE_STATISTICS))}
        if set(state) != expected:
            raise ValueError(
                "The saved adapter does not fit this backbone/configuration: "
                f"missing {sorted(expected - set(state))[:3]}, unexpected {sorted(set(state) - expected)[:3]}."
            )
        try:
            self.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ValueError(f"The saved adapter does not fit this backbone: {exc}") from None
        for name, stats in statistics.items():  # optional: adapters saved by earlier versions lack some or all
            if stats:
                getattr(self, name).set_statistics(stats)

    def _match_head_basis(self, state: dict[str, Tensor]) -> None:
        """Switch to the legacy ``"classes"`` head layout if ``state`` was saved with it (a longer ``theta``)."""
        loc = state.get("posterior.loc")
        legacy = self.n_core + self.head.out_features * (self.head.in_features + 1)
        if not self.bayesian_head or loc is None or loc.numel() != legacy or self.head_basis == HEAD_CLASSES:
            return  # the current layout, or a mismatch that the key/shape check reports
        self.head_basis = HEAD_CLASSES
        covariance, cov_rank = structure_of_state(state)
        dtype = self.posterior.loc.dtype
        self.posterior = make_posterior(self.n_theta, covariance, cov_rank=cov_rank, generator=torch.Generator()).to(
            device=loc.device, dtype=dtype
        )

    def sample_theta(self, n_samples: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """``n_samples`` draws of ``theta`` from the posterior, shape ``(S, D)``."""
        return self.posterior.rsample(n_samples, generator=generator)

    def _autocast(self, device_type: str):
        dtype = AUTOCAST_DTYPES[Precision(self.precision)]
        return nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)

    def features(
        self,
        theta: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        *,
        draw_per_input: bool = False,
        **inputs: Tensor,
    ) -> Tensor:
        """Pooled backbone features ``(S * N, H)``, sample-major.

        By default every draw sees every input (the inputs are repeated ``S``
        times); the frozen modules before the first adapter (the embeddings,
        and any unadapted blocks below it) are then computed once and tiled
        (:func:`~subspace_bayes.draw_sharing.shared_across_draws`).
        With ``draw_per_input=True`` draw ``i`` goes with input ``i`` only
        (``S == N``), which gives per-example gradients w.r.t. ``theta``.
        """
        S, N = theta.shape[0], input_ids.shape[0]
        if draw_per_input and S != N:
            raise ValueError(f"draw_per_input=True needs one draw per input; got {S} draws for {N} inputs.")
        repeats = 1 if draw_per_input else S

        def fold(t: Tensor) -> Tensor:  # (N, T) -> (S*N, T), sample-major
            return t if repeats == 1 else t.repeat(repeats, *([1] * (t.dim() - 1)))

        inputs = {k: fold(v) for k, v in inputs.items() if v is not None and k in self.optional_inputs}
        mask = fold(attention_mask)
        if getattr(self, "positions_from_mask", False):  # (getattr: modules pickled before it existed)
            inputs["position_ids"] = positions_from_mask(mask)
        prefix = [] if draw_per_input or S == 1 else draw_independent_prefix(self.backbone, theta)
        with self.bank.bind(theta), self._autocast(input_ids.device.type), shared_across_draws(prefix, S, N):
            hidden = self.backbone(input_ids=fold(input_ids), attention_mask=mask, **inputs).last_hidden_state
        return pool(hidden.float(), mask, self.pooling)

    def _augmented_head(self) -> Tensor:
        """The point-estimate head as one ``C x (H + 1)`` matrix ``[W | b]``."""
        W = self.head.weight.detach().float()
        b = self.head.bias.detach().float() if self.head.bias is not None else W.new_zeros(W.shape[0])
        return torch.cat([W, b[:, None]], dim=1)

    def head_logits(self, feats: Tensor, theta: Tensor) -> Tensor:
        """Logits ``(S * N, C)`` of pooled features ``(S * N, H)`` (sample-major) under draws ``theta`` (S, D).

        A point-estimate head ignores ``theta``. A Bayesian head reads draw
        ``s``'s ``[W_s | b_s]`` from ``theta[s, n_core:]`` (:meth:`head_rows`): ``f = W_s phi + b_s``
        for the ``N = rows / S`` features of that draw (with one draw per input,
        ``S = N`` and row ``i`` uses draw ``i``).
        """
        if not self.bayesian_head:
            return self.head(feats.to(self.head.weight.dtype))
        S, (rows, H) = theta.shape[0], feats.shape
        Wb = self.head_rows(theta)  # (S, C, H + 1)
        phi = feats.to(theta.dtype).reshape(S, rows // S, H)
        return (torch.einsum("snh,sch->snc", phi, Wb[..., :H]) + Wb[:, None, :, H]).reshape(rows, -1)

    def per_input_logits(self, batch: dict[str, Tensor], thetas: Tensor) -> Tensor:
        """Logits ``(N, C)`` with draw ``thetas[i]`` applied to input ``i`` only."""
        feats = self.features(thetas, draw_per_input=True, **batch)
        return self.head_logits(feats, thetas)

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
        return self.head_logits(feats, theta).reshape(theta.shape[0], input_ids.shape[0], -1)

    def logit_jacobians(
        self, batch: dict[str, Tensor], theta: Tensor, *, contrasts: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Logits at ``theta`` and their per-example Jacobians ``J_i = d f(x_i) / d theta``.

        Each input gets its own copy of ``theta`` (:meth:`per_input_logits`), so one
        backward pass per row yields that row for all examples at once.

        Parameters
        ----------
        batch : dict of Tensor of shape (N, T)
        theta : Tensor of shape (D,)
        contrasts : bool, default=False
            Return the contrast logits ``g_c = f_c - f_0`` (``g_0 = 0``) and their
            Jacobians instead. The softmax depends on nothing else, and the
            Jacobian's first row is zero, so it takes ``C - 1`` backward passes.

        Returns
        -------
        logits : Tensor of shape (N, C)
        J : Tensor of shape (N, C, D)
        """
        n = batch["input_ids"].shape[0]
        with torch.enable_grad():
            thetas = theta.detach().expand(n, -1).clone().requires_grad_(True)
            logits = self.per_input_logits(batch, thetas)
            if contrasts:
                logits = logits - logits[:, :1]
            first = 1 if contrasts else 0
            C = logits.shape[1]
            rows = [torch.zeros_like(thetas)] * first + [
                torch.autograd.grad(logits[:, c].sum(), thetas, retain_graph=c < C - 1)[0] for c in range(first, C)
            ]
        return logits.detach(), torch.stack(rows, dim=1)

    def adapter_state_dict(self) -> dict[str, Tensor]:
        """Everything learned or derived at fit time: posterior, head, adapter bases, feature statistics.

        The frozen backbone weights are left out; they are re-loaded by name.
        Keys are those of :meth:`state_dict`.
        """
        state = {f"posterior.{k}": v for k, v in self.posterior.state_dict().items()}
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        for name, adapter in named_adapters(self.backbone):
            state.update({f"backbone.{name}.{k}": v for k, v in adapter.named_buffers(recurse=False)})
        for name in FEATURE_STATISTICS:  # (getattr: modules pickled before feature_neighbours existed)
            state.update({f"{name}.{k}": v for k, v in getattr(self, name, nn.Module()).state_dict().items()})
        return state

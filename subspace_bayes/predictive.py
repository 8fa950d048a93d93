"""The predictive distribution and its uncertainty decomposition, shared by every posterior.

Everything about producing predictive samples lives here: the draws of
``theta`` (none for a point estimate), Monte Carlo over them, and the
linearised (GLM) predictive with its logit-space noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from .options import Draws, Predictive
from .posteriors import GaussianPosterior, PointMass

__all__ = [
    "predictive_samples",
    "posterior_draws",
    "standard_normal_draws",
    "mc_probabilities",
    "mc_probabilities_and_scores",
    "predictive_samples_and_scores",
    "predictive_mean",
    "mean_prediction",
    "glm_probabilities",
    "linearised_moments",
    "probit_probabilities",
    "linearised_sample_probs",
    "uncertainty_decomposition",
    "uncertainty_scores",
    "UNCERTAINTY_SCORES",
    "entropy",
]


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats, ``-sum_c p_c log p_c`` (with ``0 log 0 = 0``)."""
    p = np.asarray(p, dtype=np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


def uncertainty_decomposition(sample_probs: np.ndarray) -> dict[str, np.ndarray]:
    """Split predictive uncertainty into aleatoric and epistemic parts.

    With ``p_s = softmax(f(x; theta_s))`` and ``p_bar = (1/S) sum_s p_s``:
    ``total = H[p_bar]``, ``aleatoric = (1/S) sum_s H[p_s]`` and
    ``epistemic = total - aleatoric`` (the mutual information between the
    label and ``theta``; non-negative by Jensen's inequality).

    Parameters
    ----------
    sample_probs : ndarray of shape (S, N, C)

    Returns
    -------
    dict with 1-D arrays ``total``, ``aleatoric``, ``epistemic`` of shape (N,), in nats.
    """
    sample_probs = np.asarray(sample_probs, dtype=np.float64)
    total = entropy(sample_probs.mean(0))
    aleatoric = entropy(sample_probs).mean(0)
    # Clip round-off only: by Jensen, total >= aleatoric exactly.
    epistemic = np.maximum(total - aleatoric, 0.0)
    return {"total": total, "aleatoric": aleatoric, "epistemic": epistemic}


#: The keys of :func:`uncertainty_scores`, in the order tables show them.
UNCERTAINTY_SCORES = ("max_probability", "total", "epistemic", "logit_variance")


def uncertainty_scores(sample_probs: np.ndarray) -> dict[str, np.ndarray]:
    """The per-input scores one may abstain by or rank unfamiliar inputs with (higher = less certain).

    From per-draw probabilities ``p_s`` (S, N, C), with ``p_bar = mean_s p_s``:

    - ``max_probability``: ``1 - max_c p_bar_c``;
    - ``total``: ``H[p_bar]``; ``epistemic``: the mutual information (see
      :func:`uncertainty_decomposition`);
    - ``logit_variance``: ``(1/C) sum_c Var_s[l_sc]`` of the centred log-probabilities
      ``l_sc = log p_sc - (1/C) sum_k log p_sk`` (the logits up to their free shift).

    Returns
    -------
    dict of ndarrays of shape (N,)
    """
    p = np.asarray(sample_probs, dtype=np.float64)
    logp = np.log(np.clip(p, 1e-300, None))
    centred = logp - logp.mean(-1, keepdims=True)
    parts = uncertainty_decomposition(p)
    return {
        "max_probability": 1.0 - p.mean(0).max(-1),
        "total": parts["total"],
        "epistemic": parts["epistemic"],
        "logit_variance": centred.var(0).mean(-1),
    }


#: Sequences per forward pass when draws are folded into the batch, by device type. On 2 CPU cores
#: very large folded batches are slower than a few medium ones, while a GPU keeps gaining from wide
#: batches. With every draw of ``FOLD_ROWS // S`` inputs per pass, 128 was no slower than 64 for 8
#: independent draws and faster with ``sampled_layers`` (its shared trunk then runs at batch 16
#: rather than 8) in a one-off comparison on 400 SST-2 texts, 2 threads (noisy: 5.7-7.7x against
#: 7.0-7.4x a MAP prediction; 1.05-1.3x against 1.4-1.6x for sampled_layers=0). The stored costs
#: of each setting at 128 are benchmarks/draws.py --cost's.
FOLD_ROWS = {"cpu": 128, "cuda": 4096}


@torch.no_grad()
def mc_probabilities(
    module: torch.nn.Module, batches: Iterable[dict[str, Tensor]], theta: Tensor, max_rows: int | None = None
) -> np.ndarray:
    """Per-draw class probabilities over all batches.

    The same draws ``theta`` (S, D) are used for every batch, so the result does
    not depend on how the inputs are batched. Draws are folded into the batch
    axis, at most ``max_rows`` sequences per forward pass: all ``S`` draws of
    ``max_rows // S`` inputs at a time (a few draws of one input at a time when
    ``S > max_rows``).

    Parameters
    ----------
    module : SubspaceClassifierModule
    batches : iterable of dict
        Tokenised inputs already on the module's device.
    theta : Tensor of shape (S, D)
    max_rows : int, optional
        Default :data:`FOLD_ROWS` for the device.

    Returns
    -------
    ndarray of shape (S, N, C), float64
    """
    return mc_probabilities_and_scores(module, batches, theta, max_rows=max_rows)[0]


@torch.no_grad()
def mc_probabilities_and_scores(
    module: torch.nn.Module,
    batches: Iterable[dict[str, Tensor]],
    theta: Tensor,
    scorer: Callable[[torch.nn.Module, Tensor], dict[str, np.ndarray]] | None = None,
    max_rows: int | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`mc_probabilities`, and ``scorer(module, phi_bar)`` of each batch from the same forward passes.

    ``phi_bar(x) = (1/S) sum_s phi(x; theta_s)`` is the pooled feature averaged over the draws
    (for a point estimate, the feature at the mean): the scores for unfamiliar inputs read it,
    so they cost no pass of their own.

    Returns
    -------
    probs : ndarray of shape (S, N, C), float64
    scores : dict of ndarray of shape (N,) (empty without ``scorer``)
    """
    probs, scores = [], []
    S = theta.shape[0]
    for batch in batches:
        rows = max_rows or FOLD_ROWS.get(batch["input_ids"].device.type, FOLD_ROWS["cuda"])
        for sub in _input_chunks(batch, max(1, rows // S)):
            n = sub["input_ids"].shape[0]
            parts, feature_sum = [], 0.0
            for i in range(0, S, max(1, rows // n)):
                draws = theta[i : i + max(1, rows // n)]
                feats = module.features(draws, **sub)
                logits = module.head_logits(feats, draws).reshape(draws.shape[0], n, -1)
                parts.append(torch.softmax(logits.double(), dim=-1).cpu())
                if scorer is not None:
                    feature_sum = feature_sum + feats.float().reshape(draws.shape[0], n, -1).sum(0)
            probs.append(torch.cat(parts, dim=0))
            if scorer is not None:
                scores.append(scorer(module, feature_sum / S))
    return torch.cat(probs, dim=1).numpy(), concat_scores(scores)


def _input_chunks(batch: dict[str, Tensor], size: int) -> Iterable[dict[str, Tensor]]:
    """``batch`` cut into consecutive groups of at most ``size`` inputs (every tensor along its first axis).

    A folded forward pass then holds every draw of a few inputs rather than a few draws of every
    input: the layers that run once for all draws (:mod:`~subspace_bayes.draw_sharing`) then run
    once per input, however many draws there are.
    """
    n = batch["input_ids"].shape[0]
    if size >= n:
        yield batch
        return
    for start in range(0, n, size):
        yield {k: v[start : start + size] for k, v in batch.items()}


def linearised_sample_probs(mean_logits: Tensor, logit_cov: Tensor, eps: Tensor) -> Tensor:
    """Softmax of logit-space samples ``f_mu + (J Sigma J^T)^{1/2} eps``.

    The symmetric square root comes from an eigendecomposition, so a singular
    (e.g. zero) logit covariance needs no jitter.

    Parameters
    ----------
    mean_logits : Tensor of shape (N, C)
    logit_cov : Tensor of shape (N, C, C)
    eps : Tensor of shape (S, N, C), standard normal

    Returns
    -------
    Tensor of shape (S, N, C)
    """
    evals, evecs = torch.linalg.eigh(logit_cov.double())
    L = (evecs * evals.clamp_min(0.0).sqrt()[:, None, :]) @ evecs.transpose(1, 2)  # (N, C, C)
    logits = mean_logits.double() + torch.einsum("nij,snj->sni", L, eps.double().to(L.device))
    return torch.softmax(logits, dim=-1)


def linearised_moments(
    module: torch.nn.Module, batches: Iterable[dict[str, Tensor]], posterior: GaussianPosterior
) -> tuple[Tensor, Tensor]:
    """Mean and covariance of the contrast logits under the linearised (GLM) predictive.

    ``f(x; theta) ~ f(x; mu) + J(x) (theta - mu)`` makes the contrast logits
    ``g_c = f_c - f_0`` Gaussian, ``N(g(x; mu), J_g Sigma J_g^T)``. The softmax of
    ``g`` is the softmax of ``f``, so nothing is lost, and ``g_0 = 0`` needs no
    backward pass: the cost is one forward and ``C - 1`` backward passes per
    batch. ``J Sigma J^T`` uses the posterior's structure (never a dense
    ``D x D`` where it has a factor).

    Parameters
    ----------
    module : SubspaceClassifierModule
    batches : iterable of dict, tokenised and on the module's device, in order
    posterior : GaussianPosterior

    Returns
    -------
    mean : Tensor of shape (N, C), float64, first column 0
    cov : Tensor of shape (N, C, C), float64, first row and column 0
    """
    means, covs = [], []
    mu = posterior.mean.detach()
    for batch in batches:
        logits, J = module.logit_jacobians(batch, mu, contrasts=True)
        with torch.no_grad():
            covs.append(posterior.quadratic_form(J.double()).cpu())
        means.append(logits.double().cpu())
    return torch.cat(means), torch.cat(covs)


def glm_probabilities(
    module: torch.nn.Module, batches: Iterable[dict[str, Tensor]], posterior, eps: Tensor
) -> np.ndarray:
    """Linearised (GLM) predictive: per-draw probabilities from logit-space samples.

    Samples ``g = g(x; mu) + (J Sigma J^T)^{1/2} eps`` of the contrast logits of
    :func:`linearised_moments`; the number of samples costs no network passes.

    Parameters
    ----------
    module : SubspaceClassifierModule
    batches : iterable of dict, tokenised and on the module's device, in order
    posterior : GaussianPosterior
    eps : Tensor of shape (S, N_total, C)
        Standard normal noise for all inputs (fixed per call, so batching does not matter).

    Returns
    -------
    ndarray of shape (S, N_total, C), float64
    """
    mean, cov = linearised_moments(module, batches, posterior)
    return linearised_sample_probs(mean, cov, eps).numpy()


#: ``lambda`` of the probit approximation ``sigmoid(m / sqrt(1 + lambda v))`` to ``E[sigmoid(x)]``,
#: ``x ~ N(m, v)`` (MacKay, 1992): matching the slopes of the sigmoid and the probit at 0.
PROBIT_LAMBDA = np.pi / 8


def probit_probabilities(mean_logits: Tensor, logit_cov: Tensor) -> Tensor:
    """The GLM predictive's mean in closed form: the pairwise (mean-field) probit approximation.

    With Gaussian logits ``f ~ N(m, V)``, each pairwise sigmoid gets its own
    probit correction (Lu, Ie & Sha, 2020, "Mean-field approximation to
    Gaussian-softmax integral"):

    ``p_c = 1 / (1 + sum_{k != c} exp(-(m_c - m_k) / sqrt(1 + lambda v_ck)))``,
    ``v_ck = V_cc + V_kk - 2 V_ck = Var(f_c - f_k)``, ``lambda = pi / 8``,

    renormalised to sum to one. For two classes this is MacKay's probit
    ``sigmoid(m_d / sqrt(1 + lambda v_d))`` exactly. It depends on ``V`` only
    through logit differences, so contrast logits give the same result.

    Parameters
    ----------
    mean_logits : Tensor of shape (N, C)
    logit_cov : Tensor of shape (N, C, C)

    Returns
    -------
    Tensor of shape (N, C), float64
    """
    m, V = mean_logits.double(), logit_cov.double()
    diag = torch.diagonal(V, dim1=1, dim2=2)
    var_diff = (diag[:, :, None] + diag[:, None, :] - 2 * V).clamp_min(0.0)  # (N, C, C): Var(f_c - f_k)
    z = (m[:, :, None] - m[:, None, :]) / torch.sqrt(1 + PROBIT_LAMBDA * var_diff)
    # 1 / (1 + sum_{k != c} exp(-z_ck)) = 1 / sum_k exp(-z_ck), since z_cc = 0.
    p = torch.exp(-torch.logsumexp(-z, dim=2))
    return p / p.sum(1, keepdim=True)


def standard_normal_draws(
    n: int, dim: int, *, draws: str = "independent", generator: torch.Generator, dtype=torch.float32
) -> Tensor:
    """``n`` standard-normal vectors of length ``dim`` (shape ``(n, dim)``), chosen by ``draws``.

    - ``"independent"``: i.i.d. ``N(0, I)`` (plain Monte Carlo);
    - ``"antithetic"``: pairs ``(eps_j, -eps_j)`` with ``eps_j`` i.i.d. (an odd ``n`` ends with one
      unpaired draw). Averaged over a pair, ``f(mu + L eps) + f(mu - L eps)`` keeps only the even
      orders of ``f``'s expansion around the mean, so a smooth predictive needs fewer draws;
    - ``"sobol"``: a scrambled Sobol sequence ``u_i`` (Owen scrambling seeded from ``generator``),
      mapped through the normal inverse CDF, ``eps_i = Phi^{-1}(u_i)``: quasi-Monte Carlo, whose
      points cover the space more evenly than independent ones.

    All randomness comes from ``generator``: the same state gives the same vectors.
    """
    scheme = Draws(draws)
    if scheme is Draws.SOBOL:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        engine = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
        u = engine.draw(n, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
        return torch.special.ndtri(u).to(dtype)
    half = (n + 1) // 2 if scheme is Draws.ANTITHETIC else n
    eps = torch.randn(half, dim, generator=generator, device=generator.device, dtype=dtype)
    if scheme is Draws.ANTITHETIC:
        eps = torch.stack([eps, -eps], dim=1).reshape(2 * half, dim)[:n]
    return eps


@torch.no_grad()
def posterior_draws(
    posterior: GaussianPosterior,
    n_samples: int,
    generator: torch.Generator,
    draws: str = "independent",
    held: Tensor | None = None,
) -> Tensor:
    """The draws of ``theta`` for one prediction call, shape ``(S, D)``; ``S = 1`` for a point estimate.

    ``draws`` chooses the standard noise behind them (:func:`standard_normal_draws`). ``held``, a
    boolean mask of shape ``(D,)``, keeps those entries at the mean in every draw: the others then
    follow their marginal under ``q``, ``theta_s = (mu_held, theta_free,s)`` with
    ``theta_free,s ~ N(mu_free, Sigma_free,free)``.
    """
    if isinstance(posterior, PointMass):
        return posterior.mean.detach()[None]
    eps = standard_normal_draws(n_samples, posterior.noise_dim, draws=draws, generator=generator)
    theta = posterior.from_noise(eps)
    if held is not None:
        held = held.to(theta.device)
        theta[:, held] = posterior.mean.detach()[held].to(theta.dtype)
    return theta


def _linearised(predictive: str, posterior: GaussianPosterior) -> bool:
    """Whether ``predictive`` samples logits from the linearisation (never for a point estimate)."""
    return Predictive(predictive) is not Predictive.MC and not isinstance(posterior, PointMass)


def concat_scores(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-batch score dicts joined along the rows (an empty dict when there are none)."""
    return {key: np.concatenate([p[key] for p in parts]) for key in (parts[0] if parts else {})}


def _in_callers_order(probs: np.ndarray, order: np.ndarray, axis: int) -> np.ndarray:
    """Rows fed in the order ``order`` (along ``axis``) put back where the caller had them."""
    out = np.empty_like(probs)
    index = [slice(None)] * probs.ndim
    index[axis] = order
    out[tuple(index)] = probs
    return out


def predictive_samples(
    module: torch.nn.Module,
    batches: Iterable[dict[str, Tensor]],
    posterior: GaussianPosterior,
    *,
    predictive: str,
    n_samples: int,
    generator: torch.Generator,
    order: np.ndarray,
    n_classes: int,
    draws: str = "independent",
    held: Tensor | None = None,
) -> np.ndarray:
    """Per-draw class probabilities ``(S, N, C)`` for inputs fed in the order ``order``, in the caller's order.

    All randomness comes from ``generator`` and is shared by every input, so a
    row depends only on its own input, not on how inputs were ordered, sorted
    or batched: the same draws of ``theta`` serve every batch (MC), and the same
    ``S`` standard-normal vectors ``eps_s`` give every input's logit-space draws
    ``g(x; mu) + (J Sigma J^T)^{1/2} eps_s`` (GLM).

    Parameters
    ----------
    module : SubspaceClassifierModule
    batches : iterable of dict
        Tokenised inputs on the module's device: the caller's inputs ``order[0], order[1], ...``.
    posterior : GaussianPosterior
    predictive : {"mc", "glm", "probit"}
        ``"probit"`` samples like ``"glm"`` (its closed form is a mean, see
        :func:`predictive_mean`). A point estimate always gets its single forward pass.
    n_samples : int
    generator : torch.Generator
    order : ndarray of shape (N,)
        The caller's index of each fed input.
    n_classes : int
    draws : {"independent", "antithetic", "sobol"}, default="independent"
        The standard noise behind the draws (:func:`standard_normal_draws`).
    held : Tensor of shape (D,), bool, optional
        MC only: entries of ``theta`` kept at the mean in every draw (:func:`posterior_draws`).
        The blocks whose cores are all held then run once for all draws. The linearised
        predictives take one pass whatever is held, and ignore it.

    Returns
    -------
    ndarray of shape (S, N, C), float64, rows in the caller's order.
    """
    if _linearised(predictive, posterior):
        eps = standard_normal_draws(n_samples, n_classes, draws=draws, generator=generator, dtype=torch.float64)
        eps = eps[:, None]
        probs = glm_probabilities(module, batches, posterior, eps.expand(-1, len(order), -1))
    else:
        probs = mc_probabilities(module, batches, posterior_draws(posterior, n_samples, generator, draws, held))
    return _in_callers_order(probs, order, axis=1)


def predictive_samples_and_scores(
    module: torch.nn.Module,
    batches: Iterable[dict[str, Tensor]],
    posterior: GaussianPosterior,
    *,
    scorer: Callable[[torch.nn.Module, Tensor], dict[str, np.ndarray]],
    predictive: str,
    n_samples: int,
    generator: torch.Generator,
    order: np.ndarray,
    n_classes: int,
    draws: str = "independent",
    held: Tensor | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`predictive_samples` and ``scorer`` of the pooled features, rows in the caller's order.

    With MC draws (and for a point estimate) the scores read the features of the same forward
    passes, averaged over the draws (:func:`mc_probabilities_and_scores`). The linearised
    predictives never form per-draw features, so ``scorer`` then reads those at the posterior
    mean, from one more forward pass.
    """
    kwargs = dict(
        predictive=predictive, n_samples=n_samples, generator=generator, order=order, n_classes=n_classes, draws=draws
    )
    if _linearised(predictive, posterior):
        batches, theta = list(batches), posterior.mean.detach()[None]
        scores = mc_probabilities_and_scores(module, batches, theta, scorer)[1]
        probs = predictive_samples(module, batches, posterior, **kwargs)
    else:
        theta = posterior_draws(posterior, n_samples, generator, draws, held)
        probs, scores = mc_probabilities_and_scores(module, batches, theta, scorer)
        probs = _in_callers_order(probs, order, axis=1)
    return probs, {key: _in_callers_order(v, order, axis=0) for key, v in scores.items()}


def predictive_mean(
    module: torch.nn.Module,
    batches: Iterable[dict[str, Tensor]],
    posterior: GaussianPosterior,
    *,
    predictive: str,
    n_samples: int,
    generator: torch.Generator,
    order: np.ndarray,
    n_classes: int,
    draws: str = "independent",
    held: Tensor | None = None,
) -> np.ndarray:
    """The predictive probabilities ``p(y | x)``, shape ``(N, C)``, rows in the caller's order.

    The mean of :func:`predictive_samples`, except for ``predictive="probit"``,
    whose mean is :func:`probit_probabilities` of the linearised moments (no
    sampling). Parameters as in :func:`predictive_samples`.
    """
    if Predictive(predictive) is Predictive.PROBIT and not isinstance(posterior, PointMass):
        probs = probit_probabilities(*linearised_moments(module, batches, posterior)).numpy()
        return _in_callers_order(probs, order, axis=0)
    kwargs = dict(
        predictive=predictive, n_samples=n_samples, generator=generator, order=order, n_classes=n_classes, draws=draws
    )
    return predictive_samples(module, batches, posterior, **kwargs, held=held).mean(0)


def mean_prediction(
    module: torch.nn.Module, batches: Iterable[dict[str, Tensor]], posterior: GaussianPosterior, *, order, **_
) -> np.ndarray:
    """``softmax(f(x; mu))``: the prediction at the posterior mean (a point estimate), rows in the caller's order.

    Takes (and ignores) the other arguments of :func:`predictive_samples`, so the estimator runs it the same way.
    """
    probs = mc_probabilities(module, batches, posterior.mean.detach()[None])[0]
    return _in_callers_order(probs, order, axis=0)

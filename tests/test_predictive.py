"""The predictive: GLM against MC, the draws, the order of rows, the uncertainty decomposition."""

import numpy as np
import torch

from subspace_bayes.posteriors import DiagGaussian, PointMass
from subspace_bayes.predictive import (
    entropy,
    glm_probabilities,
    mc_probabilities,
    posterior_draws,
    predictive_samples,
    uncertainty_decomposition,
)


def test_glm_with_zero_covariance_is_the_prediction_at_the_mean(tiny_module):
    module, batch, _ = tiny_module
    point = PointMass.from_mean(module.posterior.mean.detach()).double()
    eps = torch.randn(5, 6, 3, dtype=torch.float64)
    glm = glm_probabilities(module, [batch], point, eps)
    with torch.no_grad():
        det = torch.softmax(module(**batch, theta=point.mean[None]), -1).numpy()
    np.testing.assert_allclose(glm, np.broadcast_to(det, glm.shape), atol=1e-10)


def test_glm_and_mc_agree_for_a_small_posterior(tiny_module):
    module, batch, _ = tiny_module
    mean = module.posterior.mean.detach()
    q = DiagGaussian.from_moments(mean, torch.full_like(mean, 0.05**2)).double()
    g = torch.Generator().manual_seed(0)
    S = 4000
    with torch.no_grad():
        theta = q.rsample(S, generator=g)
        mc = np.concatenate([mc_probabilities(module, [batch], theta[i : i + 500]) for i in range(0, S, 500)])
    glm = glm_probabilities(module, [batch], q, torch.randn(S, 6, 3, generator=g, dtype=torch.float64))
    # Within Monte Carlo error (and the linearisation error, tiny for this posterior width).
    np.testing.assert_allclose(glm.mean(0), mc.mean(0), atol=0.01)
    assert np.abs(glm.std(0) - mc.std(0)).max() < 0.01


def _rows(batch, idx):
    return {k: v[idx] for k, v in batch.items()}


def test_predictive_samples_return_rows_in_the_callers_order(tiny_module):
    module, batch, _ = tiny_module
    mean = module.posterior.mean.detach()
    q = DiagGaussian.from_moments(mean, torch.full_like(mean, 0.1**2)).double()
    order = np.array([3, 0, 5, 1, 4, 2])  # the order the inputs are fed in (e.g. sorted by length)
    for predictive in ("mc", "glm"):
        kwargs = dict(predictive=predictive, n_samples=7, n_classes=3)
        as_given = predictive_samples(
            module, [batch], q, generator=torch.Generator().manual_seed(0), order=np.arange(6), **kwargs
        )
        fed = predictive_samples(
            module,
            [_rows(batch, torch.as_tensor(order))],
            q,
            generator=torch.Generator().manual_seed(0),
            order=order,
            **kwargs,
        )
        np.testing.assert_allclose(fed, as_given, atol=1e-10)  # same draws and noise per input, however fed
        assert as_given.shape == (7, 6, 3)


def test_a_point_estimate_gets_one_forward_pass_whatever_the_predictive(tiny_module):
    module, batch, _ = tiny_module
    point = PointMass.from_mean(module.posterior.mean.detach())
    assert posterior_draws(point, 16, torch.Generator()).shape == (1, point.dim)
    for predictive in ("mc", "glm"):
        out = predictive_samples(
            module,
            [batch],
            point.double(),
            predictive=predictive,
            n_samples=16,
            generator=torch.Generator(),
            order=np.arange(6),
            n_classes=3,
        )
        assert out.shape == (1, 6, 3)


def test_uncertainty_decomposition_identities():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(10, 5))  # (S, N, C)
    u = uncertainty_decomposition(p)
    np.testing.assert_allclose(u["total"], entropy(p.mean(0)))
    np.testing.assert_allclose(u["aleatoric"], entropy(p).mean(0))
    assert np.all(u["epistemic"] >= 0) and np.all(u["epistemic"] <= u["total"] + 1e-12)
    same = uncertainty_decomposition(np.repeat(p[:1], 10, axis=0))  # identical draws: no epistemic part
    np.testing.assert_allclose(same["epistemic"], 0.0, atol=1e-12)

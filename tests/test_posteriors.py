import math

import numpy as np
import pytest
import torch
from torch.distributions import LowRankMultivariateNormal, MultivariateNormal, Normal, kl_divergence

from subspace_bayes.posteriors import (
    SCALE_LR_FACTOR,
    DiagGaussian,
    FullGaussian,
    GaussianPosterior,
    LowRankGaussian,
    PointMass,
    make_posterior,
)

D = 12
PRIOR_STD = 0.7


def _randomised(kind: str) -> GaussianPosterior:
    """A posterior with non-trivial (random) parameters, in float64 for tight comparisons."""
    g = torch.Generator().manual_seed(0)
    q = make_posterior(D, kind, cov_rank=3, init_std=0.3, generator=g).double()
    with torch.no_grad():
        for p in q.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return q


def _reference(q: GaussianPosterior):
    if isinstance(q, LowRankGaussian):
        return LowRankMultivariateNormal(q.loc, q.cov_factor, q.std.pow(2))
    if isinstance(q, FullGaussian):
        return MultivariateNormal(q.loc, scale_tril=q.scale_tril)
    return Normal(q.loc, q.std)


def _prior_kl(ref, dist_dim):
    if isinstance(ref, Normal):
        return kl_divergence(ref, Normal(torch.zeros(dist_dim, dtype=torch.float64), PRIOR_STD)).sum()
    prior = MultivariateNormal(
        torch.zeros(dist_dim, dtype=torch.float64),
        covariance_matrix=PRIOR_STD**2 * torch.eye(dist_dim, dtype=torch.float64),
    )
    return kl_divergence(ref, prior)


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_kl_matches_torch_distributions(kind):
    q = _randomised(kind)
    ref = _reference(q)
    torch.testing.assert_close(q.kl_to_prior(PRIOR_STD), _prior_kl(ref, D), atol=1e-5, rtol=1e-7)


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_covariance_matches_reference(kind):
    q = _randomised(kind)
    ref = _reference(q)
    ref_cov = torch.diag(ref.variance) if isinstance(ref, Normal) else ref.covariance_matrix
    torch.testing.assert_close(q.covariance_matrix(), ref_cov, atol=1e-10, rtol=0)
    torch.testing.assert_close(q.variance(), ref_cov.diagonal(), atol=1e-10, rtol=0)
    torch.testing.assert_close(q.logdet_covariance(), torch.logdet(ref_cov), atol=1e-8, rtol=0)


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_sample_moments_match_covariance(kind):
    q = _randomised(kind)
    with torch.no_grad():
        x = q.rsample(200_000, generator=torch.Generator().manual_seed(1))
    assert x.shape == (200_000, D)
    torch.testing.assert_close(x.mean(0), q.loc.detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), q.covariance_matrix().detach(), atol=0.03, rtol=0)


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_samples_are_reproducible_from_a_generator(kind):
    q = _randomised(kind)
    a = q.rsample(5, generator=torch.Generator().manual_seed(3))
    b = q.rsample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    c = q.rsample(5, generator=torch.Generator().manual_seed(4))
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_gradients_reach_every_variational_parameter(kind):
    q = _randomised(kind).float()
    theta = q.rsample(4, generator=torch.Generator().manual_seed(0))
    loss = (theta**2).sum() + q.kl_to_prior(1.0)
    loss.backward()
    for name, p in q.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_variances_stay_positive_after_adversarial_updates(kind):
    q = _randomised(kind)
    with torch.no_grad():
        for name, p in q.named_parameters():
            if "raw" in name:
                p.fill_(-1e4)  # far below any sensible value
    assert torch.all(q.variance() > 0)
    kl = q.kl_to_prior(1.0)
    assert torch.isfinite(kl)


def test_point_mass_kl_is_negative_log_prior():
    q = PointMass(D).double()
    with torch.no_grad():
        q.loc.copy_(torch.linspace(-1, 1, D, dtype=torch.float64))
    prior = Normal(torch.zeros(D, dtype=torch.float64), PRIOR_STD)
    nlp = -prior.log_prob(q.loc).sum()
    const = D * (math.log(PRIOR_STD) + 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(q.kl_to_prior(PRIOR_STD), nlp - const)
    assert torch.equal(q.rsample(3), q.loc.expand(3, D))


def test_make_posterior_rejects_unknown_covariance():
    with pytest.raises(ValueError, match="diag"):
        make_posterior(D, "dense")


def test_lowrank_rank_must_fit():
    with pytest.raises(ValueError, match="cov_rank"):
        LowRankGaussian(4, rank=5)


def test_initial_std():
    q = DiagGaussian(3, init_std=0.05)
    torch.testing.assert_close(q.std, torch.full((3,), 0.05), atol=1e-6, rtol=0)
    f = FullGaussian(3, init_std=0.05)
    torch.testing.assert_close(f.covariance_matrix(), 0.0025 * torch.eye(3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_parameter_groups_cover_every_parameter_once(kind):
    q = make_posterior(64, kind)
    groups = q.parameter_groups(1e-2)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in q.parameters())
    lrs = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lrs[id(q.loc)] == 1e-2
    scale = q.raw_diag if kind == "full" else q.raw_std
    assert lrs[id(scale)] == pytest.approx(1e-2 * SCALE_LR_FACTOR)  # log-scales travel e-folds
    if kind != "diag":  # a factor with D-long columns: lr / sqrt(D)
        assert lrs[id(q.tril if kind == "full" else q.cov_factor)] == pytest.approx(1e-2 / 8)


def test_lowrank_factor_starts_at_the_diagonal_scale():
    # Each column's squared norm (the variance it adds along its direction) starts near init_std^2,
    # whatever D: a factor scaled by 1/sqrt(k) started with eigenvalues D * init_std^2 / k.
    for D in (64, 1600):
        q = make_posterior(D, "lowrank", cov_rank=4, init_std=0.05, generator=torch.Generator().manual_seed(0))
        top = q.spectrum()[0].item()
        assert 0.0025 < top < 3 * 0.0025


def test_lowrank_columns_do_not_random_walk_above_the_prior():
    # Noisy gradients on every factor entry (a random walk) for 130 Adam steps, the budget of a
    # default fit, plus the KL: at lr / sqrt(D) no direction may end far above the prior variance 1.
    D = 1538
    q = make_posterior(D, "lowrank", cov_rank=4, init_std=0.05, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(q.parameter_groups(1e-2))
    g = torch.Generator().manual_seed(1)
    for _ in range(130):
        opt.zero_grad()
        (q.kl_to_prior(1.0) / 400).backward()
        q.cov_factor.grad += 1e-2 * torch.randn(q.cov_factor.shape, generator=g)
        opt.step()
    assert q.spectrum()[0].item() < 1.1  # the KL alone is minimised at exactly the prior


def test_full_factor_step_keeps_the_marginal_scale():
    # One Adam step on a loss that pushes every factor entry: the marginal std of a full posterior
    # must grow about as much as a diagonal posterior's would, not by sqrt(D) times more.
    D, init = 400, 0.05
    stds = {}
    for kind in ("diag", "full"):
        q = make_posterior(D, kind, init_std=init)
        opt = torch.optim.Adam(q.parameter_groups(1e-2))
        for _ in range(5):
            opt.zero_grad()
            (-q.trace_covariance()).backward()  # grow the covariance
            if kind == "full":
                q.tril.grad += 1e-3  # make the off-diagonal gradient non-zero everywhere
            opt.step()
        stds[kind] = q.variance().detach().sqrt().mean().item()
    assert stds["full"] < 1.5 * stds["diag"]


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_quadratic_form_matches_dense(kind):
    q = make_posterior(10, kind, cov_rank=3, init_std=0.2, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        for p in q.parameters():
            p.add_(0.2 * torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(2)))
    J = torch.randn(4, 3, 10, dtype=torch.float64)
    dense = J @ q.covariance_matrix() @ J.transpose(1, 2)
    torch.testing.assert_close(q.quadratic_form(J), dense)


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_kl_to_a_per_coordinate_prior_matches_torch_distributions(kind):
    # One scale for the first half (the cores), another for the rest (a Bayesian head).
    q = _randomised(kind)
    scale = torch.full((D,), 1.7, dtype=torch.float64)
    scale[: D // 2] = 0.3
    prior = MultivariateNormal(torch.zeros(D, dtype=torch.float64), covariance_matrix=torch.diag(scale**2))
    ref = _reference(q)
    cov = torch.diag(ref.variance) if isinstance(ref, Normal) else ref.covariance_matrix
    expected = kl_divergence(MultivariateNormal(q.loc, covariance_matrix=cov), prior)
    torch.testing.assert_close(q.kl_to_prior(scale), expected, atol=1e-5, rtol=1e-7)
    # A constant tensor is the isotropic prior.
    torch.testing.assert_close(
        q.kl_to_prior(torch.full((D,), PRIOR_STD, dtype=torch.float64)), q.kl_to_prior(PRIOR_STD)
    )


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_block_empirical_bayes_is_the_optimum_of_that_blocks_prior(kind):
    from scipy.optimize import minimize_scalar

    q = _randomised(kind)
    block = slice(2, D)
    closed = float(q.empirical_bayes_prior_variance(block))

    def kl(log_s):
        scale = torch.ones(D, dtype=torch.float64)
        scale[block] = float(np.exp(0.5 * log_s))
        return float(q.kl_to_prior(scale))

    numeric = minimize_scalar(kl, bounds=(-10, 5), method="bounded", options={"xatol": 1e-10}).x
    assert np.isclose(np.exp(numeric), closed, rtol=1e-5)

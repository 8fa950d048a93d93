"""Is the fitted VI posterior the ELBO's optimum? References where the answer is known (issue 32).

(a) Bayesian multinomial logistic regression (a Bayesian head on frozen features): the default
    optimiser settings and step budget against a long, small-step, many-draw reference fit of the
    same family (itself checked against the Laplace approximation); (b) directions the likelihood
    does not see (features that are zero on every example) must end at the prior; (c) on cores +
    head of a tiny backbone, the ELBO of the default fit against a long, small-step fit.
"""

import functools
import math

import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.inference.vi import expected_nll
from subspace_bayes.module import contrast_basis
from subspace_bayes.posteriors import make_posterior

from conftest import tiny_kwargs

N, H, C, DEAD = 400, 6, 3, 2  # examples, informative features, classes, features that are always zero
PRIOR_STD = 1.0


def _logistic_problem():
    g = torch.Generator().manual_seed(0)
    phi = torch.randn(N, H, generator=g)
    W = 1.5 * torch.randn(C, H, generator=g)
    y = torch.distributions.Categorical(logits=phi @ W.T).sample()  # seeded by the global RNG below
    features = torch.cat([phi, torch.zeros(N, DEAD), torch.ones(N, 1)], dim=1)  # [phi, 0, 1] for [W | b]
    return features, y


def _logits(theta, features):
    Z = theta.reshape(theta.shape[0], C - 1, features.shape[1])
    return torch.einsum("nh,sch->snc", features, torch.einsum("ck,skh->sch", contrast_basis(C), Z))


def _fit(covariance, *, steps, lr, batch_size, n_draws, cosine=True, seed=0):
    """Minimise NLL + KL / N with the posterior's own parameter groups and cosine decay (as the estimator does)."""
    torch.manual_seed(seed)
    features, y = _logistic_problem()
    D = (C - 1) * features.shape[1]
    q = make_posterior(D, covariance, cov_rank=2, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(q.parameter_groups(lr), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine else None
    g = torch.Generator().manual_seed(seed + 1)
    order, pos = torch.randperm(N, generator=g), 0
    for _ in range(steps):
        if pos + batch_size > N:
            order, pos = torch.randperm(N, generator=g), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        loss = expected_nll(_logits(q.rsample(n_draws, g), features[idx]), y[idx]) + q.kl_to_prior(PRIOR_STD) / N
        opt.zero_grad()
        loss.backward()
        opt.step()
        if schedule is not None:
            schedule.step()
    return q, features, y


def _elbo(q, features, y, n_draws=512):
    with torch.no_grad():
        theta = q.rsample(n_draws, torch.Generator().manual_seed(7))
        return float(-N * expected_nll(_logits(theta, features), y) - q.kl_to_prior(PRIOR_STD))


#: The default budget: 10 epochs of 400 examples in batches of 32 at lr = 1e-2, one draw per step.
DEFAULT = dict(steps=10 * math.ceil(N / 32), lr=1e-2, batch_size=32, n_draws=1)
#: The reference: full-batch, 16 draws, 3,000 steps with a cosine-decayed smaller step.
REFERENCE = dict(steps=3000, lr=3e-3, batch_size=N, n_draws=16)


@functools.cache
def _reference(covariance):
    return _fit(covariance, **REFERENCE)


@pytest.fixture(scope="module", params=[(c, s) for c in ("diag", "lowrank", "full") for s in ("constant", "cosine")])
def fits(request):
    """``(covariance, schedule)``, the default-budget fit, the reference fit."""
    covariance, schedule = request.param
    return request.param, _fit(covariance, **DEFAULT, cosine=schedule == "cosine"), _reference(covariance)


def _seen(width: int, dim: int) -> torch.Tensor:
    """Coordinates of theta whose feature is not always zero (the informative features and the bias)."""
    return torch.tensor([j % width < H or j % width == width - 1 for j in range(dim)])


def test_directions_the_likelihood_cannot_see_end_at_the_prior(fits, request):
    # The contrasts of an always-zero feature change no prediction: the exact posterior there is the
    # prior N(0, 1). With one step size for everything the default budget left them near init_std^2
    # (0.03 for diag, 0.12 for lowrank); the log-scales' own step takes them to the prior at a
    # constant step. Cosine decay (lr_schedule="auto" for VI) halves the distance a scale can travel
    # in 130 steps: they end near half the prior (measured 0.48-0.52), an open problem.
    (_, schedule), (q, features, _), _ = fits
    if schedule == "cosine":
        request.applymarker(pytest.mark.xfail(strict=True, reason="cosine decay: unseen scales reach ~0.5 x prior"))
    dead = ~_seen(features.shape[1], q.dim)
    np.testing.assert_allclose(q.variance().detach()[dead].numpy(), PRIOR_STD**2, rtol=0.2)


def test_no_direction_ends_far_above_the_prior(fits):
    # The optimum never exceeds the prior (the GGN is positive semi-definite); the low-rank factor's
    # full step once put four directions at 2-19x it.
    _, (q, *_), _ = fits
    assert q.spectrum()[0] < 1.1 * PRIOR_STD**2


def test_the_default_budget_closes_most_of_the_elbo_gap(fits):
    # Default budget against the long reference fit, on the ELBO (what VI maximises). Measured: the
    # default ends 21-22% below the reference at a constant step and 46-47% below with cosine decay
    # (the mean travels less); at one step size for everything it ended 25% below with the unseen
    # variances at init_std^2.
    (covariance, schedule), (q, features, y), (ref, *_) = fits
    gap = _elbo(ref, features, y) - _elbo(q, features, y)
    bound = 0.3 if schedule == "constant" else 0.5
    assert 0 < gap < bound * abs(_elbo(ref, features, y)), (covariance, schedule, gap)


@pytest.mark.xfail(
    strict=True,
    reason="open (issue 32): in 130 steps at lr=1e-2 Adam moves each mean entry by at most ~1.3, and the "
    "reference mean has entries up to 1.8; the mean ends half-way (docs/method.md).",
)
def test_the_default_budget_reaches_the_reference_mean_and_variances(fits):
    (covariance, _), (q, features, _), (ref, *_) = fits
    seen = _seen(features.shape[1], q.dim)
    mu, mu_ref = q.mean.detach(), ref.mean.detach()
    assert (mu - mu_ref).norm() <= 0.2 * mu_ref.norm()
    ratio = (q.variance() / ref.variance()).detach()[seen]
    assert ratio.min() > 0.8**2 and ratio.max() < 1.2**2, (covariance, ratio)  # std within 20%


def test_the_reference_full_covariance_matches_the_laplace_approximation():
    # Sanity check of the reference itself: for this well-determined logistic regression the full
    # Gaussian VI optimum is close to the Laplace approximation at the mode (Hessian of NLL + prior).
    ref, features, y = _reference("full")
    theta = ref.mean.detach().clone().requires_grad_(True)
    for _ in range(50):  # Newton steps to the mode of the log joint
        loss = N * expected_nll(_logits(theta[None], features), y) + 0.5 * theta.pow(2).sum() / PRIOR_STD**2
        g = torch.autograd.grad(loss, theta, create_graph=True)[0]
        Hm = torch.stack([torch.autograd.grad(g[i], theta, retain_graph=True)[0] for i in range(len(theta))])
        theta = (theta - torch.linalg.solve(Hm, g)).detach().requires_grad_(True)
    laplace_var = torch.linalg.inv(Hm.detach().double()).diagonal()
    ratio = (ref.variance().detach().double() / laplace_var)[_seen(features.shape[1], len(theta))]
    assert ratio.min() > 0.7 and ratio.max() < 1.3


def test_the_default_fit_on_a_backbone_closes_most_of_the_elbo_gap_to_a_long_small_step_fit(tiny_bert_dir, toy_data):
    # Cores + Bayesian head of a tiny BERT, the default lr and epochs, against 4x the epochs at a
    # third of the step. kl_weight=1, so that the objective is the ELBO that elbo() reports.
    X, y = toy_data
    params = tiny_kwargs(tiny_bert_dir, bayesian_head=True, lr=1e-2, max_epochs=10, kl_weight=1.0)
    default = BayesianSubspaceClassifier(**params).fit(X, y)
    reference = BayesianSubspaceClassifier(**{**params, "lr": 3e-3, "max_epochs": 40}).fit(X, y)
    ref_elbo = reference.elbo(X, y, n_samples=64)
    gap = ref_elbo - default.elbo(X, y, n_samples=64)
    assert 0 < gap < 0.3 * abs(ref_elbo), gap
    history = default.history
    assert {"train_nll", "train_kl"} <= set(history[-1])  # the two terms of the loss, per epoch
    np.testing.assert_allclose(history[-1, "train_loss"], history[-1, "train_nll"] + history[-1, "train_kl"], rtol=1e-5)


def test_cosine_factor_runs_from_one_to_zero():
    from subspace_bayes.callbacks import cosine_factor

    assert cosine_factor(0, 10) == 1.0 and cosine_factor(10, 10) == 0.0 and cosine_factor(12, 10) == 0.0
    assert cosine_factor(5, 10) == pytest.approx(0.5) and cosine_factor(3, 0) == 1.0


def test_vi_decays_every_step_over_the_fit_and_a_later_call_starts_again(tiny_bert_dir, toy_data):
    X, y = toy_data
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, lr=1e-2, max_epochs=2)).fit(X, y)
    groups = clf.optimizer_.param_groups
    assert dict(clf.callbacks_)["lr_schedule"] is not None
    assert all(g["lr"] == g["base_lr"] for g in groups)  # restored for the next training call
    assert clf.schedule_ == (0, 2 * math.ceil(len(X) / 16))
    assert dict(clf.callbacks_)["lr_schedule"].step_ == clf.schedule_[1]  # every training step counted
    assert "lr_schedule" not in dict(
        BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, posterior="map", max_epochs=1)).fit(X, y).callbacks_
    )


def test_cosine_is_refused_for_swag(tiny_bert_dir, toy_data):
    from subspace_bayes._validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="swag_lr"):
        BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, posterior="swag", lr_schedule="cosine")).fit(*toy_data)


def test_the_head_gets_its_own_prior(tiny_bert_dir, toy_data):
    params = tiny_kwargs(tiny_bert_dir, bayesian_head=True, lr=1e-2, max_epochs=2, prior_std=0.3)
    clf = BayesianSubspaceClassifier(**params, head_prior_std=2.0).fit(*toy_data)
    assert clf.prior_std_ == 0.3 and clf.head_prior_std_ == 2.0
    scale = clf.criterion_.prior_scale()
    n_core = clf.module_.n_core
    assert torch.all(scale[:n_core] == 0.3) and torch.all(scale[n_core:] == 2.0)
    auto = BayesianSubspaceClassifier(**{**params, "prior_std": "auto"}, head_prior_std="auto").fit(*toy_data)
    q = auto.module_.posterior
    head = slice(n_core, auto.module_.n_theta)
    assert np.isclose(auto.head_prior_std_, float(q.empirical_bayes_prior_variance(head).sqrt()), rtol=1e-5)
    assert np.isclose(auto.prior_std_, float(q.empirical_bayes_prior_variance(slice(0, n_core)).sqrt()), rtol=1e-5)
    shared = BayesianSubspaceClassifier(**params, head_prior_std=None).fit(*toy_data)
    assert shared.head_prior_std_ is None and shared.criterion_.prior_scale() == 0.3


def test_convergence_problems_name_scales_at_init_and_variances_above_the_prior():
    from subspace_bayes.inference.vi import convergence_problems

    at_init = torch.full((100,), 0.05**2)
    assert "still at init_std" in " ".join(convergence_problems(at_init, 0.05, 1.0))
    wandering = torch.full((100,), 0.5)
    wandering[3] = 4.0
    assert "4.0x its prior" in " ".join(convergence_problems(wandering, 0.05, 1.0))
    per_coordinate = torch.full((100,), 2.0)  # a head prior of 2 allows a variance of 4
    assert convergence_problems(torch.full((100,), 4.0), 0.05, per_coordinate) == []
    assert convergence_problems(torch.full((100,), 0.3), 0.05, 1.0) == []


def test_elbo_is_the_expected_log_likelihood_minus_the_kl(tiny_bert_dir, toy_data):
    X, y = toy_data
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, lr=1e-2, max_epochs=1)).fit(X, y)
    probs = clf.predict_sample_proba(X, 16)
    y_enc = np.searchsorted(clf.classes_, y)
    loglik = np.log(probs[:, np.arange(len(y)), y_enc]).mean(0).sum()
    kl = float(clf.module_.posterior.kl_to_prior(clf.prior_std_))
    assert clf.elbo(X, y, n_samples=16) == pytest.approx(loglik - kl, rel=1e-6)

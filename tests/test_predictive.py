"""The predictive: GLM against MC, the draws, the order of rows, the uncertainty decomposition."""

import numpy as np
import pytest
import torch

from subspace_bayes.posteriors import DiagGaussian, PointMass
from subspace_bayes.predictive import (
    entropy,
    glm_probabilities,
    linearised_moments,
    linearised_sample_probs,
    mc_probabilities,
    posterior_draws,
    predictive_mean,
    predictive_samples,
    probit_probabilities,
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
    for predictive in ("mc", "glm", "probit"):
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


def test_contrast_jacobians_give_the_same_glm_predictive_with_one_backward_pass_less(tiny_module):
    module, batch, _ = tiny_module
    mean = module.posterior.mean.detach()
    q = DiagGaussian.from_moments(mean, torch.linspace(0.01, 0.2, mean.numel()) ** 2).double()
    logits, J = module.logit_jacobians(batch, mean)
    g, Jg = module.logit_jacobians(batch, mean, contrasts=True)
    torch.testing.assert_close(g, logits - logits[:, :1])
    torch.testing.assert_close(Jg, J - J[:, :1])  # d(f_c - f_0) = J_c - J_0; row 0 is zero
    m, V = linearised_moments(module, [batch], q)
    D = torch.eye(3, dtype=torch.float64) - torch.zeros(3, 3, dtype=torch.float64).index_fill_(1, torch.tensor([0]), 1)
    full_cov = q.quadratic_form(J.double())  # Cov of f; the contrasts are g = D f with D = I - e e_0^T
    torch.testing.assert_close(V, D @ full_cov @ D.T)
    eps = torch.randn(64, 6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # The softmax of g and of f agree in distribution; with eigen square roots the draws differ, so compare moments.
    by_f = linearised_sample_probs(logits, full_cov, torch.randn(20000, 6, 3, dtype=torch.float64)).mean(0)
    by_g = linearised_sample_probs(m, V, torch.randn(20000, 6, 3, dtype=torch.float64)).mean(0)
    torch.testing.assert_close(by_g, by_f, atol=0.01, rtol=0)
    assert linearised_sample_probs(m, V, eps).shape == (64, 6, 3)


def test_probit_is_mackays_sigmoid_for_two_classes_and_exact_without_variance():
    m = torch.tensor([[0.0, 1.5], [0.0, -0.7]], dtype=torch.float64)
    V = torch.zeros(2, 2, 2, dtype=torch.float64)
    V[:, 1, 1] = torch.tensor([2.0, 0.5])
    p = probit_probabilities(m, V)
    expected = torch.sigmoid(m[:, 1] / torch.sqrt(1 + np.pi / 8 * V[:, 1, 1]))
    torch.testing.assert_close(p[:, 1], expected)
    torch.testing.assert_close(p.sum(1), torch.ones(2, dtype=torch.float64))
    logits = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(
        probit_probabilities(logits, torch.zeros(5, 4, 4, dtype=torch.float64)), logits.softmax(1)
    )


def test_probit_is_close_to_the_gaussian_softmax_integral():
    g = torch.Generator().manual_seed(0)
    m = 2 * torch.randn(50, 3, generator=g, dtype=torch.float64)
    A = 0.5 * torch.randn(50, 3, 3, generator=g, dtype=torch.float64)
    V = A @ A.transpose(1, 2)
    mc = linearised_sample_probs(m, V, torch.randn(40000, 50, 3, generator=g, dtype=torch.float64)).mean(0)
    p = probit_probabilities(m, V)
    # An approximation: close, not exact (variances of logit differences up to about 3 here).
    assert (p - mc).abs().max() < 0.1
    assert (p - mc).abs().mean() < 0.015
    binary = linearised_sample_probs(
        m[:, :2], V[:, :2, :2], torch.randn(40000, 50, 2, generator=g, dtype=torch.float64)
    )
    assert (probit_probabilities(m[:, :2], V[:, :2, :2]) - binary.mean(0)).abs().max() < 0.02  # MacKay's probit
    # Shifting every logit by one shared Gaussian changes nothing (softmax is shift invariant).
    shared = V + 3.0 * torch.ones(3, 3, dtype=torch.float64)
    torch.testing.assert_close(probit_probabilities(m, shared), p)


def test_probit_mean_and_glm_samples_share_one_linearisation(tiny_module):
    module, batch, _ = tiny_module
    mean = module.posterior.mean.detach()
    q = DiagGaussian.from_moments(mean, torch.full_like(mean, 0.1**2)).double()
    kwargs = dict(n_samples=4000, n_classes=3, order=np.arange(6))
    closed = predictive_mean(module, [batch], q, predictive="probit", generator=torch.Generator(), **kwargs)
    sampled = predictive_samples(module, [batch], q, predictive="probit", generator=torch.Generator(), **kwargs)
    np.testing.assert_allclose(closed.sum(1), 1.0)
    np.testing.assert_allclose(closed, sampled.mean(0), atol=0.02)
    kwargs["n_samples"] = 8  # MC: network passes per draw
    mc_mean = predictive_mean(module, [batch], q, predictive="mc", generator=torch.Generator().manual_seed(1), **kwargs)
    mc = predictive_samples(module, [batch], q, predictive="mc", generator=torch.Generator().manual_seed(1), **kwargs)
    np.testing.assert_allclose(mc_mean, mc.mean(0))


def test_uncertainty_scores_agree_with_their_definitions():
    from subspace_bayes.predictive import uncertainty_scores

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20, 7, 3))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    s = uncertainty_scores(p)
    np.testing.assert_allclose(s["max_probability"], 1 - p.mean(0).max(-1))
    np.testing.assert_allclose(s["total"], entropy(p.mean(0)))
    centred = logits - logits.mean(-1, keepdims=True)  # the logits, up to their free shift
    np.testing.assert_allclose(s["logit_variance"], centred.var(0).mean(-1))
    same = uncertainty_scores(np.repeat(p[:1], 5, axis=0))
    np.testing.assert_allclose(same["logit_variance"], 0.0, atol=1e-12)


def test_antithetic_draws_come_in_mirrored_pairs():
    from subspace_bayes.predictive import standard_normal_draws

    eps = standard_normal_draws(7, 5, draws="antithetic", generator=torch.Generator().manual_seed(0))
    assert eps.shape == (7, 5)
    torch.testing.assert_close(eps[1::2], -eps[0:6:2])  # pairs (eps, -eps); the 7th is unpaired
    assert not torch.allclose(eps[0], eps[2])


def test_independent_draws_are_the_posteriors_own_samples():
    # the default scheme gives exactly the draws of before (stored results stay reproducible)
    from subspace_bayes.posteriors import make_posterior
    from subspace_bayes.predictive import posterior_draws

    q = make_posterior(6, "lowrank", cov_rank=2, init_std=0.3, generator=torch.Generator().manual_seed(1))
    expected = q.rsample(4, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(posterior_draws(q, 4, torch.Generator().manual_seed(5)), expected)
    pair = posterior_draws(q, 2, torch.Generator().manual_seed(5), draws="antithetic")
    torch.testing.assert_close(pair.mean(0), q.mean.detach())  # mu + L eps and mu - L eps


def test_sobol_draws_stratify_every_coordinate_and_are_reproducible():
    from subspace_bayes.predictive import standard_normal_draws

    eps = standard_normal_draws(16, 40, draws="sobol", generator=torch.Generator().manual_seed(0))
    again = standard_normal_draws(16, 40, draws="sobol", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(eps, again)
    u = torch.special.ndtr(eps.double())  # back to the unit cube
    cells = torch.floor(u * 16).long()
    for d in range(40):  # a scrambled Sobol net of 2^4 points: one point in each 1/16 of every axis
        assert sorted(cells[:, d].tolist()) == list(range(16))
    other = standard_normal_draws(16, 40, draws="sobol", generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(eps, other)  # another seed, another scrambling


def test_the_estimator_predicts_with_each_draw_scheme_row_by_row(tiny_bert_dir, toy_data, toy_test):
    import pytest

    from subspace_bayes import BayesianSubspaceClassifier

    from conftest import tiny_kwargs

    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=2)).fit(*toy_data)
    X = toy_test[0]
    assert clf.draws == "antithetic"  # the default, chosen on dev (docs/cost.md)
    independent = clf.set_params(draws="independent").predict_proba(X)
    for scheme in ("antithetic", "sobol"):
        clf.set_params(draws=scheme)
        p = clf.predict_proba(X)
        assert p.shape == independent.shape and not np.allclose(p, independent)
        np.testing.assert_allclose(clf.predict_proba(X[::-1])[::-1], p, atol=1e-6)  # a row is its own text's
        np.testing.assert_allclose(clf.predict_proba(X[:3]), p[:3], atol=1e-6)
    with pytest.raises(ValueError, match="draws"):
        clf.set_params(draws="antithetical").predict_proba(X)


def test_sampled_layers_holds_the_lower_cores_at_the_mean(tiny_bert_dir, toy_data, toy_test):
    import pytest

    from subspace_bayes import BayesianSubspaceClassifier

    from conftest import tiny_kwargs

    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=2, bayesian_head=True)).fit(*toy_data)
    X = toy_test[0]
    full = clf.predict_sample_proba(X)
    np.testing.assert_array_equal(clf.set_params(sampled_layers=2).predict_sample_proba(X), full)  # 2 blocks
    top = clf.set_params(sampled_layers=1).predict_sample_proba(X)
    head = clf.set_params(sampled_layers=0).predict_sample_proba(X)
    assert top.shape == head.shape == full.shape
    assert not np.allclose(top, full) and not np.allclose(head, top)
    assert head.std(0).max() > 1e-4  # the head alone still varies between draws
    # The same as drawing every core and overwriting the held ones with the mean, in full passes.
    from subspace_bayes.predictive import _in_callers_order, mc_probabilities, posterior_draws

    q, held = clf.module_.posterior, clf.module_.held_coordinates(1)
    theta = posterior_draws(q, clf.n_samples, clf._predict_generator(), clf.draws).detach()
    theta[:, held] = q.mean.detach()[held]

    def overwritten(module, batches, posterior, order, **_):
        return _in_callers_order(mc_probabilities(module, batches, theta), order, axis=1)

    clf.set_params(sampled_layers=1)
    np.testing.assert_allclose(clf._predict_many({"p": overwritten}, X)["p"], top, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X[::-1])[::-1], top.mean(0), atol=1e-6)  # row by row
    with pytest.raises(ValueError, match="sampled_layers"):
        clf.set_params(sampled_layers=-1).predict_proba(X)


@pytest.mark.parametrize("max_rows", [4, 16, 10**6])  # draws of one input split; 2 inputs per pass; all at once
def test_folded_passes_give_the_same_probabilities_and_scores_however_they_are_cut(max_rows):
    from subspace_bayes.module import SubspaceClassifierModule
    from subspace_bayes.predictive import mc_probabilities_and_scores

    from conftest import tiny_backbone, token_batch

    module = SubspaceClassifierModule(tiny_backbone("bert"), 2, rank=4, covariance="diag").eval()
    ids, mask = token_batch(n=5)
    theta = module.sample_theta(8, torch.Generator().manual_seed(0)).detach()
    batches = [{"input_ids": ids, "attention_mask": mask}]

    def scorer(m, phi):  # a score of the draw-averaged features
        return {"norm": phi.norm(dim=-1).numpy()}

    probs, scores = mc_probabilities_and_scores(module, batches, theta, scorer, max_rows=max_rows)
    with torch.no_grad():
        separate = [torch.softmax(module(ids, mask, theta=theta[s : s + 1])[0].double(), -1) for s in range(8)]
        phi = torch.stack([module.features(theta[s : s + 1], ids, mask) for s in range(8)]).mean(0)
    np.testing.assert_allclose(probs, torch.stack(separate).numpy(), atol=1e-6)
    np.testing.assert_allclose(scores["norm"], phi.norm(dim=-1).numpy(), rtol=1e-5)

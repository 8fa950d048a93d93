"""SWAG, Laplace, the GLM predictive and the posterior spectrum."""

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.inference.laplace import (
    ggn,
    ggn_eigenvalues,
    laplace_posterior,
    log_marginal_likelihood,
    softmax_hessian_factor,
    tune_prior_precision,
)
from subspace_bayes.inference.swag import SWAGMoments
from subspace_bayes.module import SubspaceClassifierModule
from subspace_bayes.posteriors import DiagGaussian, PointMass, make_posterior
from subspace_bayes.predictive import glm_probabilities, mc_probabilities

from conftest import tiny_bert_config, tiny_kwargs


def test_swag_moments_match_numpy_reference():
    rng = np.random.RandomState(0)
    snaps = rng.randn(7, 5)
    m = SWAGMoments(max_snapshots=4)
    for s in snaps:
        m.update(torch.from_numpy(s))
    mean = snaps.mean(0)
    diag = (snaps**2).mean(0) - mean**2
    dev = (snaps[-4:] - mean).T  # the last K snapshots
    expected = 0.5 * np.diag(diag) + 0.5 * dev @ dev.T / 3
    np.testing.assert_allclose(m.mean.numpy(), mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.covariance_matrix().numpy(), expected, rtol=0, atol=1e-12)
    q = m.posterior(scale=0.5, dtype=torch.float64)
    np.testing.assert_allclose(q.covariance_matrix().detach().numpy(), 0.5 * expected, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(q.mean.detach().numpy(), mean, atol=1e-12)


def test_swag_without_snapshots_is_a_clear_error():
    with pytest.raises(RuntimeError, match="swag_start"):
        SWAGMoments(3).posterior()


@pytest.fixture(scope="module")
def tiny_module():
    from transformers import AutoModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        backbone = AutoModel.from_config(tiny_bert_config(100)).eval()
        module = SubspaceClassifierModule(backbone, 3, rank=2, covariance=None).double().eval()
        with torch.no_grad():
            module.posterior.loc.normal_(0, 0.3)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (6, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    return module, {"input_ids": ids, "attention_mask": mask}, labels


def test_ggn_equals_dense_autograd_reference(tiny_module):
    module, batch, labels = tiny_module
    mean = module.posterior.mean.detach()
    G, nll, n = ggn(module, [{**batch, "labels": labels}], mean, "full")
    reference = torch.zeros_like(G)
    for i in range(n):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        f = lambda th: module(**one, theta=th[None])[0, 0]  # noqa: E731 - (C,)
        J = torch.autograd.functional.jacobian(f, mean)  # (C, D)
        p = torch.softmax(f(mean), -1)
        reference += J.T @ (torch.diag(p) - torch.outer(p, p)) @ J
    torch.testing.assert_close(G, reference, atol=1e-9, rtol=1e-7)
    G_diag, _, _ = ggn(module, [{**batch, "labels": labels}], mean, "diag")
    torch.testing.assert_close(G_diag, reference.diagonal(), atol=1e-9, rtol=1e-7)
    # Precision of the Laplace posterior = GGN + prior precision.
    q = laplace_posterior(mean, G, prior_precision=2.5)
    precision = torch.linalg.inv(q.covariance_matrix().double())
    torch.testing.assert_close(precision, G + 2.5 * torch.eye(len(mean), dtype=G.dtype), atol=1e-6, rtol=1e-6)
    logits = module(**batch, theta=mean[None])[0]
    assert np.isclose(nll, torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item())


@pytest.mark.parametrize("C", [2, 3, 5])
def test_softmax_hessian_factor_has_c_minus_1_columns(C):
    p = torch.softmax(torch.randn(4, C, dtype=torch.float64), -1)
    W = softmax_hessian_factor(p)
    assert W.shape == (4, C, C - 1)
    torch.testing.assert_close(W @ W.transpose(1, 2), torch.diag_embed(p) - p[:, :, None] * p[:, None, :])


def test_marglik_tuning_moves_prior_precision_and_increases_evidence(tiny_module):
    module, batch, labels = tiny_module
    mean = module.posterior.mean.detach()
    G, nll, _ = ggn(module, [{**batch, "labels": labels}], mean, "full")
    eig, sq = ggn_eigenvalues(G), float(mean.pow(2).sum())
    start = 1.0
    tuned = tune_prior_precision(eig, sq, nll)
    assert not np.isclose(tuned, start, rtol=0.05)
    assert log_marginal_likelihood(tuned, eig, sq, nll) > log_marginal_likelihood(start, eig, sq, nll)
    # A maximum: nudging either way does not help.
    for f in (0.9, 1.1):
        assert log_marginal_likelihood(tuned, eig, sq, nll) >= log_marginal_likelihood(tuned * f, eig, sq, nll) - 1e-9


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_quadratic_form_matches_dense(kind):
    q = make_posterior(10, kind, cov_rank=3, init_std=0.2, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        for p in q.parameters():
            p.add_(0.2 * torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(2)))
    J = torch.randn(4, 3, 10, dtype=torch.float64)
    dense = J @ q.covariance_matrix() @ J.transpose(1, 2)
    torch.testing.assert_close(q.quadratic_form(J), dense)


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


POSTERIORS = ["map", "vi", "swag", "laplace"]


@pytest.mark.parametrize("posterior", POSTERIORS)
@pytest.mark.parametrize("predictive", ["mc", "glm"])
def test_every_posterior_through_the_estimator(tiny_bert_dir, toy_data, toy_test, posterior, predictive, tmp_path):
    extra = {"swag_start": 2, "swag_max_snapshots": 5} if posterior == "swag" else {}
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, posterior=posterior, predictive=predictive,
                                                  max_epochs=5, **extra))
    clf.fit(*toy_data)
    p = clf.predict_proba(toy_test[0])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    u = clf.predict_uncertainty(toy_test[0])
    assert np.all(u["epistemic"] >= 0)
    assert (u["epistemic"].max() > 0) == (posterior != "map")
    spectrum = clf.posterior_spectrum()
    assert spectrum.shape == (clf.n_theta_,) and np.all(np.diff(spectrum) <= 1e-12) and np.all(spectrum >= 0)
    assert (clf.effective_rank_ == 0) == (posterior == "map") and clf.effective_rank_ <= clf.n_theta_
    joblib.dump(clf, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    np.testing.assert_allclose(loaded.predict_proba(toy_test[0]), p, atol=1e-10)
    if posterior == "laplace":
        assert clf.prior_precision_ > 0 and np.isfinite(clf.log_marginal_likelihood_)


def test_swag_posterior_is_low_rank_plus_diagonal(tiny_bert_dir, toy_data):
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, posterior="swag", max_epochs=6, swag_start=2,
                                                  swag_max_snapshots=6, swag_lr=0.05))
    clf.fit(*toy_data)
    q = clf.module_.posterior
    assert q.rank == 6 and clf.posterior_spec_ == ("lowrank", 6)
    # Low rank: K snapshots give at most K-1 large directions on top of the diagonal part.
    assert clf.effective_rank_ < clf.n_theta_


def test_grid_search_over_posterior(tiny_bert_dir, toy_data):
    base = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=3, swag_start=1, swag_max_snapshots=3))
    search = GridSearchCV(base, {"posterior": POSTERIORS}, cv=2).fit(*toy_data)
    assert [p["posterior"] for p in search.cv_results_["params"]] == POSTERIORS
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_kron_ggn_is_exact_for_one_single_token_example(tiny_module):
    module, batch, labels = tiny_module
    mean = module.posterior.mean.detach()
    one = {"input_ids": batch["input_ids"][:1, :1], "attention_mask": batch["attention_mask"][:1, :1]}
    exact, nll_full, _ = ggn(module, [{**one, "labels": labels[:1]}], mean, "full")
    kron, nll_kron, _ = ggn(module, [{**one, "labels": labels[:1]}], mean, "kron")
    assert np.isclose(nll_full, nll_kron)
    r2 = 4  # rank 2 -> 4 core entries per layer
    mask = torch.block_diag(*[torch.ones(r2, r2, dtype=torch.float64)] * (len(mean) // r2))
    torch.testing.assert_close(kron, exact * mask, atol=1e-9, rtol=1e-7)


def test_kron_ggn_is_block_diagonal_psd_and_close_in_scale(tiny_module):
    module, batch, labels = tiny_module
    mean = module.posterior.mean.detach()
    exact, _, _ = ggn(module, [{**batch, "labels": labels}], mean, "full")
    kron, _, _ = ggn(module, [{**batch, "labels": labels}], mean, "kron")
    assert torch.linalg.eigvalsh(kron).min() > -1e-10
    ratio = kron.trace() / exact.trace()
    assert 0.05 < ratio < 20, ratio


def test_laplace_kron_through_the_estimator(tiny_bert_dir, toy_data, toy_test):
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, posterior="laplace", laplace_structure="kron",
                                                  max_epochs=3))
    p = clf.fit(*toy_data).predict_proba(toy_test[0])
    assert np.isfinite(p).all() and clf.prior_precision_ > 0 and clf.effective_rank_ > 0

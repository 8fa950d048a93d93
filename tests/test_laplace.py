"""Laplace: the GGN against autograd, K-FAC, the evidence and its prior-precision optimum."""

import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.inference.laplace import (
    ggn,
    ggn_eigenvalues,
    laplace_posterior,
    log_marginal_likelihood,
    softmax_hessian_factor,
    tune_prior_precision,
)

from conftest import tiny_kwargs


def test_ggn_equals_dense_autograd_reference(tiny_module):
    module, batch, labels = tiny_module
    mean = module.posterior.mean.detach()
    G, nll, n = ggn(module, [{**batch, "labels": labels}], mean, "full")
    reference = torch.zeros_like(G)
    for i in range(n):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        f = lambda th, one=one: module(**one, theta=th[None])[0, 0]
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
    clf = BayesianSubspaceClassifier(
        **tiny_kwargs(tiny_bert_dir, posterior="laplace", laplace_structure="kron", max_epochs=3)
    )
    p = clf.fit(*toy_data).predict_proba(toy_test[0])
    assert np.isfinite(p).all() and clf.prior_precision_ > 0 and clf.effective_rank_ > 0

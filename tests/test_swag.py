"""SWAG: snapshot moments against numpy, the collector, and the posterior it yields."""

import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.inference.swag import SWAGMoments

from conftest import tiny_kwargs


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


def test_swag_posterior_is_low_rank_plus_diagonal(tiny_bert_dir, toy_data):
    clf = BayesianSubspaceClassifier(
        **tiny_kwargs(tiny_bert_dir, posterior="swag", max_epochs=6, swag_start=2, swag_max_snapshots=6, swag_lr=0.05)
    )
    clf.fit(*toy_data)
    q = clf.module_.posterior
    assert q.rank == 6 and clf.posterior_spec_ == ("lowrank", 6)
    # Low rank: K snapshots give at most K-1 large directions on top of the diagonal part.
    assert clf.effective_rank_ < clf.n_theta_

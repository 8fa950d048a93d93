"""The posterior spectrum and its effective rank (the paper's low-rank finding), and its figure."""

import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.plotting import plot_spectrum
from subspace_bayes.posteriors import DiagGaussian, FullGaussian, entropy_effective_rank

from conftest import tiny_kwargs


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, toy_data):
    return BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, rank=2, max_epochs=1)).fit(*toy_data)


def test_spectrum_of_a_known_covariance_is_sorted_and_exact(fitted):
    D = fitted.n_theta_
    rng = np.random.RandomState(0)
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    eig = np.geomspace(1.0, 1e-4, D)
    cov = torch.tensor((Q * eig) @ Q.T, dtype=torch.float64)
    fitted.module_.posterior = FullGaussian.from_moments(torch.zeros(D, dtype=torch.float64), cov)
    spectrum = fitted.posterior_spectrum()
    np.testing.assert_allclose(spectrum, eig, rtol=1e-4, atol=1e-7)  # float32 storage of the factor
    assert np.all(np.diff(spectrum) <= 0)


def test_effective_rank_is_d_for_isotropic_and_1_for_rank_one(fitted):
    D = fitted.n_theta_
    fitted.module_.posterior = DiagGaussian.from_moments(torch.zeros(D), torch.full((D,), 0.3))
    assert fitted.effective_rank_ == pytest.approx(D, rel=1e-6)
    assert entropy_effective_rank(torch.tensor([2.0] + [0.0] * (D - 1))) == pytest.approx(1.0)
    assert entropy_effective_rank(torch.zeros(D)) == 0.0


def test_plot_spectrum_takes_an_estimator_an_array_or_a_dict(fitted):
    fig = plot_spectrum(fitted)
    assert len(fig.axes[0].lines) == 1 and fig.axes[0].get_yscale() == "log"
    fig = plot_spectrum({"a": np.geomspace(1, 1e-3, 8), "b": fitted})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(labels) == 2 and labels[0].startswith("a: eff. rank")


def test_plot_spectrum_keeps_the_layout_engine_of_the_users_figure():
    import warnings

    from matplotlib.figure import Figure

    fig = Figure(layout="constrained")
    ax = fig.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tight_layout on a constrained figure warns
        assert plot_spectrum(np.array([3.0, 1.0, 0.5]), ax=ax) is fig
    assert fig.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine"

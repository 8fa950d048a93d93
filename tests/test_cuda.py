"""The estimator on a CUDA device: every posterior and predictive runs there and agrees with the CPU.

Skipped where no CUDA device is visible (our CI); run on a GPU machine with
``pytest tests/test_cuda.py``. A model fitted on the GPU is saved as an adapter and
re-loaded on the CPU: with the same seed, the CPU must give the same predictions
(the noise of the Monte Carlo draws comes from a CPU generator on both).
"""

import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier

from conftest import tiny_kwargs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CONFIGS = {
    "map": dict(posterior="map"),
    "vi diag": dict(posterior="vi", covariance="diag"),
    "vi lowrank": dict(posterior="vi", covariance="lowrank"),
    "vi full": dict(posterior="vi", covariance="full"),
    "vi bayesian head": dict(posterior="vi", bayesian_head=True, lr=0.01, head_lr=0.01),
    "swag": dict(posterior="swag"),
    "laplace full": dict(posterior="laplace", laplace_structure="full"),
    "laplace kron": dict(posterior="laplace", laplace_structure="kron"),
    "laplace diag": dict(posterior="laplace", laplace_structure="diag"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fitted_on_cuda_predicts_as_on_the_cpu(name, tiny_bert_dir, toy_data, toy_test, tmp_path):
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, device="cuda", max_epochs=5, **CONFIGS[name]))
    clf.fit(*toy_data)
    assert next(clf.module_.parameters()).device.type == "cuda"
    X = toy_test[0]
    cpu = BayesianSubspaceClassifier.from_adapter(clf.save_adapter(tmp_path / "adapter"), device="cpu")
    for predictive in ("mc", "glm", "probit"):
        clf.set_params(predictive=predictive)
        cpu.set_params(predictive=predictive)
        p = clf.predict_proba(X)
        assert p.shape == (len(X), 2) and np.isfinite(p).all()
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
        np.testing.assert_allclose(cpu.predict_proba(X), p, atol=1e-4, err_msg=predictive)
    u = clf.predict_uncertainty(X)
    for key, value in u.items():
        assert value.shape == (len(X),) and np.isfinite(value).all(), key
    np.testing.assert_allclose(cpu.predict_feature_distance(X), clf.predict_feature_distance(X), rtol=1e-3)
    u_cpu = cpu.set_params(predictive="mc").predict_uncertainty(X)
    clf.set_params(predictive="mc")
    u = clf.predict_uncertainty(X)  # the same draws on both devices: the same feature scores
    for key in ("knn_distance", "feature_distance"):
        np.testing.assert_allclose(u_cpu[key], u[key], rtol=1e-3, atol=1e-5, err_msg=key)
    assert np.mean(np.abs(u_cpu["novelty"] - u["novelty"])) < 0.02
    lam = clf.posterior_spectrum()
    assert np.isfinite(lam).all() and np.all(np.diff(lam) <= 1e-12)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_on_cuda(precision, tiny_bert_dir, toy_data, toy_test):
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, device="cuda", max_epochs=3, precision=precision))
    p = clf.fit(*toy_data).predict_proba(toy_test[0])
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert clf.module_.posterior.mean.dtype == torch.float32  # theta stays in fp32 under autocast


def test_partial_fit_and_sample_draws_on_cuda(tiny_bert_dir, toy_data, toy_test):
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, device="cuda", max_epochs=2))
    clf.partial_fit(*toy_data).partial_fit(*toy_data)
    draws = clf.predict_sample_proba(toy_test[0], n_samples=4)
    assert draws.shape == (4, len(toy_test[0]), 2)
    np.testing.assert_allclose(draws.mean(0), clf.set_params(n_samples=4).predict_proba(toy_test[0]), atol=1e-6)

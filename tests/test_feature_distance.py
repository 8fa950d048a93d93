"""The feature-space distance (subspace_bayes.feature_distance) against its definition, and through the estimator."""

import pickle

import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier, load_adapter
from subspace_bayes.feature_distance import collect_features, fit_feature_gaussian, mahalanobis_distance
from subspace_bayes.text import TextDataset, coerce_texts

from conftest import tiny_kwargs


def _data(n=300, h=8, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    centres = 3 * torch.randn(c, h, generator=g, dtype=torch.float64)
    mixing = torch.randn(h, h, generator=g, dtype=torch.float64)
    return centres[y] + torch.randn(n, h, generator=g, dtype=torch.float64) @ mixing, y


def test_distance_matches_the_dense_reference():
    phi, y = _data()
    stats = fit_feature_gaussian(phi, y, 3, ridge=0.0)
    X, labels = phi.numpy(), y.numpy()
    means = np.stack([X[labels == c].mean(0) for c in range(3)])
    centred = X - means[labels]
    P = np.linalg.inv(centred.T @ centred / len(X))
    query = X[:20] + np.random.default_rng(1).normal(size=(20, X.shape[1]))
    d = query[:, None] - means[None]
    reference = np.einsum("nch,hk,nck->nc", d, P, d).min(1)
    np.testing.assert_allclose(mahalanobis_distance(torch.from_numpy(query), **stats).numpy(), reference, rtol=1e-8)


def test_mean_distance_of_the_training_data_is_the_feature_dimension():
    # one class: (1/N) sum_i d_i^T S^-1 d_i = tr(S^-1 S) = H exactly
    phi, _ = _data(h=6)
    stats = fit_feature_gaussian(phi, torch.zeros(len(phi)), 1, ridge=0.0)
    assert float(mahalanobis_distance(phi, **stats).mean()) == pytest.approx(6.0, rel=1e-9)


def test_truncated_basis_keeps_the_trace_and_the_kept_directions():
    phi, y = _data(h=8)
    full, cut = fit_feature_gaussian(phi, y, 3, ridge=0.0), fit_feature_gaussian(phi, y, 3, max_rank=3, ridge=0.0)
    assert cut["basis"].shape == (8, 3)
    trace = float(cut["eigenvalues"].sum() + 5 * cut["residual"])
    assert trace == pytest.approx(float(full["eigenvalues"].sum()), rel=1e-10)
    direction = cut["means"][0] + 2.0 * cut["basis"][:, 1]  # off the mean along a kept eigenvector
    dist = mahalanobis_distance(direction[None], **cut)
    assert float(dist) <= 4.0 / float(cut["eigenvalues"][1]) + 1e-9  # class 0 is at most that far


def test_far_points_rank_last():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    stats = fit_feature_gaussian(torch.from_numpy(rng.normal(size=(200, 3)) + 4 * y[:, None]), torch.from_numpy(y), 2)
    near = mahalanobis_distance(torch.tensor([[0.0, 0, 0], [4, 4, 4]]), **stats)
    far = mahalanobis_distance(torch.tensor([[20.0, -20, 0]]), **stats)
    assert near.max() < 1.0 and far[0] > 100


def test_classes_without_examples_are_skipped():
    phi, y = _data(c=2)
    stats = fit_feature_gaussian(phi, y, 3)  # class 2 never seen
    assert torch.isnan(stats["means"][2]).all()
    assert torch.isfinite(mahalanobis_distance(phi[:5], **stats)).all()


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, toy_data):
    return BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=2)).fit(*toy_data)


def test_fit_stores_the_statistics_of_the_training_features(fitted, toy_data, toy_test):
    data = fitted._training_data(TextDataset(coerce_texts(toy_data[0]), toy_data[1]))
    features, labels = collect_features(fitted.module_, data.batches())
    stats = fit_feature_gaussian(features, labels, 2)
    u = fitted.predict_uncertainty(toy_test[0])
    assert u["feature_distance"].shape == (len(toy_test[0]),) and (u["feature_distance"] >= 0).all()
    test_features, _ = collect_features(
        fitted.module_, ({**b, "labels": torch.zeros(len(b["input_ids"]))} for b in _batches(fitted, toy_test[0]))
    )
    expected = mahalanobis_distance(test_features, **stats).numpy()
    np.testing.assert_allclose(u["feature_distance"], expected, rtol=1e-4)


def _batches(clf, X):
    loader = clf._loader(TextDataset(coerce_texts(X)))
    return ({k: v.to(clf.device_) for k, v in Xi.items()} for Xi, _ in loader)


def test_feature_distance_survives_pickle_and_save_adapter(fitted, toy_test, tmp_path):
    expected = fitted.predict_uncertainty(toy_test[0])["feature_distance"]
    np.testing.assert_allclose(
        pickle.loads(pickle.dumps(fitted)).predict_uncertainty(toy_test[0])["feature_distance"], expected
    )
    fitted.save_adapter(tmp_path / "a")
    np.testing.assert_allclose(
        load_adapter(tmp_path / "a").predict_uncertainty(toy_test[0])["feature_distance"], expected
    )


def test_an_adapter_without_feature_statistics_still_loads(fitted, toy_data, toy_test, tmp_path):
    from safetensors.torch import load_file, save_file

    fitted.save_adapter(tmp_path / "a")
    tensors = load_file(tmp_path / "a" / "adapter.safetensors")
    save_file(
        {k: v for k, v in tensors.items() if not k.startswith("feature_gaussian.")},
        tmp_path / "a" / "adapter.safetensors",
    )
    loaded = load_adapter(tmp_path / "a")
    u = loaded.predict_uncertainty(toy_test[0])
    assert "feature_distance" not in u and set(u) == {"total", "aleatoric", "epistemic"}
    with pytest.raises(RuntimeError, match="partial_fit"):
        loaded.predict_feature_distance(toy_test[0])
    before = loaded.predict_proba(toy_test[0])
    loaded.set_params(max_epochs=0).partial_fit(*toy_data)  # what the error suggests: statistics, no training
    np.testing.assert_allclose(loaded.predict_proba(toy_test[0]), before)
    np.testing.assert_allclose(
        loaded.predict_feature_distance(toy_test[0]), fitted.predict_feature_distance(toy_test[0]), rtol=1e-5
    )

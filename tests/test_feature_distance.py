"""The scores for unfamiliar inputs (subspace_bayes.feature_distance): definitions, and through the estimator."""

import pickle

import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier, load_adapter
from subspace_bayes.feature_distance import (
    KNN_K,
    FeatureNeighbours,
    collect_features,
    fit_feature_gaussian,
    kth_neighbour_distance,
    mahalanobis_distance,
    normalise_features,
    novelty,
)
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
    stats = fit_feature_gaussian(phi, y, 3, shrinkage=0.0, ridge=0.0)
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
    stats = fit_feature_gaussian(phi, torch.zeros(len(phi)), 1, shrinkage=0.0, ridge=0.0)
    assert float(mahalanobis_distance(phi, **stats).mean()) == pytest.approx(6.0, rel=1e-9)


def test_truncated_basis_keeps_the_trace_and_the_kept_directions():
    phi, y = _data(h=8)
    full, cut = (
        fit_feature_gaussian(phi, y, 3, shrinkage=0.0, ridge=0.0),
        fit_feature_gaussian(phi, y, 3, max_rank=3, shrinkage=0.0, ridge=0.0),
    )
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
    test_features = _features_at_mean(fitted, toy_test[0])
    expected = mahalanobis_distance(test_features, **stats).numpy()
    np.testing.assert_allclose(fitted.predict_feature_distance(toy_test[0]), expected, rtol=1e-4)
    neighbours = fitted.module_.feature_neighbours
    by_first = lambda z: z[z[:, 0].argsort()]  # the reference is kept in the fit's (length-sorted) order
    np.testing.assert_allclose(by_first(neighbours.reference.cpu()), by_first(normalise_features(features)), atol=1e-6)
    familiar = kth_neighbour_distance(
        normalise_features(features), normalise_features(features), KNN_K, leave_self_out=True
    )
    np.testing.assert_allclose(neighbours.familiar.cpu(), familiar.sort().values, atol=1e-6)


def _features_at_mean(clf, X):
    batches = ({**b, "labels": torch.zeros(len(b["input_ids"]))} for b in _batches(clf, X))
    return collect_features(clf.module_, batches)[0]


def test_uncertainty_scores_read_the_draw_averaged_features_of_the_same_passes(fitted, toy_test):
    from subspace_bayes.predictive import posterior_draws

    # predict_uncertainty's feature scores = the scores of (1/S) sum_s phi(x; theta_s) for the draws it used
    X = toy_test[0]
    u = fitted.predict_uncertainty(X)
    assert {"knn_distance", "novelty", "feature_distance"} <= set(u)
    generator = fitted._predict_generator()
    theta = posterior_draws(fitted.module_.posterior, fitted.n_samples, generator, fitted.draws).detach()
    order = fitted._length_order(coerce_texts(X))
    with torch.no_grad():
        feats = torch.cat(
            [
                fitted.module_.features(theta, **b).reshape(len(theta), len(b["input_ids"]), -1).mean(0)
                for b in _batches(fitted, [X[i] for i in order])
            ]
        )
    dist, novel = fitted.module_.feature_neighbours(feats)
    np.testing.assert_allclose(u["knn_distance"][order], dist.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(u["novelty"][order], novel.numpy())
    np.testing.assert_allclose(u["feature_distance"][order], fitted.module_.feature_gaussian(feats).numpy(), rtol=1e-4)


def test_a_point_estimate_scores_the_features_at_its_mean(tiny_bert_dir, toy_data, toy_test):
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=2, posterior="map")).fit(*toy_data)
    u = clf.predict_uncertainty(toy_test[0])
    np.testing.assert_allclose(u["feature_distance"], clf.predict_feature_distance(toy_test[0]), rtol=1e-5)
    dist, _ = clf.module_.feature_neighbours(_features_at_mean(clf, toy_test[0]))
    np.testing.assert_allclose(u["knn_distance"], dist.numpy(), rtol=1e-5, atol=1e-6)


def _batches(clf, X):
    loader = clf._loader(TextDataset(coerce_texts(X)))
    return ({k: v.to(clf.device_) for k, v in Xi.items()} for Xi, _ in loader)


@pytest.mark.parametrize("score", ["feature_distance", "knn_distance", "novelty"])
def test_feature_scores_survive_pickle_and_save_adapter(fitted, toy_test, tmp_path, score):
    expected = fitted.predict_uncertainty(toy_test[0])[score]
    np.testing.assert_allclose(
        pickle.loads(pickle.dumps(fitted)).predict_uncertainty(toy_test[0])[score], expected, rtol=1e-6
    )
    fitted.save_adapter(tmp_path / "a")
    np.testing.assert_allclose(
        load_adapter(tmp_path / "a").predict_uncertainty(toy_test[0])[score], expected, rtol=1e-6, atol=1e-7
    )


def test_an_adapter_without_feature_statistics_still_loads(fitted, toy_data, toy_test, tmp_path):
    from safetensors.torch import load_file, save_file

    fitted.save_adapter(tmp_path / "a")
    tensors = load_file(tmp_path / "a" / "adapter.safetensors")
    save_file(
        {k: v for k, v in tensors.items() if not k.startswith(("feature_gaussian.", "feature_neighbours."))},
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


def test_shrinkage_keeps_the_distance_finite_with_fewer_examples_than_dimensions():
    # N < H: the sample covariance is singular; the floor alone gave held-out inputs ~1e6 x the training ones
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(64, 64))
    train, held_out = (torch.from_numpy(rng.normal(size=(n, 64)) @ mixing) for n in (30, 200))
    labels = torch.from_numpy(rng.integers(0, 2, 30))
    raw = fit_feature_gaussian(train, labels, 2, shrinkage=0.0)
    shrunk = fit_feature_gaussian(train, labels, 2)
    ratio = lambda stats: float(
        mahalanobis_distance(held_out, **stats).median() / mahalanobis_distance(train, **stats).median()
    )
    assert ratio(raw) > 1e4
    assert 1.0 < ratio(shrunk) < 20.0
    assert float(mahalanobis_distance(train, **shrunk).mean()) <= 64.0  # at most H on the training data


def test_ledoit_wolf_matches_scikit_learn():
    from sklearn.covariance import LedoitWolf

    phi, _ = _data(n=40, h=12)
    stats = fit_feature_gaussian(phi, torch.zeros(len(phi)), 1)
    S = stats["basis"] @ torch.diag(stats["eigenvalues"]) @ stats["basis"].T
    reference = LedoitWolf().fit(phi.numpy()).covariance_
    np.testing.assert_allclose(S.numpy(), reference, rtol=1e-8, atol=1e-10)


def test_kth_neighbour_distance_matches_a_sorted_reference():
    g = torch.Generator().manual_seed(0)
    ref, queries = (
        normalise_features(torch.randn(50, 6, generator=g)),
        normalise_features(torch.randn(7, 6, generator=g)),
    )
    cosine = (queries @ ref.T).numpy()
    for k in (1, 3, 10):
        expected = 1 - np.sort(cosine, axis=1)[:, ::-1][:, k - 1]
        np.testing.assert_allclose(
            kth_neighbour_distance(queries, ref, k, chunk=3).numpy(), expected, rtol=1e-5, atol=1e-6
        )
    self_cos = (ref @ ref.T).numpy()
    np.fill_diagonal(self_cos, -np.inf)  # leave-one-out: a row is never its own neighbour
    expected = 1 - np.sort(self_cos, axis=1)[:, ::-1][:, 4]
    np.testing.assert_allclose(kth_neighbour_distance(ref, ref, 5, leave_self_out=True).numpy(), expected, atol=1e-6)
    assert kth_neighbour_distance(queries, ref[:2], 10).shape == (7,)  # k capped at the rows available


def test_novelty_is_the_fraction_of_familiar_distances_below():
    familiar = torch.tensor([0.1, 0.2, 0.2, 0.4, 0.8])
    got = novelty(torch.tensor([0.05, 0.2, 0.3, 0.9]), familiar)
    np.testing.assert_allclose(got.numpy(), [0.0, 0.2, 0.6, 1.0])


def test_neighbours_flag_a_shifted_cluster_and_keep_familiar_inputs_below_the_level():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=32)
    familiar = lambda n: torch.from_numpy(centre + 0.3 * rng.normal(size=(n, 32)))
    neighbours = FeatureNeighbours().fit(familiar(400), k=10)
    _, novel_in = neighbours(familiar(400))
    _, novel_out = neighbours(torch.from_numpy(-centre + 0.3 * rng.normal(size=(100, 32))))
    assert float((novel_in > 0.95).float().mean()) < 0.10  # held-out familiar inputs: about 5% flagged
    assert bool((novel_out == 1.0).all())


def test_neighbours_keep_a_seeded_subsample_of_a_large_training_set():
    feats = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    a = FeatureNeighbours().fit(feats, max_reference=100, generator=torch.Generator().manual_seed(1))
    b = FeatureNeighbours().fit(feats, max_reference=100, generator=torch.Generator().manual_seed(1))
    assert a.reference.shape == (100, 8) and torch.equal(a.reference, b.reference)
    assert a.familiar.shape == (100,)


def test_a_model_pickled_before_the_neighbours_predicts_and_refits_them(fitted, toy_data, toy_test):
    old = pickle.loads(pickle.dumps(fitted))
    del old.module_.feature_neighbours  # as unpickled from a release without them
    u = old.predict_uncertainty(toy_test[0])
    assert "feature_distance" in u and "novelty" not in u
    old.set_params(max_epochs=0).partial_fit(*toy_data)  # the statistics pass restores them
    assert "novelty" in old.predict_uncertainty(toy_test[0])

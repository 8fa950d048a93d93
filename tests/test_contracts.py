"""scikit-learn and skorch contracts, and the integration bugs of the correctness audit (issue 14).

Each test here failed before its fix.
"""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.inference import laplace as laplace_module
from subspace_bayes.inference.laplace import ggn
from subspace_bayes.text import TextDataset, coerce_texts

from conftest import tiny_kwargs


def _fit(tiny_bert_dir, data, **kw):
    return BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, **{"max_epochs": 2, **kw})).fit(*data)


# 1 -- the ELBO's N and the weights' mean are those of the training split
def test_elbo_divides_the_kl_by_the_training_split_size(tiny_bert_dir, toy_data):
    clf = _fit(tiny_bert_dir, toy_data, validation_fraction=0.25)
    assert clf.n_train_ == 72 and clf.criterion_.num_data == 72  # 96 examples, a quarter held out


def test_sample_weights_have_mean_one_over_the_training_split():
    data = TextDataset(coerce_texts(list("abcd")), [0, 1, 0, 1], np.array([1.0, 3.0, 4.0, 8.0]) / 4.0)
    train = data.subset([0, 1])
    np.testing.assert_allclose(train.sample_weight, [0.5, 1.5])


# 2 -- Laplace: weighted GGN and evidence, training split only
def test_weighted_ggn_counts_an_example_of_weight_2_twice(tiny_module):
    module, batch, labels = tiny_module
    mean = module.posterior.mean.detach()
    for structure in ("full", "diag", "kron"):
        G1, nll1, _ = ggn(module, [{**batch, "labels": labels}], mean, structure)
        w = torch.full((labels.shape[0],), 2.0, dtype=torch.float64)
        G2, nll2, _ = ggn(module, [{**batch, "labels": labels, "sample_weight": w}], mean, structure)
        # (kron: the G factor doubles, the A factor is a weighted mean and stays)
        torch.testing.assert_close(G2, 2 * G1, rtol=1e-9, atol=1e-12)
        assert np.isclose(nll2, 2 * nll1)


def test_laplace_sees_the_sample_weights_and_only_the_training_split(tiny_bert_dir, toy_data, monkeypatch):
    seen = []
    original = laplace_module.ggn

    def spy(module, batches, theta, structure="full"):
        batches = list(batches)
        seen.append((sum(b["labels"].shape[0] for b in batches), [b.get("sample_weight") for b in batches]))
        return original(module, batches, theta, structure)

    monkeypatch.setattr(laplace_module, "ggn", spy)
    X, y = toy_data
    w = np.where(np.arange(len(y)) % 2 == 0, 3.0, 1.0)
    clf = BayesianSubspaceClassifier(
        **tiny_kwargs(tiny_bert_dir, posterior="laplace", max_epochs=1, validation_fraction=0.25)
    )
    clf.fit(X, y, sample_weight=w)
    n_seen, weights = seen[-1]
    assert n_seen == 72  # the 24 held-out examples are not in the curvature
    weights = torch.cat(weights).cpu().numpy()
    assert set(np.round(weights / weights.min(), 6)) == {1.0, 3.0} and np.isclose(weights.mean(), 1.0)


# 3, 4 -- SWAG with fewer cores than snapshots; snapshot spacing over the training split
def test_swag_with_fewer_cores_than_snapshots_fits(tiny_bert_dir, toy_data):
    clf = _fit(tiny_bert_dir, toy_data, posterior="swag", rank=1, swag_start=0, max_epochs=3)  # D = 4 < 20
    q = clf.module_.posterior
    assert clf.n_theta_ == 4 and q.rank <= 4
    moments = clf.inference_.collector.moments_
    assert moments.n > 4  # more snapshots than cores were collected
    torch.testing.assert_close(
        q.covariance_matrix().double(), moments.covariance_matrix().double(), rtol=1e-4, atol=1e-8
    )


def test_swag_collects_the_snapshots_asked_for_with_a_validation_split(tiny_bert_dir, toy_data):
    clf = _fit(tiny_bert_dir, toy_data, posterior="swag", swag_start=0, swag_max_snapshots=4, validation_fraction=0.5)
    assert clf.inference_.collector.moments_.n >= 4  # was 2: the spacing counted the held-out half


# 7 -- targets that are not class labels
@pytest.mark.parametrize(
    "y, fragment",
    [(np.random.RandomState(0).normal(size=96), "continuous"), ([(0, 1)] * 48 + [(1,)] * 48, "multi-output")],
)
def test_targets_that_are_not_class_labels_are_rejected(tiny_bert_dir, toy_data, y, fragment):
    y_arr = np.empty(96, dtype=object)
    y_arr[:] = y
    with pytest.raises(ValueError, match=fragment):
        BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir)).fit(
            toy_data[0], y if fragment == "continuous" else y_arr
        )


# 8 -- no global RNG use
@pytest.mark.parametrize("posterior", ["vi", "map", "swag", "laplace"])
def test_fit_and_predict_leave_the_global_torch_rng_alone(tiny_bert_dir, toy_data, toy_test, posterior):
    before = torch.get_rng_state()
    clf = _fit(tiny_bert_dir, toy_data, posterior=posterior, swag_start=0, validation_fraction=0.25)
    clf.predict_proba(toy_test[0][:8])
    clf.predict_uncertainty(toy_test[0][:8])
    assert torch.equal(torch.get_rng_state(), before)


# 9 -- skorch conventions
def test_train_split_is_honoured_and_conflicts_with_validation_fraction(tiny_bert_dir, toy_data):
    clf = _fit(tiny_bert_dir, toy_data, train_split=ValidSplit(4, stratified=True))
    assert clf.n_train_ == 72 and "valid_loss" in clf.history[-1]
    with pytest.raises(ValueError, match="use one"):
        _fit(tiny_bert_dir, toy_data, train_split=ValidSplit(4), validation_fraction=0.2)


def test_early_stopping_without_held_out_data_says_what_to_set(tiny_bert_dir, toy_data):
    with pytest.raises(ValueError, match="validation_fraction"):
        _fit(tiny_bert_dir, toy_data, callbacks=[("stop", EarlyStopping())])
    clf = _fit(tiny_bert_dir, toy_data, callbacks=[("stop", EarlyStopping(patience=1))], validation_fraction=0.25)
    assert "valid_loss" in clf.history[-1]


def test_save_params_writes_the_learned_state_and_load_params_restores_it(tiny_bert_dir, toy_data, toy_test, tmp_path):
    clf = _fit(tiny_bert_dir, toy_data, posterior="swag", swag_start=0)
    clf.save_params(f_params=tmp_path / "params.pt", f_history=tmp_path / "history.json")
    saved = torch.load(tmp_path / "params.pt", weights_only=True)
    assert set(saved) == set(clf.module_.adapter_state_dict())  # no frozen backbone weight
    with pytest.raises(ValueError, match="classes="):
        BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, posterior="swag")).initialize()
    new = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, posterior="swag", classes=[0, 1])).initialize()
    new.load_params(f_params=tmp_path / "params.pt", f_history=tmp_path / "history.json")
    np.testing.assert_allclose(new.predict_proba(toy_test[0]), clf.predict_proba(toy_test[0]), atol=1e-6)
    assert len(new.history) == len(clf.history)


def test_the_classes_parameter_is_honoured(tiny_bert_dir, toy_data, toy_test):
    X, y = toy_data
    labels = np.array(["neg", "pos"])[y]
    clf = _fit(tiny_bert_dir, (X, labels), classes=["neg", "neutral", "pos"])
    assert clf.classes_.tolist() == ["neg", "neutral", "pos"]
    assert clf.predict_proba(toy_test[0]).shape == (len(toy_test[0]), 3)


# 10 -- predict_log_proba and score
def test_predict_log_proba_and_score(tiny_bert_dir, toy_data, toy_test):
    clf = _fit(tiny_bert_dir, toy_data)
    X, y = toy_test
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X), atol=1e-12)
    assert clf.score(X, y) == accuracy_score(y, clf.predict(X))


# 11 -- the command line
def test_cli_offers_every_posterior_and_reports_bad_params_in_one_line(capsys):
    from subspace_bayes.cli import build_parser, main

    fit_args = ["fit", "data.tsv", "--text-column", "t", "--label-column", "l", "--model", "m"]
    for posterior in ("vi", "map", "swag", "laplace"):
        assert build_parser().parse_args([*fit_args, "--posterior", posterior]).posterior == posterior
    for params, fragment in [
        ("{rank: 4}", "not valid JSON"),
        ('{"posterior": "map"}', "use --posterior"),
        ('{"rnak": 4}', "did you mean 'rank'"),
        ("[4]", "JSON object"),
    ]:
        assert main([*fit_args, "--params", params]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1 and "Traceback" not in err


# 12 -- figures never switch the user's matplotlib backend nor register with pyplot
def test_plotting_leaves_the_backend_and_pyplot_alone():
    import matplotlib
    import matplotlib.pyplot as plt

    from subspace_bayes.plotting import plot_reliability, plot_uncertainty_histograms

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a user's choice, which the old code replaced by Agg
    try:
        figures = plt.get_fignums()
        rng = np.random.RandomState(0)
        plot_reliability(rng.randint(2, size=20), {"m": rng.dirichlet([1, 1], size=20)})
        plot_uncertainty_histograms({"total": rng.rand(10)}, {"total": rng.rand(10)})
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == figures  # no figure left open in pyplot's registry
    finally:
        matplotlib.use(before)


# 13 -- temperature scaling needs scikit-learn 1.8, and the project says so
def test_the_scikit_learn_floor_allows_temperature_scaling():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    major, minor = re.search(r'"scikit-learn>=(\d+)\.(\d+)', text).groups()
    assert (int(major), int(minor)) >= (1, 8)

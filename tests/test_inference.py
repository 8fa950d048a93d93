"""Every inference method through the estimator, and the method objects themselves."""

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.inference import MAP, SWAG, VI, Laplace, Schedule, make_inference
from subspace_bayes.posteriors import PointMass, make_posterior

from conftest import tiny_kwargs

POSTERIORS = ["map", "vi", "swag", "laplace"]


@pytest.mark.parametrize("posterior", POSTERIORS)
@pytest.mark.parametrize("predictive", ["mc", "glm", "probit"])
def test_every_posterior_through_the_estimator(tiny_bert_dir, toy_data, toy_test, posterior, predictive, tmp_path):
    extra = {"swag_start": 2, "swag_max_snapshots": 5} if posterior == "swag" else {}
    clf = BayesianSubspaceClassifier(
        **tiny_kwargs(tiny_bert_dir, posterior=posterior, predictive=predictive, max_epochs=5, **extra)
    )
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


def test_grid_search_over_posterior(tiny_bert_dir, toy_data):
    base = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=3, swag_start=1, swag_max_snapshots=3))
    search = GridSearchCV(base, {"posterior": POSTERIORS}, cv=2).fit(*toy_data)
    assert [p["posterior"] for p in search.cv_results_["params"]] == POSTERIORS
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_make_inference_picks_the_method_and_only_its_parameters():
    from subspace_bayes import BayesianSubspaceClassifier

    params = BayesianSubspaceClassifier(posterior="swag", swag_max_snapshots=7, swag_lr=0.01).get_params()
    method = make_inference(params)
    assert isinstance(method, SWAG) and (method.max_snapshots, method.lr, method.start) == (7, 0.01, None)
    assert isinstance(make_inference({**params, "posterior": "vi", "covariance": "full"}), VI)
    assert make_inference({**params, "posterior": "vi", "covariance": "full"}).training_structure() == ("full", 4)
    assert make_inference({**params, "posterior": "map"}).training_structure() == (None, 0)
    lap = make_inference({**params, "posterior": "laplace", "laplace_structure": "kron"})
    assert isinstance(lap, Laplace) and lap.structure == "kron" and lap.training_structure() == (None, 0)
    with pytest.raises(ValueError, match=r"'vi', 'map', 'swag', 'laplace'"):
        make_inference({**params, "posterior": "ensemble"})


def test_swag_and_laplace_restart_from_the_mean_vi_and_map_continue():
    q = make_posterior(6, "lowrank", cov_rank=2, generator=torch.Generator().manual_seed(0))
    for method in (SWAG(), Laplace()):
        restarted = method.restart(q)
        assert isinstance(restarted, PointMass) and torch.equal(restarted.mean, q.mean)
    assert VI().restart(q) is q and MAP().restart(q) is q


def test_swag_sets_its_learning_rate_on_the_group_that_holds_the_cores(tiny_bert_dir, toy_data):
    # The cores' group is placed *after* the head's, so an index-0 assumption would hit the head.
    class HeadFirst(BayesianSubspaceClassifier):
        def initialize_optimizer(self, *args, **kwargs):
            super().initialize_optimizer(*args, **kwargs)
            self.optimizer_.param_groups.reverse()
            return self

    clf = HeadFirst(**tiny_kwargs(tiny_bert_dir, posterior="swag", max_epochs=2, swag_start=1, swag_lr=0.0123))
    clf.fit(*toy_data)
    head = {id(p) for p in clf.module_.head.parameters()}  # (the cores' group holds the trained point estimate)
    lrs = {
        ("head" if any(id(p) in head for p in g["params"]) else "cores"): g["lr"] for g in clf.optimizer_.param_groups
    }
    assert lrs == {"cores": 0.0123, "head": clf.head_lr}


def test_schedule_counts_steps_of_the_training_split():
    assert Schedule(n_train=96, batch_size=16, max_epochs=3).steps_per_epoch == 6
    assert Schedule(n_train=97, batch_size=16, max_epochs=3).steps_per_epoch == 7
    assert Schedule(n_train=0, batch_size=16, max_epochs=3).steps_per_epoch == 1


@pytest.mark.parametrize("kind", ["diag", "lowrank", "full"])
def test_empirical_bayes_prior_variance_is_the_elbos_optimum(kind):
    from scipy.optimize import minimize_scalar

    q = make_posterior(24, kind, cov_rank=3, init_std=0.2, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        q.loc.copy_(torch.randn(24, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.7)
    closed = float(q.empirical_bayes_prior_variance())
    # The ELBO depends on the prior only through -KL(q || N(0, s I)): maximise it numerically over log s.
    numeric = minimize_scalar(
        lambda log_s: float(q.kl_to_prior(np.exp(0.5 * log_s))),
        bounds=(-10, 5),
        method="bounded",
        options={"xatol": 1e-10},
    ).x
    assert np.isclose(np.exp(numeric), closed, rtol=1e-5)


def test_prior_std_auto_fits_and_reports_the_value_reached(tiny_bert_dir, toy_data):
    from subspace_bayes._validation import InvalidParameterError

    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, prior_std="auto", max_epochs=3)).fit(*toy_data)
    expected = float(clf.module_.posterior.empirical_bayes_prior_variance().sqrt())
    assert np.isclose(clf.prior_std_, expected, rtol=1e-6) and clf.prior_std_ != 1.0
    fixed = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, prior_std=0.5, max_epochs=1)).fit(*toy_data)
    assert fixed.prior_std_ == 0.5
    with pytest.raises(InvalidParameterError, match="empirical Bayes inside VI"):
        BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, prior_std="auto", posterior="map")).fit(*toy_data)

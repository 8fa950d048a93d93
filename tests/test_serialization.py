"""Persistence: safetensors adapters, joblib, checkpoints and resuming a fit."""

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from subspace_bayes import BayesianSubspaceClassifier, load_adapter
from subspace_bayes.serialization import (
    AdapterFormatError,
    AdapterState,
    BackboneMismatchError,
    fit_key,
    read_adapter,
    write_adapter,
)

from conftest import tiny_kwargs


class InterruptAfter(Callback):
    """Simulates Ctrl-C at the end of a given epoch."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise KeyboardInterrupt


def _params(clf):
    return {k: v.detach().clone() for k, v in clf.module_.adapter_state_dict().items()}


@pytest.mark.parametrize("posterior", ["vi", "swag"])
def test_resume_after_interrupt_reaches_the_uninterrupted_state(tiny_bert_dir, toy_data, tmp_path, posterior):
    kw = tiny_kwargs(tiny_bert_dir, posterior=posterior, max_epochs=5, swag_start=1, swag_max_snapshots=6)
    reference = BayesianSubspaceClassifier(**kw).fit(*toy_data)
    ckpt = tmp_path / "ckpt"
    interrupted = BayesianSubspaceClassifier(
        **kw, checkpoint_dir=str(ckpt), callbacks=[("interrupt", InterruptAfter(3))]
    ).fit(*toy_data)
    assert len(list(ckpt.glob("checkpoint-*.pt"))) == 1
    assert len(interrupted.history) == 3
    resumed = BayesianSubspaceClassifier(**kw, checkpoint_dir=str(ckpt)).fit(*toy_data)
    assert len(resumed.history) == 5
    ref, res = _params(reference), _params(resumed)
    assert ref.keys() == res.keys()
    for k in ref:
        torch.testing.assert_close(res[k], ref[k], atol=0, rtol=0, msg=k)
    np.testing.assert_array_equal(resumed.history[:, "train_loss"], reference.history[:, "train_loss"])


def test_fits_sharing_a_checkpoint_dir_never_collide(tiny_bert_dir, toy_data, tmp_path):
    kw = tiny_kwargs(tiny_bert_dir, max_epochs=1, checkpoint_dir=str(tmp_path))
    a = BayesianSubspaceClassifier(**kw).fit(*toy_data)
    b = BayesianSubspaceClassifier(**{**kw, "rank": 2}).fit(*toy_data)  # other settings: starts afresh
    c = BayesianSubspaceClassifier(**kw).fit(toy_data[0][:50], toy_data[1][:50])  # other data: afresh
    assert len({a.fit_key_, b.fit_key_, c.fit_key_}) == 3 and len(b.history) == 1
    assert len(list(tmp_path.glob("checkpoint-*.pt"))) == 3
    # The same fit again finds its finished checkpoint and trains no further epoch.
    again = BayesianSubspaceClassifier(**kw).fit(*toy_data)
    assert len(again.history) == 1
    torch.testing.assert_close(_params(again)["posterior.loc"], _params(a)["posterior.loc"], rtol=0, atol=0)


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, toy_data):
    y = np.array(["neg", "pos"])[toy_data[1]]
    return BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=3)).fit(toy_data[0], y)


def test_save_and_load_adapter_round_trip(fitted, toy_test, tmp_path):
    fitted.save_adapter(tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["README.md", "adapter.json", "adapter.safetensors"]
    loaded = load_adapter(tmp_path / "a")
    np.testing.assert_array_equal(loaded.predict_proba(toy_test[0]), fitted.predict_proba(toy_test[0]))
    assert list(loaded.classes_) == ["neg", "pos"] and loaded.rank == fitted.rank
    assert loaded.predict(toy_test[0][:2]).tolist() == fitted.predict(toy_test[0][:2]).tolist()
    assert loaded.prior_std_ == fitted.prior_std_ and loaded.seed_ == fitted.seed_  # learned scalars kept


def test_load_adapter_refuses_another_backbone(fitted, tmp_path, tiny_bert_dir):
    import json
    import shutil

    from transformers import BertModel

    other = tmp_path / "other-backbone"
    shutil.copytree(tiny_bert_dir, other)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        BertModel(BertModel.config_class.from_pretrained(tiny_bert_dir)).save_pretrained(other)
    fitted.save_adapter(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "adapter.json").read_text())
    with pytest.raises(BackboneMismatchError, match="different weights") as err:  # an override names what it loaded
        load_adapter(tmp_path / "a", backbone=str(other))
    assert f"fitted on the backbone {meta['backbone']!r}" in str(err.value)
    assert f"the one loaded now, {str(other)!r}" in str(err.value)
    meta["params"]["backbone"] = str(other)
    (tmp_path / "a" / "adapter.json").write_text(json.dumps(meta))
    with pytest.raises(BackboneMismatchError, match="different weights"):
        load_adapter(tmp_path / "a")


@pytest.mark.parametrize("damage", ["truncate_tensors", "garbage_json", "missing_tensors", "empty_folder"])
def test_corrupted_adapter_files_give_clear_errors(fitted, tmp_path, damage):
    folder = fitted.save_adapter(tmp_path / "a")
    tensors, meta = folder / "adapter.safetensors", folder / "adapter.json"
    if damage == "truncate_tensors":
        tensors.write_bytes(tensors.read_bytes()[:100])
    elif damage == "garbage_json":
        meta.write_text('{"format_version": 1, "params": ')
    elif damage == "missing_tensors":
        tensors.unlink()
    else:
        tensors.unlink()
        meta.unlink()
    with pytest.raises(AdapterFormatError):
        load_adapter(folder)


def test_adapter_state_round_trips_through_files_without_an_estimator(tmp_path):
    tensors = {"posterior.loc": torch.arange(4.0), "head.weight": torch.ones(2, 3)}
    state = AdapterState("minilm", "abc", ["neg", "pos"], {"rank": 2}, ("lowrank", 2), {"seed_": 5}, tensors)
    back = read_adapter(write_adapter(tmp_path / "a", state))
    assert (back.backbone, back.classes, back.params, back.posterior_spec, back.fitted) == (
        "minilm",
        ["neg", "pos"],
        {"rank": 2},
        ("lowrank", 2),
        {"seed_": 5},
    )
    assert all(torch.equal(back.tensors[k], v) for k, v in tensors.items())


def test_fit_key_changes_with_data_and_settings_but_not_with_prediction_settings():
    from subspace_bayes.text import coerce_texts

    inputs, y, classes = coerce_texts(["a b", "c"]), np.array([0, 1]), np.array(["x", "y"])
    key = fit_key({"rank": 2, "n_samples": 8}, inputs, y, classes)
    assert key == fit_key({"rank": 2, "n_samples": 64}, inputs, y, classes)
    assert key != fit_key({"rank": 3, "n_samples": 8}, inputs, y, classes)
    assert key != fit_key({"rank": 2, "n_samples": 8}, coerce_texts(["a b", "d"]), y, classes)

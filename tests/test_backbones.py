"""Loading backbones by alias or folder, pooling, device resolution."""

import numpy as np
import pytest
import torch

from subspace_bayes.backbones import default_pooling, load_backbone, pool, resolve_backbone, resolve_device


def test_a_folder_without_config_says_what_to_point_at(tmp_path):
    with pytest.raises(ValueError, match=r"no config\.json"):
        resolve_backbone(str(tmp_path))


def test_an_unknown_name_offline_says_how_to_fix():
    with pytest.raises(ValueError, match="not a local model folder"):
        load_backbone("no-such-org/no-such-model-xyz")


def test_a_local_folder_loads_with_dropout_off(tiny_bert_dir):
    model = load_backbone(tiny_bert_dir)
    assert not model.training
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))


def test_pooling_mean_cls_and_last_token():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    torch.testing.assert_close(pool(hidden, mask, "cls"), hidden[:, 0])
    torch.testing.assert_close(pool(hidden, mask, "last"), torch.stack([hidden[0, 3], hidden[1, 1]]))
    torch.testing.assert_close(pool(hidden, mask, "mean")[1], hidden[1, :2].mean(0))
    with pytest.raises(ValueError, match="Unknown pooling"):
        pool(hidden, mask, "max")


def test_default_pooling_by_family_and_device_resolution():
    assert default_pooling("bert") == "mean" and default_pooling("llama") == "last"
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


class _Recorder:
    """Stands in for ``from_pretrained`` and records the keyword arguments it was called with."""

    def __init__(self, result=None, error=None):
        self.calls, self.result, self.error = [], result, error

    def __call__(self, source, **kwargs):
        self.calls.append((source, kwargs))
        if self.error is not None:
            raise self.error
        return self.result


def _patch_hub(monkeypatch, model=None, error=None):
    import transformers

    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=64
    )
    recorders = {
        "config": _Recorder(config, error),
        "model": _Recorder(model, error),
        "tokenizer": _Recorder(error=error),
    }
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", recorders["config"])
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", recorders["model"])
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", recorders["tokenizer"])
    return recorders


def test_nothing_forces_local_files_only_when_the_environment_does_not(monkeypatch):
    from transformers import BertConfig, BertModel

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    tiny = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    rec = _patch_hub(monkeypatch, model=tiny)
    load_backbone("some-org/some-model")
    (source, config_kwargs), (_, model_kwargs) = rec["config"].calls[0], rec["model"].calls[0]
    assert source == "some-org/some-model"
    assert "local_files_only" not in config_kwargs and "local_files_only" not in model_kwargs


def test_backbone_kwargs_go_where_they_apply(monkeypatch):
    from transformers import BertConfig, BertModel

    tiny = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    rec = _patch_hub(monkeypatch, model=tiny)
    kwargs = {"revision": "v2", "local_files_only": True, "attn_implementation": "eager", "cache_dir": "/c"}
    load_backbone("org/model", backbone_kwargs=kwargs, dtype=torch.bfloat16)
    config_kwargs, model_kwargs = rec["config"].calls[0][1], rec["model"].calls[0][1]
    assert config_kwargs == {"revision": "v2", "local_files_only": True, "cache_dir": "/c"}
    assert model_kwargs["attn_implementation"] == "eager" and model_kwargs["revision"] == "v2"
    assert torch.bfloat16 in model_kwargs.values()  # the storage dtype, under transformers' name for it
    with pytest.raises(ValueError):  # the tokenizer gets the shared ones only
        from subspace_bayes.backbones import load_tokenizer

        rec["tokenizer"].error = OSError("not found")
        load_tokenizer("org/model", backbone_kwargs=kwargs)
    assert rec["tokenizer"].calls[0][1] == {"revision": "v2", "local_files_only": True, "cache_dir": "/c"}


def test_offline_and_not_cached_names_the_id_and_both_fixes(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _patch_hub(monkeypatch, error=OSError("We couldn't connect"))
    with pytest.raises(ValueError) as err:
        load_backbone("some-org/not-cached")
    msg = str(err.value)
    assert "'some-org/not-cached'" in msg and "not in the local Hugging Face cache" in msg
    assert "go online" in msg and "save_pretrained" in msg


def test_bf16_stores_the_frozen_weights_in_bf16_and_keeps_the_rest_in_float32(tiny_bert_dir, toy_data, toy_test):
    from subspace_bayes import BayesianSubspaceClassifier
    from subspace_bayes.adapters import dense_weight
    from subspace_bayes.projections import make_projection

    from conftest import tiny_kwargs

    clf = BayesianSubspaceClassifier(
        **tiny_kwargs(tiny_bert_dir, precision="bf16", max_epochs=2, projection="svd")
    ).fit(*toy_data)
    module = clf.module_
    frozen = [p for n, p in module.backbone.named_parameters() if "base_layer" in n or "embeddings" in n]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    adapter = module.adapters[0]
    assert adapter.lora_A.dtype == torch.float32 and module.head.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in module.posterior.parameters())
    proj = make_projection(dense_weight(adapter.get_base_layer()).float(), adapter.rank, "svd")
    torch.testing.assert_close(adapter.lora_A, proj.scale.sqrt()[:, None] * proj.A)  # SVD of W0 in float32
    np.testing.assert_allclose(clf.predict_proba(toy_test[0]).sum(1), 1.0, atol=1e-6)


def test_a_model_object_is_shared_by_clones_never_modified_and_saved_by_name(
    tiny_bert_dir, toy_data, toy_test, tmp_path
):
    import joblib
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from transformers import AutoModel, BertModel

    from subspace_bayes import BayesianSubspaceClassifier, ProjectedLinear

    from conftest import tiny_bert_config, tiny_kwargs

    model = AutoModel.from_pretrained(tiny_bert_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, backbone=model, max_epochs=2))
    assert clone(clf).backbone is model  # shared, not deep-copied
    clf.fit(*toy_data)
    assert not any(isinstance(m, ProjectedLinear) for m in model.modules())  # the user's model is untouched
    assert all(torch.equal(p, before[n]) and p.requires_grad for n, p in model.named_parameters())
    joblib.dump(clf, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    assert loaded.backbone == tiny_bert_dir  # re-attached by name
    np.testing.assert_allclose(loaded.predict_proba(toy_test[0]), clf.predict_proba(toy_test[0]), atol=1e-6)
    search = GridSearchCV(
        BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, backbone=model, max_epochs=1)), {"rank": [2, 4]}, cv=2
    ).fit(*toy_data)
    assert search.best_estimator_.backbone is model
    nameless = BayesianSubspaceClassifier(
        **tiny_kwargs(tiny_bert_dir, backbone=BertModel(tiny_bert_config()), tokenizer=tiny_bert_dir, max_epochs=1)
    )
    with pytest.raises(ValueError, match="save_pretrained"):  # refused before training, not when saving
        nameless.fit(*toy_data)
    assert not hasattr(nameless, "module_")

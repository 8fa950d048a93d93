"""Sharing: the model card, push_to_hub (the upload captured where it would reach the network) and
load_adapter from a Hub id (offline, from a local Hugging Face cache laid out by the test)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from subspace_bayes import BayesianSubspaceClassifier, load_adapter
from subspace_bayes.hub import ADAPTER_FILES, card_metrics

from conftest import tiny_kwargs


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, toy_data):
    X, y = toy_data
    return BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=3)).fit(X, np.array(["neg", "pos"])[y])


def test_save_adapter_writes_a_model_card_the_hub_can_parse(fitted, toy_test, tmp_path):
    from huggingface_hub import ModelCard

    X, y = toy_test[0][:40], np.array(["neg", "pos"])[toy_test[1][:40]]
    fitted.save_adapter(tmp_path / "plain")
    card = ModelCard.load(tmp_path / "plain" / "README.md")
    assert card.data.library_name == "subspace_bayes" and card.data.pipeline_tag == "text-classification"
    assert {"bayesian", "lora-xs", "uncertainty"} <= set(card.data.tags)
    assert card.data.base_model is None  # a local folder is no Hub id
    assert f"| D (numbers with a posterior) | {fitted.n_theta_:,} |" in card.text
    assert "## Evaluation" not in card.text
    pytest.importorskip("matplotlib")
    fitted.save_adapter(tmp_path / "evaluated", eval_data=(X, y))
    text = (tmp_path / "evaluated" / "README.md").read_text()
    m = card_metrics(y, fitted.predict_proba(X), fitted.classes_)
    assert f"| Bayesian predictive | {m['accuracy']:.3f} | {m['ece']:.3f} | {m['nll']:.3f} |" in text
    assert (
        "| posterior mean (a point estimate) |" in text and (tmp_path / "evaluated" / "reliability.png").stat().st_size
    )
    # The card does not change what loads.
    np.testing.assert_allclose(load_adapter(tmp_path / "evaluated").predict_proba(X), fitted.predict_proba(X))


def test_an_alias_backbone_is_the_cards_base_model():
    from subspace_bayes.hub import base_model_id

    assert base_model_id("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert (
        base_model_id("roberta-base") is None and base_model_id("FacebookAI/roberta-base") == "FacebookAI/roberta-base"
    )


def test_push_to_hub_uploads_the_adapter_folder(fitted, monkeypatch):
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs)

    def upload_folder(self, *, repo_id, folder_path, commit_message, allow_patterns, **kwargs):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        calls["upload"] = dict(repo_id=repo_id, files=files, message=commit_message, allow=allow_patterns)
        return type("Info", (), {"commit_url": "https://example.invalid/commit/1"})()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    url = fitted.push_to_hub("someone/tiny-sentiment", private=True, commit_message="first model")
    assert url.endswith("/commit/1")
    assert calls["create"] == ("someone/tiny-sentiment", {"private": True, "exist_ok": True})
    up = calls["upload"]
    assert up["repo_id"] == "someone/tiny-sentiment" and up["message"] == "first model"
    assert up["files"] == ["README.md", "adapter.json", "adapter.safetensors"] and up["allow"] == ADAPTER_FILES


def test_load_adapter_from_a_hub_id_reads_the_local_cache_offline(fitted, toy_test, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    fitted.save_adapter(tmp_path / "saved")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--someone--tiny-sentiment"
    shutil.copytree(tmp_path / "saved", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = load_adapter("someone/tiny-sentiment", cache_dir=str(tmp_path / "cache"))
    np.testing.assert_allclose(loaded.predict_proba(toy_test[0][:8]), fitted.predict_proba(toy_test[0][:8]))
    with pytest.raises(ValueError, match=r"'someone/not-cached' is not a local folder, and the adapter.*offline"):
        load_adapter("someone/not-cached", cache_dir=str(tmp_path / "cache"))


def test_only_safetensors_and_json_are_ever_downloaded(monkeypatch, tmp_path):
    import huggingface_hub

    seen = {}

    def fake_download(repo_id, **kwargs):
        seen.update(kwargs, repo_id=repo_id)
        (tmp_path / "adapter.json").write_text("{}")
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    from subspace_bayes.hub import download_adapter

    assert download_adapter("someone/model", revision="v1", token="t") == tmp_path
    assert seen["revision"] == "v1" and seen["token"] == "t"
    assert not any(p.endswith((".joblib", ".pkl", ".pickle", ".bin", ".pt")) for p in seen["allow_patterns"])

"""The posterior mean leaves the library: a peft LoRA adapter and a merged transformers folder reproduce it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.backbones import load_backbone, pool
from subspace_bayes.export import HEAD_FILE, lora_factors

from conftest import tiny_kwargs

peft = pytest.importorskip("peft")


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory, tiny_bert_dir):
    """A tiny random Llama with the shared tokenizer (a causal LM, for head='lm')."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=0)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return str(folder)


def _batch(clf, texts):
    enc = clf.tokenizer_(texts, padding=True, return_tensors="pt")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def _move_the_cores(clf) -> None:
    """Cores far from zero, so that an export that dropped or mis-scaled them would show."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        loc = clf.module_.posterior.loc
        loc[: clf.module_.n_core] = torch.randn(clf.module_.n_core, generator=g) * 0.5


def _ours_hidden(clf, batch):
    with torch.no_grad(), clf.module_.bank.bind(clf.module_.posterior.mean.detach()[None]):
        return clf.module_.backbone(**batch).last_hidden_state


@pytest.mark.parametrize("bayesian_head", [False, True])
def test_peft_and_merged_exports_reproduce_the_posterior_mean(tiny_bert_dir, toy_data, tmp_path, bayesian_head):
    from transformers import AutoModel

    kw = tiny_kwargs(tiny_bert_dir, max_epochs=2, bayesian_head=bayesian_head, lr=0.01)
    clf = BayesianSubspaceClassifier(**kw).fit(*toy_data)
    _move_the_cores(clf)
    batch = _batch(clf, toy_data[0][:6])
    ours = _ours_hidden(clf, batch)
    assert not torch.allclose(ours, load_backbone(tiny_bert_dir)(**batch).last_hidden_state, atol=1e-3)

    clf.export_peft(tmp_path / "peft")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_bert_dir and config["r"] == config["lora_alpha"] == 4
    served = peft.PeftModel.from_pretrained(load_backbone(tiny_bert_dir), tmp_path / "peft").eval()
    with torch.no_grad():
        torch.testing.assert_close(served(**batch).last_hidden_state, ours, atol=1e-5, rtol=1e-5)

    clf.export_merged(tmp_path / "merged")
    merged = AutoModel.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        hidden = merged(**batch).last_hidden_state
    torch.testing.assert_close(hidden, ours, atol=1e-5, rtol=1e-5)
    # The head recipe: pooled features through the saved head are the logits at the posterior mean.
    from safetensors import safe_open

    with safe_open(str(tmp_path / "merged" / HEAD_FILE), "pt") as f:
        head = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iteration)
        pooling = f.metadata()["pooling"]
    logits = pool(hidden, batch["attention_mask"], pooling) @ head["weight"].T + head["bias"]
    with torch.no_grad():
        expected = clf.module_(**batch, theta=clf.module_.posterior.mean.detach()[None])[0]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_lm_head_export_gives_the_class_logits_from_next_token_logits(decoder_dir, toy_data, tmp_path):
    from transformers import AutoModelForCausalLM

    X, y = toy_data
    labels = np.array(["a", "b"])[y]
    clf = BayesianSubspaceClassifier(**tiny_kwargs(decoder_dir, head="lm", max_epochs=1, rank=2)).fit(X, labels)
    _move_the_cores(clf)
    batch = _batch(clf, X[:4])
    with torch.no_grad():
        expected = clf.module_(**batch, theta=clf.module_.posterior.mean.detach()[None])[0]
    token_ids = [clf.tokenizer_(c, add_special_tokens=False)["input_ids"][0] for c in clf.classes_]
    last = batch["attention_mask"].sum(1) - 1

    clf.export_peft(tmp_path / "peft")
    base = load_backbone(decoder_dir, causal_lm=True)
    served = peft.PeftModel.from_pretrained(base, tmp_path / "peft").eval()
    clf.export_merged(tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    for model in (served, merged):
        with torch.no_grad():
            logits = model(**batch).logits[torch.arange(4), last][:, token_ids]
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_lora_factors_are_the_layer_updates_at_the_mean(tiny_bert_dir, toy_data):
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=1)).fit(*toy_data)
    _move_the_cores(clf)
    factors = lora_factors(clf.module_)
    assert len(factors) == 4 and all(A.shape[0] == 4 and B.shape[1] == 4 for A, B in factors.values())
    name, (A, B) = next(iter(factors.items()))
    adapter = clf.module_.backbone.get_submodule(name)
    x = torch.randn(3, A.shape[1])
    with torch.no_grad(), clf.module_.bank.bind(clf.module_.posterior.mean.detach()[None]):
        torch.testing.assert_close(adapter(x) - adapter.base_layer(x), x @ (B @ A).T, atol=1e-5, rtol=1e-5)

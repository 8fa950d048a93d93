"""head="lm": the answer read from a causal LM's next-token logits of the label tokens (the paper's setting)."""

import joblib
import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier, load_adapter
from subspace_bayes.backbones import label_token_ids, load_backbone, load_tokenizer, split_causal_lm
from subspace_bayes.module import SubspaceClassifierModule

from conftest import NEGATIVE, POSITIVE, _vocab, tiny_kwargs

CHOICES = ["A", "B", "C", "D"]
LABEL_TOKENS = {c: f" {c}" for c in CHOICES}


def _prompts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """ARC-style four-option questions: which option is the positive word?"""
    rng = np.random.RandomState(seed)
    prompts, answers = [], []
    for _ in range(n):
        options = [*rng.choice(NEGATIVE, size=3, replace=False), rng.choice(POSITIVE)]
        order = rng.permutation(4)
        lines = " ".join(f"{CHOICES[k]}. {options[j]}" for k, j in enumerate(order))
        prompts.append(f"question: which word is good? {lines} answer:")
        answers.append(CHOICES[int(np.where(order == 3)[0][0])])
    return prompts, np.array(answers)


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory, tiny_bert_dir):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=len(_vocab()),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return str(folder)


def test_zero_cores_give_the_lms_next_token_logits_of_the_label_tokens(tiny_llama_dir):
    tok = load_tokenizer(tiny_llama_dir)
    ids = label_token_ids(tok, CHOICES, LABEL_TOKENS)
    reference = load_backbone(tiny_llama_dir, causal_lm=True)
    backbone, rows = split_causal_lm(load_backbone(tiny_llama_dir, causal_lm=True), ids)
    module = SubspaceClassifierModule(backbone, 4, rank=2, covariance="diag", head_weight=rows).eval()
    enc = tok(_prompts(3, 0)[0], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = module(enc["input_ids"], enc["attention_mask"], theta=torch.zeros(1, module.n_theta))[0]
        full = reference(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    last = enc["attention_mask"].sum(1) - 1  # right padding
    torch.testing.assert_close(logits, full[torch.arange(3), last][:, ids], atol=1e-5, rtol=1e-5)
    assert module.pooling == "last" and not any(p.requires_grad for p in module.head.parameters())


@pytest.mark.parametrize("posterior", ["map", "vi", "swag", "laplace"])
@pytest.mark.parametrize("predictive", ["mc", "glm", "probit"])
def test_four_choices_with_every_posterior_and_predictive(tiny_llama_dir, posterior, predictive, tmp_path):
    X, y = _prompts(48, 0)
    X_test, _ = _prompts(12, 1)
    kw = tiny_kwargs(
        tiny_llama_dir,
        head="lm",
        label_tokens=LABEL_TOKENS,
        posterior=posterior,
        predictive=predictive,
        rank=2,
        max_epochs=2,
        swag_start=1,
    )
    clf = BayesianSubspaceClassifier(**kw).fit(X, y)
    proba = clf.predict_proba(X_test)
    assert proba.shape == (12, 4) and clf.classes_.tolist() == CHOICES
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    rows = split_causal_lm(
        load_backbone(tiny_llama_dir, causal_lm=True), label_token_ids(clf.tokenizer_, CHOICES, LABEL_TOKENS)
    )[1]
    torch.testing.assert_close(clf.module_.head.weight, rows)  # the LM head was not trained
    if predictive == "mc":
        again = load_adapter(clf.save_adapter(tmp_path / "adapter"))
        np.testing.assert_allclose(again.predict_proba(X_test), proba, atol=1e-6)
        joblib.dump(clf, tmp_path / "m.joblib")
        np.testing.assert_allclose(joblib.load(tmp_path / "m.joblib").predict_proba(X_test), proba, atol=1e-6)


def test_label_tokens_must_be_single_tokens(tiny_llama_dir):
    tok = load_tokenizer(tiny_llama_dir)
    with pytest.raises(ValueError, match="is 2 tokens"):
        label_token_ids(tok, ["A", "B"], {"A": " good", "B": " A B"})
    with pytest.raises(ValueError, match="no entry for class 'C'"):
        label_token_ids(tok, ["A", "C"], {"A": " A"})
    with pytest.raises(ValueError, match="causal LM"):
        split_causal_lm(load_backbone(tiny_llama_dir), [5])  # a base model has no output embedding

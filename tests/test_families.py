"""Every supported model family, on a tiny random config: default targets, pooling, fit, theta = 0.

Each family is saved as a local folder with the tiny WordPiece tokenizer of ``conftest`` (real
tokenizers are not needed to exercise the adapters, the pooling and the estimator).
"""

import warnings

import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.adapters import Conv1D, default_target_modules, find_target_modules
from subspace_bayes.backbones import load_backbone, pool
from subspace_bayes.module import SubspaceClassifierModule

from conftest import _vocab, tiny_kwargs, token_batch

V = len(_vocab())
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
DECODER = dict(vocab_size=V, num_key_value_heads=2, pad_token_id=0, bos_token_id=2, eos_token_id=3, **SMALL)


def _config(family: str):
    import transformers as tf

    configs = {
        "bert": lambda: tf.BertConfig(vocab_size=V, **SMALL),
        "roberta": lambda: tf.RobertaConfig(vocab_size=V, max_position_embeddings=70, pad_token_id=1, **SMALL),
        "distilbert": lambda: tf.DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=2, hidden_dim=64),
        "deberta-v2": lambda: tf.DebertaV2Config(vocab_size=V, max_position_embeddings=64, **SMALL),
        "electra": lambda: tf.ElectraConfig(vocab_size=V, embedding_size=32, **SMALL),
        "mpnet": lambda: tf.MPNetConfig(vocab_size=V, max_position_embeddings=70, **SMALL),
        "albert": lambda: tf.AlbertConfig(vocab_size=V, embedding_size=16, **SMALL),
        "modernbert": lambda: tf.ModernBertConfig(
            vocab_size=V, pad_token_id=0, bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3,
            global_attn_every_n_layers=1, **SMALL),
        "gpt2": lambda: tf.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=2,
                                      eos_token_id=3, pad_token_id=0),
        "llama": lambda: tf.LlamaConfig(**DECODER),
        "mistral": lambda: tf.MistralConfig(**DECODER),
        "qwen2": lambda: tf.Qwen2Config(**DECODER),
        "phi3": lambda: tf.Phi3Config(**DECODER),
        "gpt_neox": lambda: tf.GPTNeoXConfig(vocab_size=V, pad_token_id=0, bos_token_id=2, eos_token_id=3, **SMALL),
    }  # fmt: skip
    return configs[family]()


FAMILIES = ["bert", "roberta", "distilbert", "deberta-v2", "electra", "mpnet", "albert", "modernbert", "gpt2",
            "llama", "mistral", "qwen2", "phi3", "gpt_neox"]  # fmt: skip
DECODERS = {"gpt2", "llama", "mistral", "qwen2", "phi3", "gpt_neox"}


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory, tiny_bert_dir):
    """A folder per family: the tiny random model and the shared tiny tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    folders = {}
    for family in FAMILIES:
        folder = tmp_path_factory.mktemp(family)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            AutoModel.from_config(_config(family)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[family] = str(folder)
    return folders


@pytest.mark.parametrize("family", FAMILIES)
def test_family_has_default_targets_and_zero_cores_reproduce_the_frozen_model(family, family_dirs):
    backbone = load_backbone(family_dirs[family])
    model_type = backbone.config.model_type
    assert default_target_modules(model_type), f"no default targets for {model_type}"
    reference = load_backbone(family_dirs[family])
    module = SubspaceClassifierModule(backbone, 3, rank=2, covariance="diag").eval()
    assert module.pooling == ("last" if family in DECODERS else "mean")
    assert len(module.adapters) == 2 * len(default_target_modules(model_type)) or family == "albert"
    ids, mask = token_batch()
    with torch.no_grad():
        logits = module(ids, mask, theta=torch.zeros(1, module.n_theta))[0]
        hidden = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        expected = module.head(pool(hidden.float(), mask, module.pooling))
        moved = module(ids, mask, theta=torch.full((1, module.n_theta), 0.5))[0]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(moved, logits)  # the cores do reach the output


@pytest.mark.parametrize("family", FAMILIES)
def test_family_fits_and_predicts(family, family_dirs, toy_data, toy_test):
    clf = BayesianSubspaceClassifier(**tiny_kwargs(family_dirs[family], rank=2, max_epochs=2))
    proba = clf.fit(*toy_data).predict_proba(toy_test[0][:16])
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    assert clf.n_theta_ == 4 * len(find_target_modules(load_backbone(family_dirs[family])))


def test_gpt2_conv1d_is_adapted_in_its_own_layout(family_dirs):
    backbone = load_backbone(family_dirs["gpt2"])
    layer = backbone.get_submodule(find_target_modules(backbone)[0])
    assert isinstance(layer, Conv1D) and layer.weight.shape == (32, 96)  # in x out
    module = SubspaceClassifierModule(backbone, 2, rank=2, covariance="diag")
    adapter = module.adapters[0]
    assert (adapter.in_features, adapter.out_features) == (32, 96)
    assert type(adapter.get_base_layer()) is Conv1D  # wrapped, not converted


def test_last_token_pooling_with_right_and_left_padding():
    hidden = torch.arange(2 * 5 * 2, dtype=torch.float32).reshape(2, 5, 2)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    torch.testing.assert_close(pool(hidden, right, "last"), torch.stack([hidden[0, 2], hidden[1, 4]]))
    torch.testing.assert_close(pool(hidden, left, "last"), torch.stack([hidden[0, 4], hidden[1, 4]]))


@pytest.mark.parametrize("family", sorted(DECODERS))
def test_decoder_features_do_not_depend_on_left_or_right_padding(family, family_dirs):
    # Positions come from the mask: a left-padded row is encoded as it would be alone (GPT-2's
    # absolute positions and Llama's rotary ones alike).
    module = SubspaceClassifierModule(load_backbone(family_dirs[family]), 2, rank=2, covariance="diag").eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (3, 9), generator=g)
    right = torch.ones(3, 9, dtype=torch.long)
    right[0, -4:] = 0
    left_ids = ids.clone()
    left_ids[0] = torch.cat([ids[0, -4:], ids[0, :-4]])  # the same 5 tokens, padding moved to the front
    left = right.clone()
    left[0] = torch.cat([right[0, -4:], right[0, :-4]])
    theta = torch.full((1, module.n_theta), 0.1)
    with torch.no_grad():
        f_right = module.features(theta, ids, right)
        f_left = module.features(theta, left_ids, left)
        alone = module.features(theta, ids[:1, :5], right[:1, :5])
    torch.testing.assert_close(f_left, f_right, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(f_left[:1], alone, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_holding_the_bottom_blocks_cores_gives_the_draws_of_separate_passes(family, family_dirs):
    # sampled_layers=1: the bottom block's cores at the mean run once for all draws, whatever each
    # family passes between its blocks (masks, rotary or relative position terms).
    from subspace_bayes.predictive import posterior_draws

    module = SubspaceClassifierModule(load_backbone(family_dirs[family]), 2, rank=2, covariance="diag").eval()
    module.posterior.loc.data.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    theta = posterior_draws(module.posterior, 3, torch.Generator().manual_seed(0), held=module.held_coordinates(1))
    ids, mask = token_batch()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a block computed in full for every draw would warn
        folded = module(ids, mask, theta=theta.detach())
        separate = torch.stack([module(ids, mask, theta=theta[s : s + 1].detach())[0] for s in range(3)])
    torch.testing.assert_close(folded, separate, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(folded[0], folded[1])  # the top block's draws differ

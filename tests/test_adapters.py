import copy

import pytest
import torch
from torch import nn

from subspace_bayes.adapters import (
    NoTargetModulesError,
    ProjectedLinear,
    collect_input_moments,
    draw_independent_prefix,
    find_target_modules,
    inject_adapters,
)
from subspace_bayes.backbones import pool
from subspace_bayes.module import SubspaceClassifierModule

from conftest import tiny_bert_config


def _tiny(family: str):
    from transformers import AutoModel, LlamaConfig, RobertaConfig

    if family == "bert":
        config = tiny_bert_config(100)
    elif family == "roberta":
        config = RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=70, pad_token_id=1)
    else:
        config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AutoModel.from_config(config).eval()


def _batch(n=3, t=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (n, t), generator=g)
    mask = torch.ones(n, t, dtype=torch.long)
    mask[0, -3:] = 0  # some right padding
    return ids, mask


@pytest.mark.parametrize("family", ["bert", "roberta", "llama"])
def test_zero_core_reproduces_the_original_logits(family):
    backbone = _tiny(family)
    reference = copy.deepcopy(backbone)
    module = SubspaceClassifierModule(backbone, 3, rank=4, covariance="lowrank", cov_rank=2).eval()
    ids, mask = _batch()
    with torch.no_grad():
        logits = module(ids, mask, theta=torch.zeros(1, module.n_theta))[0]
        feats = pool(reference(input_ids=ids, attention_mask=mask).last_hidden_state, mask, module.pooling)
        expected = module.head(feats)
    assert module.pooling == ("last" if family == "llama" else "mean")
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_nonzero_core_changes_the_output_and_matches_the_dense_update(family):
    backbone = _tiny(family)
    bank, adapters = inject_adapters(backbone, rank=3)
    layer = adapters[0]
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(2, sum(a.n_core for a in adapters), generator=g)
    x = torch.randn(2 * 4, 5, layer.base_layer.in_features, generator=g)  # (S*N, T, d_in), sample-major
    with torch.no_grad(), bank.bind(theta):
        out = layer(x)
    for s in range(2):
        R = theta[s, layer.offset : layer.offset + 9].reshape(3, 3)
        W = layer.base_layer.weight + layer.lora_B @ R @ layer.lora_A
        expected = torch.nn.functional.linear(x[4 * s : 4 * (s + 1)], W, layer.base_layer.bias)
        torch.testing.assert_close(out[4 * s : 4 * (s + 1)], expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(out[4 * s : 4 * (s + 1)], layer.base_layer(x[4 * s : 4 * (s + 1)]))


def _prefix_rows(module, monkeypatch):
    """Record the batch sizes the draw-independent prefix computes (its class's forward is spied on)."""
    rows = []
    cls = type(draw_independent_prefix(module.backbone)[0])
    original = cls.forward

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        rows.append(out.shape[0])
        return out

    monkeypatch.setattr(cls, "forward", spy)
    return rows


@pytest.mark.parametrize("family", ["bert", "roberta", "llama"])
def test_folded_draws_equal_separate_passes(family, monkeypatch):
    module = SubspaceClassifierModule(_tiny(family), 2, rank=4, covariance="diag").eval()
    ids, mask = _batch()
    theta = module.sample_theta(5, torch.Generator().manual_seed(0)).detach()
    rows = _prefix_rows(module, monkeypatch)
    with torch.no_grad():
        folded = module(ids, mask, theta=theta)
        assert rows == [3]  # the embeddings ran once for the 3 inputs, not for 5 x 3 folded rows
        separate = torch.stack([module(ids, mask, theta=theta[s : s + 1])[0] for s in range(5)])
    assert folded.shape == (5, 3, 2)
    torch.testing.assert_close(folded, separate, atol=1e-5, rtol=1e-5)
    assert "forward" not in vars(draw_independent_prefix(module.backbone)[0])  # the class's forward is back


def test_prefix_is_not_shared_when_dropout_is_active_or_draws_are_paired(monkeypatch):
    module = SubspaceClassifierModule(_tiny("bert"), 2, rank=4, covariance="diag").eval()
    ids, mask = _batch()
    theta = module.sample_theta(3, torch.Generator().manual_seed(0)).detach()
    rows = _prefix_rows(module, monkeypatch)
    with torch.no_grad():
        module.paired_logits({"input_ids": ids, "attention_mask": mask}, theta)
        prefix = draw_independent_prefix(module.backbone)[0]
        prefix.train()  # tiny BERT's embedding dropout is 0.1: every folded row must get its own mask
        module(ids, mask, theta=theta)
    assert rows == [3, 9]


def test_no_prefix_is_shared_when_it_holds_an_adapter():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.Sequential(nn.Linear(8, 8))

    toy = Toy()
    assert draw_independent_prefix(toy) == [toy.embeddings]
    inject_adapters(toy, rank=2, target_modules=["embeddings.0"])
    assert draw_independent_prefix(toy) == []
    assert draw_independent_prefix(nn.Sequential(nn.Linear(2, 2))) == []


@pytest.mark.parametrize("family, stack", [("bert", "encoder.layer"), ("llama", "layers")])
def test_blocks_below_the_first_adapted_layer_are_computed_once(family, stack, monkeypatch):
    # Adapters on the top block only: the embeddings and the bottom block are draw-independent.
    backbone = _tiny(family)
    targets = {"bert": r".*layer\.1\.attention\.self\.(query|value)", "llama": r".*layers\.1\.self_attn\.(q|v)_proj"}
    module = SubspaceClassifierModule(backbone, 2, rank=4, covariance="diag", target_modules=targets[family]).eval()
    blocks = backbone.get_submodule(stack)
    prefix = draw_independent_prefix(backbone)
    assert prefix[1:] == [blocks[0]]
    ids, mask = _batch()
    theta = module.sample_theta(4, torch.Generator().manual_seed(0)).detach()
    rows = []
    original = type(blocks[0]).forward

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        rows.append((out if isinstance(out, torch.Tensor) else out[0]).shape[0])
        return out

    monkeypatch.setattr(type(blocks[0]), "forward", spy)
    with torch.no_grad():
        folded = module(ids, mask, theta=theta)
        assert rows == [3, 12]  # block 0 once for the 3 inputs; block 1 (adapted) for 4 draws x 3
        separate = torch.stack([module(ids, mask, theta=theta[s : s + 1])[0] for s in range(4)])
    torch.testing.assert_close(folded, separate, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(folded[0], folded[1])  # the draws do differ


def test_a_prefix_module_that_is_not_row_wise_is_computed_in_full():
    from subspace_bayes.adapters import shared_across_draws

    class Summary(nn.Module):  # output has one row whatever the batch: not row-wise
        def forward(self, x):
            return x.sum(0, keepdim=True)

    m = Summary()
    x = torch.arange(6.0).reshape(6, 1).repeat(1, 2)  # 3 draws x 2 rows, rows differ
    with pytest.warns(RuntimeWarning, match="computed for every draw"), shared_across_draws([m], 3, 2):
        out = m(x)
    torch.testing.assert_close(out, x.sum(0, keepdim=True))
@pytest.mark.parametrize(
    "covariance, extra",
    [(None, lambda D, k: D), ("diag", lambda D, k: 2 * D), ("lowrank", lambda D, k: 2 * D + D * k),
     ("full", lambda D, k: 2 * D + D * D)],
)
def test_only_theta_and_head_are_trainable(covariance, extra):
    n_layers, n_targets, r, k, n_classes, hidden = 2, 2, 4, 3, 5, 32
    module = SubspaceClassifierModule(_tiny("bert"), n_classes, rank=r, covariance=covariance, cov_rank=k)
    D = n_layers * n_targets * r * r
    assert module.n_theta == D
    trainable = {n: p.numel() for n, p in module.named_parameters() if p.requires_grad}
    assert all(n.startswith(("posterior.", "head.")) for n in trainable), trainable
    assert sum(trainable.values()) == extra(D, k) + hidden * n_classes + n_classes
    # The frozen backbone keeps all its weights; the adapters add buffers only.
    assert all(not p.requires_grad for p in module.backbone.parameters())
    assert len(module.adapters) == n_layers * n_targets
    assert all(isinstance(a.get_base_layer(), nn.Linear) for a in module.adapters)


def test_default_targets_per_family():
    assert [n.rsplit(".", 1)[-1] for n in find_target_modules(_tiny("bert"))] == ["query", "value"] * 2
    assert [n.rsplit(".", 1)[-1] for n in find_target_modules(_tiny("llama"))] == ["q_proj", "v_proj"] * 2
    # A regular expression selects by full name.
    assert len(find_target_modules(_tiny("bert"), r".*layer\.0\..*(query|key)")) == 2


def test_unmatched_targets_list_the_available_linear_names():
    with pytest.raises(NoTargetModulesError) as err:
        find_target_modules(_tiny("bert"), ["q_proj"])
    msg = str(err.value)
    assert "q_proj" in msg and "query" in msg and "value" in msg and "dense" in msg and "['query', 'value']" in msg


def test_injection_leaves_base_weights_untouched():
    backbone = _tiny("bert")
    before = {n: p.detach().clone() for n, p in backbone.named_parameters()}
    inject_adapters(backbone, rank=4)
    after = {n.replace(".base_layer", ""): p for n, p in backbone.named_parameters()}
    assert before.keys() == after.keys()
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_collect_input_moments_ignores_padding():
    backbone = _tiny("bert")
    names = find_target_modules(backbone)
    ids, mask = _batch()
    moments = collect_input_moments(backbone, names, [{"input_ids": ids, "attention_mask": mask}])
    assert set(moments) == set(names)
    # Reference by hand for the first layer: its input is the embedding output at non-padding tokens.
    with torch.no_grad():
        x = backbone.embeddings(input_ids=ids)[mask.bool()].double()
    torch.testing.assert_close(moments[names[0]], x.T @ x / x.shape[0], atol=1e-6, rtol=1e-6)


def test_whitened_projection_through_injection():
    backbone = _tiny("bert")
    names = find_target_modules(backbone)
    ids, mask = _batch()
    moments = collect_input_moments(backbone, names, [{"input_ids": ids, "attention_mask": mask}])
    _, adapters = inject_adapters(backbone, rank=4, projection="whitened_svd", input_moments=moments)
    assert all(isinstance(a, ProjectedLinear) and a.lora_A.shape == (4, 32) for a in adapters)
    with pytest.raises(ValueError, match="second moments"):
        inject_adapters(_tiny("bert"), rank=4, projection="whitened_svd")

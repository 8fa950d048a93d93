"""Frozen layers below the first adapter run once for all draws of theta."""

import pytest
import torch
from torch import nn

from subspace_bayes.adapters import inject_adapters
from subspace_bayes.draw_sharing import draw_independent_prefix, shared_across_draws
from subspace_bayes.module import SubspaceClassifierModule

from conftest import tiny_backbone, token_batch


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


def _block_rows(block_type: type, monkeypatch) -> list[int]:
    """Record the batch size of every call of ``block_type``'s forward (the class's forward is spied on)."""
    rows = []
    original = block_type.forward

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        rows.append((out if isinstance(out, torch.Tensor) else out[0]).shape[0])
        return out

    monkeypatch.setattr(block_type, "forward", spy)
    return rows


@pytest.mark.parametrize("family", ["bert", "roberta", "llama"])
def test_folded_draws_equal_separate_passes(family, monkeypatch):
    module = SubspaceClassifierModule(tiny_backbone(family), 2, rank=4, covariance="diag").eval()
    ids, mask = token_batch()
    theta = module.sample_theta(5, torch.Generator().manual_seed(0)).detach()
    rows = _prefix_rows(module, monkeypatch)
    with torch.no_grad():
        folded = module(ids, mask, theta=theta)
        assert rows == [3]  # the embeddings ran once for the 3 inputs, not for 5 x 3 folded rows
        separate = torch.stack([module(ids, mask, theta=theta[s : s + 1])[0] for s in range(5)])
    assert folded.shape == (5, 3, 2)
    torch.testing.assert_close(folded, separate, atol=1e-5, rtol=1e-5)
    assert "forward" not in vars(draw_independent_prefix(module.backbone)[0])  # the class's forward is back


def test_prefix_is_not_shared_when_dropout_is_active_or_each_input_has_its_own_draw(monkeypatch):
    module = SubspaceClassifierModule(tiny_backbone("bert"), 2, rank=4, covariance="diag").eval()
    ids, mask = token_batch()
    theta = module.sample_theta(3, torch.Generator().manual_seed(0)).detach()
    rows = _prefix_rows(module, monkeypatch)
    with torch.no_grad():
        module.per_input_logits({"input_ids": ids, "attention_mask": mask}, theta)
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
    backbone = tiny_backbone(family)
    targets = {"bert": r".*layer\.1\.attention\.self\.(query|value)", "llama": r".*layers\.1\.self_attn\.(q|v)_proj"}
    module = SubspaceClassifierModule(backbone, 2, rank=4, covariance="diag", target_modules=targets[family]).eval()
    blocks = backbone.get_submodule(stack)
    prefix = draw_independent_prefix(backbone)
    assert prefix[1:] == [blocks[0]]
    ids, mask = token_batch()
    theta = module.sample_theta(4, torch.Generator().manual_seed(0)).detach()
    rows = _block_rows(type(blocks[0]), monkeypatch)
    with torch.no_grad():
        folded = module(ids, mask, theta=theta)
        assert rows == [3, 12]  # block 0 once for the 3 inputs; block 1 (adapted) for 4 draws x 3
        separate = torch.stack([module(ids, mask, theta=theta[s : s + 1])[0] for s in range(4)])
    torch.testing.assert_close(folded, separate, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(folded[0], folded[1])  # the draws do differ


def test_a_prefix_module_that_is_not_row_wise_is_computed_in_full():
    class Summary(nn.Module):  # output has one row whatever the batch: not row-wise
        def forward(self, x):
            return x.sum(0, keepdim=True)

    m = Summary()
    x = torch.arange(6.0).reshape(6, 1).repeat(1, 2)  # 3 draws x 2 rows, rows differ
    with pytest.warns(RuntimeWarning, match="computed for every draw"), shared_across_draws([m], 3, 2):
        out = m(x)
    torch.testing.assert_close(out, x.sum(0, keepdim=True))


@pytest.mark.parametrize("family, stack", [("bert", "encoder.layer"), ("llama", "layers")])
def test_blocks_whose_cores_are_held_at_the_mean_are_computed_once(family, stack, monkeypatch):
    # Every block adapted; the bottom block's cores held at the mean (sampled_layers=1): the
    # embeddings and block 0 run once, and the result equals separate passes with the same draws.
    backbone = tiny_backbone(family)
    module = SubspaceClassifierModule(backbone, 2, rank=4, covariance="lowrank", bayesian_head=True).eval()
    module.posterior.loc.data.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    held = module.held_coordinates(1)
    bottom = module.adapters[0]
    assert held is not None and held.sum() == sum(a.n_core for a in module.adapters) // 2
    assert held[bottom.offset : bottom.offset + bottom.n_core].all() and not held[module.n_core :].any()
    assert module.held_coordinates(None) is None and module.held_coordinates(2) is None
    assert held.equal(module.held_coordinates(0)[: len(held)] & held)  # 0 holds every core, not the head
    assert module.held_coordinates(0)[: module.n_core].all() and not module.held_coordinates(0)[module.n_core :].any()

    from subspace_bayes.predictive import posterior_draws

    theta = posterior_draws(module.posterior, 4, torch.Generator().manual_seed(0), held=held).detach()
    torch.testing.assert_close(theta[:, held], module.posterior.mean.detach()[held].expand(4, -1))
    assert not torch.allclose(theta[0, ~held], theta[1, ~held])
    blocks = backbone.get_submodule(stack)
    assert draw_independent_prefix(backbone, theta)[1:] == [blocks[0]]
    assert draw_independent_prefix(backbone)[1:] == []
    rows = _block_rows(type(blocks[0]), monkeypatch)
    with torch.no_grad():
        ids, mask = token_batch()
        folded = module(ids, mask, theta=theta)
        assert rows == [3, 12]  # block 0 (cores held) once for 3 inputs; block 1 for 4 draws x 3
        separate = torch.stack([module(ids, mask, theta=theta[s : s + 1])[0] for s in range(4)])
    torch.testing.assert_close(folded, separate, atol=1e-5, rtol=1e-5)

"""SubspaceClassifierModule: frozen backbone + adapters + posterior + head."""

import copy

import pytest
import torch
from torch import nn

from subspace_bayes.adapters import collect_input_moments, find_target_modules, inject_adapters
from subspace_bayes.backbones import pool
from subspace_bayes.module import SubspaceClassifierModule

from conftest import tiny_backbone, token_batch


@pytest.mark.parametrize("family", ["bert", "roberta", "llama"])
def test_zero_core_reproduces_the_original_logits(family):
    backbone = tiny_backbone(family)
    reference = copy.deepcopy(backbone)
    module = SubspaceClassifierModule(backbone, 3, rank=4, covariance="lowrank", cov_rank=2).eval()
    ids, mask = token_batch()
    with torch.no_grad():
        logits = module(ids, mask, theta=torch.zeros(1, module.n_theta))[0]
        feats = pool(reference(input_ids=ids, attention_mask=mask).last_hidden_state, mask, module.pooling)
        expected = module.head(feats)
    assert module.pooling == ("last" if family == "llama" else "mean")
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "covariance, extra",
    [
        (None, lambda D, k: D),
        ("diag", lambda D, k: 2 * D),
        ("lowrank", lambda D, k: 2 * D + D * k),
        ("full", lambda D, k: 2 * D + D * D),
    ],
)
def test_only_theta_and_head_are_trainable(covariance, extra):
    n_layers, n_targets, r, k, n_classes, hidden = 2, 2, 4, 3, 5, 32
    module = SubspaceClassifierModule(tiny_backbone("bert"), n_classes, rank=r, covariance=covariance, cov_rank=k)
    D = n_layers * n_targets * r * r
    assert module.n_theta == D
    trainable = {n: p.numel() for n, p in module.named_parameters() if p.requires_grad}
    assert all(n.startswith(("posterior.", "head.")) for n in trainable), trainable
    assert sum(trainable.values()) == extra(D, k) + hidden * n_classes + n_classes
    # The frozen backbone keeps all its weights; the adapters add buffers only.
    assert all(not p.requires_grad for p in module.backbone.parameters())
    assert len(module.adapters) == n_layers * n_targets
    assert all(isinstance(a.get_base_layer(), nn.Linear) for a in module.adapters)


def test_reproject_gives_the_bases_of_whitened_injection():
    ids, mask = token_batch()
    reference = tiny_backbone("bert")
    moments = collect_input_moments(
        reference, find_target_modules(reference), [{"input_ids": ids, "attention_mask": mask}]
    )
    _, expected = inject_adapters(reference, rank=4, projection="whitened_svd", input_moments=moments)
    module = SubspaceClassifierModule(tiny_backbone("bert"), 2, rank=4, projection="svd")
    module.reproject("whitened_svd", [{"input_ids": ids, "attention_mask": mask}])
    for got, want in zip(module.adapters, expected, strict=True):
        torch.testing.assert_close(got.lora_A, want.lora_A, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.lora_B, want.lora_B, atol=1e-5, rtol=1e-5)


def test_adapter_state_is_posterior_head_and_bases_only_and_reloads():
    module = SubspaceClassifierModule(tiny_backbone("bert"), 2, rank=2, covariance="lowrank", cov_rank=2)
    state = module.adapter_state_dict()
    assert set(state) <= set(module.state_dict())
    bases = [k for k in state if k.startswith("backbone.")]
    assert len(bases) == 2 * len(module.adapters) and all(k.endswith((".lora_A", ".lora_B")) for k in bases)
    assert {k.split(".")[0] for k in state} == {"posterior", "head", "backbone"}
    other = SubspaceClassifierModule(
        tiny_backbone("bert"),
        2,
        rank=2,
        covariance="lowrank",
        cov_rank=2,
        projection="random",
        generator=torch.Generator().manual_seed(3),
    )
    other.load_adapter_state_dict({k: v.clone() for k, v in state.items()})
    assert all(torch.equal(other.adapter_state_dict()[k], v) for k, v in state.items())
    with pytest.raises(ValueError, match="does not fit"):
        other.load_adapter_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})


def test_precision_is_a_constructor_argument_and_autocasts_the_backbone_only():
    module = SubspaceClassifierModule(tiny_backbone("bert"), 2, rank=2, covariance="diag", precision="bf16").eval()
    ids, mask = token_batch()
    with torch.no_grad():
        logits = module(ids, mask, n_samples=2, generator=torch.Generator().manual_seed(0))
    assert logits.dtype == torch.float32 and module.posterior.loc.dtype == torch.float32
    with pytest.raises(ValueError):
        SubspaceClassifierModule(tiny_backbone("bert"), 2, precision="int8")

"""ProjectedLinear, injection by name, input moments, and the hookable core product."""

import pytest
import torch

from subspace_bayes.adapters import (
    CoreProduct,
    NoTargetModulesError,
    ProjectedLinear,
    collect_input_moments,
    find_target_modules,
    inject_adapters,
    named_adapters,
)
from subspace_bayes.projections import make_projection

from conftest import tiny_backbone, token_batch


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_nonzero_core_changes_the_output_and_matches_the_dense_update(family):
    backbone = tiny_backbone(family)
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


def test_default_targets_per_family():
    assert [n.rsplit(".", 1)[-1] for n in find_target_modules(tiny_backbone("bert"))] == ["query", "value"] * 2
    assert [n.rsplit(".", 1)[-1] for n in find_target_modules(tiny_backbone("llama"))] == ["q_proj", "v_proj"] * 2
    # A regular expression selects by full name.
    assert len(find_target_modules(tiny_backbone("bert"), r".*layer\.0\..*(query|key)")) == 2


def test_unmatched_targets_list_the_available_linear_names():
    with pytest.raises(NoTargetModulesError) as err:
        find_target_modules(tiny_backbone("bert"), ["q_proj"])
    msg = str(err.value)
    assert "q_proj" in msg and "query" in msg and "value" in msg and "dense" in msg and "['query', 'value']" in msg


def test_injection_leaves_base_weights_untouched():
    backbone = tiny_backbone("bert")
    before = {n: p.detach().clone() for n, p in backbone.named_parameters()}
    inject_adapters(backbone, rank=4)
    after = {n.replace(".base_layer", ""): p for n, p in backbone.named_parameters()}
    assert before.keys() == after.keys()
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_collect_input_moments_ignores_padding():
    backbone = tiny_backbone("bert")
    names = find_target_modules(backbone)
    ids, mask = token_batch()
    moments = collect_input_moments(backbone, names, [{"input_ids": ids, "attention_mask": mask}])
    assert set(moments) == set(names)
    # Reference by hand for the first layer: its input is the embedding output at non-padding tokens.
    with torch.no_grad():
        x = backbone.embeddings(input_ids=ids)[mask.bool()].double()
    torch.testing.assert_close(moments[names[0]], x.T @ x / x.shape[0], atol=1e-6, rtol=1e-6)


def test_whitened_projection_through_injection():
    backbone = tiny_backbone("bert")
    names = find_target_modules(backbone)
    ids, mask = token_batch()
    moments = collect_input_moments(backbone, names, [{"input_ids": ids, "attention_mask": mask}])
    _, adapters = inject_adapters(backbone, rank=4, projection="whitened_svd", input_moments=moments)
    assert all(isinstance(a, ProjectedLinear) and a.lora_A.shape == (4, 32) for a in adapters)
    with pytest.raises(ValueError, match="second moments"):
        inject_adapters(tiny_backbone("bert"), rank=4, projection="whitened_svd")


def test_adapters_are_found_by_type_not_by_buffer_name():
    backbone = tiny_backbone("bert")
    _, adapters = inject_adapters(backbone, rank=2)
    found = named_adapters(backbone)
    assert [a for _, a in found] == adapters
    assert all(name.endswith(("query", "value")) for name, _ in found)


def test_set_projection_replaces_the_bases_and_keeps_the_rank():
    backbone = tiny_backbone("bert")
    _, adapters = inject_adapters(backbone, rank=3)
    layer = adapters[0]
    proj = make_projection(layer.get_base_layer().weight, 3, "dct")
    layer.set_projection(proj)
    root = proj.scale.float().sqrt()
    torch.testing.assert_close(layer.lora_A, root[:, None] * proj.A.float())
    assert "lora_A" in dict(layer.named_buffers())  # still a saved buffer
    with pytest.raises(ValueError, match="rank 3"):
        layer.set_projection(make_projection(layer.get_base_layer().weight, 2, "svd"))


def test_core_product_is_watchable_with_forward_hooks():
    backbone = tiny_backbone("bert")
    bank, adapters = inject_adapters(backbone, rank=2)
    seen = []
    handle = adapters[0].core_product.register_forward_hook(lambda m, i, o: seen.append((i[0].shape, o.shape)))
    ids, mask = token_batch()
    with torch.no_grad(), bank.bind(torch.zeros(2, sum(a.n_core for a in adapters))):
        backbone(input_ids=ids.repeat(2, 1), attention_mask=mask.repeat(2, 1))
    handle.remove()
    assert seen == [(torch.Size([2, 3 * 9, 2]), torch.Size([2, 3 * 9, 2]))]  # (S, N*T, r) in and out
    assert isinstance(adapters[0].core_product, CoreProduct)

"""Loading backbones by alias or folder, pooling, device resolution."""

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

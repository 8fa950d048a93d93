"""bayesian_head=True: the linear head's [W | b] joins the cores in theta, as its sum-to-zero contrasts."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes._validation import InvalidParameterError
from subspace_bayes.inference.laplace import ggn
from subspace_bayes.module import SubspaceClassifierModule, contrast_basis

from conftest import tiny_bert_config, tiny_kwargs

C = 3


def _modules():
    """The same tiny backbone and head initialisation, with a point-estimate and a Bayesian head."""
    from transformers import AutoModel

    out = []
    for bayesian in (False, True):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            backbone = AutoModel.from_config(tiny_bert_config(100)).eval()
            out.append(
                SubspaceClassifierModule(backbone, C, rank=2, covariance=None, bayesian_head=bayesian).double().eval()
            )
    return out


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (6, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}, torch.tensor([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("n_classes", [2, 3, 7])
def test_contrast_basis_is_orthonormal_and_sums_to_zero(n_classes):
    Q = contrast_basis(n_classes, torch.float64)
    assert Q.shape == (n_classes, n_classes - 1)
    torch.testing.assert_close(Q.T @ Q, torch.eye(n_classes - 1, dtype=torch.float64))
    torch.testing.assert_close(Q.sum(0), torch.zeros(n_classes - 1, dtype=torch.float64))
    # Q Q^T + 11^T / C = I: with the flat direction the basis is complete.
    full = Q @ Q.T + torch.full((n_classes, n_classes), 1.0 / n_classes, dtype=torch.float64)
    torch.testing.assert_close(full, torch.eye(n_classes, dtype=torch.float64))


def test_theta_holds_the_head_after_the_cores_and_starts_at_the_heads_initial_value():
    point, bayes = _modules()
    H = point.head.in_features
    assert bayes.n_theta == point.n_theta + (C - 1) * (H + 1) and bayes.n_core == point.n_theta
    batch, _ = _batch()
    with torch.no_grad():
        theta = torch.zeros(2, bayes.n_theta, dtype=torch.float64)
        theta[:, bayes.n_core :] = bayes.posterior.loc[bayes.n_core :]
        # Same probabilities as the point head (the logits differ by the dropped per-feature class mean).
        torch.testing.assert_close(
            bayes(**batch, theta=theta).softmax(-1), point(**batch, theta=theta[:, : point.n_theta]).softmax(-1)
        )
        # A different head per draw: draw s uses its own [W_s | b_s] = Q Z_s.
        theta[1, bayes.n_core :] = torch.randn((C - 1) * (H + 1), dtype=torch.float64)
        out = bayes(**batch, theta=theta)
        feats = bayes.features(theta[1:], **batch).double()
        Wb = contrast_basis(C, torch.float64) @ theta[1, bayes.n_core :].reshape(C - 1, H + 1)
        torch.testing.assert_close(out[1], feats @ Wb[:, :H].T + Wb[:, H])
        torch.testing.assert_close(out.sum(-1), torch.zeros_like(out.sum(-1)))  # sum-to-zero logits
    assert not any(p.requires_grad for p in bayes.head.parameters())


def test_an_adapter_with_the_earlier_class_row_layout_still_loads():
    # Saved before the contrast layout: theta's head part is the C x (H + 1) class rows themselves.
    point, bayes = _modules()
    H = point.head.in_features
    legacy_rows = torch.randn(C, H + 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    state = {k: v.clone() for k, v in bayes.adapter_state_dict().items()}
    state["posterior.loc"] = torch.cat([state["posterior.loc"][: bayes.n_core], legacy_rows.flatten()])
    _, fresh = _modules()
    fresh.load_adapter_state_dict(state)
    assert fresh.head_basis == "classes" and fresh.n_theta == fresh.n_core + C * (H + 1)
    batch, _ = _batch()
    with torch.no_grad():
        theta = fresh.posterior.loc.detach()[None]
        feats = fresh.features(theta, **batch).double()
        torch.testing.assert_close(fresh(**batch, theta=theta)[0], feats @ legacy_rows[:, :H].T + legacy_rows[:, H])


def test_ggn_over_the_head_block_is_the_sum_of_softmax_hessians_kron_features():
    _, module = _modules()
    batch, labels = _batch()
    with torch.no_grad():
        module.posterior.loc.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
    theta = module.posterior.loc.detach()
    G, _, n = ggn(module, [{**batch, "labels": labels}], theta, "full")
    with torch.no_grad():
        phi = module.features(theta[None], **batch)  # (N, H)
        p = torch.softmax(module(**batch, theta=theta[None])[0], -1)
    phi1 = torch.cat([phi, torch.ones(len(phi), 1, dtype=phi.dtype)], dim=1)  # [phi, 1] for [W | b]
    Q = contrast_basis(C, torch.float64)  # theta holds Z with [W | b] = Q Z
    expected = sum(
        torch.kron(Q.T @ (torch.diag(pi) - torch.outer(pi, pi)) @ Q, torch.outer(f, f))
        for pi, f in zip(p, phi1, strict=True)
    )
    head = slice(module.n_core, module.n_theta)
    # Exact up to the float32 pooled features.
    torch.testing.assert_close(G[head, head], expected.double(), rtol=1e-4, atol=1e-7)
    assert n == 6 and G[: module.n_core, head].abs().max() > 0  # cores and head are coupled in the full GGN


@pytest.mark.parametrize("posterior", ["vi", "swag", "laplace", "map"])
def test_every_posterior_covers_the_head(tiny_bert_dir, toy_data, toy_test, posterior):
    extra = {"swag_start": 2, "swag_max_snapshots": 5} if posterior == "swag" else {}
    if posterior == "vi":  # tiny_kwargs' lr=0.1 is too large for a head in theta: VI then stays at chance
        extra["lr"] = 1e-2
    clf = BayesianSubspaceClassifier(
        **tiny_kwargs(tiny_bert_dir, posterior=posterior, bayesian_head=True, max_epochs=5, **extra)
    ).fit(*toy_data)
    module = clf.module_
    H = module.head.in_features
    assert clf.n_theta_ == module.n_core + (2 - 1) * (H + 1)
    initial = module._head_to_theta(module._augmented_head())  # the nn.Linear keeps the initial value only
    assert not torch.allclose(module.posterior.mean.detach()[module.n_core :].cpu(), initial)  # the head learnt
    p = clf.predict_proba(toy_test[0])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    assert (clf.score(*toy_test) > 0.5) or posterior == "laplace"
    if posterior != "map":
        spectrum = clf.posterior_spectrum()
        assert spectrum[module.n_core :].size and spectrum.max() > 0
        assert clf.predict_uncertainty(toy_test[0])["epistemic"].max() > 0


def test_bayesian_head_options_that_cannot_work_say_so(tiny_bert_dir, toy_data):
    with pytest.raises(InvalidParameterError, match="kron"):
        BayesianSubspaceClassifier(
            **tiny_kwargs(tiny_bert_dir, posterior="laplace", laplace_structure="kron", bayesian_head=True)
        ).fit(*toy_data)
    with pytest.raises(InvalidParameterError, match="head='linear'"):
        BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, head="lm", bayesian_head=True)).fit(*toy_data)


def test_a_bayesian_head_round_trips_through_save_adapter_and_pickle(tiny_bert_dir, toy_data, toy_test, tmp_path):
    import joblib

    from subspace_bayes import load_adapter

    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, bayesian_head=True, max_epochs=3)).fit(*toy_data)
    p = clf.predict_proba(toy_test[0])
    again = load_adapter(clf.save_adapter(tmp_path / "adapter"))
    assert again.bayesian_head and again.n_theta_ == clf.n_theta_
    np.testing.assert_allclose(again.predict_proba(toy_test[0]), p, atol=1e-6)
    joblib.dump(clf, tmp_path / "m.joblib")
    np.testing.assert_allclose(joblib.load(tmp_path / "m.joblib").predict_proba(toy_test[0]), p, atol=1e-10)


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, True),  # the default: VI with the linear head and a fixed prior
        ({"posterior": "map"}, False),
        ({"posterior": "swag"}, False),
        ({"posterior": "laplace"}, False),
        ({"head": "lm"}, False),
        ({"prior_std": "auto"}, False),  # one EB prior for cores and head collapses the head
        ({"posterior": "laplace", "bayesian_head": True}, True),
        ({"bayesian_head": False}, False),
    ],
)
def test_auto_puts_the_head_in_theta_where_it_was_measured_to_help(params, expected):
    assert BayesianSubspaceClassifier(**params)._bayesian_head() is expected


def test_the_default_fits_a_bayesian_head_and_an_eb_prior_with_it_warns(tiny_bert_dir, toy_data):
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, bayesian_head="auto", lr=1e-2, max_epochs=2))
    clf.fit(*toy_data)
    assert clf.module_.bayesian_head and clf.n_theta_ == clf.module_.n_core + (2 - 1) * (32 + 1)
    eb_with_head = tiny_kwargs(tiny_bert_dir, bayesian_head=True, prior_std="auto", max_epochs=1)
    with pytest.warns(UserWarning, match="base rate"):  # one EB prior shared by cores and head
        BayesianSubspaceClassifier(**eb_with_head, head_prior_std=None).fit(*toy_data)
    with warnings.catch_warnings(record=True) as caught:  # the default head_prior_std: the head's own prior
        warnings.simplefilter("always")
        BayesianSubspaceClassifier(**eb_with_head).fit(*toy_data)
    assert not [w for w in caught if "base rate" in str(w.message)]


def test_an_adapter_saved_by_the_previous_release_predicts_as_it_did(tiny_bert_dir, toy_test):
    # tests/data/adapter_bayesian_head_class_rows: fitted and saved by release 0.1.0 (head as class
    # rows in theta) on the same tiny BERT, with the probabilities it predicted then.
    from subspace_bayes import load_adapter

    folder = Path(__file__).parent / "data" / "adapter_bayesian_head_class_rows"
    clf = load_adapter(folder, backbone=tiny_bert_dir)
    assert clf.module_.head_basis == "classes" and clf.n_theta_ == clf.module_.n_core + 2 * (32 + 1)
    np.testing.assert_allclose(clf.predict_proba(toy_test[0][:16]), np.load(folder / "expected_proba.npy"), atol=1e-6)

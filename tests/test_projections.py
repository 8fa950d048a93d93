import numpy as np
import pytest
import torch

from subspace_bayes.projections import (
    PROJECTIONS,
    dct_matrix,
    make_projection,
    parse_projection,
    svd_projection,
    whitened_svd_projection,
)

FAMILIES = ["svd", "whitened_svd", "dct", "random", "svd+dct", "svd+random:0.25", "dct+random:0.75"]


def _weight(d_out=24, d_in=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d_out, d_in, generator=g, dtype=torch.float64)


def _moment(d_in=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(d_in, d_in, generator=g, dtype=torch.float64)
    return M @ M.T / d_in


@pytest.mark.parametrize("family", FAMILIES)
def test_shapes_and_orthonormality(family):
    W, r = _weight(), 5
    p = make_projection(W, r, family, generator=torch.Generator().manual_seed(0), input_moment=_moment())
    assert p.A.shape == (r, 16) and p.B.shape == (24, r) and p.scale.shape == (r,)
    assert torch.all(p.scale >= 0)
    eye = torch.eye(r)
    # B always has orthonormal columns; A has unit rows, and orthonormal rows except for whitened SVD.
    torch.testing.assert_close(p.B.T @ p.B, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(p.A.norm(dim=1), torch.ones(r), atol=1e-5, rtol=0)
    if "whitened" not in family:
        torch.testing.assert_close(p.A @ p.A.T, eye, atol=1e-5, rtol=0)


def test_svd_with_singular_value_core_is_best_rank_r():
    W, r = _weight(), 4
    p = svd_projection(W, r)
    approx = p.B @ torch.diag(p.scale) @ p.A
    U, S, Vh = np.linalg.svd(W.numpy())
    reference = (U[:, :r] * S[:r]) @ Vh[:r]
    np.testing.assert_allclose(approx.numpy(), reference, atol=1e-10)
    # The adapter's convention: sqrt(scale) folded on both sides, so R = I reproduces it too.
    np.testing.assert_allclose(p.reconstruct().numpy(), reference, atol=1e-10)
    # Eckart-Young: the residual is the tail of the spectrum.
    assert np.isclose(np.linalg.norm(W.numpy() - reference), np.sqrt(np.sum(S[r:] ** 2)))


def test_whitened_svd_has_lower_output_error_on_correlated_inputs():
    d_in, d_out, r = 16, 24, 3
    g = torch.Generator().manual_seed(3)
    # Strongly correlated inputs: a few latent directions plus small noise.
    latent = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    mix = torch.randn(3, d_in, generator=g, dtype=torch.float64) * 3
    x = latent @ mix + 0.05 * torch.randn(4000, d_in, generator=g, dtype=torch.float64)
    W = _weight(d_out, d_in, seed=4)
    C = x.T @ x / x.shape[0]

    def output_error(p):
        return ((x @ (W - p.B @ torch.diag(p.scale) @ p.A).T) ** 2).sum(1).mean().item()

    plain = output_error(svd_projection(W, r))
    whitened = output_error(whitened_svd_projection(W, r, input_moment=C, damping=1e-6))
    assert whitened < 0.5 * plain, (whitened, plain)


def test_whitened_svd_equals_svd_for_white_inputs():
    W = _weight()
    p = whitened_svd_projection(W, 4, input_moment=torch.eye(16, dtype=torch.float64), damping=0.0)
    q = svd_projection(W, 4)
    torch.testing.assert_close(p.B @ torch.diag(p.scale) @ p.A, q.B @ torch.diag(q.scale) @ q.A)


def test_whitened_svd_requires_moments():
    with pytest.raises(ValueError, match="input second moment"):
        make_projection(_weight(), 3, "whitened_svd")


def test_random_is_reproducible_from_seed():
    W = _weight()
    a = make_projection(W, 4, "random", generator=torch.Generator().manual_seed(7))
    b = make_projection(W, 4, "random", generator=torch.Generator().manual_seed(7))
    c = make_projection(W, 4, "random", generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.A, b.A) and torch.equal(a.B, b.B)
    assert not torch.allclose(a.A, c.A)


def test_dct_matrix_is_orthonormal_and_matches_scipy_convention():
    C = dct_matrix(8)
    torch.testing.assert_close(C @ C.T, torch.eye(8, dtype=C.dtype))
    x = torch.arange(8, dtype=torch.float64)
    # DCT-II, orthonormal: X_0 = sum(x) / sqrt(n)
    assert torch.isclose((C @ x)[0], x.sum() / np.sqrt(8))


def test_dct_keeps_the_energetic_frequencies():
    # A weight that lives exactly on two DCT frequencies on each side is recovered exactly at r=2.
    C_out, C_in = dct_matrix(24), dct_matrix(16)
    W = 3.0 * torch.outer(C_out[5], C_in[2]) + 2.0 * torch.outer(C_out[1], C_in[7])
    p = make_projection(W, 2, "dct")
    P_B, P_A = p.B @ p.B.T, p.A.T @ p.A
    torch.testing.assert_close((P_B @ W.float() @ P_A).double(), W, atol=1e-5, rtol=0)


def test_hybrid_takes_the_fraction_from_the_first_family():
    W = _weight()
    p = make_projection(W, 4, "svd+random:0.5", generator=torch.Generator().manual_seed(0))
    s = svd_projection(W.float(), 4)
    # The first two columns span the top-2 singular directions.
    proj = p.B[:, :2] @ p.B[:, :2].T
    torch.testing.assert_close(proj @ s.B[:, :2], s.B[:, :2], atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec", ["svd", "svd+dct", "svd+dct:0.25"])
def test_parse_projection_accepts(spec):
    families, fraction = parse_projection(spec)
    assert all(f in PROJECTIONS for f in families) and 0 <= fraction <= 1


@pytest.mark.parametrize("spec", ["svdd", "svd+foo", "svd+dct:1.5", "svd+dct:x", "svd:0.5", "svd+dct+random", 3])
def test_parse_projection_rejects_with_the_allowed_names(spec):
    with pytest.raises(ValueError, match=r"svd|fraction|string"):
        parse_projection(spec)


def test_rank_too_large_is_a_clear_error():
    with pytest.raises(ValueError, match="rank must be in"):
        make_projection(_weight(), 17, "svd")

"""Frozen projection bases computed once from a pretrained weight matrix.

Every adapted layer uses ``W = W0 + s * B R A`` with frozen bases
``A in R^{r x d_in}`` and ``B in R^{d_out x r}`` and a learned (random) core
``R in R^{r x r}``. This module holds the pure functions ``W0 -> Projection``;
nothing here touches ``nn.Module`` state.

Each :class:`Projection` carries, besides ``A`` and ``B``, a per-direction
magnitude ``scale`` (shape ``(r,)``). The adapter folds ``sqrt(scale)`` into
both bases, so that the effective update is
``B diag(sqrt(scale)) R diag(sqrt(scale)) A``. For ``"svd"`` the scale is the
top-``r`` singular values, so that ``R = I`` reproduces the best rank-``r``
approximation of ``W0`` and an isotropic prior on ``R`` is isotropic relative
to ``W0``'s own spectrum (the LoRA-XS convention, split symmetrically). Families
whose bases carry no natural magnitude (``"dct"``, ``"random"``, hybrids) use
the mean of the top-``r`` singular values for every direction, so the same
learning rate and prior work across families.

References
----------
Bałazy et al., "LoRA-XS: Low-Rank Adaptation with Extremely Small Number of
Parameters", arXiv:2405.17604.
Dubovik et al., "Bayesian Fine-tuning in Projected Subspaces", arXiv:2605.07706.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Projection",
    "data_free_projection",
    "PROJECTIONS",
    "svd_projection",
    "whitened_svd_projection",
    "dct_projection",
    "random_projection",
    "hybrid_projection",
    "dct_matrix",
    "make_projection",
    "parse_projection",
]


@dataclass(frozen=True)
class Projection:
    """Frozen bases of one adapted layer.

    Attributes
    ----------
    A : Tensor of shape (r, d_in)
        Input-side basis (rows are unit length; orthonormal for every family
        except ``"whitened_svd"``).
    B : Tensor of shape (d_out, r)
        Output-side basis with orthonormal columns.
    scale : Tensor of shape (r,)
        Non-negative magnitude per direction, folded into the adapter as
        ``sqrt(scale)`` on both sides.
    """

    A: Tensor
    B: Tensor
    scale: Tensor

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    def reconstruct(self, core: Tensor | None = None) -> Tensor:
        """Return ``B diag(sqrt s) R diag(sqrt s) A`` (``R = I`` if ``core`` is None)."""
        root = self.scale.sqrt()
        core = torch.eye(self.rank, dtype=self.A.dtype) if core is None else core
        return (self.B * root) @ core @ (root[:, None] * self.A)


def _check_rank(weight: Tensor, rank: int) -> None:
    d_out, d_in = weight.shape
    if not 1 <= rank <= min(d_out, d_in):
        raise ValueError(
            f"rank must be in [1, {min(d_out, d_in)}] for a weight of shape "
            f"{tuple(weight.shape)}; got {rank}. Choose a smaller rank."
        )


def _top_singular_mean(weight: Tensor, rank: int) -> Tensor:
    return torch.linalg.svdvals(weight)[:rank].mean()


def svd_projection(weight: Tensor, rank: int, **_: object) -> Projection:
    """Truncated SVD bases (LoRA-XS).

    ``W0 = U S V^T``; ``B = U_r``, ``A = V_r^T``, ``scale = diag(S_r)``, so that
    ``B diag(scale) A`` is the best rank-``r`` approximation of ``W0``
    (Eckart-Young).

    Parameters
    ----------
    weight : Tensor of shape (d_out, d_in)
    rank : int

    Returns
    -------
    Projection
    """
    _check_rank(weight, rank)
    U, S, Vh = torch.linalg.svd(weight.double(), full_matrices=False)
    dtype = weight.dtype
    return Projection(A=Vh[:rank].to(dtype), B=U[:, :rank].to(dtype), scale=S[:rank].to(dtype))


def whitened_svd_projection(
    weight: Tensor, rank: int, *, input_moment: Tensor | None = None, damping: float = 1e-2, **_: object
) -> Projection:
    """Whitened SVD: minimise the expected *output* error.

    Minimises ``E_x ||(W0 - W_r) x||^2 = ||(W0 - W_r) C^{1/2}||_F^2`` over rank-``r``
    ``W_r``, where ``C = E[x x^T]`` is the input second moment. With
    ``W0 C^{1/2} = U S V^T`` the minimiser is ``W_r = U_r S_r V_r^T C^{-1/2}``.
    The input directions ``a_i = C^{-1/2} v_i`` are normalised to unit length and
    their norms moved into ``scale_i = s_i ||a_i||``. ``C`` is damped as
    ``C + damping * mean(diag C) * I`` so singular moments are safe.

    Parameters
    ----------
    weight : Tensor of shape (d_out, d_in)
    rank : int
    input_moment : Tensor of shape (d_in, d_in)
        Second moment of the layer's inputs (gathered with forward hooks, see
        :func:`subspace_bayes.adapters.collect_input_moments`).
    damping : float, default=1e-2
        Relative damping added to the diagonal.

    Returns
    -------
    Projection
    """
    _check_rank(weight, rank)
    if input_moment is None:
        raise ValueError(
            "projection='whitened_svd' needs the input second moment of each layer; "
            "the estimator gathers it from the training texts. Pass input_moment=..."
        )
    W = weight.double()
    C = input_moment.double()
    C = 0.5 * (C + C.T)
    C = C + damping * C.diagonal().mean().clamp_min(1e-12) * torch.eye(C.shape[0], dtype=C.dtype)
    evals, evecs = torch.linalg.eigh(C)
    evals = evals.clamp_min(1e-12)
    root = (evecs * evals.sqrt()) @ evecs.T
    inv_root = (evecs * evals.rsqrt()) @ evecs.T
    U, S, Vh = torch.linalg.svd(W @ root, full_matrices=False)
    A_raw = Vh[:rank] @ inv_root
    norms = A_raw.norm(dim=1)
    dtype = weight.dtype
    return Projection(A=(A_raw / norms[:, None]).to(dtype), B=U[:, :rank].to(dtype), scale=(S[:rank] * norms).to(dtype))


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Orthonormal DCT-II matrix.

    ``C[k, i] = sqrt(2/n) * c_k * cos(pi (i + 1/2) k / n)`` with ``c_0 = 1/sqrt 2``
    and ``c_k = 1`` otherwise; rows are frequencies and ``C C^T = I``.
    """
    i = torch.arange(n, dtype=dtype)
    k = torch.arange(n, dtype=dtype)[:, None]
    C = math.sqrt(2.0 / n) * torch.cos(math.pi * (i + 0.5) * k / n)
    C[0] /= math.sqrt(2.0)
    return C


def dct_projection(weight: Tensor, rank: int, **_: object) -> Projection:
    """DCT bases: keep the frequencies with the most energy.

    With ``T = C_out W0 C_in^T`` (2-D DCT of ``W0``), keep the ``r`` output
    frequencies with the largest row energy ``sum_j T_kj^2`` and the ``r`` input
    frequencies with the largest column energy; ``B`` and ``A`` are the
    corresponding (orthonormal) DCT vectors.
    """
    _check_rank(weight, rank)
    W = weight.double()
    C_out, C_in = dct_matrix(W.shape[0]), dct_matrix(W.shape[1])
    T = C_out @ W @ C_in.T
    rows = torch.argsort(T.pow(2).sum(1), descending=True)[:rank]
    cols = torch.argsort(T.pow(2).sum(0), descending=True)[:rank]
    dtype = weight.dtype
    scale = _top_singular_mean(W, rank).expand(rank).clone()
    return Projection(A=C_in[cols].to(dtype), B=C_out[rows].T.to(dtype), scale=scale.to(dtype))


def _haar_orthonormal(n: int, k: int, generator: torch.Generator | None) -> Tensor:
    G = torch.randn(n, k, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    # Sign fix makes Q Haar-distributed (Mezzadri 2007).
    return Q * torch.sign(torch.diagonal(R)).where(torch.diagonal(R) != 0, torch.ones(()))


def random_projection(
    weight: Tensor, rank: int, *, generator: torch.Generator | None = None, **_: object
) -> Projection:
    """Haar-random orthonormal bases (QR of a Gaussian matrix), reproducible from ``generator``."""
    _check_rank(weight, rank)
    d_out, d_in = weight.shape
    B = _haar_orthonormal(d_out, rank, generator)
    A = _haar_orthonormal(d_in, rank, generator).T
    scale = _top_singular_mean(weight.double(), rank).expand(rank).clone()
    dtype = weight.dtype
    return Projection(A=A.to(dtype), B=B.to(dtype), scale=scale.to(dtype))


def _merge_orthonormal(first: Tensor, second: Tensor, n_first: int, rank: int) -> Tensor:
    """Columns ``first[:, :n_first]`` then as many of ``second`` as fit, re-orthonormalised."""
    Q, _ = torch.linalg.qr(torch.cat([first[:, :n_first], second], dim=1))
    return Q[:, :rank]


def hybrid_projection(
    weight: Tensor,
    rank: int,
    *,
    families: tuple[str, str] = ("svd", "dct"),
    fraction: float = 0.5,
    generator: torch.Generator | None = None,
    input_moment: Tensor | None = None,
    damping: float = 1e-2,
) -> Projection:
    """Mix two families: ``round(fraction * r)`` directions from the first, the rest from the second.

    Both sides are re-orthonormalised by QR of ``[first_k | second]`` (the second
    family's directions lose their components along the first family's).
    """
    _check_rank(weight, rank)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"hybrid fraction must be in [0, 1]; got {fraction}.")
    kwargs = dict(generator=generator, input_moment=input_moment, damping=damping)
    p1 = PROJECTIONS[families[0]](weight, rank, **kwargs)
    p2 = PROJECTIONS[families[1]](weight, rank, **kwargs)
    k = round(fraction * rank)
    B = _merge_orthonormal(p1.B.double(), p2.B.double(), k, rank)
    A = _merge_orthonormal(p1.A.double().T, p2.A.double().T, k, rank).T
    scale = _top_singular_mean(weight.double(), rank).expand(rank).clone()
    dtype = weight.dtype
    return Projection(A=A.to(dtype), B=B.to(dtype), scale=scale.to(dtype))


PROJECTIONS: dict[str, Callable[..., Projection]] = {
    "svd": svd_projection,
    "whitened_svd": whitened_svd_projection,
    "dct": dct_projection,
    "random": random_projection,
}


def parse_projection(spec: str) -> tuple[tuple[str, ...], float]:
    """Parse ``"svd"``, ``"svd+dct"`` or ``"svd+dct:0.25"`` into ``(families, fraction)``.

    Raises
    ------
    ValueError
        If a family is unknown or the fraction is not a number in [0, 1].
    """
    if not isinstance(spec, str):
        raise ValueError(f"projection must be a string such as 'svd' or 'svd+dct:0.5'; got {spec!r}.")
    body, _, frac = spec.partition(":")
    families = tuple(body.split("+"))
    allowed = sorted(PROJECTIONS)
    bad = [f for f in families if f not in PROJECTIONS]
    if bad or len(families) > 2 or (frac and len(families) != 2):
        raise ValueError(
            f"Unknown projection {spec!r}. Use one of {allowed}, or a hybrid of two "
            "families such as 'svd+dct' or 'svd+random:0.25' (fraction from the first)."
        )
    try:
        fraction = float(frac) if frac else 0.5
    except ValueError:
        raise ValueError(f"The hybrid fraction in {spec!r} must be a number in [0, 1].") from None
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"The hybrid fraction in {spec!r} must be in [0, 1]; got {fraction}.")
    return families, fraction


def needs_input_moments(spec: str) -> bool:
    """Whether the projection ``spec`` uses input second moments (whitened SVD)."""
    return "whitened_svd" in parse_projection(spec)[0]


def data_free_projection(spec: str) -> str:
    """``spec`` with whitened SVD replaced by plain SVD: what can be built before any data is seen.

    Whitened SVD with white inputs (``E[x x^T] = I``) *is* plain SVD, so this is
    the whitened projection under the only assumption available without data;
    the estimator recomputes the real one from the training texts at ``fit``.
    """
    families, fraction = parse_projection(spec)
    families = tuple("svd" if f == "whitened_svd" else f for f in families)
    return "+".join(families) + (f":{fraction}" if ":" in spec else "")


def make_projection(
    weight: Tensor,
    rank: int,
    projection: str = "svd",
    *,
    generator: torch.Generator | None = None,
    input_moment: Tensor | None = None,
    damping: float = 1e-2,
) -> Projection:
    """Build the :class:`Projection` named by ``projection`` for ``weight``.

    Parameters
    ----------
    weight : Tensor of shape (d_out, d_in)
        The frozen pretrained weight ``W0`` (detached; float32 or float64).
    rank : int
        ``r``.
    projection : str, default="svd"
        ``"svd"``, ``"whitened_svd"``, ``"dct"``, ``"random"`` or a hybrid
        ``"a+b[:fraction]"``.
    generator : torch.Generator, optional
        Source of randomness for ``"random"``.
    input_moment : Tensor of shape (d_in, d_in), optional
        Needed by ``"whitened_svd"``.
    damping : float, default=1e-2
        Relative damping of ``input_moment``.
    """
    families, fraction = parse_projection(projection)
    weight = weight.detach().float().cpu()
    kwargs = dict(generator=generator, input_moment=input_moment, damping=damping)
    if len(families) == 1:
        return PROJECTIONS[families[0]](weight, rank, **kwargs)
    return hybrid_projection(weight, rank, families=families, fraction=fraction, **kwargs)

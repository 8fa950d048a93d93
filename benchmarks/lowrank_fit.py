"""Can a low-rank + diagonal Gaussian represent a Laplace posterior? The best KL fit, per rank (issue 25).

    python benchmarks/lowrank_fit.py              # SST-2 and TREC-6, seed 0; writes the block in docs/findings.md
    python benchmarks/lowrank_fit.py --table-only

The Laplace posterior of the cores is ``p = N(mu, P^-1)`` with precision ``P = delta I + G``: the
prior's isotropic precision plus a GGN of rank at most N(C - 1), so every direction the data touch
has its variance *shrunk* below the prior's ``1/delta`` (docs/findings.md, "Isotropic plus low
rank"). ``LowRankGaussian`` has covariance ``diag(d) + V V^T``, a low-rank *increase*. For each
``k``, the q of that family closest to p,

    q_k = argmin KL(q || p),   KL(q || p) = 1/2 [tr(P S_q) - D - log det S_q - log det P],

is found by L-BFGS in float64 (``d = softplus(a)``; ``log det S_q = sum log d + log det(I + V^T
diag(d)^-1 V)``). Reported per k: the KL in nats, and how well ``q_k`` keeps the variance of
``theta`` along the data's directions (the top eigenvectors of G, where p is narrowest) and along
the directions p leaves at the prior. A low-rank *precision* update (``P`` itself, of rank ``rank(G)``
above the isotropic part) would be exact; that family is not in the library. Protocol: the Laplace
fit (``posterior="laplace"``) on 500 training examples of ``benchmarks/tasks.py``, seed 0:
illustrative.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tasks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "lowrank_fit.json"
PAGE = ROOT / "docs" / "findings.md"
START, END = "<!-- lowrank-fit:start -->", "<!-- lowrank-fit:end -->"
TASKS = ("sst2", "trec")
RANKS = (0, 1, 4, 16, 64)
N_TRAIN = 500


def gaussian_kl(P: torch.Tensor, d: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """``KL(N(m, diag(d) + V V^T) || N(m, P^-1))`` (same mean), by the matrix determinant lemma."""
    D, k = V.shape
    S_q = torch.diag(d) + V @ V.T
    inner = torch.eye(k, dtype=P.dtype) + V.T @ (V / d[:, None])
    logdet_q = torch.log(d).sum() + torch.linalg.slogdet(inner)[1]
    return 0.5 * ((P * S_q).sum() - D - logdet_q - torch.linalg.slogdet(P)[1])


def best_fit(P: torch.Tensor, k: int, steps: int = 500) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(d, V, KL)`` of the diag + rank-``k`` Gaussian closest to ``N(., P^-1)`` in ``KL(q || p)``."""
    D = P.shape[0]
    generator = torch.Generator().manual_seed(0)
    start = 1.0 / torch.diagonal(P).detach()  # the inverse diagonal
    a = torch.log(torch.expm1(start)).clone().requires_grad_(True)
    V = (1e-3 * torch.randn(D, k, generator=generator, dtype=P.dtype)).requires_grad_(True)
    optimizer = torch.optim.LBFGS([a, V], max_iter=steps, line_search_fn="strong_wolfe", tolerance_grad=1e-10)

    def closure():
        optimizer.zero_grad()
        loss = gaussian_kl(P, torch.nn.functional.softplus(a), V)
        loss.backward()
        return loss

    optimizer.step(closure)
    d = torch.nn.functional.softplus(a).detach()
    return d, V.detach(), float(gaussian_kl(P, d, V.detach()))


def variance_along(S: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """``u^T S u`` for each column ``u`` of ``U``."""
    return torch.einsum("ij,jk,ki->i", U.T, S, U)


def measure(P: torch.Tensor) -> dict:
    """KL and kept variances of the best diag + rank-k fit to ``N(., P^-1)``, for every k in ``RANKS``."""
    evals, evecs = torch.linalg.eigh(P)
    data, flat = evecs[:, -16:], evecs[:, : P.shape[0] // 2]  # most constrained; at the prior's precision
    S_p = torch.linalg.inv(P)
    out = {"D": P.shape[0], "precision_over_prior": float(evals[-1] / evals[0]), "fits": {}}
    for k in RANKS:
        d, V, kl = best_fit(P, k)
        S_q = torch.diag(d) + V @ V.T
        out["fits"][str(k)] = {
            "kl": kl,
            "data_directions": float((variance_along(S_q, data) / variance_along(S_p, data)).mean()),
            "prior_directions": float((variance_along(S_q, flat) / variance_along(S_p, flat)).mean()),
        }
    return out


def laplace_precision(task_name: str, seed: int = 0) -> torch.Tensor:
    """The precision of the Laplace posterior of the cores, fitted on ``N_TRAIN`` examples (float64)."""
    from subspace_bayes import BayesianSubspaceClassifier

    X, y = tasks.load(task_name).train(N_TRAIN, seed)
    clf = BayesianSubspaceClassifier(posterior="laplace", random_state=seed, verbose=0).fit(X, y)
    cov = clf.module_.posterior.covariance_matrix().detach().double()
    return torch.linalg.inv(cov)


def render(results: dict) -> str:
    lines = [
        START,
        "### Can `LowRankGaussian` represent a Laplace posterior? (the best KL fit per rank)",
        "",
        f"`python benchmarks/lowrank_fit.py`: the Laplace posterior of the cores (MiniLM, {N_TRAIN} training "
        "examples, seed 0: illustrative) and, per k, the diag + rank-k Gaussian closest to it in KL(q ‖ p). "
        "Kept variance: q's variance over p's along the 16 directions the data constrain most (the top "
        "eigenvectors of the precision) and along the half of the directions p leaves at the prior; 1 is exact.",
        "",
        "| task | D | max/min precision | k | KL(q ‖ p), nats | kept variance, data directions | kept variance, "
        "prior directions |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, r in results.items():
        for k, f in r["fits"].items():
            lines.append(
                f"| {task} | {r['D']} | {r['precision_over_prior']:.1f} | {k} | {f['kl']:.2f} | "
                f"{f['data_directions']:.2f} | {f['prior_directions']:.3f} |"
            )
    return "\n".join([*lines, END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if not args.table_only:
        torch.set_num_threads(1)
        results = {task: measure(laplace_precision(task)) for task in TASKS}
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    from cost import write_block

    block = render(json.loads(RESULTS.read_text()))
    write_block(PAGE, block, START, END)
    print(block)


if __name__ == "__main__":
    main()

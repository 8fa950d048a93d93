"""Why does the linearised (GLM) predictive lose VI's calibration? How far the network is from linear over q.

    python benchmarks/linearisation.py             # the default model per task, seed 0; writes the docs block
    python benchmarks/linearisation.py --table-only

For ``S`` draws ``theta_s ~ q`` and each dev text, the contrast logits ``g(x; theta_s)`` (what the
softmax sees) against their first-order expansion around the mean, ``g(x; mu) + J_g(x) (theta_s - mu)``,
the expansion the GLM predictive integrates. Reported per task and per part of ``theta`` that is drawn
(the others held at the mean, as ``sampled_layers`` does):

- ``unexplained``: ``sum ||g_s - g_lin,s||^2 / sum ||g_s - g(mu)||^2`` over draws and texts, the share
  of the logits' spread the linearisation misses (0 for a linear network);
- ``shift``: ``|mean_s g_s - g(mu)|`` over ``std_s g_s``, per text and contrast, mean over both: the
  second-order bias of the MC mean that a linearisation, centred at ``g(mu)``, cannot have;
- the dev ECE and NLL of MC with these ``S`` draws and of the GLM predictive with ``S`` logit-space draws.

A Bayesian head enters the logits as ``W phi``: linear in ``W`` for fixed features, so drawing the
head alone is exactly linear, and any gap comes from the cores (through the features) and from the
product of the head's and the cores' deviations. Protocol: ``benchmarks/tasks.py``, the default
model on 500 training examples, 200 dev texts, seed 0 (illustrative).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tasks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "linearisation.json"
PAGE = ROOT / "docs" / "cost.md"
START, END = "<!-- linearisation:start -->", "<!-- linearisation:end -->"
TASKS = ("sst2", "trec")
N_TRAIN, N_DEV, S = 500, 200, 32
PARTS = ("all", "cores", "head")


def _held(module, part: str):
    """The mask of entries held at the mean when only ``part`` is drawn (None: nothing held)."""
    import torch

    if part == "all":
        return None
    held = torch.zeros(module.n_theta, dtype=torch.bool)
    cores = slice(0, module.n_core)
    if part == "cores":
        held[module.n_core :] = True
    else:
        held[cores] = True
    return held


def _contrasts(logits):
    return logits - logits[..., :1]


def measure(clf, X, y_enc) -> dict:
    """The three measures for each part of ``theta`` that is drawn (see the module docstring)."""
    import torch
    from vi_convergence import scores

    from subspace_bayes.predictive import linearised_sample_probs, posterior_draws, standard_normal_draws

    module, q = clf.module_.eval(), clf.module_.posterior
    mu = q.mean.detach()
    batches = [b for b, _ in clf._loader(_dataset(X))]
    g_mu, J = [], []
    for batch in batches:
        logits, jac = module.logit_jacobians(batch, mu, contrasts=True)
        g_mu.append(logits.double())
        J.append(jac.double())
    g_mu, J = torch.cat(g_mu), torch.cat(J)  # (N, C), (N, C, D)
    out = {}
    for part in PARTS:
        held = _held(module, part)
        theta = posterior_draws(q, S, torch.Generator().manual_seed(0), held=held).detach()
        with torch.no_grad():
            g = torch.cat([_contrasts(module(**b, theta=theta).double()) for b in batches], dim=1)  # (S, N, C)
        g_lin = g_mu + torch.einsum("ncd,sd->snc", J, (theta - mu).double())
        spread = (g - g_mu).pow(2).sum()
        shift = ((g.mean(0) - g_mu).abs() / g.std(0).clamp_min(1e-12))[:, 1:].mean()
        p_mc = torch.softmax(g, -1).mean(0).numpy()
        cov = torch.einsum("ncd,de,nke->nck", J, _covariance(q, held).double(), J)
        eps = standard_normal_draws(S, g.shape[-1], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        p_glm = linearised_sample_probs(g_mu, cov, eps[:, None].expand(-1, len(g_mu), -1)).mean(0).numpy()
        out[part] = {
            "unexplained": float((g - g_lin).pow(2).sum() / spread),
            "shift": float(shift),
            "mc": scores(y_enc, p_mc),
            "glm": scores(y_enc, p_glm),
        }
    return out


def _covariance(q, held):
    cov = q.covariance_matrix().detach()
    if held is not None:
        cov = cov.clone()
        cov[held] = 0
        cov[:, held] = 0
    return cov


def _dataset(X):
    from subspace_bayes.text import TextDataset, coerce_texts

    return TextDataset(coerce_texts(X))


def run() -> dict:
    import torch

    from subspace_bayes import BayesianSubspaceClassifier

    torch.set_num_threads(1)
    out = {}
    for name in TASKS:
        task = tasks.load(name)
        clf = BayesianSubspaceClassifier(random_state=0, verbose=0).fit(*task.train(N_TRAIN, 0))
        X_dev = tasks.sample(task.dev[0], N_DEV)
        where = {t: i for i, t in enumerate(task.dev[0])}
        y_dev = np.searchsorted(clf.classes_, task.dev[1][[where[t] for t in X_dev]])
        out[name] = measure(clf, X_dev, y_dev)
        print(name, json.dumps(out[name]), flush=True)
    return out


def render(results: dict) -> str:
    lines = [
        START,
        "## How far the network is from linear over the VI posterior (issue 29)",
        "",
        f"`python benchmarks/linearisation.py`: the default model on {N_TRAIN} training examples, {N_DEV} dev "
        f"texts, {S} draws, seed 0 (illustrative). *unexplained*: share of the contrast logits' spread over the "
        "draws that the first-order expansion around the mean misses; *shift*: |MC mean − logits at the mean| "
        "in units of the logits' standard deviation over draws (for a linear network only Monte Carlo noise, "
        f"E|N(0, 1)| / √S = {np.sqrt(2 / np.pi) / np.sqrt(S):.2f}). Parts not drawn are held at the mean.",
        "",
        "| task | drawn | unexplained | shift | MC ECE | GLM ECE | MC NLL | GLM NLL |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, parts in results.items():
        for part, r in parts.items():
            lines.append(
                f"| {name} | {part} | {r['unexplained']:.3f} | {r['shift']:.2f} | {r['mc']['ece']:.4f} "
                f"| {r['glm']['ece']:.4f} | {r['mc']['nll']:.4f} | {r['glm']['nll']:.4f} |"
            )
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if not args.table_only:
        from quality import write_json_atomic

        write_json_atomic(RESULTS, run(), indent=1)
    from cost import write_block

    block = render(json.loads(RESULTS.read_text()))
    write_block(PAGE, block, START, END)
    print(block)


if __name__ == "__main__":
    main()

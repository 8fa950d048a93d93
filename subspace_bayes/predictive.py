"""The predictive distribution and its uncertainty decomposition, shared by every posterior."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor

__all__ = ["mc_probabilities", "uncertainty_decomposition", "entropy"]


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats, ``-sum_c p_c log p_c`` (with ``0 log 0 = 0``)."""
    p = np.asarray(p, dtype=np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


def uncertainty_decomposition(sample_probs: np.ndarray) -> dict[str, np.ndarray]:
    """Split predictive uncertainty into aleatoric and epistemic parts.

    With ``p_s = softmax(f(x; theta_s))`` and ``p_bar = (1/S) sum_s p_s``:
    ``total = H[p_bar]``, ``aleatoric = (1/S) sum_s H[p_s]`` and
    ``epistemic = total - aleatoric`` (the mutual information between the
    label and ``theta``; non-negative by Jensen's inequality).

    Parameters
    ----------
    sample_probs : ndarray of shape (S, N, C)

    Returns
    -------
    dict with 1-D arrays ``total``, ``aleatoric``, ``epistemic`` of shape (N,), in nats.
    """
    sample_probs = np.asarray(sample_probs, dtype=np.float64)
    total = entropy(sample_probs.mean(0))
    aleatoric = entropy(sample_probs).mean(0)
    # Clip round-off only: by Jensen, total >= aleatoric exactly.
    epistemic = np.maximum(total - aleatoric, 0.0)
    return {"total": total, "aleatoric": aleatoric, "epistemic": epistemic}


@torch.no_grad()
def mc_probabilities(module: torch.nn.Module, batches: Iterable[dict[str, Tensor]], theta: Tensor) -> np.ndarray:
    """Per-draw class probabilities over all batches.

    The same draws ``theta`` (S, D) are used for every batch, so the result does
    not depend on how the inputs are batched.

    Parameters
    ----------
    module : SubspaceClassifierModule
    batches : iterable of dict
        Tokenised inputs already on the module's device.
    theta : Tensor of shape (S, D)

    Returns
    -------
    ndarray of shape (S, N, C), float64
    """
    out = [torch.softmax(module(**batch, theta=theta).double(), dim=-1).cpu() for batch in batches]
    return torch.cat(out, dim=1).numpy()

"""Inference methods over the subspace cores; each yields a posterior object."""

from .vi import ELBOLoss

__all__ = ["ELBOLoss"]

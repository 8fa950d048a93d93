"""Errors of the library that are not parameter or input validation errors."""

from __future__ import annotations

__all__ = ["NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (the message says at which epoch and batch, and what to try)."""

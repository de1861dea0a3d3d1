"""The error a validation study raises on unusable settings."""

from __future__ import annotations

from bayesslam.errors import BayesSlamError

__all__ = ["ValidationError"]


class ValidationError(BayesSlamError, ValueError):
    """A validation study cannot run as asked (unknown sampler or simulator, bad sizes, a prior it cannot draw from)."""

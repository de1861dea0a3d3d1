"""Named exceptions raised by bayesslam.

Every error that a user can trigger with bad input derives from
:class:`BayesSlamError`, so a pipeline can catch them all at once, and each
message says what is wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "BayesSlamError",
    "SpectrumValidationError",
    "UnknownFormatError",
    "CorruptFileError",
    "NoOverlapError",
    "AllMaskedError",
    "NormalizationError",
]


class BayesSlamError(Exception):
    """Base class of every error raised by bayesslam on bad input."""


class SpectrumValidationError(BayesSlamError, ValueError):
    """A spectrum's arrays are inconsistent (shapes, ordering, negative or non-finite ivar)."""


class UnknownFormatError(BayesSlamError, ValueError):
    """No registered reader recognises a file."""


class CorruptFileError(BayesSlamError, OSError):
    """A file was recognised (or should have been) but cannot be read: truncated, damaged, incomplete."""


class NoOverlapError(BayesSlamError, ValueError):
    """A spectrum does not overlap the target wavelength grid."""


class AllMaskedError(BayesSlamError, ValueError):
    """A spectrum has no usable pixel (all masked or all with zero inverse variance)."""


class NormalizationError(BayesSlamError, ValueError):
    """Continuum normalization cannot proceed (too few usable pixels, bad settings)."""

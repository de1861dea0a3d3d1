"""The catalog's flag bits and the thresholds that set them."""

from __future__ import annotations

import enum

from bayesslam.catalog.snr_law import PAPER_SNR_RANGE

__all__ = ["Flag", "FlagThresholds", "describe_flags"]


class Flag(enum.IntFlag):
    """Bits of the catalog's ``FLAGS`` column (0 = no warning)."""

    OUTSIDE_DOMAIN = 1 << 0
    """MAP labels rarer than the training set's low-density tail, or posterior mass outside its hull."""
    AT_PRIOR_EDGE = 1 << 1
    """A MAP label sits at the edge of the prior box."""
    FIT_FAILED = 1 << 2
    """The optimizer did not converge (or produced non-finite values)."""
    RHAT_HIGH = 1 << 3
    """A label's R-hat exceeds the threshold (default 1.01): not converged."""
    LOW_ESS = 1 << 4
    """A label's bulk ESS is below the threshold (default 400)."""
    DIVERGENCES = 1 << 5
    """NUTS reported divergent transitions."""
    LOW_SNR = 1 << 6
    """SNR below the range over which the SNR-law errors were calibrated (2.3)."""
    POOR_FIT = 1 << 7
    """Reduced chi2 above the threshold (default 3): the model does not describe the spectrum."""


class FlagThresholds:
    """Thresholds used to set :class:`Flag` bits (documented defaults)."""

    r_hat: float = 1.01
    ess: float = 400.0
    low_snr: float = PAPER_SNR_RANGE[0]
    reduced_chi2: float = 3.0
    hull_fraction: float = 0.5
    density_percentile: float = 1.0


def describe_flags() -> str:
    """Human-readable table of flag bits."""
    return "\n".join(f"bit {int(f).bit_length() - 1:2d} {f.name}: {f.__doc__ or ''}".rstrip() for f in Flag)

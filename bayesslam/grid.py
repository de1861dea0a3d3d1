"""Wavelength grids: the SDSS-V BOSS log-lambda grid and the production window.

The SDSS-V BOSS coadds live on ``log10(lambda) = 3.5523 + 1e-4 * i`` for
``i = 0 .. 4647`` (vacuum Angstrom). The SDSS-V SLAM pipeline fits the red
part of it, 6001.755-8957.321 A (Qiu et al. 2025), which is bayesslam's
default model grid.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BOSS_LOGLAM0",
    "BOSS_DLOGLAM",
    "BOSS_NPIX",
    "PRODUCTION_WINDOW",
    "boss_wavelength",
    "model_wavelength",
    "pixel_edges",
]

BOSS_LOGLAM0: float = 3.5523
BOSS_DLOGLAM: float = 1e-4
BOSS_NPIX: int = 4648
PRODUCTION_WINDOW: tuple[float, float] = (6001.755, 8957.321)


def boss_wavelength() -> np.ndarray:
    """Return the full SDSS-V BOSS coadd grid (vacuum Angstrom, 4648 pixels)."""
    return 10.0 ** (BOSS_LOGLAM0 + BOSS_DLOGLAM * np.arange(BOSS_NPIX))


def model_wavelength(window: tuple[float, float] | None = PRODUCTION_WINDOW) -> np.ndarray:
    """Return the BOSS grid restricted to ``window`` (default: the production window).

    Parameters
    ----------
    window : (float, float) or None
        Inclusive wavelength limits in vacuum Angstrom; ``None`` keeps the
        whole BOSS grid.

    Returns
    -------
    numpy.ndarray
        Pixel centres in vacuum Angstrom (1739 pixels for the default window).
    """
    wave = boss_wavelength()
    if window is None:
        return wave
    lo, hi = window
    return wave[(wave >= lo) & (wave <= hi)]


def pixel_edges(wave: np.ndarray) -> np.ndarray:
    """Return the ``n + 1`` pixel edges of a grid of ``n`` increasing pixel centres.

    Edges lie half-way between neighbouring centres in log-wavelength (exact
    for log-uniform grids such as BOSS and LAMOST, and a close approximation
    for any smooth grid); the outer edges mirror the first and last half-steps.

    Parameters
    ----------
    wave : numpy.ndarray
        Strictly increasing pixel centres (Angstrom), at least two of them.

    Returns
    -------
    numpy.ndarray
        Pixel edges in Angstrom, shape ``(n + 1,)``.
    """
    loglam = np.log10(np.asarray(wave, dtype=float))
    mid = 0.5 * (loglam[1:] + loglam[:-1])
    first = loglam[0] - (mid[0] - loglam[0])
    last = loglam[-1] + (loglam[-1] - mid[-1])
    return 10.0 ** np.concatenate([[first], mid, [last]])

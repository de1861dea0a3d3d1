"""Strong night-sky emission lines in the red, where sky-subtraction residuals are flagged.

Air wavelengths (A) of the strongest lines between 5800 and 9250 A from the
night-sky atlas of Osterbrock et al. (1996, PASP 108, 277; 1997, PASP 109,
614; CDS catalogue III/211): the Na I D doublet, [O I] 6300/6364 and the
strongest OH Meinel-band lines. They are converted to vacuum (BOSS
wavelengths are vacuum) with :func:`bayesslam.wavelength.air_to_vacuum`.

The O2 A band (7594-7700 A) and B band (6867-6950 A) and the water bands are
telluric *absorption*; BOSS spectra are corrected for them with standard
stars and the mock does not model their residuals.
"""

from __future__ import annotations

import numpy as np

from bayesslam.wavelength import air_to_vacuum

__all__ = ["SKY_LINES_AIR", "sky_lines_vacuum", "sky_line_pixels"]

#: Air wavelengths (A) of strong night-sky emission lines (Osterbrock et al. 1996, 1997).
SKY_LINES_AIR: tuple[float, ...] = (
    5889.953, 5895.923,  # Na I D
    6300.304, 6363.780,  # [O I]
    6498.729, 6533.044, 6553.617,  # OH (6-1)
    6863.955, 6923.220,  # OH (7-2)
    7276.405, 7316.282, 7340.885,  # OH (8-3)
    7750.640, 7794.112, 7821.503, 7913.708, 7964.650, 7993.332,  # OH (5-1)
    8344.602, 8399.170, 8430.174, 8465.208, 8493.389,  # OH (6-2)
    8791.186, 8827.096, 8885.850, 8919.533, 8943.395, 8988.366,  # OH (7-3)
)


def sky_lines_vacuum() -> np.ndarray:
    """The sky lines of :data:`SKY_LINES_AIR` in vacuum Angstrom."""
    return air_to_vacuum(np.array(SKY_LINES_AIR))


def sky_line_pixels(wave: np.ndarray, resolution: float = 2000.0, doppler: np.ndarray | float = 1.0) -> np.ndarray:
    """Flag pixels within one resolution element of a sky line.

    Parameters
    ----------
    wave : numpy.ndarray, shape (n_pix,)
        Pixel centres (vacuum A) of the spectra.
    resolution : float
        Spectral resolution ``lambda / FWHM`` (BOSS: about 2000); a pixel is
        flagged when ``|wave - line| < line / resolution`` (one FWHM each side).
    doppler : float or numpy.ndarray, shape (n_star,)
        Factor by which the spectra's wavelengths differ from the telescope
        frame: 1 for observed-frame spectra, ``1 / (1 + v_rad / c)`` for
        spectra already shifted to the star's rest frame.

    Returns
    -------
    numpy.ndarray of bool
        Shape ``(n_star, n_pix)`` (``(1, n_pix)`` for a scalar ``doppler``).
    """
    wave = np.asarray(wave, dtype=float)
    lines = sky_lines_vacuum()
    factor = np.atleast_1d(np.asarray(doppler, dtype=float))
    centres = factor[:, None] * lines[None, :]
    half = centres / resolution
    lo = np.searchsorted(wave, centres - half, side="right")
    hi = np.searchsorted(wave, centres + half, side="left")
    flags = np.zeros((factor.size, wave.size + 1), dtype=np.int32)
    rows = np.broadcast_to(np.arange(factor.size)[:, None], lo.shape)
    np.add.at(flags, (rows, lo), 1)
    np.add.at(flags, (rows, hi), -1)
    return np.cumsum(flags, axis=1)[:, :-1] > 0

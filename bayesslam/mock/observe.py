"""Observational effects: Doppler shift, flux-calibration distortion, noise at a target SNR, sky lines, bad pixels.

All functions are pure given an explicit ``numpy.random.Generator``. The
choices below are stated, not calibrated on BOSS data beyond what is cited:

* **Radial velocity**: Normal(0, 30 km/s). The APOGEE radial velocities of
  the Birky et al. (2020) safe sample (3100-3900 K, -0.6..+0.5 dex) have a
  standard deviation of 29 km/s (median -3 km/s). Observed wavelengths are
  ``lambda_rest (1 + v_rad / c)`` (the SDSS ``v = c z`` convention of
  :func:`bayesslam.wavelength.to_rest_frame`).
* **Flux-calibration distortion**: a smooth multiplicative factor
  ``exp(sum_k c_k P_k(x))``, Legendre polynomials of degree 1-3 in
  ``x`` = log-wavelength mapped to [-1, 1] over the spectrum, with
  ``c_k ~ Normal(0, (0.05, 0.03, 0.02))``: tilts and bends of a few per cent
  to about 10 % end to end.
* **Noise**: Gaussian, ``sigma_j = k sqrt(F_j + b median(F))`` (photon noise
  of the star plus a flat sky/read-noise floor, ``b`` = 0.3), with ``k`` set
  per spectrum so that the SNR, defined as ``median_j(F_j / sigma_j)`` over
  the unmasked pixels of the noise-free flux ``F``, equals the target. The
  ivar is ``1 / sigma**2`` (``ivar`` of the noise actually added).
* **Sky lines**: pixels within one resolution element (``lambda / 2000``) of
  a strong night-sky line (:mod:`bayesslam.mock.skylines`) get extra
  Gaussian noise of 5 sigma (a sky-subtraction residual) and are masked
  (ivar 0); with ``mask_sky=False`` they stay unmasked with an ivar that
  includes the extra noise.
* **Bad pixels**: isolated pixels (rate 0.2 %) get a positive spike of
  10-50 sigma (cosmic-ray residuals); on average 0.5 runs of 2-10 adjacent
  pixels per spectrum are set to 0 (bad columns). Both are masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial import legendre

from bayesslam.mock.errors import LabelRangeError
from bayesslam.mock.skylines import sky_line_pixels
from bayesslam.wavelength import SPEED_OF_LIGHT_KMS

__all__ = [
    "ObservingSetup",
    "draw_snr",
    "draw_v_rad",
    "draw_flux_level",
    "calibration_distortion",
    "draw_distortion",
    "doppler_shift_sub_pixels",
    "noise_shape",
    "bad_pixels",
    "add_noise",
]


@dataclass(frozen=True)
class ObservingSetup:
    """Settings of the observational effects (defaults as in the module docstring).

    Parameters
    ----------
    snr_range : (float, float)
        SNR drawn log-uniformly in this range (median flux / sigma per pixel).
    v_rad_mean, v_rad_sd : float
        Normal radial-velocity distribution (km/s).
    flux_level_range : (float, float)
        Median flux drawn log-uniformly here (1e-17 erg/s/cm2/A, as BOSS).
    distortion_sd : tuple of float
        Standard deviations of the Legendre coefficients of degree 1, 2, ...
        of the log flux-calibration distortion.
    background : float
        Sky/read-noise variance floor as a fraction of the median flux.
    resolution : float
        ``lambda / FWHM`` used for the width of the sky-line regions.
    sky_residual : float
        Extra noise in sky-line pixels, in units of the pixel's sigma.
    mask_sky : bool
        Mask sky-line pixels (ivar 0) or keep them with inflated errors.
    bad_pixel_rate : float
        Fraction of isolated bad pixels (spikes).
    bad_runs_mean : float
        Poisson mean number of bad-column runs per spectrum.
    bad_run_length : (int, int)
        Inclusive range of a run's length in pixels.
    window : (float, float)
        Observed-frame wavelength range (vacuum A) of the mock spectra.
    """

    snr_range: tuple[float, float] = (3.0, 50.0)
    v_rad_mean: float = 0.0
    v_rad_sd: float = 30.0
    flux_level_range: tuple[float, float] = (5.0, 50.0)
    distortion_sd: tuple[float, ...] = (0.05, 0.03, 0.02)
    background: float = 0.3
    resolution: float = 2000.0
    sky_residual: float = 5.0
    mask_sky: bool = True
    bad_pixel_rate: float = 0.002
    bad_runs_mean: float = 0.5
    bad_run_length: tuple[int, int] = (2, 10)
    window: tuple[float, float] = (5800.0, 9200.0)

    def __post_init__(self) -> None:
        lo, hi = self.snr_range
        if not (0 < lo <= hi and np.isfinite(hi)):
            raise LabelRangeError(f"snr_range must be 0 < low <= high, got {self.snr_range!r}.")
        lo, hi = self.flux_level_range
        if not (0 < lo <= hi and np.isfinite(hi)):
            raise LabelRangeError(f"flux_level_range must be 0 < low <= high, got {self.flux_level_range!r}.")
        if not (np.isfinite(self.v_rad_sd) and self.v_rad_sd >= 0):
            raise LabelRangeError(f"v_rad_sd must be >= 0 km/s, got {self.v_rad_sd!r}.")
        if self.background < 0 or self.sky_residual < 0 or not 0 <= self.bad_pixel_rate < 1:
            raise LabelRangeError("background, sky_residual must be >= 0 and bad_pixel_rate in [0, 1).")


def draw_snr(n: int, rng: np.random.Generator, snr_range: tuple[float, float]) -> np.ndarray:
    """SNR log-uniform in ``snr_range``."""
    lo, hi = np.log(snr_range[0]), np.log(snr_range[1])
    return np.exp(rng.uniform(lo, hi, n))


def draw_v_rad(n: int, rng: np.random.Generator, mean: float, sd: float) -> np.ndarray:
    """Radial velocities (km/s) ~ Normal(mean, sd)."""
    return rng.normal(mean, sd, n)


def draw_flux_level(n: int, rng: np.random.Generator, level_range: tuple[float, float]) -> np.ndarray:
    """Median flux levels, log-uniform in ``level_range``."""
    return draw_snr(n, rng, level_range)


def calibration_distortion(wave: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Multiplicative distortion ``exp(sum_k c_k P_k(x))`` for coefficient rows of degree 1..K.

    Parameters
    ----------
    wave : numpy.ndarray, shape (n_pix,)
        Wavelengths; ``x`` maps ``log(wave)`` linearly onto [-1, 1].
    coeffs : numpy.ndarray, shape (n, K)
        Coefficients of degree 1..K (no constant term: the overall scale is
        set separately).

    Returns
    -------
    numpy.ndarray, shape (n, n_pix)
    """
    loglam = np.log(np.asarray(wave, dtype=float))
    x = 2.0 * (loglam - loglam[0]) / (loglam[-1] - loglam[0]) - 1.0
    coeffs = np.atleast_2d(np.asarray(coeffs, dtype=float))
    basis = legendre.legvander(x, coeffs.shape[1])[:, 1:]
    return np.exp(coeffs @ basis.T)


def draw_distortion(wave: np.ndarray, n: int, rng: np.random.Generator, sd: tuple[float, ...]) -> np.ndarray:
    """Random calibration distortions, shape ``(n, n_pix)`` (all ones if ``sd`` is empty)."""
    if len(sd) == 0:
        return np.ones((n, np.size(wave)))
    coeffs = rng.normal(0.0, 1.0, (n, len(sd))) * np.asarray(sd, dtype=float)
    return calibration_distortion(wave, coeffs)


def doppler_shift_sub_pixels(
    rest_sub_flux: np.ndarray, v_rad: np.ndarray, offset: int, n_out: int, sub_step: float
) -> np.ndarray:
    """Observe rest-frame sub-pixel spectra at radial velocities ``v_rad``.

    On a log-uniform grid a Doppler shift is a translation by
    ``log10(1 + v / c) / sub_step`` sub-pixels; the flux is linearly
    interpolated between sub-pixels.

    Parameters
    ----------
    rest_sub_flux : numpy.ndarray, shape (n, n_sub)
        Rest-frame flux on the model's sub-pixels.
    v_rad : numpy.ndarray, shape (n,)
        Radial velocities in km/s.
    offset : int
        Index of the first output sub-pixel on the model's sub-pixel grid
        (output and model sub-pixels coincide at ``v = 0``).
    n_out : int
        Number of output sub-pixels.
    sub_step : float
        Sub-pixel step in log10(lambda).

    Returns
    -------
    numpy.ndarray, shape (n, n_out)

    Raises
    ------
    LabelRangeError
        If a velocity shifts the output beyond the model's coverage.
    """
    n, n_sub = rest_sub_flux.shape
    shift = np.log10(1.0 + np.asarray(v_rad, dtype=float) / SPEED_OF_LIGHT_KMS) / sub_step
    start = offset - shift
    i0 = np.floor(start).astype(np.int64)
    frac = start - i0
    if np.any(i0 < 0) or np.any(i0 + n_out >= n_sub):
        v_max = min(offset, n_sub - 1 - n_out - offset) * sub_step * np.log(10.0) * SPEED_OF_LIGHT_KMS
        raise LabelRangeError(
            f"radial velocities must lie within about +-{v_max:.0f} km/s for the mock's wavelength window; "
            f"got {np.min(v_rad):.0f} to {np.max(v_rad):.0f} km/s."
        )
    out = np.empty((n, n_out))
    for first in np.unique(i0):
        rows = np.flatnonzero(i0 == first)
        segment = rest_sub_flux[rows, first:first + n_out + 1]
        weight = frac[rows, None]
        out[rows] = (1.0 - weight) * segment[:, :-1] + weight * segment[:, 1:]
    return out


def noise_shape(flux: np.ndarray, background: float) -> np.ndarray:
    """Relative per-pixel sigma ``sqrt(max(F, 0) + background median(F))`` (rows scaled later)."""
    level = np.median(flux, axis=-1, keepdims=True)
    return np.sqrt(np.clip(flux, 0.0, None) + background * level)


def bad_pixels(
    n: int,
    n_pix: int,
    rng: np.random.Generator,
    rate: float,
    runs_mean: float,
    run_length: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Isolated bad pixels (spikes) and bad-column runs.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Boolean arrays ``(n, n_pix)``: spike pixels and dead-run pixels.
    """
    spikes = rng.random((n, n_pix)) < rate
    runs = np.zeros((n, n_pix), dtype=bool)
    n_runs = rng.poisson(runs_mean, n)
    stars = np.repeat(np.arange(n), n_runs)
    if stars.size:
        lengths = rng.integers(run_length[0], run_length[1] + 1, stars.size)
        starts = rng.integers(0, max(1, n_pix - run_length[1]), stars.size)
        for star, a, length in zip(stars, starts, lengths):
            runs[star, a:a + length] = True
    return spikes & ~runs, runs


def add_noise(
    flux: np.ndarray,
    wave: np.ndarray,
    snr: np.ndarray,
    rng: np.random.Generator,
    setup: ObservingSetup,
    sky_doppler: np.ndarray | float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add noise at the target SNR, sky-line residuals and bad pixels.

    Parameters
    ----------
    flux : numpy.ndarray, shape (n, n_pix)
        Noise-free flux.
    wave : numpy.ndarray, shape (n_pix,)
        Wavelengths of the spectra (vacuum A).
    snr : numpy.ndarray, shape (n,)
        Target ``median(F / sigma)`` over the unmasked pixels.
    rng : numpy.random.Generator
        Random numbers.
    setup : ObservingSetup
        Settings.
    sky_doppler : float or numpy.ndarray
        Wavelength factor between the spectra and the telescope frame (see
        :func:`bayesslam.mock.skylines.sky_line_pixels`).

    Returns
    -------
    (flux, ivar, mask) : numpy.ndarray
        Noisy flux, its inverse variance (0 where masked) and the mask.
    """
    n, n_pix = flux.shape
    sky = np.broadcast_to(sky_line_pixels(wave, setup.resolution, sky_doppler), (n, n_pix))
    spikes, runs = bad_pixels(n, n_pix, rng, setup.bad_pixel_rate, setup.bad_runs_mean, setup.bad_run_length)
    inflate = np.where(sky, np.sqrt(1.0 + setup.sky_residual**2), 1.0)
    shape = noise_shape(flux, setup.background)
    mask = spikes | runs | (sky if setup.mask_sky else np.zeros_like(sky))
    ratio = np.where(mask, np.nan, flux / (shape * inflate))
    scale = np.nanmedian(ratio, axis=1) / np.asarray(snr, dtype=float)
    sigma = scale[:, None] * shape
    noisy = flux + sigma * rng.standard_normal((n, n_pix))
    noisy[sky] += setup.sky_residual * sigma[sky] * rng.standard_normal(int(sky.sum()))
    noisy[spikes] += sigma[spikes] * rng.uniform(10.0, 50.0, int(spikes.sum()))
    noisy[runs] = 0.0
    ivar = np.where(mask, 0.0, 1.0 / (sigma * inflate) ** 2)
    return noisy, ivar, mask

"""Pseudo-continuum normalization by SLAM "double smoothing".

This is the normalization run by the SDSS-V SLAM production pipeline
(Zhang et al. 2020; Qiu et al. 2025):

1. Fit a cubic smoothing spline with smoothing parameter ``p1`` to the
   usable pixels and take the residuals ``r = flux - spline``.
2. Cut the wavelength axis into bins of width ``dwave`` (Angstrom), centred
   on ``wave[0] + i * dwave``. In each bin keep the pixels whose residual lies
   within ``rsv_frac`` robust sigmas of the bin's ``q`` quantile of residuals,
   the robust sigma being 1.4826 times the median absolute deviation of the
   bin's residuals about their median.
3. Fit a second smoothing spline with smoothing parameter ``p2`` to the kept
   pixels: that is the pseudo-continuum.

Smoothing parameter
-------------------
``p`` is the de Boor / MATLAB ``csaps`` parameter in (0, 1): the spline
minimizes ``p * sum_j w_j (y_j - f(x_j))**2 + (1 - p) * int f''(x)**2 dx``.
:func:`scipy.interpolate.make_smoothing_spline` minimizes
``sum_j w_j (y_j - f(x_j))**2 + lam * int f''(x)**2 dx`` (weights not
squared, no further normalization; checked against scipy 1.17's source and
against an independent Reinsch-form solve in the tests). Dividing the csaps
objective by ``p`` gives the same minimizer, so ``lam = (1 - p) / p``
exactly, with ``x`` in Angstrom as in SLAM (``lam`` scales as ``x**3``).

How the splines are fitted
--------------------------
Each spline is the minimizer above over all functions: the natural cubic
spline of the pixels that take part, linear beyond the outermost of them.
It is fitted in Reinsch's form, one pentadiagonal Cholesky solve
(:mod:`bayesslam.preparation.smoothing_spline`), and the continuum is the
second spline evaluated on the whole grid, linearly beyond its end knots.
:func:`_continuum_reference` does the same through
:func:`scipy.interpolate.make_smoothing_spline` (about 30 times slower); the
tests hold the two to 1e-6 relative. They differ by ~2e-9 at the default
``p`` and by up to ~3e-7 at ``p1 = 1e-10``, mostly scipy's rounding: against
a 40-digit solve of the same equations the Reinsch form is 20-500 times closer
than scipy for ``lam`` from 1e8 to 1e12.

Deviations from the SLAM code, on purpose
-----------------------------------------
- Only usable pixels (``ivar > 0``, finite flux, not masked) take part in
  the fits and in the bin statistics; SLAM's production call passed no ivar,
  so there every pixel with positive flux took part. Negative-flux pixels with
  ``ivar > 0`` are kept here: dropping them would bias the spline upwards at
  low signal-to-noise.
- The robust sigma is the median absolute deviation of the *bin's*
  residuals scaled by 1.4826; SLAM's code takes the unscaled median of
  ``|residual - bin median|`` over the whole spectrum.
- A bin with fewer than ``min_bin_pixels`` usable pixels is merged with the
  bins after it until it has enough (a short remainder at the red end joins
  the last bin), so heavily masked stretches still get continuum pixels. On an
  unmasked BOSS spectrum every 10 A bin has 4-8 pixels and no bin is merged.
- Outside the span of the pixels that fix the continuum, the continuum is
  extended linearly (value and slope of the natural spline at its end, as
  SLAM's ``SmoothSpline(lin_extrap=True)``). Beyond the usable pixels, where
  the continuum only feeds masked pixels, a side on which the line would
  reach zero is held constant at its end value instead.
- Normalized fluxes outside ``[clip_min, clip_max]`` are clipped *and* get
  ``ivar = 0`` and ``mask = True`` (SLAM clipped them and kept their weight).

What the result is
------------------
A *pseudo*-continuum: the pixel selection removes deep line cores but keeps
most line wings, so under a forest of unresolved lines it sits below the true
continuum by roughly a third to a half of the mean line absorption (measured
in the tests: 25 lines of depth 0.1-0.6 at R ~ 2000, SNR 50, about 1.2% mean
absorption, give a 0.3-0.5% median error, against 0.8-1.3% for a plain
smoothing spline). On M dwarfs it follows the broad molecular bands, and
narrow inter-band peaks (e.g. 7040-7050 A) stand above it.

Weights are 1 for every usable pixel by default (``weights="uniform"``, as
csaps' default and as SLAM ran in production). ``weights="ivar"`` weights by
``ivar`` divided by its mean over the usable pixels, so that ``p`` keeps the
same meaning as with unit weights.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.interpolate import BSpline, make_smoothing_spline

from bayesslam.errors import AllMaskedError, NormalizationError
from bayesslam.preparation.smoothing_spline import evaluate_natural_spline, fit_smoothing_spline
from bayesslam.spectra import check_arrays

__all__ = [
    "MAD_TO_SIGMA",
    "ContinuumSettings",
    "NormalizedSpectrum",
    "csaps_to_scipy_lam",
    "usable_pixels",
    "fit_continuum",
    "normalize",
]

logger = logging.getLogger(__name__)

MAD_TO_SIGMA: float = 1.4826
"""Factor turning a median absolute deviation into a Gaussian sigma."""

_MIN_SPLINE_POINTS = 5  # make_smoothing_spline needs at least 5 points
_WEIGHT_SCHEMES = ("uniform", "ivar")


@dataclass(frozen=True)
class ContinuumSettings:
    """Settings of the double-smoothing normalization (production defaults).

    Parameters
    ----------
    p1, p2 : float
        csaps smoothing parameters, in (0, 1), of the first (pixel
        selection) and second (continuum) spline, with ``x`` in Angstrom.
    dwave : float
        Width of the pixel-selection bins in Angstrom.
    q : float
        Quantile, in (0, 1), of the residuals that centres each bin's window.
    rsv_frac : float
        Half-width of each bin's window in robust sigmas.
    weights : {"uniform", "ivar"}
        Pixel weights of both spline fits (see the module docstring).
    min_bin_pixels : int
        Fewest usable pixels per bin; sparser bins are merged with the next.
    min_usable : int
        Fewest usable pixels a spectrum may have.
    min_usable_frac : float
        Fewest usable pixels as a fraction of all pixels; the larger of the
        two limits applies.
    clip_min, clip_max : float
        Normalized fluxes outside this range are clipped and masked
        (used by :func:`normalize` only).
    """

    p1: float = 1e-8
    p2: float = 1e-7
    dwave: float = 10.0
    q: float = 0.7
    rsv_frac: float = 2.0
    weights: str = "uniform"
    min_bin_pixels: int = 3
    min_usable: int = 20
    min_usable_frac: float = 0.05
    clip_min: float = 0.0
    clip_max: float = 2.0

    def __post_init__(self) -> None:
        csaps_to_scipy_lam(self.p1)
        csaps_to_scipy_lam(self.p2)
        if not (math.isfinite(self.dwave) and self.dwave > 0):
            raise NormalizationError(f"dwave must be a positive number of Angstrom, got {self.dwave!r}")
        if not 0.0 < self.q < 1.0:
            raise NormalizationError(f"q must lie in (0, 1), got {self.q!r}")
        if not (math.isfinite(self.rsv_frac) and self.rsv_frac > 0):
            raise NormalizationError(f"rsv_frac must be positive, got {self.rsv_frac!r}")
        if self.weights not in _WEIGHT_SCHEMES:
            raise NormalizationError(f"weights must be one of {_WEIGHT_SCHEMES}, got {self.weights!r}")
        if int(self.min_bin_pixels) != self.min_bin_pixels or self.min_bin_pixels < 1:
            raise NormalizationError(
                f"min_bin_pixels must be a positive integer, got {self.min_bin_pixels!r}"
            )
        if int(self.min_usable) != self.min_usable or self.min_usable < _MIN_SPLINE_POINTS:
            raise NormalizationError(
                f"min_usable must be an integer >= {_MIN_SPLINE_POINTS}, got {self.min_usable!r}"
            )
        if not 0.0 <= self.min_usable_frac <= 1.0:
            raise NormalizationError(f"min_usable_frac must lie in [0, 1], got {self.min_usable_frac!r}")
        if not self.clip_min < 1.0 < self.clip_max:
            raise NormalizationError(
                "the clip range must contain 1 (clip_min < 1 < clip_max), "
                f"got {self.clip_min!r}, {self.clip_max!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-friendly dict (round-trips through ``ContinuumSettings(**d)``)."""
        return dataclasses.asdict(self)


class NormalizedSpectrum(NamedTuple):
    """Result of :func:`normalize`; 1-D or ``(n_star, n_pix)`` arrays.

    Attributes
    ----------
    flux : numpy.ndarray
        ``flux / continuum`` clipped to the clip range; 1.0 at pixels that
        were unusable on input.
    ivar : numpy.ndarray
        ``ivar * continuum**2``; exactly 0 wherever ``mask`` is True.
    mask : numpy.ndarray
        True where a pixel is unusable: masked on input, ``ivar == 0``,
        non-finite flux, or clipped.
    continuum : numpy.ndarray
        The pseudo-continuum, positive everywhere.
    """

    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    continuum: np.ndarray


def csaps_to_scipy_lam(p: float) -> float:
    """Convert a csaps smoothing parameter ``p`` to scipy's ``lam``.

    csaps minimizes ``p * sum w (y - f)**2 + (1 - p) * int f''**2`` and
    :func:`scipy.interpolate.make_smoothing_spline` minimizes
    ``sum w (y - f)**2 + lam * int f''**2``; the two have the same minimizer
    when ``lam = (1 - p) / p``. ``lam`` is in units of ``x**3`` (Angstrom**3
    here).

    Parameters
    ----------
    p : float
        Smoothing parameter, strictly between 0 (straight-line least-squares
        fit) and 1 (natural cubic spline interpolant).

    Returns
    -------
    float
        The equivalent ``lam``.

    Raises
    ------
    NormalizationError
        If ``p`` is not a finite number in (0, 1).
    """
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise NormalizationError(f"smoothing parameter p must be a number in (0, 1), got {p!r}") from None
    if not 0.0 < p < 1.0:
        raise NormalizationError(
            f"smoothing parameter p must lie strictly between 0 and 1 (csaps convention), got {p!r}"
        )
    return (1.0 - p) / p


def usable_pixels(flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Return True where a pixel takes part: ``ivar > 0``, finite flux, not masked.

    Parameters
    ----------
    flux, ivar : numpy.ndarray
        Arrays of the same shape.
    mask : numpy.ndarray or None
        True (or non-zero) where a pixel is bad.

    Returns
    -------
    numpy.ndarray of bool
    """
    good = np.isfinite(flux) & (ivar > 0)
    if mask is not None:
        good &= ~np.asarray(mask).astype(bool)
    return good


def _smoothing_spline(x: np.ndarray, y: np.ndarray, w: np.ndarray, p: float) -> BSpline:
    """Fit the csaps smoothing spline with parameter ``p`` through scipy."""
    return make_smoothing_spline(x, y, w=w, lam=csaps_to_scipy_lam(p))


def _bins(x: np.ndarray, origin: float, dwave: float, min_pixels: int) -> list[tuple[int, int]]:
    """Return ``(start, stop)`` slices of sorted ``x`` in bins of ``dwave`` centred on ``origin + i * dwave``.

    A bin holding fewer than ``min_pixels`` points is merged with the bins
    that follow it until it holds enough; a short remainder at the end is
    merged into the last full bin.
    """
    starts, stops = _bin_bounds(x, origin, dwave, min_pixels)
    return list(zip(starts.tolist(), stops.tolist()))


def _bin_bounds(x: np.ndarray, origin: float, dwave: float, min_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """The slices of :func:`_bins` as arrays of starts and stops.

    Scanning the raw bins in order, a slice ends at the first raw-bin edge at
    least ``min_pixels`` points after its start. From a start followed by a
    full raw bin that edge is the next one, so only short raw bins need a
    search (one :func:`numpy.searchsorted` each); the rest is vectorized.
    """
    if x.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    bin_index = np.ceil((x - origin) / dwave - 0.5).astype(np.int64)
    cuts = np.flatnonzero(np.diff(bin_index)) + 1
    edges = np.concatenate([[0], cuts, [x.size]])
    short = np.flatnonzero(np.diff(edges) < min_pixels)
    if short.size == 0:  # nothing to merge: every unmasked BOSS spectrum
        return edges[:-1], edges[1:]
    stops: list[np.ndarray] = []
    pos = 0  # index in edges of the current slice's start
    remainder = False
    for k in short.tolist():
        if k < pos:
            continue  # merged into an earlier slice already
        stops.append(edges[pos + 1 : k + 1])  # the full raw bins before the short one, unchanged
        j = int(np.searchsorted(edges, edges[k] + min_pixels))
        if j == edges.size:
            pos, remainder = k, True
            break
        stops.append(edges[j : j + 1])
        pos = j
    if not remainder:
        stops.append(edges[pos + 1 :])
    stop = np.concatenate(stops)
    if remainder:  # fewer than min_pixels points after the last slice: they join it
        if stop.size:
            stop[-1] = x.size
        else:
            stop = np.array([x.size])
    return np.concatenate([[0], stop[:-1]]), stop


def _select_continuum(
    x: np.ndarray,
    resid: np.ndarray,
    origin: float,
    settings: ContinuumSettings,
) -> np.ndarray:
    """Return True for pixels within ``rsv_frac`` robust sigmas of their bin's ``q`` quantile.

    The bins are laid out as rows of a padded array so that the quantile,
    median and median absolute deviation of all bins come out of two sorts
    (the same values as :func:`numpy.quantile` and :func:`numpy.median`).
    """
    starts, stops = _bin_bounds(x, origin, settings.dwave, settings.min_bin_pixels)
    counts = stops - starts
    col = np.arange(counts.max())
    inside = col < counts[:, None]
    index = np.where(inside, starts[:, None] + col, 0)
    rows = np.where(inside, resid[index], np.inf)

    ordered = np.sort(rows, axis=1)
    centre = _sorted_quantile(ordered, counts, settings.q)
    median = _sorted_quantile(ordered, counts, 0.5)
    deviation = np.sort(np.where(inside, np.abs(rows - median[:, None]), np.inf), axis=1)
    sigma = MAD_TO_SIGMA * _sorted_quantile(deviation, counts, 0.5)

    keep_rows = inside & (np.abs(rows - centre[:, None]) <= settings.rsv_frac * sigma[:, None])
    keep = np.zeros(x.size, dtype=bool)
    keep[index[inside]] = keep_rows[inside]
    return keep


def _sorted_quantile(ordered: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` (numpy's default linear rule) of the first ``counts[i]`` entries of each sorted row."""
    pos = q * (counts - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts - 1)
    rows = np.arange(ordered.shape[0])
    frac = pos - lo
    return ordered[rows, lo] + frac * (ordered[rows, hi] - ordered[rows, lo])


def _evaluate(spline: BSpline, x_lo: float, x_hi: float, wave: np.ndarray) -> np.ndarray:
    """Evaluate ``spline`` on ``wave``, extending it linearly beyond ``[x_lo, x_hi]``."""
    out = spline(np.clip(wave, x_lo, x_hi))
    slope = spline.derivative(1)(np.array([x_lo, x_hi]))
    lo, hi = wave < x_lo, wave > x_hi
    out[lo] += slope[0] * (wave[lo] - x_lo)
    out[hi] += slope[1] * (wave[hi] - x_hi)
    return out


def _check_usable(n_good: int, n_pix: int, settings: ContinuumSettings) -> None:
    """Raise unless a spectrum has enough usable pixels (``n_good`` of ``n_pix``)."""
    if n_good == 0:
        raise AllMaskedError(
            "no usable pixel (every pixel is masked, has ivar = 0 or non-finite flux); "
            "this spectrum cannot be normalized"
        )
    needed = max(settings.min_usable, math.ceil(settings.min_usable_frac * n_pix))
    if n_good < needed:
        raise NormalizationError(
            f"only {n_good} usable pixels of {n_pix}; at least {needed} are needed "
            "(settings min_usable / min_usable_frac)"
        )


def _check_kept(n_keep: int, n_good: int) -> None:
    """Raise unless enough pixels survived the selection to fit the second spline."""
    logger.debug("continuum: %d of %d usable pixels kept", n_keep, n_good)
    if n_keep < _MIN_SPLINE_POINTS:
        raise NormalizationError(
            f"only {n_keep} continuum pixels survived the selection (at least {_MIN_SPLINE_POINTS} "
            "needed); the usable pixels may be too sparse for the bins (dwave, min_bin_pixels)"
        )


def _usable_weights(ivar_good: np.ndarray, settings: ContinuumSettings) -> np.ndarray:
    """Weights of the usable pixels (see the module docstring)."""
    if settings.weights == "ivar":
        return ivar_good / np.mean(ivar_good)
    return np.ones(ivar_good.size)


def _finish(wave: np.ndarray, cont: np.ndarray, x_lo: float, x_hi: float) -> np.ndarray:
    """Check the continuum over the usable range ``[x_lo, x_hi]``; hold it constant beyond where it fails."""
    inside = (wave >= x_lo) & (wave <= x_hi)
    bad = inside & ~(np.isfinite(cont) & (cont > 0))
    if bad.any():
        raise NormalizationError(
            f"the continuum is non-positive or non-finite at {int(bad.sum())} pixels within the "
            f"usable range (minimum {np.nanmin(cont[inside]):.3g}); the flux may be negative or "
            "too noisy to normalize"
        )
    for side in (wave < x_lo, wave > x_hi):
        if side.any() and not np.all(np.isfinite(cont[side]) & (cont[side] > 0)):
            edge = cont[inside][0] if side[0] else cont[inside][-1]
            cont[side] = edge
            logger.debug("continuum: linear extension beyond the usable pixels replaced by a constant")
    return cont


def _continuum_1d_reference(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    good: np.ndarray,
    settings: ContinuumSettings,
) -> np.ndarray:
    """Double-smoothing continuum of one spectrum through scipy (the reference of :func:`_continuum_1d`).

    Each spline is fitted with :func:`scipy.interpolate.make_smoothing_spline`
    to the usable (then the kept) pixels alone and extended linearly beyond
    them. About 30 times slower than :func:`_continuum_1d`; kept to check it.
    """
    n_good = int(good.sum())
    _check_usable(n_good, wave.size, settings)
    x, y = wave[good], flux[good]
    w = _usable_weights(ivar[good], settings)

    first = _smoothing_spline(x, y, w, settings.p1)
    keep = _select_continuum(x, y - first(x), wave[0], settings)
    _check_kept(int(keep.sum()), n_good)
    xk = x[keep]
    second = _smoothing_spline(xk, y[keep], w[keep], settings.p2)
    cont = _evaluate(second, xk[0], xk[-1], wave)
    return _finish(wave, cont, x[0], x[-1])


def _continuum_1d(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    good: np.ndarray,
    settings: ContinuumSettings,
) -> np.ndarray:
    """Double-smoothing continuum of one spectrum whose usable pixels are ``good``.

    The splines are fitted in Reinsch's form
    (:mod:`bayesslam.preparation.smoothing_spline`): the first gives its values
    at the usable pixels directly, the second is evaluated on the whole grid
    with its linear extension. The same continuum as
    :func:`_continuum_1d_reference` (see "How the splines are fitted" in the
    module docstring for how closely).
    """
    n_good = int(good.sum())
    _check_usable(n_good, wave.size, settings)
    x, y = wave[good], flux[good]
    w = _usable_weights(ivar[good], settings)

    first = fit_smoothing_spline(x, y, w, csaps_to_scipy_lam(settings.p1))
    keep = _select_continuum(x, y - first.f, wave[0], settings)
    _check_kept(int(keep.sum()), n_good)
    second = fit_smoothing_spline(x[keep], y[keep], w[keep], csaps_to_scipy_lam(settings.p2))
    cont = evaluate_natural_spline(second, wave)
    return _finish(wave, cont, x[0], x[-1])


def fit_continuum(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    p1: float = 1e-8,
    p2: float = 1e-7,
    dwave: float = 10.0,
    q: float = 0.7,
    rsv_frac: float = 2.0,
    weights: str = "uniform",
    min_bin_pixels: int = 3,
    min_usable: int = 20,
    min_usable_frac: float = 0.05,
) -> np.ndarray:
    """Fit the SLAM double-smoothing pseudo-continuum.

    Parameters
    ----------
    wave : numpy.ndarray, shape (n_pix,)
        Strictly increasing wavelengths in Angstrom.
    flux, ivar : numpy.ndarray, shape (n_pix,) or (n_star, n_pix)
        Flux and inverse variance; spectra in a 2-D batch share ``wave``.
    mask : numpy.ndarray or None
        Same shape as ``flux``; True (non-zero) marks a bad pixel.
    p1, p2, dwave, q, rsv_frac, weights, min_bin_pixels, min_usable, min_usable_frac
        See :class:`ContinuumSettings`.

    Returns
    -------
    numpy.ndarray
        The continuum, same shape as ``flux``, positive and finite.

    Raises
    ------
    SpectrumValidationError
        If the arrays are inconsistent or ``ivar`` is negative or non-finite.
    AllMaskedError
        If a spectrum has no usable pixel.
    NormalizationError
        If a setting is invalid, a spectrum has too few usable pixels, or
        its continuum comes out non-positive; in a batch the message names
        the row.
    """
    settings = ContinuumSettings(
        p1=p1,
        p2=p2,
        dwave=dwave,
        q=q,
        rsv_frac=rsv_frac,
        weights=weights,
        min_bin_pixels=min_bin_pixels,
        min_usable=min_usable,
        min_usable_frac=min_usable_frac,
    )
    wave, flux, ivar, mask = check_arrays(wave, flux, ivar, mask, what="normalize")
    good = usable_pixels(flux, ivar, mask)
    return _continuum(wave, flux, ivar, good, settings)


def _continuum(
    wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, good: np.ndarray, settings: ContinuumSettings
) -> np.ndarray:
    """Apply :func:`_continuum_1d` to one spectrum or to each row of a batch."""
    return _apply_rows(_continuum_1d, wave, flux, ivar, good, settings)


def _continuum_reference(
    wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, good: np.ndarray, settings: ContinuumSettings
) -> np.ndarray:
    """Apply :func:`_continuum_1d_reference` (scipy) to one spectrum or to each row of a batch."""
    return _apply_rows(_continuum_1d_reference, wave, flux, ivar, good, settings)


def _apply_rows(one: Any, wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, good: np.ndarray,
                settings: ContinuumSettings) -> np.ndarray:
    """``one(wave, flux, ivar, good, settings)`` on one spectrum or on each row; errors name the row."""
    if flux.ndim == 1:
        return one(wave, flux, ivar, good, settings)
    cont = np.empty_like(flux)
    for i in range(flux.shape[0]):
        try:
            cont[i] = one(wave, flux[i], ivar[i], good[i], settings)
        except (AllMaskedError, NormalizationError) as exc:
            raise type(exc)(f"spectrum {i}: {exc}") from exc
    return cont


def normalize(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray | None = None,
    **settings: Any,
) -> NormalizedSpectrum:
    """Continuum-normalize one spectrum or a batch sharing one wavelength grid.

    Parameters
    ----------
    wave : numpy.ndarray, shape (n_pix,)
        Strictly increasing wavelengths in Angstrom.
    flux, ivar : numpy.ndarray, shape (n_pix,) or (n_star, n_pix)
        Flux and inverse variance.
    mask : numpy.ndarray or None
        Same shape as ``flux``; True (non-zero) marks a bad pixel.
    **settings
        Any field of :class:`ContinuumSettings` (production defaults
        otherwise); ``normalize(..., **s.to_dict())`` reuses stored settings.

    Returns
    -------
    NormalizedSpectrum
        ``flux = flux / continuum`` and ``ivar = ivar * continuum**2`` at
        usable pixels. Usable pixels whose normalized flux falls outside
        ``[clip_min, clip_max]`` are clipped to that range and get
        ``ivar = 0`` and ``mask = True``. Unusable input pixels get flux 1.0,
        ivar 0 and mask True. No output contains NaN.

    Raises
    ------
    SpectrumValidationError, AllMaskedError, NormalizationError
        As :func:`fit_continuum`; unknown settings raise ``TypeError``.
    """
    cfg = ContinuumSettings(**settings)
    wave, flux, ivar, mask = check_arrays(wave, flux, ivar, mask, what="normalize")
    good = usable_pixels(flux, ivar, mask)
    cont = _continuum(wave, flux, ivar, good, cfg)

    ratio = np.divide(flux, cont, out=np.ones_like(flux), where=good)
    clipped = good & ((ratio < cfg.clip_min) | (ratio > cfg.clip_max))
    norm_flux = np.clip(ratio, cfg.clip_min, cfg.clip_max)
    out_mask = ~good | clipped
    norm_ivar = np.where(out_mask, 0.0, ivar * cont**2)
    if clipped.any():
        logger.debug("normalize: %d pixels clipped and masked", int(clipped.sum()))
    return NormalizedSpectrum(flux=norm_flux, ivar=norm_ivar, mask=out_mask, continuum=cont)

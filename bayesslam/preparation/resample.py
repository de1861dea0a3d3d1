"""Flux-conserving resampling of spectra onto a target wavelength grid.

Spectra are resampled by *pixel overlap*: every pixel is treated as a bin
of uniform flux density between its edges (:func:`bayesslam.grid.pixel_edges`),
and an output pixel receives the overlap-weighted mean of the input flux
densities that fall inside it,

.. math::

    f^{\\rm out}_j = \\frac{\\sum_i W_{ji} f_i}{\\sum_i W_{ji}},

where :math:`W_{ji}` is the length in Angstrom of the overlap of input pixel
:math:`i` with output pixel :math:`j`. On output pixels fully covered by the
input this conserves the integral
:math:`\\sum_j f^{\\rm out}_j \\Delta\\lambda_j = \\sum_i f_i \\sum_j W_{ji}`.

Variances are propagated exactly for independent input pixels,
:math:`\\sigma^2_j = \\sum_i (W_{ji} / \\sum_k W_{jk})^2 \\sigma^2_i`; inverse
variances are never interpolated. Note that neighbouring output pixels that
share an input pixel are correlated (strongly so when upsampling); only the
diagonal of the output covariance is returned.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from bayesslam.errors import AllMaskedError, NoOverlapError
from bayesslam.grid import pixel_edges
from bayesslam.spectra import check_arrays, check_wavelengths

__all__ = [
    "COVERAGE_TOLERANCE",
    "RebinResult",
    "overlap_matrix",
    "rebin_matrix",
    "rebin",
]

logger = logging.getLogger(__name__)

#: An output pixel counts as fully covered when its coverage fraction is at
#: least ``1 - COVERAGE_TOLERANCE``.
COVERAGE_TOLERANCE: float = 1e-9

#: Overlaps shorter than this fraction of the narrower of the two pixels are
#: floating-point noise from edges computed in two ways (e.g. a grid and a
#: sub-grid of it) and are dropped, so that they neither "touch" a pixel for
#: mask propagation nor add a spurious matrix entry.
_OVERLAP_RTOL: float = 1e-10


class RebinResult(NamedTuple):
    """Result of :func:`rebin`.

    Attributes
    ----------
    flux : numpy.ndarray
        Resampled flux density, shape ``(n_out,)`` or ``(n_star, n_out)``.
        Never NaN. On masked pixels it is the overlap-weighted mean of the
        usable input pixels that touch the pixel (a partial mean), or 0 where
        no usable input pixel touches it; do not use it there.
    ivar : numpy.ndarray
        Exactly propagated inverse variance, same shape as ``flux``; 0 on
        masked pixels.
    mask : numpy.ndarray
        Boolean, same shape as ``flux``; True marks a bad pixel (touched by a
        masked / zero-ivar / non-finite input pixel, or not fully covered).
    coverage : numpy.ndarray
        Fraction of each output pixel's width covered by the input grid,
        shape ``(n_out,)`` (shared by all rows of a batch), in ``[0, 1]``.
    """

    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    coverage: np.ndarray


def _overlap_from_edges(edges_in: np.ndarray, edges_out: np.ndarray) -> sp.csr_matrix:
    """Build the overlap matrix from two increasing edge arrays."""
    n_in = edges_in.size - 1
    n_out = edges_out.size - 1
    lo = max(edges_in[0], edges_out[0])
    hi = min(edges_in[-1], edges_out[-1])
    if hi <= lo:
        return sp.csr_matrix((n_out, n_in), dtype=float)
    # Merge both edge sets: between two consecutive merged edges there is no
    # edge of either grid, so each segment lies in exactly one input pixel and
    # one output pixel, and each (j, i) overlap is exactly one segment.
    merged = np.union1d(edges_in, edges_out)
    merged = merged[(merged >= lo) & (merged <= hi)]
    left, right = merged[:-1], merged[1:]
    mid = 0.5 * (left + right)
    i = np.searchsorted(edges_in, mid, side="right") - 1
    j = np.searchsorted(edges_out, mid, side="right") - 1
    length = right - left
    width = np.minimum(np.diff(edges_in)[i], np.diff(edges_out)[j])
    keep = length > _OVERLAP_RTOL * width
    # Segments are ordered by wavelength, hence by j: build CSR directly.
    return sp.csr_matrix((length[keep], (j[keep], i[keep])), shape=(n_out, n_in))


def overlap_matrix(wave_in: np.ndarray, wave_out: np.ndarray) -> sp.csr_matrix:
    """Return the pixel-overlap matrix between two wavelength grids.

    Parameters
    ----------
    wave_in : numpy.ndarray
        Strictly increasing input pixel centres (Angstrom), shape ``(n_in,)``.
    wave_out : numpy.ndarray
        Strictly increasing output pixel centres (Angstrom), shape ``(n_out,)``.

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape ``(n_out, n_in)``; entry ``(j, i)`` is the length in Angstrom of
        the overlap of input pixel ``i`` with output pixel ``j``, with pixel
        edges from :func:`bayesslam.grid.pixel_edges`. All zero if the grids
        do not overlap.

    Raises
    ------
    SpectrumValidationError
        If either grid is not 1-D, finite, positive and strictly increasing.
    """
    wave_in = check_wavelengths(wave_in, what="rebin", name="wave_in")
    wave_out = check_wavelengths(wave_out, what="rebin", name="wave_out")
    return _overlap_from_edges(pixel_edges(wave_in), pixel_edges(wave_out))


def rebin_matrix(wave_in: np.ndarray, wave_out: np.ndarray) -> sp.csr_matrix:
    """Return the row-normalised resampling matrix ``R = diag(1 / sum_i W_ji) W``.

    ``R @ flux_in`` is the overlap-weighted mean flux density of
    :func:`rebin` (ignoring masks), and ``(R.multiply(R)) @ var_in`` its
    variance. Rows of output pixels that no input pixel touches are zero.

    Parameters
    ----------
    wave_in : numpy.ndarray
        Strictly increasing input pixel centres (Angstrom), shape ``(n_in,)``.
    wave_out : numpy.ndarray
        Strictly increasing output pixel centres (Angstrom), shape ``(n_out,)``.

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape ``(n_out, n_in)``; each non-empty row sums to 1.
    """
    weights = overlap_matrix(wave_in, wave_out)
    return _normalise_rows(weights)


def _normalise_rows(weights: sp.csr_matrix) -> sp.csr_matrix:
    """Divide every non-empty row of a CSR matrix by its sum."""
    row_sum = np.asarray(weights.sum(axis=1)).ravel()
    scale = np.divide(1.0, row_sum, out=np.zeros_like(row_sum), where=row_sum > 0)
    return sp.csr_matrix(sp.diags(scale) @ weights)


def rebin(
    wave_in: np.ndarray,
    flux_in: np.ndarray,
    ivar_in: np.ndarray,
    wave_out: np.ndarray,
    mask_in: np.ndarray | None = None,
) -> RebinResult:
    """Resample spectra onto ``wave_out`` by pixel overlap, conserving flux.

    Parameters
    ----------
    wave_in : numpy.ndarray
        Strictly increasing input pixel centres (Angstrom), shape ``(n_in,)``,
        shared by all rows of a batch.
    flux_in : numpy.ndarray
        Flux density, shape ``(n_in,)`` or ``(n_star, n_in)``. NaN / inf
        values are treated as masked.
    ivar_in : numpy.ndarray
        Inverse variance, same shape as ``flux_in``; finite and ``>= 0``
        (0 marks a bad pixel).
    wave_out : numpy.ndarray
        Strictly increasing target pixel centres (Angstrom), shape ``(n_out,)``.
    mask_in : numpy.ndarray, optional
        Boolean bad-pixel mask (True = bad), same shape as ``flux_in`` or
        ``(n_in,)`` to share one mask across a batch.

    Returns
    -------
    RebinResult
        ``flux`` and ``ivar`` (shape ``(n_out,)`` or ``(n_star, n_out)``),
        ``mask`` (True = bad) and ``coverage`` (shape ``(n_out,)``).
        ``flux_j`` is the overlap-weighted mean input flux density and
        ``1 / ivar_j = sum_i (W_ji / sum_k W_jk)**2 / ivar_i``. An output pixel
        is masked (``ivar = 0``) if any input pixel overlapping it is masked,
        has ``ivar == 0`` or non-finite flux, or if its coverage is below
        ``1 - COVERAGE_TOLERANCE``. On masked pixels ``flux`` is the mean of the
        usable overlapping input pixels, or 0 if there are none; it is never NaN.

    Raises
    ------
    SpectrumValidationError
        On inconsistent shapes, non-increasing or non-finite wavelengths, or
        negative / non-finite ``ivar_in``.
    NoOverlapError
        If the input grid does not overlap ``wave_out`` at all.
    AllMaskedError
        If no output pixel is usable (for a batch: in any one row).
    """
    wave_out = check_wavelengths(wave_out, what="rebin", name="wave_out")
    batched = np.ndim(flux_in) == 2
    wave_in, flux, ivar, mask = check_arrays(wave_in, flux_in, ivar_in, mask_in, what="rebin",
                                       names=("wave_in", "flux_in", "ivar_in", "mask_in"))
    flux, ivar, mask = np.atleast_2d(flux), np.atleast_2d(ivar), np.atleast_2d(mask)

    edges_in = pixel_edges(wave_in)
    edges_out = pixel_edges(wave_out)
    weights = _overlap_from_edges(edges_in, edges_out)
    if weights.nnz == 0:
        raise NoOverlapError(
            f"The spectrum covers {wave_in[0]:.3f}-{wave_in[-1]:.3f} A but the target grid "
            f"covers {wave_out[0]:.3f}-{wave_out[-1]:.3f} A (pixel centres): they do not overlap. "
            "Check the "
            "wavelength units (Angstrom), air vs vacuum and any redshift correction, or "
            "choose a target grid inside the spectrum's range."
        )

    row_sum = np.asarray(weights.sum(axis=1)).ravel()
    coverage = np.clip(row_sum / np.diff(edges_out), 0.0, 1.0)

    good = ~mask & (ivar > 0) & np.isfinite(flux)
    good_f = good.astype(float)
    flux_clean = np.where(good, flux, 0.0)
    var_clean = np.divide(1.0, ivar, out=np.zeros_like(ivar), where=good)

    # One sparse product per quantity for the whole batch; results are (n_out, n_star).
    touched = sp.csr_matrix(
        (np.ones_like(weights.data), weights.indices, weights.indptr), shape=weights.shape
    )
    n_bad_touching = touched @ (1.0 - good_f).T
    good_weight = weights @ good_f.T
    flux_sum = weights @ flux_clean.T
    norm = _normalise_rows(weights)
    var_out = norm.multiply(norm) @ var_clean.T

    mask_out = (n_bad_touching > 0) | (coverage < 1.0 - COVERAGE_TOLERANCE)[:, None]
    mask_out |= ~(var_out > 0)
    flux_out = np.divide(
        flux_sum, good_weight, out=np.zeros_like(flux_sum), where=good_weight > 0
    )
    ivar_out = np.divide(1.0, var_out, out=np.zeros_like(var_out), where=~mask_out)

    flux_out = np.ascontiguousarray(flux_out.T)
    ivar_out = np.ascontiguousarray(ivar_out.T)
    mask_out = np.ascontiguousarray(mask_out.T)
    n_usable = np.sum(~mask_out, axis=1)
    if np.any(n_usable == 0):
        rows = np.flatnonzero(n_usable == 0)
        where = f" (rows {rows[:10].tolist()}{'...' if rows.size > 10 else ''})" if batched else ""
        raise AllMaskedError(
            f"No usable pixel remains after resampling{where}: every target pixel in "
            f"{wave_out[0]:.3f}-{wave_out[-1]:.3f} A is either outside the spectrum's "
            f"coverage ({wave_in[0]:.3f}-{wave_in[-1]:.3f} A) or touched by a masked / "
            "zero-ivar / non-finite input pixel. Check the input mask and ivar, or drop "
            "this spectrum."
        )
    logger.debug(
        "rebinned %d spectra from %d to %d pixels; %d-%d usable output pixels per row",
        flux.shape[0],
        wave_in.size,
        wave_out.size,
        int(n_usable.min()),
        int(n_usable.max()),
    )
    if not batched:
        return RebinResult(flux_out[0], ivar_out[0], mask_out[0], coverage)
    return RebinResult(flux_out, ivar_out, mask_out, coverage)

"""Coverage of label uncertainties and the calibrated widths: the interval math of error calibration.

Pure functions on numpy arrays: the coverage of Gaussian sigmas and of
posterior draws, probability integral transforms (PIT) of true labels, and a
scale and systematic floor applied to a sigma (:func:`calibrated_sigma`) or
to posterior draws (:func:`calibrated_quantiles`, :func:`calibrated_draws`).
:mod:`bayesslam.calibration.scale_floor` fits the scale and floor.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import ndtr, ndtri

from bayesslam.errors import BayesSlamError

__all__ = [
    "CalibrationError",
    "LEVELS",
    "ONE_SIGMA",
    "NINETY_FIVE",
    "KINDS",
    "calibrated_draws",
    "calibrated_quantiles",
    "calibrated_sigma",
    "coverage",
    "draws_pit",
    "gaussian_pit",
    "half_width",
    "pit_coverage",
]

#: Probability inside +-1 sigma of a Normal (0.6827).
ONE_SIGMA: float = float(ndtr(1.0) - ndtr(-1.0))
#: The 95% central interval.
NINETY_FIVE: float = 0.95
#: Central-interval probabilities a calibration is fitted to and checked at.
LEVELS: tuple[float, float] = (ONE_SIGMA, NINETY_FIVE)
#: The kinds of statistical width a calibration applies to.
KINDS: tuple[str, str] = ("laplace", "posterior")


class CalibrationError(BayesSlamError, ValueError):
    """Inputs of a calibration are unusable (shapes, too few finite stars, bad values or records)."""


def half_width(level: float) -> float:
    """Half-width in sigma of the central interval of a Normal holding probability ``level``."""
    if not 0.0 < level < 1.0:
        raise CalibrationError(f"level must lie in (0, 1), got {level}")
    return float(ndtri(0.5 + level / 2.0))


def _pair(errors: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    errors = np.atleast_2d(np.asarray(errors, dtype=float))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=float))
    if errors.shape != sigma.shape or errors.ndim != 2:
        raise CalibrationError(
            f"errors {errors.shape} and sigma {sigma.shape} must have the same shape (n_star, n_label)"
        )
    if np.any(sigma < 0):
        raise CalibrationError("sigma must be >= 0")
    return errors, sigma


def _draws_and_truth(truth: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.atleast_2d(np.asarray(truth, dtype=float))
    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 3 or draws.shape[0] != truth.shape[0] or draws.shape[2] != truth.shape[1]:
        raise CalibrationError(
            f"draws {draws.shape} must be (n_star, n_draw, n_label) for truth {truth.shape} (n_star, n_label)"
        )
    if draws.shape[1] < 2:
        raise CalibrationError("at least two draws per star are needed")
    return truth, draws


def _check_scale_floor(scale: np.ndarray | float | None, floor: np.ndarray | float | None) -> tuple[np.ndarray, np.ndarray]:
    scale = np.asarray(1.0 if scale is None else scale, dtype=float)
    floor = np.asarray(0.0 if floor is None else floor, dtype=float)
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise CalibrationError(f"scale must be finite and > 0, got {scale}")
    if not (np.all(np.isfinite(floor)) and np.all(floor >= 0)):
        raise CalibrationError(f"floor must be finite and >= 0, got {floor}")
    return scale, floor


def coverage(errors: np.ndarray, sigma: np.ndarray, level: float = ONE_SIGMA) -> np.ndarray:
    """Fraction of stars whose error lies inside the central ``level`` interval of ``N(0, sigma**2)``.

    Parameters
    ----------
    errors : numpy.ndarray, ``(n_star, n_label)``
        Estimated minus true labels (non-finite: star ignored for that label).
    sigma : numpy.ndarray, ``(n_star, n_label)``
        Their quoted uncertainties.
    level : float
        Probability of the central interval (:data:`ONE_SIGMA` is +-1 sigma,
        0.95 is +-1.96 sigma).

    Returns
    -------
    numpy.ndarray, ``(n_label,)``
        NaN for a label without finite stars.
    """
    errors, sigma = _pair(errors, sigma)
    z = half_width(level)
    finite = np.isfinite(errors) & np.isfinite(sigma)
    inside = (np.abs(errors) <= z * sigma) & finite
    with np.errstate(invalid="ignore", divide="ignore"):
        return inside.sum(axis=0) / finite.sum(axis=0)


def _in_central(pit: np.ndarray, level: float) -> np.ndarray:
    """True where a PIT value lies inside the central ``level`` interval (NaN: False)."""
    return np.abs(pit - 0.5) <= level / 2.0


def pit_coverage(pit: np.ndarray, level: float = ONE_SIGMA) -> np.ndarray:
    """Fraction of finite PIT values inside the central ``level`` interval, over the first axis."""
    pit = np.asarray(pit, dtype=float)
    finite = np.isfinite(pit)
    inside = _in_central(pit, level) & finite
    with np.errstate(invalid="ignore", divide="ignore"):
        return inside.sum(axis=0) / finite.sum(axis=0)


def calibrated_sigma(sigma: np.ndarray, scale: np.ndarray | float | None, floor: np.ndarray | float | None) -> np.ndarray:
    """``sqrt((scale * sigma)**2 + floor**2)``; ``None`` means scale 1 / floor 0."""
    scale, floor = _check_scale_floor(scale, floor)
    sigma = np.asarray(sigma, dtype=float)
    return np.sqrt((scale * sigma) ** 2 + floor**2)


def gaussian_pit(errors: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """PIT of the true labels under ``N(estimate, sigma**2)``: ``Phi(-errors / sigma)``."""
    errors, sigma = _pair(errors, sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ndtr(-errors / sigma)


def _mixture_cdf(x: np.ndarray, centres: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Mean over the draw axis (-2) of ``Phi((x - centres) / floor)``; a step function where floor is 0."""
    diff = x[..., None, :] - centres
    floor = np.broadcast_to(floor, diff.shape[:-2] + diff.shape[-1:])[..., None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = ndtr(diff / np.where(floor > 0, floor, 1.0))
    step = (diff > 0) + 0.5 * (diff == 0)
    return np.mean(np.where(floor > 0, smooth, step), axis=-2)


def _stretched(draws: np.ndarray, scale: np.ndarray) -> np.ndarray:
    median = np.median(draws, axis=-2, keepdims=True)
    return median + scale * (draws - median)


def draws_pit(truth: np.ndarray, draws: np.ndarray, scale: np.ndarray | float | None = None,
              floor: np.ndarray | float | None = None) -> np.ndarray:
    """PIT of the true labels under calibrated posteriors (draws stretched by ``scale``, convolved with the floor).

    Parameters
    ----------
    truth : numpy.ndarray, ``(n_star, n_label)``
    draws : numpy.ndarray, ``(n_star, n_draw, n_label)``
        Posterior draws of each star.
    scale, floor : array_like, optional
        Per label (broadcastable to ``(n_label,)``); default 1 and 0 (the raw posterior).

    Returns
    -------
    numpy.ndarray, ``(n_star, n_label)``
    """
    truth, draws = _draws_and_truth(truth, draws)
    scale, floor = _check_scale_floor(scale, floor)
    return _mixture_cdf(truth, _stretched(draws, scale), floor)


def calibrated_quantiles(draws: np.ndarray, scale: np.ndarray | float | None, floor: np.ndarray | float | None,
                         probs: Sequence[float]) -> np.ndarray:
    """Quantiles of calibrated posteriors, computed exactly (the convolution is not sampled).

    Parameters
    ----------
    draws : numpy.ndarray, ``(n_draw, n_label)`` or ``(n_star, n_draw, n_label)``
    scale, floor : array_like
        Per label.
    probs : sequence of float
        Probabilities in (0, 1).

    Returns
    -------
    numpy.ndarray, ``(n_prob, n_label)`` or ``(n_star, n_prob, n_label)``
    """
    draws = np.asarray(draws, dtype=float)
    single = draws.ndim == 2
    if single:
        draws = draws[None]
    if draws.ndim != 3 or draws.shape[1] < 2:
        raise CalibrationError(f"draws must be (n_draw, n_label) or (n_star, n_draw, n_label), got {draws.shape}")
    probs = np.asarray(probs, dtype=float)
    if np.any((probs <= 0) | (probs >= 1)):
        raise CalibrationError(f"probabilities must lie in (0, 1), got {probs}")
    scale, floor = _check_scale_floor(scale, floor)
    floor = np.broadcast_to(floor, draws.shape[2:])
    centres = _stretched(draws, scale)
    out = np.empty((draws.shape[0], probs.size, draws.shape[2]))
    reach = 8.0 * floor
    lo0 = centres.min(axis=1) - reach
    hi0 = centres.max(axis=1) + reach
    for j, p in enumerate(probs):
        lo, hi = lo0.copy(), hi0.copy()
        for _ in range(60):  # bisection: 2**-60 of the bracket
            mid = 0.5 * (lo + hi)
            below = _mixture_cdf(mid, centres, floor) < p
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        out[:, j] = 0.5 * (lo + hi)
    no_floor = floor == 0
    if np.any(no_floor):
        out[:, :, no_floor] = np.moveaxis(np.quantile(centres[:, :, no_floor], probs, axis=1), 0, 1)
    return out[0] if single else out


def calibrated_draws(draws: np.ndarray, scale: np.ndarray | float | None, floor: np.ndarray | float | None,
                     rng: np.random.Generator) -> np.ndarray:
    """Draws of calibrated posteriors: each draw stretched about the median by ``scale``, plus ``N(0, floor**2)``.

    ``draws`` is ``(..., n_draw, n_label)``; the result has the same shape.
    """
    draws = np.asarray(draws, dtype=float)
    if draws.ndim < 2 or draws.shape[-2] < 2:
        raise CalibrationError(f"draws must be (..., n_draw, n_label) with two or more draws, got {draws.shape}")
    scale, floor = _check_scale_floor(scale, floor)
    return _stretched(draws, scale) + floor * rng.standard_normal(draws.shape)

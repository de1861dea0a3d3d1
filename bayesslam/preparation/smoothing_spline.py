"""Cubic smoothing splines in Reinsch's form: one pentadiagonal Cholesky solve per fit.

The function ``f`` minimizing

    sum_j w_j (y_j - f(x_j))**2 + lam * int f''(x)**2 dx        (w_j > 0)

over all functions is the natural cubic spline with knots at the ``x_j``
(Green & Silverman 1994, *Nonparametric Regression and Generalized Linear
Models*, ch. 2): a cubic between neighbouring knots, a straight line beyond
the outermost ones. It is :func:`scipy.interpolate.make_smoothing_spline`
with the same ``w`` and ``lam``, computed here without building a B-spline
basis.

With ``h_i = x_{i+1} - x_i``, the spline is fixed by its knot values ``f``
and its second derivatives ``gamma`` at the interior knots (zero at the end
knots), related by ``Q^T f = R gamma``, where ``Q`` (``m x (m-2)``) and ``R``
(``(m-2) x (m-2)``, symmetric) are tridiagonal::

    Q[k-1, k] = 1 / h_{k-1},  Q[k, k] = -1 / h_{k-1} - 1 / h_k,  Q[k+1, k] = 1 / h_k
    R[k, k] = (h_{k-1} + h_k) / 3,  R[k, k+1] = R[k+1, k] = h_k / 6

and ``int f''**2 = gamma^T R gamma``. The normal equations of the objective
are then (Reinsch 1967; Green & Silverman section 2.3.3)

    (R + lam Q^T W^-1 Q) gamma = Q^T y,    f = y - lam W^-1 Q gamma,

a symmetric positive definite pentadiagonal system, solved by LAPACK's banded
Cholesky (``pbsv``) in ``O(m)``. :func:`evaluate_natural_spline` evaluates
the spline anywhere from ``(x, f, gamma)``: between knots by the cubic through
the two neighbouring values and second derivatives, beyond the end knots along
the straight line of the end value and slope.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.linalg import get_lapack_funcs

__all__ = ["MIN_POINTS", "NaturalSpline", "fit_smoothing_spline", "evaluate_natural_spline"]

MIN_POINTS: int = 3
"""Fewest knots :func:`fit_smoothing_spline` accepts."""


class NaturalSpline(NamedTuple):
    """A natural cubic spline by its knots, values and second derivatives.

    Attributes
    ----------
    x : numpy.ndarray, shape (m,)
        Strictly increasing knots.
    f : numpy.ndarray, shape (m,)
        Values at the knots.
    gamma : numpy.ndarray, shape (m,)
        Second derivatives at the knots (zero at the first and last).
    """

    x: np.ndarray
    f: np.ndarray
    gamma: np.ndarray


def fit_smoothing_spline(x: np.ndarray, y: np.ndarray, w: np.ndarray, lam: float) -> NaturalSpline:
    """Fit the cubic smoothing spline minimizing ``sum w (y - f)**2 + lam int f''**2``.

    Parameters
    ----------
    x : numpy.ndarray, shape (m,)
        Strictly increasing points, ``m >= 3``.
    y : numpy.ndarray, shape (m,)
        Finite data.
    w : numpy.ndarray, shape (m,)
        Positive finite weights (not squared).
    lam : float
        Positive finite smoothing parameter, in units of ``x**3``
        (:func:`scipy.interpolate.make_smoothing_spline`'s ``lam``).

    Returns
    -------
    NaturalSpline
        The fitted spline; ``f`` holds its values at ``x``.

    Raises
    ------
    ValueError
        If the inputs break the conditions above.
    numpy.linalg.LinAlgError
        If LAPACK finds the system not positive definite (it is, in exact
        arithmetic, for valid inputs).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    w = np.asarray(w, dtype=float)
    m = x.size
    if x.ndim != 1 or m < MIN_POINTS or y.shape != x.shape or w.shape != x.shape:
        raise ValueError(f"x, y and w must be 1-D of one length >= {MIN_POINTS}, got {x.shape}, {y.shape}, {w.shape}")
    h = np.diff(x)
    if not np.all(h > 0):
        raise ValueError("x must be strictly increasing")
    if not (np.all(w > 0) and np.all(np.isfinite(w)) and np.all(np.isfinite(y))):
        raise ValueError("y must be finite and w positive and finite")
    lam = float(lam)
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a positive finite number, got {lam!r}")

    inv_h = 1.0 / h
    q_lo = inv_h[:-1]  # Q[k-1, k]
    q_hi = inv_h[1:]  # Q[k+1, k]
    q_mid = -q_lo - q_hi  # Q[k, k]
    lam_w = lam / w  # lam W^-1

    # R + lam Q^T W^-1 Q in LAPACK's upper band storage: band[2 + i - j, j] = A[i, j].
    band = np.empty((3, m - 2))
    band[2] = (h[:-1] + h[1:]) / 3.0 + q_lo * q_lo * lam_w[:-2] + q_mid * q_mid * lam_w[1:-1] + q_hi * q_hi * lam_w[2:]
    band[1, 0] = 0.0
    band[1, 1:] = h[1:-1] / 6.0 + q_mid[:-1] * q_lo[1:] * lam_w[1:-2] + q_hi[:-1] * q_mid[1:] * lam_w[2:-1]
    band[0, :2] = 0.0
    band[0, 2:] = q_hi[:-2] * q_lo[2:] * lam_w[2:-2]
    rhs = q_lo * y[:-2] + q_mid * y[1:-1] + q_hi * y[2:]

    pbsv = get_lapack_funcs("pbsv", (band, rhs))
    _, interior, info = pbsv(band, rhs, lower=0, overwrite_ab=True, overwrite_b=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"smoothing-spline system not positive definite (LAPACK pbsv info {info})")

    q_gamma = np.zeros(m)
    q_gamma[:-2] += q_lo * interior
    q_gamma[1:-1] += q_mid * interior
    q_gamma[2:] += q_hi * interior
    gamma = np.zeros(m)
    gamma[1:-1] = interior
    return NaturalSpline(x=x, f=y - lam_w * q_gamma, gamma=gamma)


def evaluate_natural_spline(spline: NaturalSpline, z: np.ndarray) -> np.ndarray:
    """Evaluate a natural cubic spline at ``z``, linearly beyond its end knots.

    Parameters
    ----------
    spline : NaturalSpline
        From :func:`fit_smoothing_spline`.
    z : numpy.ndarray
        Points, any shape.

    Returns
    -------
    numpy.ndarray
        The spline at ``z``; exactly ``spline.f[i]`` where ``z == spline.x[i]``.
        Beyond the end knots, the end value plus the end slope times the
        distance (the spline's own continuation: its second derivative is
        zero there).
    """
    x, f, gamma = spline
    z = np.asarray(z, dtype=float)
    i = np.clip(np.searchsorted(x, z, side="right") - 1, 0, x.size - 2)
    h = x[i + 1] - x[i]
    b = (z - x[i]) / h  # in [0, 1] between the end knots; exactly 0 at a knot
    a = 1.0 - b
    out = a * f[i] + b * f[i + 1] + ((a**3 - a) * gamma[i] + (b**3 - b) * gamma[i + 1]) * (h * h / 6.0)

    # Beyond the end knots: the straight line of the end value and slope (f'' = 0 there).
    h0, h1 = x[1] - x[0], x[-1] - x[-2]
    slope_lo = (f[1] - f[0]) / h0 - h0 * gamma[1] / 6.0
    slope_hi = (f[-1] - f[-2]) / h1 + h1 * gamma[-2] / 6.0
    lo, hi = z < x[0], z > x[-1]
    out = np.where(lo, f[0] + slope_lo * (z - x[0]), out)
    return np.where(hi, f[-1] + slope_hi * (z - x[-1]), out)

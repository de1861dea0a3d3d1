"""How badly the model misses a spectrum: the misfit amplitude and the chi2 p-value behind ``POOR_FIT``.

A reduced chi2 is a poor test of whether the model describes a star: for a
fixed relative misfit the chi2 excess grows with SNR^2, so a bright M dwarf
that the model describes to 0.8% gets a larger reduced chi2 than a faint K
dwarf that it misses by 2%. The catalog therefore asks two questions:

*Is there a misfit at all?* ``CHI2_P``, the probability of a chi2 at least as
large as the one at the MAP if the likelihood's variance were right
(:func:`chi2_p_value`: the chi2 survival function with ``N_PIX - n_label``
degrees of freedom).

*How large is it?* ``MISFIT`` (:func:`misfit_amplitude`), the rms extra
scatter ``delta`` in normalized-flux units that the likelihood's per-pixel
variance ``var_j = 1/ivar_j + v_j`` (``v_j``: the model's variance, the
emulator's ``model_variance``) lacks: the ``delta >= 0`` for which the chi2
at the MAP equals its expectation,

    sum_j r_j**2 / (var_j + delta**2) = n_pix - n_label,

over the pixels the likelihood uses (``ivar_j > 0`` and finite ``v_j``),
``r_j`` the residual flux - model. The equation is solved exactly (its
left side decreases monotonically in ``delta**2``; a safeguarded Newton
iteration on a bracket, to a relative 1e-12); it is 0 when the chi2 does not
exceed its expectation. This is the Paule-Mandel estimator of an extra
variance; to first order in ``delta**2`` it is the method-of-moments value
``(chi2 - dof) / sum_j 1 / var_j``. Being an amplitude, not a test statistic,
it does not grow with SNR: the same star observed at SNR 20 and 80 gives
about the same ``MISFIT``.

``POOR_FIT`` is set when both hold: ``CHI2_P`` below ``FlagThresholds.poor_fit_p``
(default 1e-3; so noise alone, which gives a large ``MISFIT`` estimate at
low SNR only by chance, rarely sets it) and ``MISFIT`` above the tolerance
(:data:`DEFAULT_MISFIT_TOLERANCE`, or the model's own, ``misfit_tolerance``
in its metadata). See docs/bad-inputs.md for how the default was chosen.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["DEFAULT_MISFIT_TOLERANCE", "misfit_amplitude", "chi2_p_value"]

#: Default ``MISFIT`` tolerance of ``POOR_FIT``: 1.5% rms of the normalized flux
#: (see :class:`bayesslam.catalog.FlagThresholds` and docs/bad-inputs.md).
DEFAULT_MISFIT_TOLERANCE: float = 0.015

_MAX_ITER = 100
_RTOL = 1e-12


def chi2_p_value(chi2: np.ndarray, n_pix: np.ndarray, n_label: int) -> np.ndarray:
    """Probability of a chi2 at least this large with ``n_pix - n_label`` degrees of freedom (NaN without any)."""
    chi2 = np.asarray(chi2, dtype=float)
    dof = np.asarray(n_pix, dtype=float) - n_label
    ok = np.isfinite(chi2) & (dof > 0)
    return np.where(ok, stats.chi2.sf(np.where(ok, chi2, 0.0), np.where(ok, dof, 1.0)), np.nan)


def misfit_amplitude(flux: np.ndarray, ivar: np.ndarray, model_flux: np.ndarray, model_variance: np.ndarray,
                     n_label: int) -> np.ndarray:
    """The rms extra scatter ``delta`` (normalized flux) that makes each star's MAP chi2 equal its expectation.

    Parameters
    ----------
    flux, ivar : numpy.ndarray, shape (n_star, n_pix)
        Normalized flux and its inverse variance (0: masked).
    model_flux : numpy.ndarray, shape (n_star, n_pix)
        The model spectrum at each star's MAP labels.
    model_variance : numpy.ndarray, shape (n_pix,) or (n_star, n_pix)
        The model's per-pixel variance ``v_j`` (inf where the model has no
        prediction), the one the likelihood adds to ``1 / ivar``.
    n_label : int
        Labels fitted (the degrees of freedom are ``n_pix - n_label``).

    Returns
    -------
    numpy.ndarray, shape (n_star,)
        ``delta >= 0`` solving ``sum_j r_j**2 / (1/ivar_j + v_j + delta**2) =
        n_used - n_label`` over the used pixels (``ivar > 0``, finite flux and
        ``v``); 0 when the chi2 does not exceed ``n_used - n_label``; NaN for a
        star with no more used pixels than labels or a non-finite model flux
        on a used pixel (a star that could not be fitted).
    """
    flux, ivar, model_flux = (np.atleast_2d(np.asarray(a, dtype=float)) for a in (flux, ivar, model_flux))
    v = np.broadcast_to(np.asarray(model_variance, dtype=float), flux.shape)
    used = (ivar > 0) & np.isfinite(v) & np.isfinite(ivar) & np.isfinite(flux)
    var = np.where(used, 1.0 / np.where(used, ivar, 1.0) + np.where(used, v, 0.0), 1.0)
    r2 = np.where(used, (flux - model_flux) ** 2, 0.0)
    dof = used.sum(axis=1) - n_label
    out = np.full(flux.shape[0], np.nan)
    valid = (dof > 0) & np.all(np.isfinite(r2), axis=1)
    chi2 = np.sum(r2 / var, axis=1)
    out[valid & (chi2 <= dof)] = 0.0
    todo = np.flatnonzero(valid & (chi2 > dof))
    if todo.size:
        out[todo] = np.sqrt(_solve(r2[todo], var[todo], dof[todo].astype(float)))
    return out


def _solve(r2: np.ndarray, var: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """``x >= 0`` with ``sum_j r2_j / (var_j + x) = dof`` per row, where the sum exceeds ``dof`` at ``x = 0``.

    The sum ``f(x)`` decreases from above ``dof`` at 0 to below it at
    ``x = sum r2 / dof``, so the root is bracketed; Newton steps that leave the
    bracket are replaced by bisection.
    """
    lo = np.zeros(len(dof))
    hi = np.sum(r2, axis=1) / dof
    # start from the method-of-moments value (chi2 - dof) / sum_j 1 / var_j
    x = np.clip((np.sum(r2 / var, axis=1) - dof) / np.sum(1.0 / var, axis=1), lo, hi)
    for _ in range(_MAX_ITER):
        shifted = var + x[:, None]
        f = np.sum(r2 / shifted, axis=1) - dof
        fprime = -np.sum(r2 / shifted**2, axis=1)
        lo = np.where(f > 0, x, lo)
        hi = np.where(f < 0, x, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = x - f / fprime
        bisect = ~np.isfinite(step) | (step <= lo) | (step >= hi)
        new = np.where(bisect, 0.5 * (lo + hi), step)
        if np.all(np.abs(new - x) <= _RTOL * np.maximum(new, np.finfo(float).tiny)):
            return new
        x = new
    return x

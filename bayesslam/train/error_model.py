"""Learning the emulator's error model from the out-of-fold fits of training.

Two measurements on the training stars, each made with the fold model that
did not see the star (:func:`bayesslam.train.fold_emulators`):

1. **Per pixel, at the true labels** (:func:`deconvolved_pixel_variance`):
   the out-of-fold residual ``r_ij`` of star i at pixel j has variance
   ``D_j + 1/ivar_ij``, the emulator's own error plus the training spectrum's
   noise. ``D_j`` is its maximum-likelihood estimate with each star's known
   noise taken out (the plain residual variance ``s_j^2`` is mostly noise
   for training spectra of SNR ~10-100).
2. **In label space** (:func:`fit_label_covariance`): each star's
   out-of-fold MAP labels ``theta_hat_i``, fitted with ``D``, and the
   Fisher matrix ``F_i`` of its spectrum there. The emulator's label-space
   error ``eta ~ N(0, Sigma_eta)`` makes the Laplace posterior
   ``N(theta_hat_i, V_i)``, ``V_i = (F_i (I + Sigma_eta F_i)^-1 + Q)^-1``
   (``Q``: the prior's precision); ``Sigma_eta`` maximizes the probability
   of the training labels under these posteriors (a proper score).

:func:`learn_error_model` runs both on a model's fold emulators and returns
the :class:`~bayesslam.emulator.EmulatorErrorModel` with the out-of-fold
labels and their new sigmas.
"""

from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from bayesslam._precision import in_float64
from bayesslam.emulator import Emulator, label_jacobian, marginal_precision
from bayesslam.errors import BayesSlamError
from bayesslam.infer.likelihood import pixel_variance, usable

__all__ = [
    "ErrorModelFitError",
    "deconvolved_pixel_variance",
    "fisher_matrices",
    "fit_label_covariance",
    "laplace_covariance",
]

logger = logging.getLogger(__name__)

#: Fewest stars with finite out-of-fold labels from which a label covariance is fitted.
MIN_STARS = 20


class ErrorModelFitError(BayesSlamError, ValueError):
    """The training stars cannot determine an error model (too few usable stars or pixels)."""


def deconvolved_pixel_variance(residuals: Any, ivar: Any, n_iter: int = 100) -> np.ndarray:
    """Maximum-likelihood emulator variance per pixel with each star's noise known.

    Per pixel j, ``residuals[i, j] ~ N(0, D_j + 1/ivar[i, j])`` over the stars
    with ``ivar > 0``; ``D_j >= 0`` maximizes the likelihood (Fisher scoring
    from the moment estimate).

    Parameters
    ----------
    residuals, ivar : array_like, shape (n_star, n_pix)
        Out-of-fold residuals (observed minus predicted) and inverse variances.
    n_iter : int
        Scoring iterations.

    Returns
    -------
    numpy.ndarray, shape (n_pix,)
        ``D_j``; ``inf`` for pixels without two usable stars.
    """
    r = np.asarray(residuals, dtype=float)
    w = np.asarray(ivar, dtype=float)
    use = (w > 0) & np.isfinite(r)
    noise = np.where(use, 1.0 / np.where(use, w, 1.0), 0.0)
    r2 = np.where(use, r, 0.0) ** 2
    n = use.sum(axis=0)
    d = np.maximum((r2.sum(axis=0) - noise.sum(axis=0)) / np.maximum(n, 1), 0.0)
    for _ in range(n_iter):
        v = np.where(use, d[None, :] + noise, 1.0)
        score = np.sum(np.where(use, (r2 - v) / v**2, 0.0), axis=0)
        info = np.sum(np.where(use, 1.0 / v**2, 0.0), axis=0)
        step = score / np.maximum(info, 1e-300)
        d = np.maximum(d + step, 0.0)
        if np.all(np.abs(step) <= 1e-10 * np.maximum(d, 1e-12)):
            break
    return np.where(n >= 2, d, np.inf)


@in_float64
def fisher_matrices(emulator: Any, labels: Any, ivar: Any) -> np.ndarray:
    """Gauss-Newton (Fisher) matrices ``J^T W J`` of spectra at ``labels``, physical units.

    ``W = 1 / (1/ivar + model_variance)`` on usable pixels, 0 elsewhere.
    ``emulator`` is an :class:`~bayesslam.emulator.Emulator` (analytic
    Jacobian) or any forward model with a ``model_variance`` (``jax.jacfwd``).

    Returns
    -------
    numpy.ndarray, shape (n_star, n_label, n_label)
    """
    labels = np.asarray(labels, dtype=float)
    ivar = np.asarray(ivar, dtype=float)
    var = emulator.model_variance
    w = np.asarray(jnp.where(usable(ivar, var), 1.0 / pixel_variance(ivar, var), 0.0))
    out = np.full((len(labels), labels.shape[1], labels.shape[1]), np.nan)
    rows = np.flatnonzero(np.all(np.isfinite(labels), axis=1))
    for lo in range(0, rows.size, _FISHER_CHUNK):
        chunk = rows[lo:lo + _FISHER_CHUNK]
        # padded to a power of two: a few compiled shapes serve every fold and chunk
        padded = np.resize(chunk, max(16, 1 << int(np.ceil(np.log2(chunk.size)))))
        x = jnp.asarray(labels[padded])
        jac = label_jacobian(emulator, x) if isinstance(emulator, Emulator) else jax.vmap(jax.jacfwd(emulator))(x)
        out[chunk] = np.asarray(_weighted_gram(jac, jnp.asarray(w[padded])))[:chunk.size]
    return out


#: Stars per Jacobian evaluation in :func:`fisher_matrices`.
_FISHER_CHUNK = 256


@jax.jit
def _weighted_gram(jac: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.einsum("spk,sp,spl->skl", jac, w, jac)


def laplace_covariance(fisher: Any, label_covariance: Any, precision: Any) -> np.ndarray:
    """``(F (I + S F)^-1 + Q)^-1``: the Laplace covariance with the label-space error marginalized."""
    a = marginal_precision(jnp.asarray(fisher), jnp.asarray(label_covariance))
    return np.asarray(jnp.linalg.inv(a + jnp.asarray(precision)))


def _covariance_from(params: jax.Array, n_label: int) -> jax.Array:
    lower = jnp.zeros((n_label, n_label)).at[jnp.tril_indices(n_label)].set(params)
    lower = lower.at[jnp.diag_indices(n_label)].set(jnp.exp(jnp.diagonal(lower)))
    return lower @ lower.T


def _negative_log_score(params: jax.Array, fisher: jax.Array, errors: jax.Array, precision: jax.Array,
                        weights: jax.Array) -> jax.Array:
    n_label = errors.shape[1]
    a = marginal_precision(fisher, _covariance_from(params, n_label))
    inverse_v = a + precision  # the posterior precision V^-1
    _, logdet = jnp.linalg.slogdet(inverse_v)
    quad = jnp.einsum("si,sij,sj->s", errors, inverse_v, errors)
    return 0.5 * jnp.sum(weights * (quad - logdet))


_score_value_and_grad = jax.jit(jax.value_and_grad(_negative_log_score))


@in_float64
def fit_label_covariance(errors: Any, fisher: Any, precision: Any, scale: Any | None = None) -> np.ndarray:
    """The label-space error covariance that makes the Laplace posteriors of known stars most probable.

    Maximizes ``sum_i log N(truth_i; theta_hat_i, V_i(S))`` over symmetric
    positive-definite ``S`` (a Cholesky factor with log diagonal), with
    ``V_i(S) = (F_i (I + S F_i)^-1 + Q)^-1``.

    Parameters
    ----------
    errors : array_like, shape (n_star, n_label)
        ``theta_hat - truth`` (rows with NaN are left out).
    fisher : array_like, shape (n_star, n_label, n_label)
        Each spectrum's Fisher matrix at ``theta_hat``.
    precision : array_like, shape (n_label, n_label)
        The prior's precision ``Q`` (:meth:`~bayesslam.infer.priors.LabelPrior.laplace_precision`).
    scale : array_like, shape (n_label,), optional
        Label scales for the optimization (e.g. the training labels' standard
        deviations); default the errors' standard deviations.

    Returns
    -------
    numpy.ndarray, shape (n_label, n_label)
        ``Sigma_eta`` in the units of ``errors``.

    Raises
    ------
    ErrorModelFitError
        With fewer than :data:`MIN_STARS` usable stars.
    """
    errors = np.asarray(errors, dtype=float)
    fisher = np.asarray(fisher, dtype=float)
    ok = np.all(np.isfinite(errors), axis=1) & np.all(np.isfinite(fisher), axis=(1, 2))
    if ok.sum() < MIN_STARS:
        raise ErrorModelFitError(f"{int(ok.sum())} stars with finite out-of-fold labels; a label error model "
                                 f"needs at least {MIN_STARS}.")
    errors, fisher = errors[ok], fisher[ok]
    n_label = errors.shape[1]
    scale = np.std(errors, axis=0) if scale is None else np.asarray(scale, dtype=float)
    scale = np.where(scale > 0, scale, 1.0)
    outer = np.outer(scale, scale)
    ez, fz, qz = errors / scale, fisher * outer, np.asarray(precision, dtype=float) * outer
    # padded (weight 0) to a power of two: one compiled score serves training sets of similar size
    n = len(ez)
    padded = np.resize(np.arange(n), 1 << int(np.ceil(np.log2(n))))
    weights = (np.arange(padded.size) < n).astype(float)
    value_and_grad = _score_value_and_grad
    args = (jnp.asarray(fz[padded]), jnp.asarray(ez[padded]), jnp.asarray(qz), jnp.asarray(weights))
    start = np.zeros(n_label * (n_label + 1) // 2)
    start[np.cumsum(np.arange(1, n_label + 1)) - 1] = np.log(0.3)  # the diagonal of the packed lower triangle
    result = minimize(lambda p: tuple(np.asarray(v, dtype=float) for v in value_and_grad(jnp.asarray(p), *args)),
                      start, jac=True, method="L-BFGS-B")
    if not result.success:
        logger.warning("label error covariance fit: %s (using the last iterate)", result.message)
    return np.asarray(_covariance_from(jnp.asarray(result.x), n_label)) * outer

"""The one log density of a spectrum given labels.

The normalized flux is Gaussian around the emulator's prediction with
covariance ``diag(var) + W W^T``: per pixel j

    var_j = noise_scale**2 / ivar_j + s_j**2 + jitter**2,

where ``s_j**2`` is the emulator's per-pixel variance (the model's
:attr:`~bayesslam.emulator.Emulator.model_variance`: its error model's
``D_j`` when it has one, else the out-of-fold CV residual variance),
``noise_scale`` (default 1) inflates the reported noise and ``jitter``
(default 0) adds a constant variance floor. ``W`` is optional: ``W = J L``
(``n_pix x n_label``, :func:`bayesslam.emulator.error_factor`) carries the
emulator's label-space error into flux to first order
(:mod:`bayesslam.emulator.error_model`), and the density is then NumPyro's
``LowRankMultivariateNormal`` (Woodbury identity, an ``n_label x n_label``
Cholesky: linear in the pixels), for users' own models. bayesslam's own
samplers integrate the label-space error exactly instead, by sampling the
labels the emulator is evaluated at (:func:`bayesslam.infer.model.slam_model`),
and the MAP's Laplace covariance marginalizes it in label space; both use
this module's diagonal density. Pixels with ``ivar_j = 0`` (masked) and
pixels the model could not be trained on (``s_j**2 = inf``) contribute
nothing; with ``W`` their rows of ``W`` are zeroed, so they decouple from the
others, and the observed flux there is replaced by the model's (a residual of
zero), so they add a constant and no gradient. Every inference path in
bayesslam (MAP, NUTS, emcee) uses :func:`flux_distribution`, so the density is
written once.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array
from jax.typing import ArrayLike

__all__ = ["usable", "pixel_variance", "flux_distribution", "observed_flux", "log_likelihood", "chi_square"]


def pixel_variance(
    ivar: ArrayLike,
    model_variance: ArrayLike,
    noise_scale: ArrayLike = 1.0,
    jitter: ArrayLike = 0.0,
) -> Array:
    """Return the per-pixel variance; masked pixels (``ivar == 0``) get variance 1.

    Parameters
    ----------
    ivar : array_like
        Inverse variance of the normalized flux, 0 for masked pixels.
    model_variance : array_like
        Emulator variance ``s_j**2`` (normalized-flux units), broadcastable.
    noise_scale : array_like
        Multiplier of the reported noise sigma.
    jitter : array_like
        Extra noise sigma added in quadrature (normalized-flux units).

    Returns
    -------
    jax.Array
        The variance; finite everywhere (masked pixels are excluded by the
        callers, their placeholder value of 1 keeps gradients finite).
    """
    ivar = jnp.asarray(ivar)
    model_variance = jnp.asarray(model_variance)
    good = usable(ivar, model_variance)
    safe_ivar = jnp.where(good, ivar, 1.0)
    safe_s2 = jnp.where(jnp.isfinite(model_variance), model_variance, 0.0)
    var = noise_scale**2 / safe_ivar + safe_s2 + jitter**2
    return jnp.where(good, var, 1.0)


def usable(ivar: ArrayLike, model_variance: ArrayLike) -> Array:
    """Pixels that enter the likelihood: ``ivar > 0`` and a finite emulator variance."""
    return (jnp.asarray(ivar) > 0) & jnp.isfinite(jnp.asarray(model_variance))


def flux_distribution(
    model_flux: ArrayLike,
    ivar: ArrayLike,
    model_variance: ArrayLike,
    noise_scale: ArrayLike = 1.0,
    jitter: ArrayLike = 0.0,
    error_factor: ArrayLike | None = None,
) -> dist.Distribution:
    """The distribution of the observed normalized flux.

    Without ``error_factor``: independent Normals, masked pixels masked out
    (contribute 0); ``log_prob(flux)`` is per pixel, :func:`log_likelihood`
    sums it. With ``error_factor`` (``(..., n_pix, k)``): a
    ``LowRankMultivariateNormal`` over the pixels, whose ``log_prob`` is per
    star; observe :func:`observed_flux` with it, so that masked pixels
    contribute a constant only.
    """
    ivar = jnp.asarray(ivar)
    var = pixel_variance(ivar, model_variance, noise_scale, jitter)
    good = usable(ivar, model_variance)
    if error_factor is None:
        return dist.Normal(model_flux, jnp.sqrt(var)).mask(good)
    factor = jnp.where(good[..., None], jnp.asarray(error_factor, dtype=var.dtype), 0.0)
    loc = jnp.broadcast_to(jnp.asarray(model_flux), var.shape)
    return dist.LowRankMultivariateNormal(loc, factor, var)


def observed_flux(model_flux: ArrayLike, flux: ArrayLike, ivar: ArrayLike, model_variance: ArrayLike) -> Array:
    """The flux a low-rank :func:`flux_distribution` observes: ``flux``, and ``model_flux`` where unusable."""
    return jnp.where(usable(ivar, model_variance), jnp.asarray(flux), jnp.asarray(model_flux))


def log_likelihood(
    model_flux: ArrayLike,
    flux: ArrayLike,
    ivar: ArrayLike,
    model_variance: ArrayLike,
    noise_scale: ArrayLike = 1.0,
    jitter: ArrayLike = 0.0,
    error_factor: ArrayLike | None = None,
) -> Array:
    """Log likelihood of the normalized flux of each star (summed over pixels).

    With ``error_factor`` the masked pixels add ``-0.5 log(2 pi)`` each (a
    constant), without they add nothing.
    """
    d = flux_distribution(model_flux, ivar, model_variance, noise_scale, jitter, error_factor)
    if error_factor is None:
        return jnp.sum(d.log_prob(jnp.asarray(flux)), axis=-1)
    return d.log_prob(observed_flux(model_flux, flux, ivar, model_variance))


def chi_square(
    model_flux: ArrayLike,
    flux: ArrayLike,
    ivar: ArrayLike,
    model_variance: ArrayLike,
    noise_scale: ArrayLike = 1.0,
    jitter: ArrayLike = 0.0,
) -> Array:
    """Chi-square over unmasked pixels with the likelihood's diagonal variance.

    At a MAP the low-rank part of the covariance does not change it: the
    residual there is orthogonal (in the diagonal metric) to the columns of
    ``J``, which span ``W``.
    """
    ivar = jnp.asarray(ivar)
    var = pixel_variance(ivar, model_variance, noise_scale, jitter)
    resid2 = (jnp.asarray(flux) - model_flux) ** 2 / var
    return jnp.sum(jnp.where(usable(ivar, model_variance), resid2, 0.0), axis=-1)

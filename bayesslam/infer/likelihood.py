"""The one log density of a spectrum given labels.

Per pixel j the normalized flux is Gaussian around the emulator's prediction
with variance

    var_j = noise_scale**2 / ivar_j + s_j**2 + jitter**2,

where ``s_j**2`` is the emulator variance estimated from the out-of-fold CV
residuals of training, ``noise_scale`` (default 1) inflates the reported
noise and ``jitter`` (default 0) adds a constant variance floor. Pixels with
``ivar_j = 0`` (masked) and pixels the model could not be trained on
(``s_j**2 = inf``) contribute nothing. Every inference path in bayesslam
(MAP, NUTS, emcee) uses :func:`flux_distribution`, so the density is written
once.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array
from jax.typing import ArrayLike

__all__ = ["usable", "pixel_variance", "flux_distribution", "log_likelihood", "chi_square"]


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
) -> dist.Distribution:
    """The distribution of the observed normalized flux: masked independent Normals.

    Its ``log_prob(flux)`` summed over pixels is :func:`log_likelihood`.
    Pixels with ``ivar == 0`` are masked out (contribute 0).
    """
    ivar = jnp.asarray(ivar)
    sigma = jnp.sqrt(pixel_variance(ivar, model_variance, noise_scale, jitter))
    return dist.Normal(model_flux, sigma).mask(usable(ivar, model_variance))


def log_likelihood(
    model_flux: ArrayLike,
    flux: ArrayLike,
    ivar: ArrayLike,
    model_variance: ArrayLike,
    noise_scale: ArrayLike = 1.0,
    jitter: ArrayLike = 0.0,
) -> Array:
    """Log likelihood of the normalized flux, summed over the last (pixel) axis."""
    d = flux_distribution(model_flux, ivar, model_variance, noise_scale, jitter)
    return jnp.sum(d.log_prob(jnp.asarray(flux)), axis=-1)


def chi_square(
    model_flux: ArrayLike,
    flux: ArrayLike,
    ivar: ArrayLike,
    model_variance: ArrayLike,
    noise_scale: ArrayLike = 1.0,
    jitter: ArrayLike = 0.0,
) -> Array:
    """Chi-square over unmasked pixels with the same variance as the likelihood."""
    ivar = jnp.asarray(ivar)
    var = pixel_variance(ivar, model_variance, noise_scale, jitter)
    resid2 = (jnp.asarray(flux) - model_flux) ** 2 / var
    return jnp.sum(jnp.where(usable(ivar, model_variance), resid2, 0.0), axis=-1)

"""Posterior-predictive checks: per-star log likelihood, chi-square discrepancies and replicated spectra.

For every star ``i`` and posterior draw ``s`` the forward model is evaluated
at the labels the emulator matches the star at, ``phi_s`` (the
``emulated_<label>`` draws of a model with a label-space error, else the
labels themselves: :func:`bayesslam.infer.model.slam_model`), and the one
density of :mod:`bayesslam.infer.likelihood` gives

* ``log p(y_i | phi_s)``: :func:`~bayesslam.infer.likelihood.log_likelihood`
  of the observed spectrum (summed over the pixels that enter the
  likelihood);
* ``chi2_obs = chi_square(m(phi_s), y_i)`` with the density's variance;
* a replicated spectrum ``y_rep ~`` :func:`~bayesslam.infer.likelihood.flux_distribution`
  at ``phi_s`` (noise and the emulator's per-pixel variance, and the draw's
  ``noise_scale`` / ``jitter`` when they were sampled), and its
  ``chi2_rep = chi_square(m(phi_s), y_rep)``.

The posterior-predictive p-value of the chi-square discrepancy (Gelman, Meng
& Stern 1996) is ``p_i = mean_s(chi2_rep >= chi2_obs)``: near 0 when the
spectrum scatters about its model more than the density allows (missing
noise or emulator error, a bad fit), near 1 when less, roughly uniform over
stars whose spectra the density describes (a little concentrated towards
0.5, as posterior-predictive p-values are).

Pixels that do not enter the likelihood (``ivar == 0``, or pixels the model
could not be trained on: :func:`~bayesslam.infer.likelihood.usable`) enter
none of these; replicated spectra are NaN there. The work is one compiled,
``jax.vmap``-ed block of stars x draws at a time, of at most
``max_elements`` (stars x draws x pixels) values, so a survey never holds
stars x draws x pixels in memory. Each (star, draw) has its own random key,
``fold_in(fold_in(rng_key, star), draw)`` (draw: its index in the flattened
``chain x draw``), so the results do not depend on the block sizes.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayesslam._precision import in_float64
from bayesslam.errors import BayesSlamError
from bayesslam.infer.likelihood import chi_square, flux_distribution, log_likelihood, usable
from bayesslam.infer.model import StaticModel, emulated_site, split_model

__all__ = [
    "PredictiveChecks",
    "PredictiveError",
    "add_predictive_groups",
    "emulated_draws",
    "predictive_checks",
    "replicate_draws",
]

logger = logging.getLogger(__name__)

#: Largest block of (stars x draws x pixels) values one compiled call works on (float64: 32 MiB per array).
MAX_ELEMENTS = 2**22


class PredictiveError(BayesSlamError, ValueError):
    """Inputs of the posterior-predictive checks that do not fit together (shapes of draws, spectra and model)."""


@dataclass(frozen=True)
class PredictiveChecks:
    """Per-star, per-draw log likelihood and chi-square discrepancies, and replicated spectra.

    Attributes
    ----------
    log_likelihood : numpy.ndarray
        ``log p(flux_i | phi_s)`` summed over the star's usable pixels,
        ``(n_chain, n_draw, n_star)``.
    chi2 : numpy.ndarray
        Chi-square of the observed spectrum against the model at the draw,
        ``(n_chain, n_draw, n_star)``.
    chi2_rep : numpy.ndarray
        Chi-square of the draw's replicated spectrum against the same model.
    p_value : numpy.ndarray
        ``mean over draws of (chi2_rep >= chi2)``, ``(n_star,)``.
    n_good : numpy.ndarray
        Pixels that enter the likelihood, per star.
    replicated : numpy.ndarray or None
        Replicated spectra of a thinned subset of the draws,
        ``(n_chain, n_kept, n_star, n_pix)``, NaN at unusable pixels;
        ``None`` when none were asked for.
    replicated_draws : numpy.ndarray or None
        The draw index (within its chain) of each kept draw, ``(n_kept,)``.
    """

    log_likelihood: np.ndarray
    chi2: np.ndarray
    chi2_rep: np.ndarray
    p_value: np.ndarray
    n_good: np.ndarray
    replicated: np.ndarray | None = None
    replicated_draws: np.ndarray | None = None


def emulated_draws(samples: dict[str, np.ndarray], names: Sequence[str],
                   emulated: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The labels the emulator is evaluated at, per draw: ``emulated_<label>`` where sampled, else the label.

    Parameters
    ----------
    samples : dict of numpy.ndarray
        Label draws by name, each ``(n_chain, n_draw, n_star)``.
    names : sequence of str
        Label names, in the model's order.
    emulated : dict of numpy.ndarray, optional
        Draws of the ``emulated_<label>`` sites (same shapes), for a model
        with a label-space error.

    Returns
    -------
    numpy.ndarray
        ``(n_chain, n_draw, n_star, n_label)``.
    """
    emulated = emulated or {}
    return np.stack([np.asarray(emulated.get(emulated_site(name), samples[name]), dtype=float) for name in names],
                    axis=-1)


def replicate_draws(n_chain: int, n_draw: int, n_replicated: int) -> np.ndarray:
    """Draw indices (within each chain) kept for replicated spectra: ``ceil(n / n_chain)`` evenly spaced per chain."""
    if n_replicated <= 0:
        return np.zeros(0, dtype=np.int64)
    per_chain = min(n_draw, -(-int(n_replicated) // n_chain))
    return np.unique(np.round(np.linspace(0, n_draw - 1, per_chain)).astype(np.int64))


def _keys(rng_key: jax.Array, stars: jax.Array, draws: jax.Array) -> jax.Array:
    """One key per (star, draw): ``fold_in(fold_in(rng_key, star), draw)``, ``(n_star, n_draw)``."""
    def per_star(star: jax.Array) -> jax.Array:
        star_key = jax.random.fold_in(rng_key, star)
        return jax.vmap(lambda draw: jax.random.fold_in(star_key, draw))(draws)

    return jax.vmap(per_star)(stars)


def _one(model: Any, phi: jax.Array, scale: jax.Array, jitter: jax.Array, flux: jax.Array, ivar: jax.Array,
         key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Log likelihood, chi2, chi2 of a replicate and the replicate (NaN where unusable) for one star and draw."""
    variance = jnp.asarray(model.model_variance)
    model_flux = jnp.asarray(model(phi), dtype=flux.dtype)
    loglike = log_likelihood(model_flux, flux, ivar, variance, scale, jitter)
    chi2 = chi_square(model_flux, flux, ivar, variance, scale, jitter)
    replicate = flux_distribution(model_flux, ivar, variance, scale, jitter).sample(key)
    chi2_rep = chi_square(model_flux, replicate, ivar, variance, scale, jitter)
    return loglike, chi2, chi2_rep, jnp.where(usable(ivar, variance), replicate, jnp.nan)


@functools.partial(jax.jit, static_argnames=("static_model", "replicate"))
def _block(shared: Any, phi: jax.Array, scale: jax.Array, jitter: jax.Array, flux: jax.Array, ivar: jax.Array,
           stars: jax.Array, draws: jax.Array, rng_key: jax.Array, *, static_model: StaticModel | None,
           replicate: bool) -> tuple[jax.Array, ...]:
    """:func:`_one` over a block: ``phi`` ``(s, d, n_label)``, ``scale``/``jitter`` ``(s, d)``, data ``(s, n_pix)``.

    Returns the log likelihood, chi2 and chi2_rep ``(s, d)``, and with
    ``replicate`` the replicated spectra ``(s, d, n_pix)``.
    """
    model = static_model.value if static_model is not None else shared
    keys = _keys(rng_key, stars, draws)

    def per_star(p, sc, jt, f, w, k):
        return jax.vmap(lambda a, b, c, key: _one(model, a, b, c, f, w, key))(p, sc, jt, k)

    loglike, chi2, chi2_rep, rep = jax.vmap(per_star)(phi, scale, jitter, flux, ivar, keys)
    return (loglike, chi2, chi2_rep, rep) if replicate else (loglike, chi2, chi2_rep)


def _block_sizes(n_star: int, n_draw: int, n_pix: int, max_elements: int) -> tuple[int, int]:
    """Stars and draws per block so that ``stars * draws * n_pix <= max_elements`` (at least one of each)."""
    draws = max(1, min(n_draw, max_elements // max(1, n_pix)))
    stars = max(1, min(n_star, max_elements // max(1, n_pix * draws)))
    return stars, draws


def _run_blocks(shared: Any, static_model: StaticModel | None, phi: np.ndarray, scale: np.ndarray,
                jitter: np.ndarray, flux: np.ndarray, ivar: np.ndarray, draw_index: np.ndarray,
                rng_key: jax.Array, replicate: bool, max_elements: int) -> list[np.ndarray]:
    """Every block of :func:`_block` over stars ``(n_star, n_flat, ...)`` and the draws ``draw_index``.

    ``phi``, ``scale`` and ``jitter`` have the stars first and the flat draws
    ``draw_index`` second. Blocks are padded (repeating the last star or
    draw) to one compiled shape; the padding is dropped.
    """
    n_star, n_flat = phi.shape[:2]
    n_pix = flux.shape[1]
    s, d = _block_sizes(n_star, n_flat, n_pix, max_elements)
    outputs: list[list[list[np.ndarray]]] = []
    for lo in range(0, n_star, s):
        stars = np.minimum(np.arange(lo, lo + s), n_star - 1)
        row: list[list[np.ndarray]] = []
        for dlo in range(0, n_flat, d):
            cols = np.minimum(np.arange(dlo, dlo + d), n_flat - 1)
            out = _block(shared, jnp.asarray(phi[np.ix_(stars, cols)]), jnp.asarray(scale[np.ix_(stars, cols)]),
                         jnp.asarray(jitter[np.ix_(stars, cols)]), jnp.asarray(flux[stars]), jnp.asarray(ivar[stars]),
                         jnp.asarray(stars), jnp.asarray(draw_index[cols]), rng_key, static_model=static_model,
                         replicate=replicate)
            n_s, n_d = min(s, n_star - lo), min(d, n_flat - dlo)
            row.append([np.asarray(a)[:n_s, :n_d] for a in out])
        outputs.append([np.concatenate(parts, axis=1) for parts in zip(*row)])
    return [np.concatenate(parts, axis=0) for parts in zip(*outputs)]


@in_float64
def predictive_checks(
    model: Any,
    flux: np.ndarray,
    ivar: np.ndarray,
    labels: np.ndarray,
    *,
    rng_key: jax.Array,
    noise_scale: np.ndarray | None = None,
    jitter: np.ndarray | None = None,
    n_replicated: int = 0,
    max_elements: int = MAX_ELEMENTS,
) -> PredictiveChecks:
    """Per-star posterior-predictive log likelihood, chi-square discrepancies, p-values and replicated spectra.

    Parameters
    ----------
    model : ForwardModel
        The emulator: ``model(labels) -> flux`` with ``model_variance``.
    flux, ivar : numpy.ndarray
        The spectra sampled, ``(n_star, n_pix)``, as the sampler saw them
        (``ivar == 0`` on masked pixels).
    labels : numpy.ndarray
        The labels the emulator is evaluated at per draw (the
        ``emulated_<label>`` draws for a model with a label-space error:
        :func:`emulated_draws`), ``(n_chain, n_draw, n_star, n_label)``.
    rng_key : jax.Array
        Key of the replicated spectra.
    noise_scale, jitter : numpy.ndarray, optional
        Draws of the noise-inflation parameters ``(n_chain, n_draw, n_star)``
        when they were sampled (default 1 and 0).
    n_replicated : int
        About this many draws per star (``ceil(n / n_chain)`` per chain,
        evenly spaced: :func:`replicate_draws`) keep their replicated
        spectra; 0 keeps none. The p-values use every draw either way.
    max_elements : int
        Largest stars x draws x pixels block computed at once.

    Returns
    -------
    PredictiveChecks

    Raises
    ------
    PredictiveError
        If the shapes disagree. (A star with a non-finite draw gets NaN
        log likelihoods at those draws and a NaN p-value, with a warning.)
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=float))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=float))
    labels = np.asarray(labels, dtype=float)
    if labels.ndim != 4 or labels.shape[2] != flux.shape[0] or flux.shape != ivar.shape:
        raise PredictiveError(f"labels must be (n_chain, n_draw, n_star, n_label) for {flux.shape[0]} spectra of "
                              f"flux and ivar shaped alike; got labels {labels.shape}, flux {flux.shape}, ivar "
                              f"{ivar.shape}.")
    n_chain, n_draw, n_star, n_label = labels.shape
    broken = ~np.all(np.isfinite(labels), axis=(0, 1, 3))
    if np.any(broken):
        logger.warning("%d star(s) have non-finite draws; their log likelihood and p-value are NaN.",
                       int(broken.sum()))
    variance = np.asarray(model.model_variance, dtype=float)
    if variance.shape != (flux.shape[1],):
        raise PredictiveError(f"the model has {variance.size} pixels, the spectra {flux.shape[1]}.")
    shape = (n_chain, n_draw, n_star)
    scale = np.ones(shape) if noise_scale is None else np.broadcast_to(np.asarray(noise_scale, dtype=float), shape)
    extra = np.zeros(shape) if jitter is None else np.broadcast_to(np.asarray(jitter, dtype=float), shape)

    def stars_first(a: np.ndarray) -> np.ndarray:  # (chain, draw, star, ...) -> (star, chain * draw, ...)
        return np.moveaxis(a, 2, 0).reshape(n_star, n_chain * n_draw, *a.shape[3:])

    shared, static_model = split_model(model)
    phi, sc, jt = stars_first(labels), stars_first(scale), stars_first(extra)
    flat = np.arange(n_chain * n_draw)
    loglike, chi2, chi2_rep = _run_blocks(shared, static_model, phi, sc, jt, flux, ivar, flat, rng_key, False,
                                          max_elements)

    def draws_first(a: np.ndarray) -> np.ndarray:  # (star, chain * draw) -> (chain, draw, star)
        return np.moveaxis(a.reshape(n_star, n_chain, -1), 0, -1)

    kept = replicate_draws(n_chain, n_draw, n_replicated)
    replicated = None
    if kept.size:
        pick = (np.arange(n_chain)[:, None] * n_draw + kept[None, :]).reshape(-1)  # flat indices, chain-major
        *_, rep = _run_blocks(shared, static_model, phi[:, pick], sc[:, pick], jt[:, pick], flux, ivar, pick,
                              rng_key, True, max_elements)
        replicated = np.moveaxis(rep.reshape(n_star, n_chain, kept.size, -1), 0, 2)  # chain, kept, star, pix
    p_value = np.where(broken, np.nan, np.mean(chi2_rep >= chi2, axis=1))
    n_good = np.sum(np.asarray(usable(ivar, variance)), axis=1)
    logger.info("posterior-predictive chi2 p-values of %d star(s): median %.2f, %d below 0.01", n_star,
                float(np.median(p_value)), int(np.sum(p_value < 0.01)))
    return PredictiveChecks(draws_first(loglike), draws_first(chi2), draws_first(chi2_rep), p_value, n_good,
                            replicated, kept if kept.size else None)


def add_predictive_groups(idata: az.InferenceData, checks: PredictiveChecks, flux: np.ndarray, ivar: np.ndarray,
                          model: Any) -> az.InferenceData:
    """Add the observed data, constant data, log likelihood and (if any) posterior-predictive groups to ``idata``.

    ``observed_data.flux`` (dims ``star``, ``pixel``; NaN where the pixel
    does not enter the likelihood), ``constant_data.ivar`` (0: masked) and
    ``constant_data.model_variance`` (dim ``pixel``; ``inf``: untrained),
    ``log_likelihood.flux`` (``chain``, ``draw``, ``star``: each star's
    total over its pixels) and, with replicated spectra,
    ``posterior_predictive.flux`` (``chain``, ``draw``, ``star``,
    ``pixel``; its ``draw`` coordinate names the posterior draws kept).
    Flux-like arrays are stored in float32; a ``wavelength`` coordinate
    along ``pixel`` when the model has ``wave``. ArviZ finds the variable
    ``flux`` in each group, so ``az.plot_ppc(idata)`` works; the per-star
    log likelihood makes each star one observation of ``az.loo`` /
    ``az.waic``.

    Returns
    -------
    arviz.InferenceData
        ``idata``, changed in place.
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=float))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=float))
    variance = np.asarray(model.model_variance, dtype=float)
    good = np.asarray(usable(ivar, variance))
    stars = idata.posterior["star"].values
    n_pix = flux.shape[1]
    coords: dict[str, Any] = {"star": stars, "pixel": np.arange(n_pix)}
    wave = getattr(model, "wave", None)
    if wave is not None:
        coords["wavelength"] = ("pixel", np.asarray(wave, dtype=float))
    observed = xr.Dataset({"flux": (("star", "pixel"), np.where(good, flux, np.nan).astype(np.float32))},
                          coords=coords)
    constant = xr.Dataset({"ivar": (("star", "pixel"), ivar.astype(np.float32)),
                           "model_variance": (("pixel",), variance)}, coords=coords)
    post = idata.posterior
    log_like = xr.Dataset({"flux": (("chain", "draw", "star"), checks.log_likelihood)},
                          coords={"chain": post["chain"].values, "draw": post["draw"].values, "star": stars})
    groups: dict[str, xr.Dataset] = {"observed_data": observed, "constant_data": constant, "log_likelihood": log_like}
    if checks.replicated is not None:
        draws = post["draw"].values[checks.replicated_draws]
        groups["posterior_predictive"] = xr.Dataset(
            {"flux": (("chain", "draw", "star", "pixel"), checks.replicated.astype(np.float32))},
            coords={**coords, "chain": post["chain"].values, "draw": draws})
    idata.add_groups(groups)
    return idata

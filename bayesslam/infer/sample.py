"""Full posteriors: NumPyro NUTS and emcee on the same log density, results as ArviZ data.

Both samplers use :func:`bayesslam.infer.model.slam_model`: NUTS runs it directly,
emcee gets its log density (``numpyro.infer.util.log_density``) jitted and
vectorized over walkers. Results are a :class:`Posterior`, which holds an
ArviZ ``InferenceData`` (convertible to ``xarray.DataTree`` with
:meth:`Posterior.to_datatree`) with a ``star`` dimension and one variable per
label, plus a per-star summary (median, 16/84 quantiles, sd, R-hat, bulk
ESS, divergences). For a model with a label-space error
(:mod:`bayesslam.emulator.error_model`) both samplers also sample the labels
at which the emulator matches each star (the ``emulated_<label>`` sites of
:func:`~bayesslam.infer.model.slam_model`): the error is integrated out
exactly, and only the labels are returned as posterior draws. On request
(``log_likelihood=True``, as the pipeline asks) the result also holds the
material of posterior-predictive checks
(:mod:`bayesslam.infer.predictive`): the observed flux and ivar, each star's
log likelihood at each draw (at the emulated labels where they were sampled)
and its chi2 p-value; replicated spectra on request.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import potential_energy
from tqdm.auto import tqdm

from bayesslam._precision import in_float64
from bayesslam.errors import BayesSlamError, SpectrumValidationError
from bayesslam.infer.map import check_spectra, fit_map
from bayesslam.infer.model import (
    NoiseModel,
    StaticModel,
    emulated_site,
    label_error_labels,
    slam_model,
    split_model,
)
from bayesslam.infer.nuts import build_nuts_runner
from bayesslam.infer.predictive import add_predictive_groups, emulated_draws, predictive_checks
from bayesslam.infer.priors import LabelPrior, default_prior, prior_record
from bayesslam.infer.results import (
    MapResult,
    Posterior,
    SamplingError,
    summarize,
    to_inference_data,
)

__all__ = ["sample_nuts", "map_start"]

logger = logging.getLogger(__name__)


def prepare_inputs(model, flux, ivar, prior, identifiers):
    flux, ivar = check_spectra(model, flux, ivar)
    empty = np.where(~np.any(ivar > 0, axis=1))[0]
    if empty.size:
        raise SpectrumValidationError(f"spectra {empty.tolist()} have no unmasked pixel; remove them first.")
    prior = prior or default_prior(model)
    ids = tuple(identifiers) if identifiers is not None else tuple(f"star{i}" for i in range(flux.shape[0]))
    if len(ids) != flux.shape[0]:
        raise SpectrumValidationError(f"{len(ids)} identifiers for {flux.shape[0]} spectra.")
    return flux, ivar, prior, ids


def initial_labels(model, prior: LabelPrior, flux, ivar, init_labels,
                    init_sigma=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Starting labels and their scale (the MAP's Laplace sigmas unless labels are given)."""
    if init_labels is not None:
        expected = (flux.shape[0], len(prior.names))
        labels = np.atleast_2d(np.asarray(init_labels, dtype=float))
        sigma = None if init_sigma is None else np.atleast_2d(np.asarray(init_sigma, dtype=float))
        for name, value in (("init_labels", labels), ("init_sigma", sigma)):
            if value is not None and value.shape != expected:
                raise SamplingError(f"{name} has shape {value.shape}; expected (n_star, n_label) = {expected}.")
        if not np.all(np.isfinite(labels)):
            raise SamplingError("init_labels contain NaN or inf; give finite starting labels or omit them (MAP).")
        return labels, sigma
    return map_start(fit_map(model, flux, ivar, prior=prior), prior)


def map_start(fit: MapResult, prior: LabelPrior) -> tuple[np.ndarray, np.ndarray]:
    """Samplers' starting labels and scales from MAP fits.

    Stars the MAP could not fit (NaN labels: no data) start from their
    coarse-grid point with the prior's standard deviation as scale.
    """
    unfitted = ~np.isfinite(fit.labels)
    width = np.diff(np.asarray(prior.bounds, dtype=float), axis=1)[:, 0] / np.sqrt(12.0)
    return np.where(unfitted, fit.start, fit.labels), np.where(unfitted, width, fit.sigma)


def _in_precision(model, emulator_dtype: str | None):
    """The model with its arrays in ``emulator_dtype`` (models without ``astype`` are used as they are)."""
    if emulator_dtype not in ("float32", "float64", None):
        raise BayesSlamError(f"emulator_dtype must be 'float32', 'float64' or None, not {emulator_dtype!r}.")
    if emulator_dtype is None or not hasattr(model, "astype"):
        return model
    return model.astype(emulator_dtype)


@functools.lru_cache(maxsize=8)
def _nuts_runner(prior: LabelPrior, noise: NoiseModel, label_error: tuple[int, ...], num_warmup: int, num_samples: int,
                 target_accept_prob: float, max_tree_depth: int, n_lanes: int, static_model: StaticModel | None):
    """NUTS (:func:`bayesslam.infer.nuts.build_nuts_runner`) on the potential of :func:`slam_model` for one star.

    The model is the runner's ``shared`` argument (a pytree, e.g. an
    :class:`~bayesslam.emulator.Emulator`), so one compiled runner serves
    every model of the same shapes; runners are kept for equal priors and
    settings (compiling NUTS takes seconds). A model that is not a pytree is
    part of the key instead (``static_model``). The unconstrained sites of
    one star are a flat vector in the order of :func:`_site_supports`; the
    potential is NumPyro's ``potential_energy`` of the model with a plate of
    one star.
    """
    names = tuple(_site_supports(prior, noise, label_error))

    def potential(z: jax.Array, data: tuple[jax.Array, jax.Array], shared: Any) -> jax.Array:
        flux, ivar = data
        model = static_model.value if static_model is not None else shared
        params = {name: z[k][None] for k, name in enumerate(names)}
        bound = functools.partial(slam_model, model, prior=prior, noise=noise, label_error=label_error)
        return potential_energy(bound, (ivar[None], flux[None]), {}, params)

    return build_nuts_runner(potential, num_warmup=num_warmup, num_samples=num_samples, n_lanes=n_lanes,
                             target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                             dense_mass=bool(label_error))


def _site_supports(prior: LabelPrior, noise: NoiseModel, label_error: tuple[int, ...] = ()) -> dict[str, Any]:
    """Every sampled site with its support, in the order of NUTS's flat unconstrained vector."""
    supports = {name: d.support for name, d in zip(prior.names, prior.marginals)}
    if noise.fit_scale:
        supports["noise_scale"] = constraints.positive
    if noise.fit_jitter:
        supports["jitter"] = constraints.positive
    for k in label_error:
        supports[emulated_site(prior.names[k])] = constraints.real
    return supports


def _unconstrained_start(prior: LabelPrior, noise: NoiseModel, labels: np.ndarray,
                         sigma: np.ndarray | None, label_error: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Starting points and initial diagonal inverse mass matrices in NUTS's unconstrained space.

    With Laplace sigmas the inverse mass matrix is their square carried
    through the transform (capped at 1, the scale of a label's prior tail
    when the MAP sits on the box edge); without, the identity. The
    ``emulated_<label>`` sites start at the labels, with the labels' squared
    sigmas (their own units: they are unbounded).
    """
    columns, inverse_mass = [], []
    for k, support in enumerate(prior.marginals):
        to_free = biject_to(support.support).inv
        x = jnp.asarray(labels[:, k])
        u = to_free(x)
        columns.append(np.asarray(u))
        if sigma is None:
            inverse_mass.append(np.ones(len(x)))
        else:
            dudx = np.exp(np.asarray(to_free.log_abs_det_jacobian(x, u)))
            var = (np.nan_to_num(sigma[:, k], nan=np.inf) * dudx) ** 2
            inverse_mass.append(np.clip(np.nan_to_num(var, nan=1.0, posinf=1.0), 1e-8, 1.0))
    if noise.fit_scale:
        columns.append(np.zeros(len(labels)))
        inverse_mass.append(np.ones(len(labels)))
    if noise.fit_jitter:
        columns.append(np.full(len(labels), float(np.log(0.1 * noise.jitter_prior_scale))))
        inverse_mass.append(np.ones(len(labels)))
    for k in label_error:
        columns.append(np.asarray(labels[:, k], dtype=float))
        scale = np.ones(len(labels)) if sigma is None else np.nan_to_num(sigma[:, k], nan=1.0, posinf=1.0)
        inverse_mass.append(np.clip(scale**2, 1e-12, None))
    return np.column_stack(columns), np.column_stack(inverse_mass)


#: ``jax.random.fold_in`` of a sampler's key that seeds the replicated spectra (leaves the sampler's own streams as
#: they were).
PREDICTIVE_STREAM = 0x50504331


def criticize(idata, model, flux: np.ndarray, ivar: np.ndarray, labels: np.ndarray, rng_key: jax.Array,
              noise_scale: np.ndarray | None, jitter: np.ndarray | None, posterior_predictive: int) -> np.ndarray:
    """Posterior-predictive checks of sampled stars, into ``idata``.

    :func:`~bayesslam.infer.predictive.predictive_checks` with the
    sampler's draws; adds the observed data, constant data, log likelihood and (with
    ``posterior_predictive`` > 0) replicated spectra to ``idata`` and
    returns the stars' chi2 p-values.
    """
    checks = predictive_checks(model, flux, ivar, labels, rng_key=rng_key, noise_scale=noise_scale, jitter=jitter,
                               n_replicated=posterior_predictive)
    add_predictive_groups(idata, checks, flux, ivar, model)
    return checks.p_value


#: Runs (star-chains) per compiled call, as a multiple of the number of lanes.
RUNS_PER_LANE = 32


@in_float64
def sample_nuts(
    model,
    flux: np.ndarray,
    ivar: np.ndarray,
    *,
    rng_key: jax.Array,
    prior: LabelPrior | None = None,
    noise: NoiseModel = NoiseModel(),
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 1,
    batch_size: int = 128,
    init_labels: np.ndarray | None = None,
    init_sigma: np.ndarray | None = None,
    identifiers: Sequence[str] | None = None,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    emulator_dtype: str | None = "float32",
    log_likelihood: bool = False,
    posterior_predictive: int = 0,
    progress: bool = True,
) -> Posterior:
    """Sample the label posteriors of one or many stars with NUTS.

    Every star and chain is an independent NUTS run with its own warm-up
    (step size and diagonal mass matrix). ``batch_size`` runs advance
    together, one batched leapfrog step at a time, each on its own
    trajectory, and a run that ends hands its lane to the next run
    (:mod:`bayesslam.infer.nuts`; ``benchmarks/bench_inference.py`` compares
    it with vmapped NumPyro NUTS and a loop over ``numpyro.infer.MCMC``).
    When the start is the MAP, its Laplace sigmas set the initial mass
    matrix.

    Parameters
    ----------
    model : ForwardModel
        The emulator.
    flux, ivar : numpy.ndarray
        Normalized spectra on the model grid, ``(n_star, n_pix)`` or ``(n_pix,)``.
    rng_key : jax.Array
        ``jax.random.key(seed)``.
    prior : LabelPrior, optional
        Default: uniform over the training box.
    noise : NoiseModel
        Optional noise-inflation parameters.
    num_warmup, num_samples, num_chains : int
        Per star.
    batch_size : int
        Runs (star-chains) advanced together: one batched emulator gradient
        per step; larger batches cost less per run and step (docs/benchmarks.md).
        When the queue of a call runs dry the gradient shrinks with the lanes
        still busy.
    init_labels : numpy.ndarray, optional
        Starting labels ``(n_star, n_label)``; default the MAP.
    init_sigma : numpy.ndarray, optional
        Label scales at ``init_labels`` (e.g. ``MapResult.sigma``), for the
        initial mass matrix; default the MAP's Laplace sigmas when the start
        is the MAP, else unit scales in the unconstrained space.
    identifiers : sequence of str, optional
        Star names for the ``star`` coordinate.
    target_accept_prob, max_tree_depth
        NUTS settings.
    emulator_dtype : {"float32", "float64", None}
        Precision of the emulator inside NUTS (the likelihood is summed in
        float64 either way). Float32 makes every gradient cheaper; on the
        default model it moves the log density by ~3e-4 and its gradient by
        ~1e-6 relative, far below what changes an accept/reject decision
        (``tests/test_sample.py`` checks that both give the same posterior).
        ``None`` keeps the model's own precision.
    log_likelihood : bool
        Add the material of posterior-predictive checks to the result
        (:mod:`bayesslam.infer.predictive`): the groups ``observed_data``
        (flux), ``constant_data`` (ivar, the emulator's variance) and
        ``log_likelihood`` (each star's log likelihood at each draw, with
        the model in its own precision), and each star's
        posterior-predictive p-value of chi2 as ``summary["ppc_chi2_p"]``.
        Off by default here (the draws alone, e.g. for SBC and tests);
        :func:`bayesslam.pipeline.sample_labels` turns it on.
    posterior_predictive : int
        Also keep replicated spectra of about this many draws per star as
        the group ``posterior_predictive`` (for ``arviz.plot_ppc``); 0:
        none. A positive value implies ``log_likelihood``.
    progress : bool
        Progress bar over star-chains.

    Returns
    -------
    Posterior
    """
    flux, ivar, prior, ids = prepare_inputs(model, flux, ivar, prior, identifiers)
    start, start_sigma = initial_labels(model, prior, flux, ivar, init_labels, init_sigma)
    n_star = flux.shape[0]
    label_error = label_error_labels(model)
    supports = _site_supports(prior, noise, label_error)
    bounds = prior.bounds
    span = np.where(np.isfinite(bounds[:, 1] - bounds[:, 0]), bounds[:, 1] - bounds[:, 0], 1.0)
    start = np.clip(start, bounds[:, 0] + 1e-6 * span, bounds[:, 1] - 1e-6 * span)
    z_start, mass_start = _unconstrained_start(prior, noise, start, start_sigma, label_error)
    star_of = np.repeat(np.arange(n_star), num_chains)  # one run per (star, chain)
    n_run = star_of.size
    n_lanes = max(1, min(batch_size, n_run))
    chunk = min(n_run, n_lanes * RUNS_PER_LANE)
    emulator = _in_precision(model, emulator_dtype)
    shared, static_model = split_model(emulator)
    runner = _nuts_runner(prior, noise, label_error, num_warmup, num_samples, target_accept_prob, max_tree_depth,
                          n_lanes, static_model)
    keys = jax.random.split(rng_key, n_run)
    z_draws, div_draws = [], []
    n_lock = 0
    batches: dict[int, int] = {}
    steps = []
    with tqdm(total=n_run, disable=not progress, desc="NUTS", unit="run") as bar:
        for lo in range(0, n_run, chunk):
            idx = np.arange(lo, lo + chunk)
            n_valid = int(min(chunk, n_run - lo))
            idx = np.where(idx < n_run, idx, lo)  # pad the last chunk (padding runs are never started)
            stars = star_of[idx]
            out = runner(keys[idx], jnp.asarray(z_start[stars]), jnp.asarray(mass_start[stars]),
                         (jnp.asarray(flux[stars]), jnp.asarray(ivar[stars])), n_valid, bar.update, shared=shared)
            z_draws.append(out.z[:n_valid])
            div_draws.append(out.diverging[:n_valid])
            steps.append(out.num_steps[:n_valid])
            n_lock += out.n_lockstep
            for size, count in out.gradient_batches.items():
                batches[size] = batches.get(size, 0) + count
    steps_all = np.concatenate(steps)
    logger.info("NUTS: %.1f / %.1f leapfrog steps per warm-up / sampling iteration; %d in %d batched steps of "
                "%d lanes (%.0f%% used; gradient batch size: steps %s)", steps_all[:, :num_warmup].mean(),
                steps_all[:, num_warmup:].mean(), steps_all.sum(), n_lock, n_lanes,
                100.0 * steps_all.sum() / max(1, n_lock * n_lanes), batches)
    z_all = np.concatenate(z_draws)  # run, draw, site
    shape = (n_star, num_chains, num_samples)
    samples, emulated = {}, {}
    emulated_names = {emulated_site(prior.names[k]) for k in label_error}
    for k, (name, support) in enumerate(supports.items()):
        values = np.asarray(biject_to(support)(jnp.asarray(z_all[..., k])))
        (emulated if name in emulated_names else samples)[name] = np.moveaxis(values.reshape(shape), 0, -1)
    div_per_star = np.moveaxis(np.concatenate(div_draws).reshape(shape), 0, -1)
    n_div = div_per_star.sum(axis=(0, 1))
    idata = to_inference_data(samples, div_per_star, ids, "nuts", prior_record(prior))
    summary = summarize(idata, prior.names, n_div)
    if log_likelihood or posterior_predictive:
        summary["ppc_chi2_p"] = criticize(idata, model, flux, ivar, emulated_draws(samples, prior.names, emulated),
                                          jax.random.fold_in(rng_key, PREDICTIVE_STREAM), samples.get("noise_scale"),
                                          samples.get("jitter"), posterior_predictive)
    n_bad = int(np.sum(n_div > 0))
    if n_bad:
        logger.warning("%d star(s) had divergent transitions; see Posterior.summary['n_divergent'].", n_bad)
    return Posterior(idata, tuple(prior.names), ids, "nuts", summary)

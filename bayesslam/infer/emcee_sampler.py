"""emcee on the model's log density: an ensemble sampler for the labels of one star at a time.

The density is :func:`bayesslam.infer.model.slam_model`'s (``numpyro.infer.util.log_density``),
jitted and vectorized over walkers (``vectorize=True``), so emcee and NUTS sample
the same posterior.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Sequence

import emcee
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import log_density
from tqdm.auto import tqdm

from bayesslam._precision import in_float64
from bayesslam.errors import BayesSlamError
from bayesslam.infer.model import NoiseModel, StaticModel, emulated_site, label_error_labels, slam_model, split_model
from bayesslam.infer.priors import LabelPrior, prior_record
from bayesslam.infer.results import (
    Posterior,
    SamplingError,
    summarize,
    to_inference_data,
)
from bayesslam.infer.predictive import emulated_draws
from bayesslam.infer.sample import PREDICTIVE_STREAM, criticize, initial_labels, prepare_inputs

__all__ = ["log_posterior_fn", "sample_emcee"]

logger = logging.getLogger(__name__)


@functools.partial(jax.jit, static_argnames=("prior", "static_model", "label_error"))
def _walker_log_density(shared: Any, theta: jax.Array, flux: jax.Array, ivar: jax.Array, *, prior: LabelPrior,
                        static_model: StaticModel | None, label_error: tuple[int, ...] = ()) -> jax.Array:
    """Log density of each walker's labels (and emulated labels; compiled once per prior and model shapes)."""
    model = static_model.value if static_model is not None else shared
    bound = functools.partial(slam_model, model, prior=prior, noise=NoiseModel(), label_error=label_error)
    names = tuple(prior.names) + tuple(emulated_site(prior.names[k]) for k in label_error)
    n_label = len(prior.names)

    def one(values: jax.Array) -> jax.Array:
        params = {name: values[k][None] for k, name in enumerate(names)}
        lp, _ = log_density(bound, (ivar[None], flux[None]), {}, params)
        return jnp.where(prior.in_support(values[:n_label]), lp, -jnp.inf)

    return jax.vmap(one)(theta)


def log_posterior_fn(model, prior: LabelPrior, noise: NoiseModel = NoiseModel()):
    """The model's log density of label vectors for one star, jitted and vectorized.

    Returns
    -------
    callable
        ``f(values (n_walkers, n_dim), flux (n_pix,), ivar (n_pix,)) -> (n_walkers,)``,
        ``-inf`` outside the prior's support. ``values`` are the labels, then
        (for a model with a label-space error) the ``emulated_<label>`` values
        of the labels :func:`~bayesslam.infer.model.label_error_labels`
        names: ``n_dim = n_label + len(label_error_labels(model))``. Noise
        inflation parameters are not supported here.

    Raises
    ------
    BayesSlamError
        If ``noise`` asks for noise-inflation parameters.
    """
    if noise.fit_scale or noise.fit_jitter:
        raise BayesSlamError("the emcee path samples labels only; switch noise inflation off or use NUTS.")
    shared, static_model = split_model(model)
    return functools.partial(_walker_log_density, shared, prior=prior, static_model=static_model,
                             label_error=label_error_labels(model))


@in_float64
def sample_emcee(
    model,
    flux: np.ndarray,
    ivar: np.ndarray,
    *,
    seed: int,
    prior: LabelPrior | None = None,
    n_walkers: int = 32,
    n_steps: int = 3000,
    n_burn: int = 1000,
    thin: int = 1,
    init_labels: np.ndarray | None = None,
    identifiers: Sequence[str] | None = None,
    log_likelihood: bool = False,
    posterior_predictive: int = 0,
    progress: bool = True,
) -> Posterior:
    """Sample the label posteriors star by star with emcee on the model's log density.

    Walkers start in a small ball (1e-3 of the box width) around the MAP,
    inside the support; emcee's random state is seeded from ``seed``.
    Walkers are reported as ArviZ chains. Ensemble walkers are not
    independent chains, so R-hat over them means nothing: the summary's
    ``r_hat`` is NaN, and its ``ess_bulk`` is the ensemble's effective sample
    size from emcee's integrated autocorrelation time ``tau`` (also in the
    summary as ``autocorr_time``): ``n_walkers * n_kept / tau``, per label.
    A ``tau`` longer than a fiftieth of the kept chain is unreliable (emcee's
    own criterion) and is logged. For a model with a label-space error the
    walkers also move the ``emulated_<label>`` values (started at the
    labels), as NUTS does; only the labels are returned as draws.
    ``log_likelihood`` and ``posterior_predictive`` add the
    posterior-predictive material as for :func:`~bayesslam.infer.sample_nuts`
    (replicated spectra: about ``posterior_predictive`` draws per star,
    spread over the walkers, keyed by ``jax.random.key(seed)`` folded in).
    """
    flux, ivar, prior, ids = prepare_inputs(model, flux, ivar, prior, identifiers)
    start, _ = initial_labels(model, prior, flux, ivar, init_labels)
    label_error = label_error_labels(model)
    logp = log_posterior_fn(model, prior)
    n_dim = len(prior.names) + len(label_error)
    if n_walkers < 2 * n_dim:
        raise SamplingError(f"emcee needs at least {2 * n_dim} walkers for {n_dim} dimensions ({len(label_error)} of "
                            f"them the model's emulated labels); got n_walkers={n_walkers}.")
    names = prior.names
    rng = np.random.default_rng(seed)
    bounds = prior.bounds
    width = np.where(np.isfinite(bounds[:, 1] - bounds[:, 0]), bounds[:, 1] - bounds[:, 0], 1.0)
    chains: list[np.ndarray] = []
    emulated_chains: list[np.ndarray] = []
    taus: list[np.ndarray] = []
    for i in tqdm(range(flux.shape[0]), disable=not progress, desc="emcee", unit="star"):
        f, w = jnp.asarray(flux[i]), jnp.asarray(ivar[i])
        ball = start[i] + 1e-3 * width * rng.standard_normal((n_walkers, len(names)))
        ball = np.clip(ball, bounds[:, 0] + 1e-6 * width, bounds[:, 1] - 1e-6 * width)
        if label_error:
            emulated = ball[:, list(label_error)] + 1e-3 * width[list(label_error)] * rng.standard_normal(
                (n_walkers, len(label_error)))
            ball = np.concatenate([ball, emulated], axis=1)
        initial = np.asarray(logp(jnp.asarray(ball), f, w))
        if not np.all(np.isfinite(initial)):
            raise SamplingError(f"star {ids[i]}: the log density is not finite at the initial walkers.")
        sampler = emcee.EnsembleSampler(
            n_walkers, ball.shape[1], lambda x, f=f, w=w: np.asarray(logp(jnp.asarray(x), f, w)), vectorize=True
        )
        sampler.random_state = np.random.RandomState(int(rng.integers(2**31))).get_state()
        sampler.run_mcmc(ball, n_steps, progress=False)
        full = sampler.get_chain(discard=n_burn, thin=thin)  # (draw, walker, label [+ emulated label])
        chain = full[..., :len(names)]
        chains.append(np.transpose(chain, (1, 0, 2)))
        emulated_chains.append(np.transpose(full[..., len(names):], (1, 0, 2)))
        taus.append(_autocorr_time(chain, ids[i]))
    stacked = np.stack(chains, axis=2)  # walker, draw, star, label
    samples = {name: stacked[..., k] for k, name in enumerate(names)}
    idata = to_inference_data(samples, None, ids, "emcee", prior_record(prior))
    summary = summarize(idata, names, np.zeros(flux.shape[0], dtype=int))
    if log_likelihood or posterior_predictive:
        moved = np.stack(emulated_chains, axis=2)  # walker, draw, star, emulated label
        emulated = {emulated_site(names[k]): moved[..., a] for a, k in enumerate(label_error)}
        summary["ppc_chi2_p"] = criticize(idata, model, flux, ivar, emulated_draws(samples, names, emulated),
                                          jax.random.fold_in(jax.random.key(seed), PREDICTIVE_STREAM), None, None,
                                          posterior_predictive)
    tau = np.stack(taus)  # (star, label)
    n_kept = stacked.shape[0] * stacked.shape[1]
    summary.update(r_hat=np.full_like(tau, np.nan), ess_bulk=n_kept / tau, autocorr_time=tau)
    return Posterior(idata, tuple(names), ids, "emcee", summary)


def _autocorr_time(chain: np.ndarray, identifier: str) -> np.ndarray:
    """emcee's integrated autocorrelation time per label of one star's ensemble ``(draw, walker, label)``."""
    try:
        tau = emcee.autocorr.integrated_time(chain)
    except emcee.autocorr.AutocorrError as short:  # the estimate exists; say so in bayesslam's words
        tau = short.tau
        logger.info("star %s: autocorrelation time %s steps is long against %d kept steps; its ESS is a rough "
                    "estimate (run more steps)", identifier, np.round(tau, 1).tolist(), chain.shape[0])
    return np.asarray(tau, dtype=float)

"""Population inference from per-star posterior draws: importance reweighting (Hogg, Myers & Bovy 2010).

Each star ``i`` was sampled alone under a sampling prior ``pi`` (recorded in
the posterior file by :func:`bayesslam.infer.sample_nuts` and
:func:`~bayesslam.infer.sample_emcee`). Under a population model
``p(x | Lambda)`` the likelihood of the hyperparameters is, up to a constant,

    L(Lambda) = prod_i  (1/S) sum_s  p(x_is | Lambda) / pi(x_is),

the Monte Carlo estimate of each star's evidence ratio from its ``S``
draws ``x_is`` (as in bilby's ``hyper`` module and gwpopulation). It is
sampled with the package's batched NUTS (:mod:`bayesslam.infer.nuts`), so
that many populations (repeated simulations) share one compiled sampler
(:func:`reweight_populations`). The estimate is only as good as the draws that
support it: per star the effective number of draws ``n_eff_i = (sum_s
w_is)**2 / sum_s w_is**2`` (``w_is`` the weights above) and the Monte Carlo
variance of ``log L``, ``sum_i (1 / n_eff_i - 1 / S)``, are computed over the
hyperposterior and reported; a warning says when they are too small
(a star with ``n_eff`` of a few draws, or a variance above 1, means the
hyperposterior is not trustworthy: draw more per star, or use the joint
model of :mod:`bayesslam.population.joint`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.scipy.special import logsumexp
from numpyro.infer import init_to_median
from tqdm.auto import tqdm

from bayesslam._precision import in_float64
from bayesslam.infer.nuts import model_nuts_runner
from bayesslam.infer.priors import PriorError, prior_from_record
from bayesslam.infer.results import PRIOR_ATTRIBUTE, Posterior
from bayesslam.population.distributions import PopulationError, PopulationModel
from bayesslam.population.result import PopulationResult

__all__ = ["StarDraws", "combine_draws", "draws_from_posterior", "reweight_population", "reweight_populations",
           "effective_draws"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StarDraws:
    """Per-star posterior draws of one label with the log sampling-prior density at each draw.

    Attributes
    ----------
    label : str
    identifiers : tuple of str
    values : numpy.ndarray, ``(n_star, n_draw)``
    log_prior : numpy.ndarray, ``(n_star, n_draw)``
        Log density of the prior the draws were sampled under (this label's
        marginal), at each draw.
    bounds : (float, float)
        The label's range (the sampling prior's support).
    """

    label: str
    identifiers: tuple[str, ...]
    values: np.ndarray
    log_prior: np.ndarray
    bounds: tuple[float, float]

    def __post_init__(self) -> None:
        values, log_prior = np.asarray(self.values, dtype=float), np.asarray(self.log_prior, dtype=float)
        if values.ndim != 2 or values.shape != log_prior.shape or values.shape[0] != len(self.identifiers):
            raise PopulationError(f"draws {values.shape} and log prior {log_prior.shape} must both be "
                                  f"(n_star = {len(self.identifiers)}, n_draw).")
        if values.shape[0] < 2 or values.shape[1] < 2:
            raise PopulationError(f"population inference needs at least 2 stars with 2 draws each, got {values.shape}.")
        bad = ~np.all(np.isfinite(values) & np.isfinite(log_prior), axis=1)
        if bad.any():
            names = [self.identifiers[i] for i in np.flatnonzero(bad)[:5]]
            raise PopulationError(f"{int(bad.sum())} star(s) have non-finite draws or draws outside their sampling "
                                  f"prior (e.g. {names}); remove them from the posterior first.")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "log_prior", log_prior)

    def thinned(self, max_draws: int | None, seed: int = 0) -> "StarDraws":
        """At most ``max_draws`` draws per star, a random subset without replacement (the same for every star)."""
        n_draw = self.values.shape[1]
        if max_draws is None or max_draws >= n_draw:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(n_draw, size=int(max_draws), replace=False))
        return StarDraws(self.label, self.identifiers, self.values[:, keep], self.log_prior[:, keep], self.bounds)


def combine_draws(parts: Sequence[StarDraws]) -> StarDraws:
    """The stars of several :class:`StarDraws` of one label as one sample (e.g. the posterior files of a survey's chunks).

    Every part keeps its own sampling prior (it is divided out per draw);
    parts with different numbers of draws per star are cut to the smallest
    number (each star's first draws, still draws of its posterior).

    Raises
    ------
    PopulationError
        If the parts are of different labels or label ranges, or a star
        appears in more than one part.
    """
    parts = list(parts)
    if not parts:
        raise PopulationError("no posteriors given.")
    if len(parts) == 1:
        return parts[0]
    if len({p.label for p in parts}) != 1 or len({p.bounds for p in parts}) != 1:
        found = sorted({(p.label, p.bounds) for p in parts})
        raise PopulationError(f"posteriors of different labels or label ranges cannot be combined: {found}; a "
                              "population needs one label over one range (sample the stars with the same model).")
    identifiers = [star for p in parts for star in p.identifiers]
    if len(set(identifiers)) != len(identifiers):
        repeated = sorted({star for star in identifiers if identifiers.count(star) > 1})
        raise PopulationError(f"{len(repeated)} star(s) are in more than one posterior (e.g. {repeated[:5]}); each star "
                              "must count once in a population.")
    n_draw = min(p.values.shape[1] for p in parts)
    if any(p.values.shape[1] != n_draw for p in parts):
        logger.info("posteriors with %s draws per star: the first %d of each used",
                    sorted({p.values.shape[1] for p in parts}), n_draw)
    return StarDraws(parts[0].label, tuple(identifiers), np.concatenate([p.values[:, :n_draw] for p in parts]),
                     np.concatenate([p.log_prior[:, :n_draw] for p in parts]), parts[0].bounds)


def _open_posterior(source: Posterior | az.InferenceData | str | Path) -> az.InferenceData:
    if isinstance(source, Posterior):
        return source.idata
    if isinstance(source, az.InferenceData):
        return source
    path = Path(source)
    if not path.is_file():
        raise PopulationError(f"no posterior file {path}; give the NetCDF that `bayesslam sample` wrote.")
    try:
        return az.from_netcdf(str(path))
    except (OSError, ValueError) as exc:
        raise PopulationError(f"{path} is not an ArviZ NetCDF posterior ({exc}).") from exc


def draws_from_posterior(source: Posterior | az.InferenceData | str | Path, label: str,
                         stars: Sequence[str] | None = None) -> StarDraws:
    """One label's draws of every star, and its sampling prior, from a posterior (file, InferenceData or Posterior).

    Parameters
    ----------
    source : Posterior, arviz.InferenceData, str or Path
        As written by :func:`bayesslam.pipeline.sample_labels` / ``bayesslam sample``.
    label : str
        The label, e.g. ``"fe_h"``.
    stars : sequence of str, optional
        Identifiers to keep (default all).

    Raises
    ------
    PopulationError
        If the label is not in the posterior, the sampling prior is not
        recorded (or cannot be divided out), or a star is unknown.
    """
    idata = _open_posterior(source)
    post = getattr(idata, "posterior", None)
    if post is None or "star" not in post.dims:
        raise PopulationError("the posterior has no per-star draws (a 'posterior' group with a 'star' dimension).")
    if label not in post.data_vars:
        raise PopulationError(f"the posterior has no label {label!r}; it has {sorted(post.data_vars)}.")
    record = post.attrs.get(PRIOR_ATTRIBUTE)
    if record is None:
        raise PopulationError("these draws do not record the prior they were sampled under, so it cannot be divided "
                              "out; sample them again with `bayesslam sample` (version >= 0.4 records it).")
    try:
        prior = prior_from_record(record)
    except PriorError as exc:
        raise PopulationError(str(exc)) from exc
    marginal = prior.marginals[list(prior.names).index(label)]
    identifiers = [str(s) for s in post["star"].values]
    values = np.moveaxis(np.asarray(post[label].values, dtype=float), -1, 0).reshape(len(identifiers), -1)
    if stars is not None:
        missing = sorted(set(stars) - set(identifiers))
        if missing:
            raise PopulationError(f"{len(missing)} star(s) are not in the posterior, e.g. {missing[:5]}.")
        index = [identifiers.index(s) for s in stars]
        identifiers, values = [identifiers[i] for i in index], values[index]
    support = marginal.support
    bounds = (float(getattr(support, "lower_bound", -np.inf)), float(getattr(support, "upper_bound", np.inf)))
    if not np.all(np.isfinite(bounds)):
        raise PopulationError(f"the sampling prior of {label!r} ({type(marginal).__name__}) has an unbounded support; "
                              "population models need a bounded label range.")
    log_prior = np.asarray(marginal.log_prob(jnp.asarray(values)), dtype=float)
    return StarDraws(label, tuple(identifiers), values, log_prior, bounds)


def _log_weights(model: PopulationModel, hyper: dict[str, Any], values: jax.Array, log_prior: jax.Array,
                 bounds: tuple[float, float]) -> jax.Array:
    """``log p(x | Lambda) - log pi(x)`` of every draw, in the draws' precision."""
    hyper = jax.tree_util.tree_map(lambda h: jnp.asarray(h).astype(values.dtype), hyper)
    return model.log_density(values, hyper, bounds) - log_prior


def _hyper_model(values: jax.Array, log_prior: jax.Array, *, population: PopulationModel,
                 bounds: tuple[float, float]) -> None:
    """NumPyro model of the hyperparameters: the reweighted Monte Carlo likelihood of every star."""
    hyper = population.sample_hyper(bounds)
    log_w = _log_weights(population, hyper, values, log_prior, bounds)
    per_star = logsumexp(log_w, axis=1).astype(jnp.float64) - jnp.log(values.shape[1])
    numpyro.factor("population_likelihood", jnp.sum(per_star))


@functools.lru_cache(maxsize=8)
def _hyper_runner(model: PopulationModel, bounds: tuple[float, float], num_warmup: int, num_samples: int,
                  n_lanes: int, shape: tuple[int, int], dtype: str):
    """The package's batched NUTS (:func:`bayesslam.infer.nuts.build_nuts_runner`) on :func:`_hyper_model`.

    One run per population and chain; kept for equal settings, so repeated
    calls (and many populations in one call) compile once. Returns the
    runner, the starting point (the prior median, unconstrained, flat),
    ``unravel`` and NumPyro's ``postprocess`` (unconstrained -> every site,
    deterministic ones included).
    """
    bound = functools.partial(_hyper_model, population=model, bounds=bounds)
    example = (jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))
    return model_nuts_runner(bound, example, init_to_median(num_samples=15), num_warmup=num_warmup,
                             num_samples=num_samples, n_lanes=n_lanes)


def effective_draws(log_weights: np.ndarray) -> np.ndarray:
    """Kish's effective number of draws ``(sum w)**2 / sum w**2`` along the last axis, from log weights."""
    log_weights = np.asarray(log_weights, dtype=float)
    return np.exp(2.0 * _np_logsumexp(log_weights) - _np_logsumexp(2.0 * log_weights))


def _effective_draws_checker(model: PopulationModel, bounds: tuple[float, float]):
    """Compiled ``(hyper draws, values, log_prior) -> effective draws (check, star)``.

    One hyperparameter draw at a time (:func:`jax.lax.map`), so the memory
    is that of one ``star x draw`` weight matrix, not ``check x star x draw``
    (10,000 stars x 1,000 draws x 200 checked draws would be 8 GB in float32).
    """
    def one(hyper: dict[str, jax.Array], values: jax.Array, log_prior: jax.Array) -> jax.Array:
        log_w = _log_weights(model, hyper, values, log_prior, bounds)
        return jnp.exp(2.0 * logsumexp(log_w, axis=-1) - logsumexp(2.0 * log_w, axis=-1))

    return jax.jit(lambda hypers, values, log_prior: jax.lax.map(lambda h: one(h, values, log_prior), hypers))


def _np_logsumexp(a: np.ndarray) -> np.ndarray:
    top = np.max(a, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(a - top), axis=-1)) + top[..., 0]


@in_float64
def reweight_populations(
    draws: Sequence[StarDraws],
    model: PopulationModel,
    *,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 2,
    seed: int = 0,
    max_draws: int | None = 1000,
    n_check: int = 200,
    precision: str = "float32",
    progress: bool = False,
) -> list[PopulationResult]:
    """Hyperposteriors of one population model for many samples of stars at once (e.g. repeated simulations).

    Every sample must have the same number of stars and draws per star (after
    ``max_draws``) and the same label range; each gets its own independent
    NUTS runs, advanced together by the package's batched NUTS
    (:mod:`bayesslam.infer.nuts`), so the sampler compiles once. Parameters
    as :func:`reweight_population`; no warnings are logged (read each
    result's ``effective_draws`` and ``log_likelihood_variance``).
    """
    draws = list(draws)
    if not draws:
        raise PopulationError("no samples of stars given.")
    if precision not in ("float32", "float64"):
        raise PopulationError(f"precision must be 'float32' or 'float64', not {precision!r}.")
    used = [d.thinned(max_draws, seed) for d in draws]
    if len({(d.values.shape, d.bounds) for d in used}) != 1:
        raise PopulationError("samples given together need the same number of stars and draws and the same label "
                              "range; run them separately with reweight_population.")
    bounds, shape = used[0].bounds, used[0].values.shape
    values = jnp.asarray(np.stack([d.values for d in used]), dtype=precision)
    log_prior = jnp.asarray(np.stack([d.log_prior for d in used]), dtype=precision)
    n_run = len(used) * num_chains
    n_lanes = min(n_run, 64)
    runner, z0, unravel, postprocess = _hyper_runner(model, bounds, num_warmup, num_samples, n_lanes, shape, precision)
    population_of = np.repeat(np.arange(len(used)), num_chains)
    data = (values[population_of], log_prior[population_of])
    with tqdm(total=n_run, disable=not progress, desc="population NUTS", unit="run") as bar:
        out = runner(jax.random.split(jax.random.key(seed), n_run), jnp.tile(jnp.asarray(z0), (n_run, 1)),
                     jnp.ones((n_run, z0.size)), data, n_run, bar.update)
    constrained = jax.vmap(jax.vmap(lambda z: postprocess(unravel(z))))(jnp.asarray(out.z))
    check_effective = _effective_draws_checker(model, bounds)
    results = []
    for p, d in enumerate(used):
        rows = slice(p * num_chains, (p + 1) * num_chains)
        posterior = {k: np.asarray(v[rows]) for k, v in constrained.items()}
        idata = az.from_dict(posterior=posterior, sample_stats={"diverging": out.diverging[rows]})
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in posterior.items()}
        n_total = num_chains * num_samples
        pick = np.unique(np.linspace(0, n_total - 1, min(n_check, n_total)).astype(int))
        n_eff = np.asarray(check_effective({k: jnp.asarray(v[pick]) for k, v in flat.items()}, values[p],
                                           log_prior[p]), dtype=float)  # check, star
        variance = np.sum(1.0 / n_eff - 1.0 / shape[1], axis=1)
        result = PopulationResult(label=d.label, model=model, bounds=d.bounds, idata=idata, identifiers=d.identifiers,
                                  method="reweighting", effective_draws=n_eff.min(axis=0),
                                  log_likelihood_variance=variance, star_values=d.values, star_log_prior=d.log_prior)
        results.append(result)
    return results


def reweight_population(draws: StarDraws, model: PopulationModel, *, num_warmup: int = 500, num_samples: int = 1000,
                        num_chains: int = 2, seed: int = 0, max_draws: int | None = 1000,
                        min_effective_draws: float = 20.0, max_variance: float = 1.0, n_check: int = 200,
                        precision: str = "float32", progress: bool = False) -> PopulationResult:
    """Hyperposterior of a population model from per-star posterior draws (importance reweighting).

    Parameters
    ----------
    draws : StarDraws
        From :func:`draws_from_posterior`.
    model : PopulationModel
        E.g. :class:`~bayesslam.population.GaussianPopulation`.
    num_warmup, num_samples, num_chains : int
        NUTS settings for the hyperparameters (the package's batched NUTS,
        one run per chain).
    seed : int
    max_draws : int, optional
        Draws per star used (a random subset; ``None``: all). The cost is
        linear in ``n_star * max_draws``.
    min_effective_draws, max_variance : float
        Thresholds of the warning: a star whose effective number of draws
        falls below ``min_effective_draws`` anywhere in the hyperposterior,
        or a Monte Carlo variance of ``log L`` above ``max_variance``.
    n_check : int
        Hyperposterior draws at which the diagnostics are computed.
    precision : {"float32", "float64"}
        Precision of the per-draw weights (each star's sum is accumulated
        in float64); float32 halves the cost, and its rounding (~1e-7
        relative per weight) is far below the Monte Carlo error.
    progress : bool
        Progress bar over the NUTS runs.

    Returns
    -------
    PopulationResult
        ``method == "reweighting"``; ``effective_draws`` per star and
        ``log_likelihood_variance`` per checked hyperposterior draw.
    """
    (result,) = reweight_populations([draws], model, num_warmup=num_warmup, num_samples=num_samples,
                                     num_chains=num_chains, seed=seed, max_draws=max_draws, n_check=n_check,
                                     precision=precision, progress=progress)
    _warn_if_unsupported(result, min_effective_draws, max_variance)
    return result


def _warn_if_unsupported(result: PopulationResult, min_effective_draws: float, max_variance: float) -> None:
    low = np.flatnonzero(result.effective_draws < min_effective_draws)
    if low.size:
        worst = [result.identifiers[i] for i in low[np.argsort(result.effective_draws[low])][:5]]
        logger.warning("%d star(s) have fewer than %g effective draws somewhere in the hyperposterior (fewest: %s, "
                       "%.1f); the reweighted likelihood is noisy there: draw more per star or use the joint model.",
                       low.size, min_effective_draws, worst, float(result.effective_draws.min()))
    if np.max(result.log_likelihood_variance) > max_variance:
        logger.warning("the Monte Carlo variance of the log hyper-likelihood reaches %.2f (> %g): the hyperposterior "
                       "is not trustworthy; draw more per star or use the joint model.",
                       float(np.max(result.log_likelihood_variance)), max_variance)

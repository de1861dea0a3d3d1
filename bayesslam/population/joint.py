"""Population inference from the spectra themselves: one NumPyro model over all stars and the hyperparameters.

:func:`population_slam_model` is :func:`bayesslam.infer.slam_model` with one
label's prior replaced by a population distribution whose hyperparameters
are sampled too; every other label keeps its prior (the training box).
It is a plain NumPyro function, so a variant takes a few lines.
:func:`sample_population` runs it with NumPyro's NUTS, started from the
stars' MAP labels. Its cost grows with the number of stars (every gradient
evaluates the emulator for all of them): use it for tens to hundreds of
stars, and :func:`bayesslam.population.reweight_population` on per-star
draws for larger samples. On the same stars the two routes agree within
Monte Carlo error (``tests/test_population.py``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.infer import MCMC, NUTS, init_to_value

from bayesslam._precision import in_float64
from bayesslam.infer.map import check_spectra, fit_map
from bayesslam.infer.model import emulated_site, label_error_labels, slam_model
from bayesslam.infer.priors import LabelPrior, default_prior
from bayesslam.population.distributions import PopulationError, PopulationModel
from bayesslam.population.result import PopulationResult

__all__ = ["PopulationPrior", "population_slam_model", "sample_population", "label_index"]


def label_index(prior: LabelPrior, label: str) -> int:
    """Index of ``label`` in the prior (and model), or a :class:`PopulationError` naming the labels there are."""
    if label not in prior.names:
        raise PopulationError(f"the model has no label {label!r}; its labels are {list(prior.names)}.")
    return list(prior.names).index(label)


class PopulationPrior:
    """A per-star prior in which one label follows a population density instead of its own marginal.

    Drawn inside :func:`~bayesslam.infer.slam_model`'s star plate: every
    label is sampled from its marginal in ``prior`` (so its support and
    transform stay those of the training box), and a factor
    ``log_density(x) - log marginal(x)`` swaps the marginal of label
    ``index`` for the population.
    """

    def __init__(self, prior: LabelPrior, index: int, log_density: Callable[[jax.Array], jax.Array]) -> None:
        self.prior, self.index, self.log_density = prior, index, log_density
        self.names = prior.names

    def sample(self) -> jax.Array:
        theta = self.prior.sample()
        x = theta[..., self.index]
        numpyro.factor("population_density", self.log_density(x) - self.prior.marginals[self.index].log_prob(x))
        return theta


def population_slam_model(emulator: Any, ivar: jax.Array, flux: jax.Array | None = None, *, prior: LabelPrior,
                          population: PopulationModel, label: str,
                          label_error: tuple[int, ...] | None = None) -> None:
    """NumPyro model of many stars whose ``label`` is drawn from ``population`` (hyperparameters sampled).

    Parameters
    ----------
    emulator, ivar, flux, label_error
        As for :func:`bayesslam.infer.slam_model`.
    prior : LabelPrior
        The other labels' prior; the population is truncated to the box of
        ``label`` in it.
    population : PopulationModel
        E.g. :class:`~bayesslam.population.GaussianPopulation`.
    label : str
    """
    index = label_index(prior, label)
    bounds = tuple(float(b) for b in prior.bounds[index])
    hyper = population.sample_hyper(bounds)
    star_prior = PopulationPrior(prior, index, lambda x: population.log_density(x, hyper, bounds))
    slam_model(emulator, ivar, flux, prior=star_prior, label_error=label_error)


@in_float64
def sample_population(
    model: Any,
    flux: np.ndarray,
    ivar: np.ndarray,
    *,
    label: str,
    population: PopulationModel,
    prior: LabelPrior | None = None,
    identifiers: Sequence[str] | None = None,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 1,
    seed: int = 0,
    init_labels: np.ndarray | None = None,
    progress: bool = False,
) -> PopulationResult:
    """Joint posterior of the population's hyperparameters and every star's labels (NumPyro NUTS).

    Parameters
    ----------
    model : ForwardModel
        The emulator (e.g. ``SlamModel.emulator``).
    flux, ivar : numpy.ndarray
        Normalized spectra on the model grid, ``(n_star, n_pix)``.
    label : str
        The label with a population distribution, e.g. ``"fe_h"``.
    population : PopulationModel
    prior : LabelPrior, optional
        Prior of the other labels and the box of ``label``; default the training box.
    identifiers : sequence of str, optional
    num_warmup, num_samples, num_chains, seed
        NumPyro NUTS settings.
    init_labels : numpy.ndarray, optional
        Starting labels ``(n_star, n_label)``; default the MAP.
    progress : bool

    Returns
    -------
    PopulationResult
        ``method == "joint"``; the posterior holds the hyperparameters and
        each label with a ``star`` dimension.
    """
    flux, ivar = check_spectra(model, flux, ivar)
    prior = prior or default_prior(model)
    index = label_index(prior, label)
    n_star = flux.shape[0]
    ids = tuple(identifiers) if identifiers is not None else tuple(f"star{i}" for i in range(n_star))
    if len(ids) != n_star or n_star < 2:
        raise PopulationError(f"a population needs at least 2 stars with one identifier each; got {n_star} spectra "
                              f"and {len(ids)} identifiers.")
    if init_labels is None:
        fit = fit_map(model, flux, ivar, prior=prior)
        init_labels = np.where(np.isfinite(fit.labels), fit.labels, fit.start)
    bounds = prior.bounds
    span = bounds[:, 1] - bounds[:, 0]
    start = np.clip(np.asarray(init_labels, dtype=float), bounds[:, 0] + 1e-3 * span, bounds[:, 1] - 1e-3 * span)
    label_error = label_error_labels(model)
    values = {name: jnp.asarray(start[:, k]) for k, name in enumerate(prior.names)}
    values.update({emulated_site(prior.names[k]): jnp.asarray(start[:, k]) for k in label_error})
    bound = functools.partial(population_slam_model, model, prior=prior, population=population, label=label,
                              label_error=label_error)
    kernel = NUTS(bound, init_strategy=init_to_value(values=values))
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method="sequential", progress_bar=progress)
    mcmc.run(jax.random.key(seed), jnp.asarray(ivar), jnp.asarray(flux), extra_fields=("diverging",))
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    stars = set(prior.names) | {emulated_site(name) for name in prior.names}
    posterior = {k: v for k, v in samples.items() if k not in stars or k in prior.names}
    dims = {name: ["star"] for name in prior.names}
    stats = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items() if k == "diverging"}
    idata = az.from_dict(posterior=posterior, sample_stats=stats or None, coords={"star": list(ids)}, dims=dims)
    star_values = samples[label].reshape(-1, n_star).T
    return PopulationResult(label=label, model=population, bounds=tuple(float(b) for b in bounds[index]),
                            idata=idata, identifiers=ids, method="joint", star_values=star_values)

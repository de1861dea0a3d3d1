"""Population distributions of one label: Gaussian, Gaussian mixture and a smooth histogram.

A population model is the distribution of a label (e.g. [Fe/H]) over the
stars of a sample, with hyperparameters that are inferred. Each model here is
a small frozen dataclass with two methods, in the style of NumPyro models as
plain functions:

* ``sample_hyper(bounds)`` draws the hyperparameters from their priors as
  NumPyro sample sites (call it inside a NumPyro model);
* ``log_density(x, hyper, bounds)`` is the log density of label values ``x``
  given those hyperparameters.

Every density is **truncated to the label's box** ``bounds = (low, high)``
and normalized over it: the per-star posteriors (and the emulator) live
inside the training box only, so the population is what it is inside the
box. Hyperparameters are in the label's units. The models are used by both
routes of :mod:`bayesslam.population`: the joint model over all stars'
spectra (:mod:`~bayesslam.population.joint`) and the importance reweighting
of per-star posterior draws (:mod:`~bayesslam.population.reweighting`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import Array
from jax.scipy.special import log_ndtr, logsumexp

from bayesslam.errors import BayesSlamError

__all__ = [
    "PopulationError",
    "PopulationModel",
    "GaussianPopulation",
    "MixturePopulation",
    "HistogramPopulation",
    "parse_population_model",
    "truncated_normal_log_density",
]


class PopulationError(BayesSlamError, ValueError):
    """Population inference cannot run on this input (unknown model, missing prior record, bad draws, ...)."""


class PopulationModel(Protocol):
    """What every population model provides (see the module docstring)."""

    name: str

    def sample_hyper(self, bounds: tuple[float, float]) -> dict[str, Array]:
        ...

    def log_density(self, x: Array, hyper: dict[str, Array], bounds: tuple[float, float]) -> Array:
        ...


def _log_diff_ndtr(b: Array, a: Array) -> Array:
    """``log(Phi(b) - Phi(a))`` for ``b > a``, stable in both tails."""
    # mirror intervals in the upper tail, where Phi is close to 1 and the difference cancels
    upper = a > 0
    a, b = jnp.where(upper, -b, a), jnp.where(upper, -a, b)
    log_b, log_a = log_ndtr(b), log_ndtr(a)
    return log_b + jnp.log1p(-jnp.exp(jnp.minimum(log_a - log_b, -1e-12)))


def truncated_normal_log_density(x: Array, mean: Array, sd: Array, low: float, high: float) -> Array:
    """Log density of ``Normal(mean, sd)`` truncated to ``[low, high]`` (``-inf`` outside)."""
    z = (x - mean) / sd
    log_pdf = -0.5 * z**2 - jnp.log(sd) - 0.5 * jnp.log(2.0 * jnp.pi)
    log_mass = _log_diff_ndtr((high - mean) / sd, (low - mean) / sd)
    inside = (x >= low) & (x <= high)
    return jnp.where(inside, log_pdf - log_mass, -jnp.inf)


def _width(bounds: tuple[float, float]) -> float:
    low, high = (float(b) for b in bounds)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise PopulationError(f"a population needs a finite label range (low < high), got {bounds!r}.")
    return high - low


@dataclass(frozen=True)
class GaussianPopulation:
    """A Gaussian of mean ``mean`` and intrinsic standard deviation ``sd``, truncated to the box.

    Priors: ``mean ~ Uniform(low, high)``, ``sd ~ Uniform(sd_min, sd_max_fraction * (high - low))``.
    ``sd_min`` (default 1e-3 of the width) keeps the density finite.
    """

    sd_max_fraction: float = 0.5
    sd_min_fraction: float = 1e-3
    name: str = "gaussian"

    def sample_hyper(self, bounds: tuple[float, float]) -> dict[str, Array]:
        width = _width(bounds)
        mean = numpyro.sample("mean", dist.Uniform(float(bounds[0]), float(bounds[1])))
        sd = numpyro.sample("sd", dist.Uniform(self.sd_min_fraction * width, self.sd_max_fraction * width))
        return {"mean": mean, "sd": sd}

    def log_density(self, x: Array, hyper: dict[str, Array], bounds: tuple[float, float]) -> Array:
        return truncated_normal_log_density(x, hyper["mean"], hyper["sd"], float(bounds[0]), float(bounds[1]))


@dataclass(frozen=True)
class MixturePopulation:
    """``n_components`` Gaussians, each truncated to the box, with weights ``weight``.

    Priors: ``weight ~ Dirichlet(1)``; the means are ordered (to remove the
    relabelling symmetry) and uniform over the box: ``mean = low + width *
    cumsum(spacing)[:K]`` with ``spacing ~ Dirichlet(1, K + 1)``, i.e. the
    order statistics of K uniform draws; ``sd`` as for :class:`GaussianPopulation`.
    """

    n_components: int = 2
    sd_max_fraction: float = 0.5
    sd_min_fraction: float = 1e-2
    name: str = "mixture"

    def __post_init__(self) -> None:
        if int(self.n_components) < 1:
            raise PopulationError(f"a mixture needs at least one component, got {self.n_components}.")

    def sample_hyper(self, bounds: tuple[float, float]) -> dict[str, Array]:
        width, k = _width(bounds), int(self.n_components)
        weight = numpyro.sample("weight", dist.Dirichlet(jnp.ones(k)))
        spacing = numpyro.sample("mean_spacing", dist.Dirichlet(jnp.ones(k + 1)))
        mean = numpyro.deterministic("mean", float(bounds[0]) + width * jnp.cumsum(spacing)[:k])
        sd = numpyro.sample("sd", dist.Uniform(self.sd_min_fraction * width, self.sd_max_fraction * width)
                            .expand([k]).to_event(1))
        return {"weight": weight, "mean": mean, "sd": sd}

    def log_density(self, x: Array, hyper: dict[str, Array], bounds: tuple[float, float]) -> Array:
        x = jnp.asarray(x)[..., None]
        per_component = truncated_normal_log_density(x, hyper["mean"], hyper["sd"], float(bounds[0]),
                                                     float(bounds[1]))
        return logsumexp(jnp.log(hyper["weight"]) + per_component, axis=-1)


@dataclass(frozen=True)
class HistogramPopulation:
    """A free-form density: ``n_bins`` equal bins over the box with smoothly varying heights.

    The log heights are a Gaussian random walk from bin to bin, ``h_0 = 0``,
    ``h_b - h_(b-1) = smoothness * step_b`` with ``step_b ~ Normal(0, 1)``
    (non-centred) and ``smoothness ~ HalfNormal(smoothness_scale)``: the
    smoothness prior pulls neighbouring bins together, and the data decide
    how much. The bin probabilities ``weight = softmax(h)`` are recorded
    as a deterministic site.
    """

    n_bins: int = 12
    smoothness_scale: float = 1.0
    name: str = "histogram"

    def __post_init__(self) -> None:
        if int(self.n_bins) < 2:
            raise PopulationError(f"a histogram needs at least two bins, got {self.n_bins}.")

    def edges(self, bounds: tuple[float, float]) -> np.ndarray:
        """Bin edges over the box."""
        return np.linspace(float(bounds[0]), float(bounds[1]), int(self.n_bins) + 1)

    def sample_hyper(self, bounds: tuple[float, float]) -> dict[str, Array]:
        _width(bounds)
        smoothness = numpyro.sample("smoothness", dist.HalfNormal(self.smoothness_scale))
        step = numpyro.sample("step", dist.Normal(0.0, 1.0).expand([int(self.n_bins) - 1]).to_event(1))
        log_height = jnp.concatenate([jnp.zeros(1), jnp.cumsum(smoothness * step)])
        weight = numpyro.deterministic("weight", jnp.exp(log_height - logsumexp(log_height)))
        return {"weight": weight}

    def log_density(self, x: Array, hyper: dict[str, Array], bounds: tuple[float, float]) -> Array:
        low, width = float(bounds[0]), _width(bounds)
        n = int(self.n_bins)
        x = jnp.asarray(x)
        index = jnp.clip(jnp.floor((x - low) / width * n).astype(int), 0, n - 1)
        inside = (x >= low) & (x <= low + width)
        return jnp.where(inside, jnp.log(hyper["weight"][index]) + np.log(n / width), -jnp.inf)


def parse_population_model(text: str) -> PopulationModel:
    """The model named by ``gaussian``, ``mixture:K`` or ``histogram[:N_BINS]`` (the command's ``--model``).

    Raises
    ------
    PopulationError
        For any other text.
    """
    match = re.fullmatch(r"\s*(gaussian|mixture|histogram)\s*(?::\s*(\d+))?\s*", text or "")
    if not match or (match.group(1) == "gaussian" and match.group(2)):
        raise PopulationError(f"unknown population model {text!r}; use gaussian, mixture:K or histogram[:N_BINS].")
    kind, number = match.group(1), match.group(2)
    if kind == "gaussian":
        return GaussianPopulation()
    if kind == "mixture":
        return MixturePopulation(int(number) if number else 2)
    return HistogramPopulation(int(number) if number else 12)

"""SBC of the mixture and histogram population models' hyperparameters (the Gaussian's: test_population.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from toymodel import BOUNDS

from bayesslam.population import HistogramPopulation, MixturePopulation, StarDraws, reweight_populations

FE_H = tuple(BOUNDS[2])  # (-0.6, 0.5)


@pytest.fixture(scope="module", autouse=True)
def _in_float64(x64):
    """The tests build JAX arrays themselves: 64 bits for them (see conftest.x64)."""


def _hyper_from_prior(model, key) -> dict[str, np.ndarray]:
    """One draw of ``model``'s hyperparameters from their prior (numpyro's Predictive on its sample_hyper)."""
    from numpyro.infer import Predictive

    draw = Predictive(lambda: model.sample_hyper(FE_H), num_samples=1)(key)
    return {name: np.asarray(value[0]) for name, value in draw.items()}


def _labels_from_density(rng, model, hyper, n: int) -> np.ndarray:
    """``n`` true labels from the population density (rejection sampling from the box)."""
    grid = np.linspace(*FE_H, 4001)
    top = float(np.max(np.exp(np.asarray(model.log_density(jnp.asarray(grid), hyper, FE_H))))) * 1.05
    out = np.empty(0)
    while out.size < n:
        x = rng.uniform(*FE_H, 20 * n)
        keep = rng.uniform(0, top, x.size) < np.exp(np.asarray(model.log_density(jnp.asarray(x), hyper, FE_H)))
        out = np.concatenate([out, x[keep]])
    return out[:n]


def _measured_draws(rng, truth: np.ndarray, n_draw: int, *, prior: tuple[float, float] | None = None) -> StarDraws:
    """Per-star posterior draws of labels measured with Gaussian errors, recorded as sampled under a uniform prior.

    With ``prior`` (a Normal's mean and sd) the draws are the posteriors under that prior, but the record says
    uniform: the sampling prior is not divided out (a negative control).
    """
    lo, hi = FE_H
    err = rng.uniform(0.05, 0.15, truth.size)
    obs = truth + err * rng.normal(size=truth.size)
    loc, scale = obs, err
    if prior is not None:
        mu0, s0 = prior
        scale = 1.0 / np.sqrt(1.0 / err**2 + 1.0 / s0**2)
        loc = scale**2 * (obs / err**2 + mu0 / s0**2)
    values = stats.truncnorm.rvs((lo - loc[:, None]) / scale[:, None], (hi - loc[:, None]) / scale[:, None],
                                 loc=loc[:, None], scale=scale[:, None], size=(truth.size, n_draw), random_state=rng)
    return StarDraws("fe_h", tuple(f"s{i}" for i in range(truth.size)), values,
                     np.full_like(values, -np.log(hi - lo)), FE_H)


@pytest.mark.slow
@pytest.mark.parametrize("model, derived, n_free", [
    (MixturePopulation(2, sd_min_fraction=0.05, sd_max_fraction=0.3), ("mean", "weight"), 3),
    (HistogramPopulation(n_bins=6), ("weight",), 5),
])
def test_mixture_and_histogram_hyperparameters_are_calibrated(model, derived, n_free):
    """SBC of the mixture's (ordered) means and weights and of the histogram's bin probabilities over 40
    populations drawn from each hyperprior (40 stars x 100 exact draws each; every component of every
    hyperparameter pooled): their 68% and 95% intervals cover within 3 binomial standard errors, counting
    ``n_free`` free components per population (weights sum to 1). Negative control on the same populations:
    draws sampled under a Normal prior (-0.05, 0.15) that is not divided out."""
    rng = np.random.default_rng(20261208)
    truths, right, confident = [], [], []
    for key in jax.random.split(jax.random.key(8), 40):
        hyper = _hyper_from_prior(model, key)
        truths.append(hyper)
        labels = _labels_from_density(rng, model, hyper, 40)
        seed = int(rng.integers(2**31))
        right.append(_measured_draws(np.random.default_rng(seed), labels, 100))
        confident.append(_measured_draws(np.random.default_rng(seed), labels, 100, prior=(-0.05, 0.15)))
    results = reweight_populations(right + confident, model, num_warmup=250, num_samples=400, num_chains=1, seed=2)

    def coverage(fits, level: float) -> float:
        inside = []
        for fit, truth in zip(fits, truths):
            draws = fit.hyper_draws()
            for name in derived:
                lo, hi = np.quantile(draws[name], [(1 - level) / 2, (1 + level) / 2], axis=0)
                inside.extend(np.atleast_1d((lo <= truth[name]) & (truth[name] <= hi)).tolist())
        return float(np.mean(inside)), len(inside)

    def calibrated(fits) -> bool:
        n = n_free * len(truths)
        return all(abs(coverage(fits, level)[0] - level) < 3 * np.sqrt(level * (1 - level) / n)
                   for level in (0.6827, 0.95))

    right_fits, confident_fits = results[:len(truths)], results[len(truths):]
    print(model.name, "coverage 68/95:", coverage(right_fits, 0.6827), coverage(right_fits, 0.95),
          "prior not divided out:", coverage(confident_fits, 0.6827), coverage(confident_fits, 0.95))
    assert calibrated(right_fits)
    assert not calibrated(confident_fits)

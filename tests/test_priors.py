"""Priors that respect the training domain, and the out-of-domain measures."""

from __future__ import annotations

import numpy as np
import numpyro.distributions as dist
import pytest

from bayesslam.catalog import TrainingDomain
from bayesslam.infer import (
    PriorError,
    TrainingDensity,
    box_prior,
    custom_prior,
    training_density_prior,
)


@pytest.fixture(scope="module", autouse=True)
def _in_float64(x64):
    """The tests here build JAX arrays and emulators themselves: 64 bits for them (see conftest.x64)."""

NAMES = ("teff", "fe_h")
BOUNDS = np.array([[3100.0, 3900.0], [-0.6, 0.5]])


@pytest.fixture(scope="module")
def training() -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.column_stack([rng.normal(3500, 150, 600), rng.normal(-0.05, 0.2, 600)])


def test_box_prior_is_uniform_over_the_box():
    prior = box_prior(NAMES, BOUNDS)
    inside = np.array([3500.0, 0.0])
    assert float(prior.log_prob(inside)) == pytest.approx(-np.log(800.0) - np.log(1.1))
    assert bool(prior.in_support(inside)) and not bool(prior.in_support(np.array([3000.0, 0.0])))
    assert prior.is_box


def test_kde_is_normalized_and_prefers_the_training_core(training):
    kde = TrainingDensity(training)
    # trapezoid rule on a grid far finer than the kernels, over a region that holds all their mass
    teff, fe_h = np.linspace(2500.0, 4500.0, 120), np.linspace(-1.5, 1.4, 120)
    grid = np.stack(np.meshgrid(teff, fe_h, indexing="ij"), axis=-1).reshape(-1, 2)
    density = np.exp(np.asarray(kde.log_density(grid))).reshape(teff.size, fe_h.size)
    assert np.trapezoid(np.trapezoid(density, fe_h, axis=1), teff) == pytest.approx(1.0, abs=1e-3)
    prior = training_density_prior(NAMES, BOUNDS, training)
    assert float(prior.log_prob(np.array([3500.0, 0.0]))) > float(prior.log_prob(np.array([3850.0, 0.45]))) + 3


def test_custom_prior_replaces_one_label_and_rejects_bad_ones():
    prior = custom_prior(NAMES, BOUNDS, {"fe_h": dist.Normal(0.0, 0.1)})
    assert isinstance(prior.marginals[0], dist.Uniform) and isinstance(prior.marginals[1], dist.Normal)
    assert not prior.is_box
    with pytest.raises(PriorError, match="unknown label"):
        custom_prior(NAMES, BOUNDS, {"logg": dist.Normal(4.7, 0.1)})
    with pytest.raises(PriorError, match="NaN parameters"):
        custom_prior(NAMES, BOUNDS, {"fe_h": dist.Normal(np.nan, 0.1, validate_args=False)})
    with pytest.raises(PriorError, match="scalar"):
        custom_prior(NAMES, BOUNDS, {"fe_h": dist.Normal(np.zeros(2), 0.1)})
    with pytest.raises(PriorError, match="bounds"):
        box_prior(NAMES, np.array([[3900.0, 3100.0], [-0.6, 0.5]]))


def test_domain_measures(training):
    domain = TrainingDomain(training)
    core, far = np.array([3500.0, -0.05]), np.array([3880.0, 0.48])
    assert domain.inside_hull(core) and not domain.inside_hull(np.array([4200.0, 0.0]))
    assert domain.density_percentile(core) > 50
    assert domain.density_percentile(far) < 1
    draws = np.column_stack([np.full(100, 3500.0), np.linspace(-0.05, 2.0, 100)])
    assert 0.5 < domain.fraction_outside_hull(draws) < 1.0

"""The one log density: values, masking, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bayesslam.infer import chi_square, log_likelihood, pixel_variance


@pytest.fixture(scope="module", autouse=True)
def _in_float64(x64):
    """The tests here build JAX arrays and emulators themselves: 64 bits for them (see conftest.x64)."""


def test_log_likelihood_matches_gaussian_formula_and_ignores_masked_pixels():
    rng = np.random.default_rng(3)
    model = rng.normal(1.0, 0.1, 50)
    flux = model + rng.normal(0, 0.05, 50)
    ivar = np.full(50, 400.0)
    ivar[[3, 7]] = 0.0
    flux[7] = 1e6  # a wild masked pixel must not matter
    s2 = np.full(50, 1e-3)
    var = 1 / 400.0 + 1e-3
    good = ivar > 0
    expected = np.sum(-0.5 * (flux - model)[good] ** 2 / var - 0.5 * np.log(2 * np.pi * var))
    assert float(log_likelihood(model, flux, ivar, s2)) == pytest.approx(expected, rel=1e-12)
    assert float(chi_square(model, flux, ivar, s2)) == pytest.approx(np.sum((flux - model)[good] ** 2 / var))


def test_noise_scale_and_jitter_enter_the_variance():
    var = pixel_variance(np.array([100.0, 0.0]), np.array([1e-3, 1e-3]), noise_scale=2.0, jitter=0.1)
    assert float(var[0]) == pytest.approx(4 / 100.0 + 1e-3 + 0.01)
    assert float(var[1]) == 1.0  # masked placeholder


def test_gradient_against_finite_differences():
    rng = np.random.default_rng(0)
    flux = rng.normal(1, 0.05, 30)
    ivar = rng.uniform(100, 500, 30)
    s2 = np.full(30, 2e-3)

    def f(params):
        model = 1.0 + params[0] * jnp.sin(jnp.arange(30.0)) + params[1] * jnp.arange(30.0) / 30
        return log_likelihood(model, flux, ivar, s2, noise_scale=params[2], jitter=params[3])

    check_grads(f, (jnp.array([0.05, -0.02, 1.3, 0.01]),), order=2, modes=("fwd", "rev"), eps=1e-6)


def test_untrained_pixels_with_infinite_model_variance_are_excluded():
    model = np.ones(5)
    flux = np.array([1.0, 1.1, 0.9, 50.0, 1.0])
    ivar = np.full(5, 100.0)
    s2 = np.array([1e-3, 1e-3, 1e-3, np.inf, 1e-3])
    keep = np.array([0, 1, 2, 4])
    expected = log_likelihood(model[keep], flux[keep], ivar[keep], s2[keep])
    assert float(log_likelihood(model, flux, ivar, s2)) == pytest.approx(float(expected))
    assert np.isfinite(float(jax.grad(lambda m: log_likelihood(m, flux, ivar, s2))(jnp.asarray(model)).sum()))

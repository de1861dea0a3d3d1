"""Batched MAP with Laplace uncertainties: an analytic forward model (generic path) and a small SVR emulator (fast path)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from sklearn.svm import SVR
from toymodel import make_toy_model, simulate

from bayesslam.emulator import Emulator, build_emulator, least_squares_terms
from bayesslam.errors import SpectrumValidationError
from bayesslam.infer import FitStatus, chi_square, coarse_scan, custom_prior, fit_map


@pytest.fixture(scope="module", autouse=True)
def _in_float64(x64):
    """The tests here build JAX arrays and emulators themselves: 64 bits for them (see conftest.x64)."""


@pytest.fixture(scope="module")
def toy():
    return make_toy_model()


@pytest.mark.parametrize("snr", [10.0, 50.0])
def test_map_recovers_labels_with_calibrated_laplace_errors(toy, snr):
    truth, flux, ivar = simulate(toy, 300, snr=snr, seed=int(snr))
    result = fit_map(toy, flux, ivar)
    assert np.all(result.status == FitStatus.CONVERGED)
    pulls = (result.labels - truth)[:, :3] / result.sigma[:, :3]
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.2)
    assert np.all((pulls.std(axis=0) > 0.85) & (pulls.std(axis=0) < 1.15))
    assert np.median(result.reduced_chi2) == pytest.approx(1.0, abs=0.05)


def test_unconstrained_label_gets_its_prior_width(toy):
    _, flux, ivar = simulate(toy, 20, snr=30)
    result = fit_map(toy, flux, ivar)
    width = toy.label_bounds[3, 1] - toy.label_bounds[3, 0]
    np.testing.assert_allclose(result.sigma[:, 3], width / np.sqrt(12), rtol=1e-6)


def test_correlations_are_covariance_over_sigma_products(toy):
    _, flux, ivar = simulate(toy, 10, snr=30)
    r = fit_map(toy, flux, ivar)
    np.testing.assert_allclose(np.diagonal(r.correlation, axis1=1, axis2=2), 1.0, rtol=1e-12)
    expected = r.covariance[:, 0, 2] / (r.sigma[:, 0] * r.sigma[:, 2])
    np.testing.assert_allclose(r.correlation[:, 0, 2], expected, rtol=1e-12)
    np.testing.assert_allclose(r.correlation, np.swapaxes(r.correlation, 1, 2), rtol=1e-12)
    assert np.all(np.abs(r.correlation) <= 1 + 1e-12)


def test_masked_pixels_do_not_matter_and_one_empty_star_does_not_stop_the_batch(toy):
    truth, flux, ivar = simulate(toy, 6, snr=30)
    base = fit_map(toy, flux, ivar)
    flux2, ivar2 = flux.copy(), ivar.copy()
    ivar2[:, ::7] = 0.0
    flux2[:, ::7] = 1e5
    flux2[:, 3] = np.nan
    ivar2[5] = 0.0  # a star with no data at all
    masked = fit_map(toy, flux2, ivar2)
    assert np.all(masked.status[:5] == FitStatus.CONVERGED)
    assert masked.status[5] == FitStatus.NO_DATA
    assert np.all(np.abs(masked.labels[:5, :3] - base.labels[:5, :3]) < 4 * base.sigma[:5, :3])


def test_coarse_scan_finds_the_training_spectrum(toy):
    grid = np.asarray(jax.vmap(toy)(toy.training_labels))
    pick = np.array([3, 17, 250])
    best = coarse_scan(grid, grid[pick], np.full((3, grid.shape[1]), 1e4), toy.model_variance)
    np.testing.assert_array_equal(np.asarray(best), pick)


def test_spectra_on_another_grid_are_refused(toy):
    with pytest.raises(SpectrumValidationError, match="pixels"):
        fit_map(toy, np.ones((2, 10)), np.ones((2, 10)))
    with pytest.raises(SpectrumValidationError, match="ivar"):
        fit_map(toy, np.ones((1, 300)), -np.ones((1, 300)))


def _svr_emulator(n_train: int = 120, n_pix: int = 60, seed: int = 3) -> Emulator:
    """A float64 SVR emulator (two gammas) of smooth M-dwarf-like spectra; the last label barely matters."""
    rng = np.random.default_rng(seed)
    labels = rng.uniform([3100.0, 4.45, -0.6, -0.2], [3900.0, 4.95, 0.5, 0.4], size=(n_train, 4))
    mean, scale = labels.mean(axis=0), labels.std(axis=0)
    x = (labels - mean) / scale
    weights = rng.normal(size=(n_pix, 4)) * np.array([1.0, 0.4, 0.7, 0.05])
    depth = rng.uniform(0.05, 0.3, n_pix)
    flux = 1.0 - depth * np.tanh(1.0 + 0.5 * x @ weights.T) ** 2
    flux_mean, flux_scale = flux.mean(axis=0), flux.std(axis=0)
    gamma = np.where(np.arange(n_pix) % 3 == 0, 0.5, 0.2)
    dual, intercept = np.zeros((n_pix, n_train)), np.zeros(n_pix)
    for j in range(n_pix):
        svr = SVR(C=4.0, epsilon=0.01, gamma=gamma[j]).fit(x, (flux[:, j] - flux_mean[j]) / flux_scale[j])
        dual[j, svr.support_] = svr.dual_coef_[0]
        intercept[j] = svr.intercept_[0]
    return build_emulator(
        dual_coef=dual, intercept=intercept, gamma=gamma, train_x=x, label_mean=mean, label_scale=scale,
        flux_mean=flux_mean, flux_scale=flux_scale, model_variance=np.full(n_pix, 1e-6),
        wave=np.linspace(6000.0, 9000.0, n_pix), training_labels=labels, label_names=("teff", "logg", "fe_h", "alpha_m"),
    )


@dataclass(frozen=True, eq=False)
class _Plain:
    """The same function without the Emulator type: fitted by the generic path (jax.jacfwd, float64 only)."""

    emulator: Emulator

    def __call__(self, labels):
        return self.emulator(labels)

    @property
    def label_names(self):
        return self.emulator.label_names

    @property
    def model_variance(self):
        return self.emulator.model_variance

    @property
    def training_labels(self):
        return self.emulator.training_labels

    @property
    def label_bounds(self):
        return self.emulator.label_bounds


@pytest.fixture(scope="module")
def svr():
    emulator = _svr_emulator()
    rng = np.random.default_rng(12)
    bounds = np.asarray(emulator.label_bounds)
    truth = rng.uniform(bounds[:, 0] + 0.1 * np.ptp(bounds, axis=1), bounds[:, 1] - 0.1 * np.ptp(bounds, axis=1),
                        size=(16, 4))
    snr = rng.uniform(20.0, 100.0, size=(16, 1))
    clean = np.asarray(emulator(truth))
    flux = clean + rng.normal(size=clean.shape) * np.sqrt(1.0 / snr**2 + 1e-6)
    ivar = np.broadcast_to(snr**2, clean.shape).copy()
    ivar[:5, ::9] = 0.0  # some masked pixels
    return emulator, truth, flux, ivar


@pytest.fixture(scope="module")
def svr_fits(svr):
    emulator, _, flux, ivar = svr
    return fit_map(emulator, flux, ivar), fit_map(_Plain(emulator), flux, ivar)


def test_mixed_precision_fit_agrees_with_the_float64_generic_path(svr, svr_fits):
    emulator, _, flux, ivar = svr
    fast, plain = svr_fits
    assert np.all(fast.status == FitStatus.CONVERGED) and np.all(plain.status == FitStatus.CONVERGED)
    np.testing.assert_array_equal(fast.start, plain.start)
    assert np.max(np.abs(fast.labels - plain.labels) / plain.sigma) < 2e-3
    np.testing.assert_allclose(fast.sigma, plain.sigma, rtol=1e-3)
    np.testing.assert_allclose(fast.correlation, plain.correlation, rtol=0, atol=1e-3)
    np.testing.assert_allclose(fast.chi2, plain.chi2, rtol=1e-6)
    np.testing.assert_allclose(fast.log_posterior, plain.log_posterior, rtol=0, atol=1e-5)
    assert fast.model_flux.dtype == np.float64
    np.testing.assert_allclose(fast.model_flux, np.asarray(emulator(fast.labels)), rtol=0, atol=1e-12)
    chi2 = np.asarray(chi_square(fast.model_flux, flux, ivar, emulator.model_variance))
    np.testing.assert_allclose(fast.chi2, chi2, rtol=1e-12)
    assert np.median(fast.n_iter) <= 8


def test_mixed_precision_fit_is_a_float64_optimum(svr, svr_fits):
    """The float64 Newton decrement at the returned labels is below the tolerance."""
    emulator, _, flux, ivar = svr
    fast, _ = svr_fits
    good = ivar > 0
    w = np.where(good, 1.0 / (1.0 / np.where(good, ivar, 1.0) + np.asarray(emulator.model_variance)), 0.0)
    terms = least_squares_terms(emulator, fast.labels, np.where(good, flux, 0.0), w)  # physical units
    g, h = np.asarray(terms.gradient), np.asarray(terms.gauss_newton + terms.curvature)
    inside = ~np.any(fast.at_bound, axis=1)
    decrement = np.einsum("sk,sk->s", g, np.linalg.solve(h, g[..., None])[..., 0])
    assert inside.sum() >= 12
    assert np.all(decrement[inside] < 2e-6)
    assert np.all(np.linalg.eigvalsh(h[inside]) > 0)


def test_fast_path_recovers_labels(svr, svr_fits):
    _, truth, _, _ = svr
    fast, _ = svr_fits
    pulls = (fast.labels - truth)[:, :3] / fast.sigma[:, :3]
    assert np.all(np.abs(pulls) < 5)
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.6)


def test_batching_does_not_change_the_optimum(svr, svr_fits):
    emulator, _, flux, ivar = svr
    fast, _ = svr_fits
    for stars in ([7], [11, 2, 5]):
        part = fit_map(emulator, flux[stars], ivar[stars])
        assert np.max(np.abs(part.labels - fast.labels[stars]) / fast.sigma[stars]) < 2e-3


def test_non_uniform_prior_is_part_of_the_optimum(svr, svr_fits):
    emulator, _, flux, ivar = svr
    box, _ = svr_fits
    prior = custom_prior(emulator.label_names, np.asarray(emulator.label_bounds), {"fe_h": dist.Normal(0.0, 0.05)})
    fit = fit_map(emulator, flux, ivar, prior=prior)
    assert np.all(fit.status == FitStatus.CONVERGED)
    good = ivar > 0
    w = np.where(good, 1.0 / (1.0 / np.where(good, ivar, 1.0) + np.asarray(emulator.model_variance)), 0.0)
    terms = least_squares_terms(emulator, fit.labels, np.where(good, flux, 0.0), w)
    theta = jnp.asarray(fit.labels)
    g = np.asarray(terms.gradient) - np.asarray(jax.vmap(jax.grad(prior.log_prob))(theta))
    h = np.asarray(terms.gauss_newton + terms.curvature) - np.asarray(jax.vmap(jax.hessian(prior.log_prob))(theta))
    inside = ~np.any(fit.at_bound, axis=1)
    decrement = np.einsum("sk,sk->s", g, np.linalg.solve(h, g[..., None])[..., 0])
    assert inside.sum() >= 12 and np.all(decrement[inside] < 2e-6)
    assert np.all(np.abs(fit.labels[:, 2]) <= np.abs(box.labels[:, 2]) + 1e-9)  # pulled towards 0
    np.testing.assert_allclose(fit.log_posterior, -0.5 * fit.chi2 + np.asarray(prior.log_prob(jnp.asarray(fit.labels))),
                               rtol=1e-12)


def test_iteration_limit_is_respected(toy):
    _, flux, ivar = simulate(toy, 5, snr=30)
    result = fit_map(toy, flux, ivar, max_iter=1)
    assert np.all(result.n_iter <= 1)
    assert np.all(result.status[result.n_iter == 1] != FitStatus.NOT_FINITE)
    assert np.any(result.status == FitStatus.MAX_ITER)

"""Batched MAP with Laplace uncertainties, on an analytic forward model with the emulator's interface."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from toymodel import make_toy_model, simulate

from bayesslam.errors import SpectrumValidationError
from bayesslam.fit import FitStatus, coarse_scan, fit_map

jax.config.update("jax_enable_x64", True)


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

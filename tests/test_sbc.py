"""Simulation-based calibration: rank statistics (pure math), and SBC of NUTS and MAP + Laplace on the exact toy emulator.

The NUTS runs share one compiled sampler: both use the same toy model, prior, settings and
number of lanes (one batched call each), so the negative control (spectra with twice the noise
that ivar reports) costs only its sampling.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import numpyro.distributions as dist
import pytest
from toymodel import LABELS, make_toy_model

from bayesslam.calibration import (
    CalibrationError,
    default_rank_bins,
    ecdf_difference,
    rank_histogram,
    rank_pit,
    rank_uniformity,
    sbc_ranks,
    thin_draws,
)
from bayesslam.infer import box_prior, training_density_prior
from bayesslam.mock import LABEL_NAMES
from bayesslam.validation import EmulatorSimulator, MockSimulator, ValidationError, draw_from_prior, run_sbc

#: The NUTS study: 128 simulations at SNR 10, 150 warm-up + 200 draws each, thinned to 49 (ranks 0..49).
N_SIM, SNR, SEED = 128, 10.0, 3
NUTS = dict(num_warmup=150, num_samples=200, num_draws=49, batch_size=N_SIM)
#: The labels the toy's spectra constrain (its flux does not depend on alpha_m).
CONSTRAINED = [0, 1, 2]


@pytest.fixture(scope="module", autouse=True)
def _in_float64(x64):
    """The tests here call the toy emulator themselves: 64 bits for them (see conftest.x64)."""


@pytest.fixture(scope="module")
def toy():
    """Emulator variance as large as the photon noise at SNR 20 (a quarter of it at SNR 10): leaving it out matters."""
    return make_toy_model(s2=1.0 / 20.0**2)


@pytest.fixture(scope="module")
def nuts_runs(toy):
    right = run_sbc(toy, N_SIM, SNR, seed=SEED, **NUTS)
    noisy = run_sbc(toy, N_SIM, SNR, seed=SEED, simulator=EmulatorSimulator(toy, noise_scale=2.0), **NUTS)
    return right, noisy


# --- the rank statistics ------------------------------------------------------------------------


def _conjugate(rng, n_sim, n_draw, n_label=2, width=1.0):
    """Exact SBC of a Normal mean: theta ~ N(0, 1), y ~ N(theta, 1), posterior N(y / 2, 1 / 2) (width x its sd)."""
    theta = rng.normal(size=(n_sim, n_label))
    y = theta + rng.normal(size=theta.shape)
    draws = y[:, None, :] / 2 + width * np.sqrt(0.5) * rng.normal(size=(n_sim, n_draw, n_label))
    return theta, draws


def test_ranks_of_exact_posteriors_are_uniform_and_of_narrow_ones_are_not():
    rng = np.random.default_rng(7)
    theta, draws = _conjugate(rng, 400, 400)
    ranks = sbc_ranks(theta, draws, n_draws=99)
    assert ranks.shape == (400, 2) and ranks.min() >= 0 and ranks.max() <= 99
    test = rank_uniformity(ranks, 99, label_names=("a", "b"))
    assert np.all(test.chi2_pvalue > 0.01) and np.all(test.ks_pvalue > 0.01), test.to_dict()
    assert test.n_bins == 20 and test.to_dict()["labels"]["a"]["n"] == 400
    # negative controls on the same truths: posteriors half as wide (U-shaped ranks), twice as wide (a bump)
    for width in (0.5, 2.0):
        _, bad = _conjugate(np.random.default_rng(7), 400, 400, width=width)
        test = rank_uniformity(sbc_ranks(theta, bad, n_draws=99), 99)
        assert np.all(test.chi2_pvalue < 1e-6) and np.all(test.ks_pvalue < 1e-3), (width, test.to_dict())


def test_thinning_ties_and_failed_fits():
    draws = np.arange(20.0).reshape(1, 20, 1)
    np.testing.assert_array_equal(thin_draws(draws, 5)[0, :, 0], [0, 4, 8, 12, 16])
    np.testing.assert_array_equal(thin_draws(draws, 20), draws)
    with pytest.raises(CalibrationError, match="cannot keep 21 of 20"):
        thin_draws(draws, 21)
    # a truth equal to every draw gets a rank uniform over 0..L (ties broken at random)
    ties = sbc_ranks(np.zeros((4000, 1)), np.zeros((4000, 9, 1)), rng=1)
    assert set(np.unique(ties)) == set(range(10))
    assert np.all(np.abs(np.bincount(ties[:, 0].astype(int)) / 4000 - 0.1) < 0.02)
    # a simulation whose fit failed has no rank, and is left out of the tests
    draws = np.random.default_rng(0).normal(size=(50, 19, 2))
    draws[3, :, 1] = np.nan
    ranks = sbc_ranks(np.zeros((50, 2)), draws)
    assert np.isnan(ranks[3, 1]) and np.isfinite(ranks[3, 0])
    assert list(rank_uniformity(ranks, 19).n) == [50, 49]


def test_rank_histogram_band_and_pit():
    ranks = np.repeat(np.arange(100.0), 3)[:, None]  # perfectly flat: 300 simulations, L = 99
    hist = rank_histogram(ranks, 99, n_bins=20)
    np.testing.assert_array_equal(hist.counts[:, 0], 15)
    np.testing.assert_allclose(hist.expected, 15)
    assert np.all(hist.lower < 15) and np.all(hist.upper > 15) and hist.edges[-1] == 100
    # unequal bins: the expected counts follow the number of rank values in each
    odd = rank_histogram(ranks, 99, n_bins=7)
    np.testing.assert_allclose(odd.expected[:, 0], np.diff(odd.edges) * 3)
    pit = rank_pit(ranks, 99, rng=0)
    assert np.all((pit > 0) & (pit < 1))
    np.testing.assert_array_equal(np.floor(pit * 100), ranks)
    z, diff = ecdf_difference(pit)
    assert z.size == 99 and np.max(np.abs(diff)) < 0.02
    assert default_rank_bins(150, 99) == 10 and default_rank_bins(1000, 9) == 10 and default_rank_bins(128, 49) == 10
    assert default_rank_bins(300, 100) == 20 and default_rank_bins(5, 99) == 2  # L + 1 = 101 is prime


@pytest.mark.parametrize("call, match", [
    (lambda: sbc_ranks(np.zeros((3, 2)), np.zeros((3, 5, 3))), "must be"),
    (lambda: sbc_ranks(np.full((3, 1), np.nan), np.zeros((3, 5, 1))), "NaN"),
    (lambda: rank_uniformity(np.array([[0.0], [5.0], [120.0]]), 99), "integers in 0..99"),
    (lambda: rank_uniformity(np.array([[0.5], [5.0]]), 99), "integers"),
    (lambda: rank_uniformity(np.array([[1.0]]), 99), "at least 2"),
    (lambda: rank_histogram(np.zeros((5, 1)), 9, n_bins=11), "n_bins"),
    (lambda: ecdf_difference(np.full((5, 1), 0.5), np.array([0.0, 0.5])), r"\(0, 1\)"),
])
def test_bad_rank_input_raises(call, match):
    with pytest.raises(CalibrationError, match=match):
        call()


# --- SBC of the samplers on the exact toy emulator ---------------------------------------------------


@pytest.mark.slow
def test_nuts_sbc_passes_on_the_exact_toy_and_fails_with_twice_the_noise(nuts_runs):
    right, noisy = nuts_runs
    test = right.uniformity()
    assert right.ranks.shape == (N_SIM, 4) and right.num_draws == 49 and right.sampler == "nuts"
    assert np.all(test.chi2_pvalue > 0.01) and np.all(test.ks_pvalue > 0.01), test.to_dict()
    assert np.all(right.ecdf_in_band())
    assert np.median(right.diagnostics["r_hat_max"]) < 1.05 and np.max(right.diagnostics["r_hat_max"]) < 1.3
    assert np.sum(right.diagnostics["n_divergent"] > 0) <= 2
    coverage = right.coverage_curve()
    assert np.all(np.abs(coverage.at(0.68) - 0.68) < 3 * np.sqrt(0.68 * 0.32 / N_SIM))
    # negative control: spectra with twice the noise ivar reports; posteriors too narrow, ranks U-shaped
    bad = noisy.uniformity()
    assert np.all(bad.chi2_pvalue[CONSTRAINED] < 1e-4) and np.all(bad.ks_pvalue[CONSTRAINED] < 0.01), bad.to_dict()
    assert not np.any(noisy.ecdf_in_band()[CONSTRAINED])
    assert np.all(noisy.coverage_curve().at(0.68)[CONSTRAINED] < 0.55)
    # alpha_m does not change the toy's flux: its posterior is its prior whatever the noise, and passes
    assert bad.chi2_pvalue[3] > 0.01 and bad.ks_pvalue[3] > 0.01
    assert noisy.simulator == "emulator, noise x2"


def test_map_laplace_sbc_passes_and_fails_without_the_emulator_error(toy):
    """MAP + Laplace draws; SNR 10, 20, 40 in turn. The spectra of the control lack the emulator's error that
    the likelihood adds (as large as the noise at SNR 20): posteriors too wide, ranks bunched in the middle.
    (Twice the noise would not do as a control here: the MAP's misfit term widens such stars' sigmas.)"""
    right = run_sbc(toy, 300, [10.0, 20.0, 40.0], sampler="map", seed=5)
    test = right.uniformity()
    assert np.all(test.chi2_pvalue[CONSTRAINED] > 0.01) and np.all(test.ks_pvalue[CONSTRAINED] > 0.01), test.to_dict()
    assert np.all(right.diagnostics["status"] == 0)
    wide = run_sbc(toy, 300, [10.0, 20.0, 40.0], sampler="map", seed=5,
                   simulator=EmulatorSimulator(toy, model_error=False))
    bad = wide.uniformity()
    assert np.all(bad.chi2_pvalue[CONSTRAINED] < 1e-4), bad.to_dict()
    assert np.all(wide.coverage_curve().at(0.68)[CONSTRAINED] > 0.78)
    # the same in every SNR bin: the split works on the SBC's own SNRs
    binned = wide.binned_coverage("snr", bins=[5, 15, 30, 50])
    assert [int(curve.n[0]) for curve in binned.curves] == [100, 100, 100]
    assert all(np.all(curve.at(0.68)[CONSTRAINED] > 0.7) for curve in binned.curves)
    quartiles = right.binned_coverage("truth")
    assert len(quartiles.curves) == 4 and quartiles.edges.shape == (4, 5)


@pytest.mark.slow
def test_summary_json_and_figures(nuts_runs, tmp_path: Path):
    right, _ = nuts_runs
    summary = json.loads(right.to_json(tmp_path / "sbc.json"))
    assert json.loads((tmp_path / "sbc.json").read_text()) == summary
    assert summary["n_sim"] == N_SIM and summary["seed"] == SEED and summary["settings"]["num_samples"] == 200
    assert set(summary["uniformity"]["labels"]) == set(LABELS)
    assert len(summary["per_simulation"]["ranks"]) == N_SIM and len(summary["coverage"]["levels"]) == 99
    assert summary["uniformity"]["n_draws"] == 49
    assert summary["coverage_68"]["teff"] == pytest.approx(right.coverage_curve().at(0.68)[0])
    paths = right.plot(tmp_path / "figures")
    assert set(paths) == {"ranks", "ecdf", "coverage"}
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_bad_settings_raise(toy):
    with pytest.raises(ValidationError, match="sampler"):
        run_sbc(toy, 10, 20.0, sampler="hmc")
    with pytest.raises(ValidationError, match="simulator"):
        run_sbc(toy, 10, 20.0, simulator="photons")
    with pytest.raises(ValidationError, match="thinned"):
        run_sbc(toy, 10, 20.0, num_samples=50, num_draws=99)
    with pytest.raises(ValidationError, match="snr"):
        run_sbc(toy, 10, [20.0, -1.0], sampler="map")
    with pytest.raises(ValidationError, match="n_sim"):
        run_sbc(toy, 1, 20.0, sampler="map")
    with pytest.raises(ValidationError, match="simulator returned"):
        run_sbc(toy, 10, 20.0, sampler="map", simulator=lambda truth, snr, rng: (np.ones((3, 300)), np.ones((3, 300))))
    with pytest.raises(ValidationError, match="mock"):
        run_sbc(toy, 10, 20.0, simulator="mock")
    with pytest.raises(ValidationError, match="noise_scale"):
        EmulatorSimulator(toy, noise_scale=0.0)
    density = training_density_prior(LABELS, toy.label_bounds, toy.training_labels)
    with pytest.raises(ValidationError, match="joint density"):
        draw_from_prior(density, 5, np.random.default_rng(0))


def test_prior_draws_and_emulator_simulator(toy):
    """Labels come from the prior given (a custom one here); the simulator's noise matches ivar."""
    prior = box_prior(LABELS, toy.label_bounds)
    narrow = type(prior)(prior.names, (dist.Normal(3500.0, 10.0), *prior.marginals[1:]))
    truth = draw_from_prior(narrow, 4000, np.random.default_rng(1))
    assert truth.dtype == np.float64 and abs(truth[:, 0].std() - 10.0) < 0.5
    assert np.all((truth[:, 1:] >= toy.label_bounds[1:, 0]) & (truth[:, 1:] <= toy.label_bounds[1:, 1]))
    rng = np.random.default_rng(2)
    flux, ivar = EmulatorSimulator(toy)(truth[:200], np.full(200, 10.0), rng)
    clean = np.asarray(jax.vmap(toy)(truth[:200]))
    np.testing.assert_allclose(np.std(flux - clean), np.sqrt(1 / 100 + 1 / 400), rtol=0.02)
    assert np.all(ivar == 100.0)
    bare, _ = EmulatorSimulator(toy, noise_scale=2.0, model_error=False)(truth[:200], np.full(200, 10.0), rng)
    np.testing.assert_allclose(np.std(bare - clean), 0.2, rtol=0.02)


def test_mock_simulator_prepares_spectra_on_a_model_grid():
    from bayesslam.grid import model_wavelength

    wave = model_wavelength()
    simulate = MockSimulator(wave, tuple(reversed(LABEL_NAMES)))
    truth = np.array([[0.0, -0.2, 4.8, 3400.0], [0.1, 0.1, 4.7, 3700.0]])  # alpha_m, fe_h, logg, teff
    flux, ivar = simulate(truth, np.array([30.0, 8.0]), np.random.default_rng(0))
    assert flux.shape == ivar.shape == (2, wave.size)
    good = ivar > 0
    assert good.mean() > 0.8 and abs(np.median(flux[good]) - 1.0) < 0.1
    # the SNR asked for is the SNR of the prepared spectra, roughly
    snr = [np.median(flux[i, good[i]] * np.sqrt(ivar[i, good[i]])) for i in range(2)]
    assert 20 < snr[0] < 45 and 5 < snr[1] < 12
    with pytest.raises(ValidationError, match="mock generator"):
        MockSimulator(wave, ("teff", "logg"))

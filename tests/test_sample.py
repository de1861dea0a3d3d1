"""NUTS and emcee on the one log density: agreement, coverage, prior recovery, negative control, export."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import arviz as az
import emcee
import jax
import numpy as np
import pytest
from scipy import stats
from toymodel import make_toy_model, simulate

from bayesslam.errors import BayesSlamError, SpectrumValidationError
from bayesslam.infer import SamplingError, sample_emcee, sample_nuts


@pytest.fixture(scope="module", autouse=True)
def _in_float64(x64):
    """The tests here build JAX arrays and emulators themselves: 64 bits for them (see conftest.x64)."""

# emulator variance as large as the photon noise at SNR 20: leaving it out must break calibration
S2 = 1.0 / 20.0**2


@pytest.fixture(scope="module")
def toy():
    return make_toy_model(s2=S2)


@pytest.fixture(scope="module")
def one_star(toy):
    return simulate(toy, 1, snr=20, seed=11)


@pytest.fixture(scope="module")
def nuts_one(toy, one_star):
    _, flux, ivar = one_star
    return sample_nuts(toy, flux, ivar, rng_key=jax.random.key(0), num_warmup=1000, num_samples=2000,
                       num_chains=2, progress=False)


def test_nuts_and_emcee_agree(toy, one_star, nuts_one):
    _, flux, ivar = one_star
    emcee_post = sample_emcee(toy, flux, ivar, seed=3, n_walkers=32, n_steps=5000, n_burn=1000, progress=False)
    a, b = nuts_one.summary, emcee_post.summary
    for k in range(3):  # the labels the spectrum constrains
        assert abs(a["mean"][0, k] - b["mean"][0, k]) < 0.1 * a["sd"][0, k]
        assert b["sd"][0, k] == pytest.approx(a["sd"][0, k], rel=0.10)
    assert np.all(a["r_hat"] < 1.01) and np.all(a["ess_bulk"] > 400)
    # emcee: no R-hat over (dependent) walkers; the ESS is the ensemble's, from the autocorrelation time
    assert np.all(np.isnan(b["r_hat"]))
    tau = emcee.autocorr.integrated_time(np.transpose(emcee_post.draws(0).reshape(32, 4000, 4), (1, 0, 2)))
    np.testing.assert_allclose(b["autocorr_time"][0], tau)
    np.testing.assert_allclose(b["ess_bulk"][0], 32 * 4000 / tau)
    assert np.all(b["ess_bulk"] > 400)  # a well-behaved star is not flagged LOW_ESS


def test_label_the_spectrum_ignores_returns_its_prior(toy, nuts_one):
    lo, hi = toy.label_bounds[3]
    alpha = nuts_one.draws(0)[:, 3]
    thinned = alpha[:: max(1, alpha.size // int(nuts_one.summary["ess_bulk"][0, 3]))]
    assert stats.kstest(thinned, stats.uniform(lo, hi - lo).cdf).pvalue > 0.01
    assert np.std(alpha) == pytest.approx((hi - lo) / np.sqrt(12), rel=0.08)


def _coverage(toy, model_for_inference, n_star=120, seed=21):
    truth, flux, ivar = simulate(toy, n_star, snr=20, seed=seed)
    post = sample_nuts(model_for_inference, flux, ivar, rng_key=jax.random.key(seed), num_warmup=300,
                       num_samples=400, batch_size=n_star, progress=False)
    inside68, inside95 = [], []
    for i in range(n_star):
        draws = post.draws(i)[:, :3]
        lo68, hi68 = np.quantile(draws, [0.16, 0.84], axis=0)
        lo95, hi95 = np.quantile(draws, [0.025, 0.975], axis=0)
        inside68.append((truth[i, :3] >= lo68) & (truth[i, :3] <= hi68))
        inside95.append((truth[i, :3] >= lo95) & (truth[i, :3] <= hi95))
    return np.mean(inside68), np.mean(inside95), 3 * n_star


@pytest.mark.slow
def test_posterior_intervals_cover_at_nominal_rates_and_negative_control_fails(toy):
    c68, c95, n = _coverage(toy, toy)
    assert abs(c68 - 0.68) < 3 * np.sqrt(0.68 * 0.32 / n)
    assert abs(c95 - 0.95) < 3 * np.sqrt(0.95 * 0.05 / n)
    # negative control: drop the emulator variance from the likelihood; coverage must fall
    blind = replace(toy, model_variance=np.zeros_like(toy.model_variance))
    b68, b95, _ = _coverage(toy, blind)
    assert b68 < 0.68 - 3 * np.sqrt(0.68 * 0.32 / n)
    assert b95 < 0.95 - 3 * np.sqrt(0.95 * 0.05 / n)


def test_datatree_and_netcdf_round_trip(tmp_path: Path, nuts_one):
    tree = nuts_one.to_datatree()
    assert set(tree["posterior"].data_vars) == {"teff", "logg", "fe_h", "alpha_m"}
    assert tree["posterior"]["teff"].dims == ("chain", "draw", "star")
    path = nuts_one.to_netcdf(tmp_path / "post.nc")
    back = az.from_netcdf(path)
    np.testing.assert_array_equal(back.posterior["teff"].values, nuts_one.idata.posterior["teff"].values)
    assert int(back.sample_stats["diverging"].sum()) == int(nuts_one.summary["n_divergent"].sum())


def test_bad_input_is_refused(toy):
    with pytest.raises(SpectrumValidationError, match="pixels"):
        sample_nuts(toy, np.ones((1, 5)), np.ones((1, 5)), rng_key=jax.random.key(0), progress=False)
    with pytest.raises(SpectrumValidationError, match="no unmasked pixel"):
        sample_emcee(toy, np.ones((1, 300)), np.zeros((1, 300)), seed=0, progress=False)
    flux, ivar = np.ones((2, 300)), np.ones((2, 300))
    with pytest.raises(SamplingError, match="init_labels has shape"):
        sample_nuts(toy, flux, ivar, rng_key=jax.random.key(0), init_labels=np.zeros((1, 4)), progress=False)
    with pytest.raises(SamplingError, match="init_sigma has shape"):
        sample_nuts(toy, flux, ivar, rng_key=jax.random.key(0), init_labels=np.zeros((2, 4)),
                    init_sigma=np.ones((2, 3)), progress=False)
    with pytest.raises(SamplingError, match="NaN"):
        sample_nuts(toy, flux, ivar, rng_key=jax.random.key(0), init_labels=np.full((2, 4), np.nan), progress=False)
    with pytest.raises(BayesSlamError, match="emulator_dtype"):
        sample_nuts(toy, np.ones((1, 300)), np.ones((1, 300)), rng_key=jax.random.key(0), emulator_dtype="float16",
                    progress=False)


@pytest.mark.slow
def test_default_runs_of_well_behaved_stars_are_not_flagged(toy):
    """Default runs on an exact forward model pass the catalog's own convergence checks.

    NUTS: one chain, 1000 + 1000, 24 stars; emcee: 32 walkers, 1000 + 1000, 3 stars. The fixed
    thresholds meant for four chains flag the same NUTS run (negative control).
    """
    from bayesslam.catalog import Flag, FlagThresholds, build_catalog
    from bayesslam.infer import fit_map

    _, flux, ivar = simulate(toy, 24, snr=30, seed=5)
    fit = fit_map(toy, flux, ivar)
    ids = [f"s{i}" for i in range(24)]
    checks = Flag.RHAT_HIGH | Flag.LOW_ESS | Flag.DIVERGENCES
    nuts = sample_nuts(toy, flux, ivar, rng_key=jax.random.key(2), num_warmup=1000, num_samples=1000,
                       init_labels=fit.labels, init_sigma=fit.sigma, progress=False)
    table = build_catalog(ids, np.full(24, 30.0), fit, nuts)
    assert table.meta["RHATMAX"] == 1.05 and table.meta["ESSMIN"] == 100.0
    assert not np.any(np.asarray(table["FLAGS"]) & checks)
    # negative control: the thresholds meant for four chains flag a good part of the same single-chain run
    strict = build_catalog(ids, np.full(24, 30.0), fit, nuts, thresholds=FlagThresholds(r_hat=1.01, ess=400.0))
    assert np.sum((np.asarray(strict["FLAGS"]) & checks) != 0) >= 3
    walkers = sample_emcee(toy, flux[:3], ivar[:3], seed=4, n_steps=2000, n_burn=1000, init_labels=fit.labels[:3],
                           progress=False)
    table = build_catalog(ids[:3], np.full(3, 30.0), fit.take(np.arange(3)), walkers)
    assert table.meta["ESSMIN"] == 400.0 and not np.any(np.asarray(table["FLAGS"]) & checks)

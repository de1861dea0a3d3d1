"""Error calibration: the fit recovers a known scale and floor, calibrated intervals cover, bad input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from bayesslam.calibration import (
    LEVELS,
    CalibrationError,
    ErrorCalibration,
    ModelCalibration,
    calibrated_draws,
    calibrated_quantiles,
    calibrated_sigma,
    coverage,
    draws_pit,
    fit_error_calibration,
    fit_posterior_calibration,
    gaussian_pit,
    half_width,
    pit_coverage,
)

NAMES = ("teff", "fe_h")
SCALE = np.array([0.8, 2.0])
FLOOR = np.array([0.0, 0.05])


def simulate(n: int, seed: int, floor: np.ndarray = FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Errors drawn from N(0, (SCALE sigma)^2 + floor^2) with sigma log-uniform over a factor 15."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(np.log(0.02), np.log(0.3), (n, 2)))
    return rng.standard_normal((n, 2)) * calibrated_sigma(sigma, SCALE, floor), sigma


def binomial(level: float, n: int) -> float:
    return float(np.sqrt(level * (1 - level) / n))


def sigma_bins(sigma: np.ndarray, n_bins: int = 3) -> list[np.ndarray]:
    edges = np.quantile(sigma, np.linspace(0, 1, n_bins + 1))
    return [(sigma >= lo) & (sigma <= hi) for lo, hi in zip(edges[:-1], edges[1:])]


def test_half_width_and_levels():
    assert half_width(LEVELS[0]) == pytest.approx(1.0)
    assert half_width(0.95) == pytest.approx(1.959964, abs=1e-6)
    errors = np.array([[0.5], [1.5], [2.5], [np.nan]])
    sigma = np.ones((4, 1))
    assert coverage(errors, sigma, LEVELS[0])[0] == pytest.approx(1 / 3)
    assert coverage(errors, sigma, 0.95)[0] == pytest.approx(2 / 3)
    assert pit_coverage(gaussian_pit(errors, sigma), 0.95)[0] == pytest.approx(2 / 3)


@pytest.mark.slow
def test_fit_recovers_known_scale_and_floor_within_sampling_error():
    errors, sigma = simulate(3000, seed=1)
    fit = fit_error_calibration(errors, sigma, n_bootstrap=100, seed=2)
    assert np.all(fit.scale_err > 0) and np.all(np.isfinite(fit.floor_err))
    assert np.all(np.abs(fit.scale - SCALE) < 3 * fit.scale_err + 1e-3)
    assert np.all(np.abs(fit.floor - FLOOR) < 3 * fit.floor_err + 2e-3)
    # the bootstrap errors are sampling errors: a few percent with 3000 stars, not a wild over- or under-estimate
    assert 0.005 < fit.scale_err[1] / SCALE[1] < 0.1


def test_calibrated_sigma_covers_held_out_draws_and_uncalibrated_sigma_fails():
    errors, sigma = simulate(2000, seed=3)
    fit = fit_error_calibration(errors, sigma)
    held_errors, held_sigma = simulate(2000, seed=4)
    total = calibrated_sigma(held_sigma, fit.scale, fit.floor)
    for level in LEVELS:
        tolerance = 3 * binomial(level, 2000) * np.sqrt(2)  # the calibration's own sampling error as well
        assert np.all(np.abs(coverage(held_errors, total, level) - level) < tolerance)
        # negative control: the statistical sigma of the under-estimated label (scale 2) under-covers
        assert coverage(held_errors, held_sigma, level)[1] < level - 3 * binomial(level, 2000)
    # the coverage holds across the range of sigma (i.e. SNR), bin by bin
    for member in sigma_bins(held_sigma[:, 1]):
        n = int(member.sum())
        c68 = coverage(held_errors[member], total[member], LEVELS[0])[1]
        assert abs(c68 - LEVELS[0]) < 3 * binomial(LEVELS[0], n) * np.sqrt(2)


def test_scale_without_floor_fails_at_small_sigma_negative_control():
    floor = np.array([0.0, 0.1])
    errors, sigma = simulate(2000, seed=5, floor=floor)
    fit = fit_error_calibration(errors, sigma, fit_floor=False)
    assert np.all(fit.floor == 0)
    held_errors, held_sigma = simulate(2000, seed=6, floor=floor)
    total = calibrated_sigma(held_sigma, fit.scale, fit.floor)
    small, _, large = sigma_bins(held_sigma[:, 1])
    n = int(small.sum())
    assert coverage(held_errors[small], total[small], LEVELS[0])[1] < LEVELS[0] - 3 * binomial(LEVELS[0], n)
    assert coverage(held_errors[large], total[large], LEVELS[0])[1] > LEVELS[0] + 3 * binomial(LEVELS[0], n)


def gaussian_posteriors(n: int, seed: int, n_draw: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """True labels 0; each posterior a Normal of width sigma around a centre off by the simulated error."""
    errors, sigma = simulate(n, seed)
    rng = np.random.default_rng(seed + 100)
    draws = errors[:, None, :] + sigma[:, None, :] * rng.standard_normal((n, n_draw, 2))
    return np.zeros((n, 2)), draws


@pytest.mark.slow
def test_posterior_calibration_recovers_scale_and_floor_and_covers_held_out():
    truth, draws = gaussian_posteriors(800, seed=7)
    fit = fit_posterior_calibration(truth, draws, n_bootstrap=40, seed=1)
    assert np.all(np.abs(fit.scale - SCALE) < 3 * fit.scale_err + 0.02)
    assert np.all(np.abs(fit.floor - FLOOR) < 3 * fit.floor_err + 5e-3)
    held_truth, held_draws = gaussian_posteriors(800, seed=8)
    calibrated = draws_pit(held_truth, held_draws, fit.scale, fit.floor)
    raw = draws_pit(held_truth, held_draws)
    for level in LEVELS:
        assert np.all(np.abs(pit_coverage(calibrated, level) - level) < 3 * np.sqrt(2) * binomial(level, 800))
        assert pit_coverage(raw, level)[1] < level - 3 * binomial(level, 800)


def test_calibrated_quantiles_are_the_convolved_normal_quantiles():
    rng = np.random.default_rng(9)
    centre, width = np.array([1.0, -0.2]), np.array([0.1, 0.03])
    draws = centre + width * stats.norm.ppf((np.arange(4000) + 0.5) / 4000)[:, None]  # an exact Normal sample
    rng.shuffle(draws)
    scale, floor = np.array([1.5, 2.0]), np.array([0.0, 0.04])
    probs = [0.025, 0.1587, 0.5, 0.8413, 0.975]
    q = calibrated_quantiles(draws, scale, floor, probs)
    expected = centre + stats.norm.ppf(probs)[:, None] * np.sqrt((scale * width) ** 2 + floor**2)
    np.testing.assert_allclose(q, expected, atol=5e-3 * np.max(width))
    sampled = calibrated_draws(draws, scale, floor, np.random.default_rng(0))
    np.testing.assert_allclose(np.std(sampled, axis=0), np.sqrt((scale * width) ** 2 + floor**2), rtol=0.05)
    np.testing.assert_allclose(np.median(sampled, axis=0), centre, atol=0.05 * np.max(width))


def test_draws_pit_agrees_with_gaussian_pit_for_normal_posteriors():
    errors, sigma = simulate(50, seed=10)
    base = stats.norm.ppf((np.arange(2000) + 0.5) / 2000)
    draws = errors[:, None, :] + sigma[:, None, :] * base[None, :, None]
    pit = draws_pit(np.zeros((50, 2)), draws, SCALE, FLOOR)
    np.testing.assert_allclose(pit, gaussian_pit(errors, calibrated_sigma(sigma, SCALE, FLOOR)), atol=2e-3)


def test_record_round_trip_through_json():
    errors, sigma = simulate(400, seed=11)
    laplace = ErrorCalibration.measure(NAMES, errors, np.zeros_like(errors), sigma, source="unit test", n_bootstrap=5)
    truth, draws = gaussian_posteriors(200, seed=12, n_draw=50)
    posterior = ErrorCalibration.measure_posterior(NAMES, draws, truth, source="unit test", n_bootstrap=0)
    record = json.loads(json.dumps(ModelCalibration(laplace, posterior).to_metadata(), allow_nan=False))
    back = ModelCalibration.from_metadata(record, NAMES)
    np.testing.assert_array_equal(back.laplace.scale, laplace.scale)
    np.testing.assert_array_equal(back.laplace.floor_err, laplace.floor_err)
    np.testing.assert_array_equal(back.posterior.floor, posterior.floor)
    assert np.all(np.isnan(back.posterior.scale_err))  # no bootstrap: stored as null
    assert back.laplace.source == "unit test" and back.laplace.n_stars == 400
    assert back.laplace.coverage_after["fe_h"][0] == pytest.approx(laplace.coverage_after["fe_h"][0])
    assert ModelCalibration.from_metadata({"laplace": record["laplace"]}, NAMES).posterior is None


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: coverage(np.zeros((5, 2)), np.ones((5, 3))), "same shape"),
        (lambda: coverage(np.zeros((5, 2)), -np.ones((5, 2))), ">= 0"),
        (lambda: coverage(np.zeros((5, 2)), np.ones((5, 2)), 1.5), "level"),
        (lambda: fit_error_calibration(*simulate(30, 0)), "usable stars"),
        (lambda: fit_error_calibration(np.full((100, 1), np.nan), np.ones((100, 1))), "usable stars"),
        (lambda: fit_error_calibration(*simulate(100, 0), n_bins=0), "n_bins"),
        (lambda: fit_posterior_calibration(np.zeros((10, 2)), np.zeros((10, 5, 3))), "n_draw"),
        (lambda: calibrated_sigma(np.ones(2), np.array([1.0, -1.0]), 0.0), "scale"),
        (lambda: calibrated_sigma(np.ones(2), 1.0, np.nan), "floor"),
        (lambda: calibrated_quantiles(np.zeros((10, 2)), 1.0, 0.0, [0.0, 0.5]), "probabilities"),
        (lambda: calibrated_quantiles(np.zeros((1, 2)), 1.0, 0.0, [0.5]), "draws"),
        (lambda: ErrorCalibration(NAMES, "map", np.ones(2), np.zeros(2)), "kind"),
        (lambda: ErrorCalibration(NAMES, "laplace", np.ones(3), np.zeros(2)), "shape"),
        (lambda: ModelCalibration(posterior=ErrorCalibration(NAMES, "laplace", np.ones(2), np.zeros(2))), "kind"),
    ],
)
def test_bad_input_raises_calibration_error(call, match):
    with pytest.raises(CalibrationError, match=match):
        call()


def _record() -> dict:
    return ModelCalibration(ErrorCalibration(NAMES, "laplace", np.array([1.0, 2.0]), np.array([0.0, 0.05]))).to_metadata()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda r: r["laplace"]["scale"].pop("fe_h"), "no scale for"),
        (lambda r: r["laplace"]["floor"].update(fe_h=-0.1), "floor"),
        (lambda r: r["laplace"]["scale"].update(teff="big"), "not a number"),
        (lambda r: r["laplace"].update(kind="posterior"), "says kind"),
        (lambda r: r.update(mcmc=r["laplace"]), "unknown kinds"),
        (lambda r: r["laplace"].update(floor=[0.0, 0.05]), "floor mapping"),
        (lambda r: r.update(laplace="scale 2"), "JSON object"),
    ],
)
def test_corrupt_record_raises_calibration_error(edit, match):
    record = _record()
    edit(record)
    with pytest.raises(CalibrationError, match=match):
        ModelCalibration.from_metadata(record, NAMES)

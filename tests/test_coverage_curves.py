"""Coverage curves at every level, per bin, their bad inputs, and the held-out coverage report with its figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr

from bayesslam.calibration import (
    COVERAGE_LEVELS,
    CalibrationError,
    ErrorCalibration,
    ModelCalibration,
    binned_coverage_curves,
    coverage_curve,
    half_width,
    pit_coverage_curve,
    truth_pit,
)
from bayesslam.validation import coverage_report
from bayesslam.validation.plotting import (
    plot_binned_coverage,
    plot_coverage_curves,
    plot_rank_histograms,
)

N = 1000
NAMES = ("teff", "fe_h")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def gaussian():
    """Truths, estimates with Gaussian errors of known, star-dependent sigmas, and exact posterior draws."""
    rng = np.random.default_rng(11)
    truth = rng.uniform([3200.0, -0.5], [3800.0, 0.4], size=(N, 2))
    sigma = np.array([60.0, 0.1]) * rng.uniform(0.5, 2.0, size=(N, 2))
    estimate = truth + sigma * rng.standard_normal((N, 2))
    draws = estimate[:, None, :] + sigma[:, None, :] * rng.standard_normal((N, 400, 2))
    return truth, estimate, sigma, draws


def _within(curve, sigmas=3.5):
    """Observed coverage within ``sigmas`` binomial standard errors of nominal at every level."""
    se = np.sqrt(curve.levels * (1 - curve.levels) / N)[:, None]
    return np.all(np.abs(curve.deviation) < sigmas * se)


def test_exact_gaussian_errors_lie_on_the_diagonal_and_halved_sigmas_below(gaussian):
    truth, estimate, sigma, draws = gaussian
    curve = coverage_curve(truth, estimate=estimate, sigma=sigma, label_names=NAMES)
    np.testing.assert_array_equal(curve.levels, COVERAGE_LEVELS)
    assert curve.observed.shape == (99, 2) and list(curve.n) == [N, N]
    assert _within(curve), curve.max_abs_deviation
    assert np.all(curve.fraction_outside < 0.15) and np.all(curve.max_abs_deviation < 0.05)
    # the band is the binomial interval of calibrated intervals
    assert np.all(curve.lower <= curve.levels[:, None]) and np.all(curve.upper >= curve.levels[:, None])
    # negative control: sigma / 2, over-confident: below the diagonal at every level, outside the band at most
    narrow = coverage_curve(truth, estimate=estimate, sigma=sigma / 2, label_names=NAMES)
    assert np.all(narrow.deviation < 0) and np.all(narrow.fraction_outside > 0.9)
    np.testing.assert_allclose(narrow.at(0.68), 2 * ndtr(half_width(0.68) / 2) - 1, atol=0.04)  # 0.381
    assert np.all(narrow.mean_deviation < -0.15)
    # and 2 sigma, under-confident, above it
    assert np.all(coverage_curve(truth, estimate=estimate, sigma=2 * sigma).deviation > 0)


def test_posterior_draws_and_calibrated_draws(gaussian):
    truth, _, sigma, draws = gaussian
    curve = coverage_curve(truth, draws=draws, label_names=NAMES)
    assert _within(curve), curve.max_abs_deviation
    # over-confident draws (half as wide about their median), repaired by a calibration scale of 2
    median = np.median(draws, axis=1, keepdims=True)
    narrow = median + 0.5 * (draws - median)
    assert np.all(coverage_curve(truth, draws=narrow).deviation < 0)
    repaired = coverage_curve(truth, draws=narrow, scale=2.0, floor=0.0)
    assert _within(repaired, 4.0), repaired.max_abs_deviation
    # a floor alone: Gaussian widths sqrt(sigma**2 + floor**2)
    wider = coverage_curve(truth, estimate=truth + 0 * sigma, sigma=sigma, floor=np.array([10.0, 0.01]))
    assert np.all(wider.observed == 1.0)


def test_split_by_snr_bins_and_label_quartiles(gaussian):
    """Only the low-SNR half is over-confident: the split shows it in that bin and not in the other."""
    truth, estimate, sigma, _ = gaussian
    snr = np.random.default_rng(3).uniform(5, 50, N)
    quoted = np.where((snr < np.median(snr))[:, None], sigma / 2, sigma)
    by_snr = binned_coverage_curves(truth, snr, bins=2, name="snr", estimate=estimate, sigma=quoted,
                                    label_names=NAMES)
    low, high = by_snr.curves
    assert list(low.n) == [N // 2, N // 2] and list(high.n) == [N // 2, N // 2]
    assert np.all(low.at(0.68) < 0.5) and np.all(np.abs(high.at(0.68) - 0.68) < 0.07)
    assert by_snr.edges.shape == (3,) and by_snr.bin_label(0).startswith("5.")
    # each label by its own true value's quartiles
    quartiles = binned_coverage_curves(truth, truth, name="truth", estimate=estimate, sigma=sigma)
    assert quartiles.edges.shape == (2, 5) and [int(c.n[0]) for c in quartiles.curves] == [250] * 4
    for k in range(2):
        assert np.all(quartiles.edges[k, 1:] > quartiles.edges[k, :-1])
    # explicit edges; the last bin is closed on the right
    edges = binned_coverage_curves(truth, snr, bins=[5.0, 20.0, float(snr.max())], estimate=estimate, sigma=sigma)
    assert sum(int(c.n[0]) for c in edges.curves) == N
    record = json.loads(json.dumps(by_snr.to_dict()))
    assert record["name"] == "snr" and len(record["bins"]) == 2
    assert record["bins"][0]["labels"]["teff"]["n"] == N // 2


@pytest.mark.parametrize("call, match", [
    (lambda t, e, s, d: coverage_curve(t, estimate=e[:10], sigma=s), "shape"),
    (lambda t, e, s, d: coverage_curve(t, draws=d[:, :, :1]), "must be"),
    (lambda t, e, s, d: coverage_curve(np.where(t > 3700, np.nan, t), estimate=e, sigma=s), "truth has NaN"),
    (lambda t, e, s, d: coverage_curve(t, estimate=np.where(e > 3700, np.nan, e), sigma=s), "drop the stars"),
    (lambda t, e, s, d: coverage_curve(t, draws=np.where(d > 3700, np.inf, d)), "draws has NaN or inf"),
    (lambda t, e, s, d: coverage_curve(t, estimate=e, sigma=s, levels=[0.5, 1.0]), r"inside \(0, 1\)"),
    (lambda t, e, s, d: coverage_curve(t, estimate=e, sigma=s, levels=[0.0, 0.5]), r"inside \(0, 1\)"),
    (lambda t, e, s, d: coverage_curve(t, estimate=e, sigma=s, band=1.5), "band"),
    (lambda t, e, s, d: coverage_curve(t, estimate=e), "both estimate and sigma"),
    (lambda t, e, s, d: coverage_curve(t, estimate=e, sigma=s, draws=d), "either draws"),
    (lambda t, e, s, d: coverage_curve(t, estimate=e, sigma=s, label_names=("a",)), "1 label names for 2"),
    (lambda t, e, s, d: binned_coverage_curves(t, t[:, 0][:5], estimate=e, sigma=s), "by has shape"),
    (lambda t, e, s, d: binned_coverage_curves(t, np.full(N, np.nan), estimate=e, sigma=s), "by .* NaN"),
    (lambda t, e, s, d: binned_coverage_curves(t, t[:, 0], bins=[1.0, 0.0], estimate=e, sigma=s), "increasing"),
    (lambda t, e, s, d: pit_coverage_curve(np.full((5, 1), 1.5)), r"\[0, 1\]"),
    (lambda t, e, s, d: coverage_curve(t, estimate=e, sigma=s).at(0.333), "not one of"),
])
def test_bad_input_raises_calibration_error(gaussian, call, match):
    truth, estimate, sigma, draws = gaussian
    with pytest.raises(CalibrationError, match=match):
        call(truth, estimate, sigma, draws)


def test_coverage_report_side_by_side_with_figures(gaussian, tmp_path: Path):
    """MAP + Laplace and posterior draws of the same stars, with a calibration that repairs halved Laplace sigmas."""
    truth, estimate, sigma, draws = gaussian
    calibration = ModelCalibration(
        laplace=ErrorCalibration(NAMES, "laplace", np.array([2.0, 2.0]), np.zeros(2)),
        posterior=ErrorCalibration(NAMES, "posterior", np.ones(2), np.zeros(2)),
    )
    snr = np.random.default_rng(3).uniform(5, 50, N)
    report = coverage_report(truth, label_names=NAMES, estimate=estimate, sigma=sigma / 2, draws=draws,
                             calibration=calibration, by={"snr": snr}, folder=tmp_path)
    assert list(report.curves) == ["laplace", "laplace, calibrated", "posterior", "posterior, calibrated"]
    assert np.all(report.curves["laplace"].at(0.68) < 0.45)
    assert np.all(np.abs(report.curves["laplace, calibrated"].at(0.68) - 0.68) < 0.05)
    assert np.all(np.abs(report.curves["posterior"].at(0.95) - 0.95) < 0.025)
    summary = json.loads((tmp_path / "coverage.json").read_text())
    assert summary == report.summary() and summary["n_star"] == N
    assert summary["kinds"]["laplace, calibrated"]["binned"]["snr"]["name"] == "snr"
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert "coverage_curves.png" in pngs and "coverage_pit.png" in pngs
    assert "coverage_laplace_calibrated_by_snr.png" in pngs and "coverage_posterior_by_snr.png" in pngs
    assert len(pngs) == 2 + 4
    for name in pngs:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG and len(data) > 10_000
    # the PIT of each kind is the one the curves were measured from
    np.testing.assert_allclose(report.pits["laplace, calibrated"], truth_pit(truth, estimate=estimate, sigma=sigma))
    with pytest.raises(CalibrationError, match="estimate and sigma, posterior draws, or both"):
        coverage_report(truth, label_names=NAMES)
    with pytest.raises(CalibrationError, match="both estimate and sigma"):
        coverage_report(truth, label_names=NAMES, estimate=estimate)
    with pytest.raises(CalibrationError, match="calibration is of labels"):
        coverage_report(truth, label_names=("a", "b"), estimate=estimate, sigma=sigma, calibration=calibration)


def test_plotting_options_write_pngs(gaussian, tmp_path: Path):
    """What the reports do not draw: one curve against the diagonal, binned curves, ranks without p-values."""
    truth, estimate, sigma, _ = gaussian
    pit = truth_pit(truth, estimate=estimate, sigma=sigma)[:, :1]
    curve = pit_coverage_curve(pit, label_names=NAMES[:1])
    binned = binned_coverage_curves(truth[:, :1], truth[:, :1], name="truth", estimate=estimate[:, :1],
                                    sigma=sigma[:, :1], label_names=NAMES[:1])
    paths = [
        plot_coverage_curves(curve, tmp_path / "curve.png", difference=False),
        plot_binned_coverage(binned, tmp_path / "binned.png", difference=False),
        plot_rank_histograms(np.floor(pit * 100), 99, tmp_path / "ranks.png", label_names=NAMES[:1]),
    ]
    for path in paths:
        assert path.exists() and path.read_bytes()[:8] == PNG and path.stat().st_size > 5_000

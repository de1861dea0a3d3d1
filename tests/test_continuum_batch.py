"""The fast double-smoothing continuum (Reinsch-form splines) against the scipy reference it replaced.

``bayesslam.preparation.continuum._continuum`` fits its splines with
:mod:`bayesslam.preparation.smoothing_spline`; ``_continuum_reference`` keeps
the former path through :func:`scipy.interpolate.make_smoothing_spline`. They
must give the same continuum within 1e-6 relative on real and mock spectra,
under every setting, and raise the same errors with the same messages.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import make_smoothing_spline

from bayesslam.errors import AllMaskedError, NormalizationError
from bayesslam.grid import model_wavelength
from bayesslam.io import read_spectrum
from bayesslam.mock.observe import ObservingSetup
from bayesslam.mock.survey import make_survey
from bayesslam.preparation.continuum import (
    ContinuumSettings,
    _bins,
    _continuum,
    _continuum_reference,
    _evaluate,
    fit_continuum,
    normalize,
    usable_pixels,
)
from bayesslam.preparation.resample import rebin
from bayesslam.preparation.smoothing_spline import evaluate_natural_spline, fit_smoothing_spline
from bayesslam.wavelength import to_rest_frame

RTOL = 1e-6

#: Settings that move every field the continuum depends on away from its default.
SETTINGS = [
    ContinuumSettings(),
    ContinuumSettings(weights="ivar"),
    ContinuumSettings(p1=1e-9, p2=1e-8, dwave=25.0, q=0.5, rsv_frac=1.2, min_bin_pixels=6),
    ContinuumSettings(p1=1e-5, p2=1e-4, dwave=4.0, q=0.85, rsv_frac=3.0, min_bin_pixels=2, weights="ivar"),
]


def _on_model_grid(spectra) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rest frame and rebinning onto the model grid, as ``prepare_spectrum`` does before it normalizes."""
    wave = model_wavelength()
    rows = []
    for spectrum in spectra:
        wave_in = spectrum.wave
        if not spectrum.meta.rest_frame and np.isfinite(spectrum.meta.v_rad):
            wave_in = to_rest_frame(wave_in, spectrum.meta.v_rad)
        rows.append(rebin(wave_in, spectrum.flux, spectrum.ivar, wave, spectrum.mask))
    return (wave, np.stack([r.flux for r in rows]), np.stack([r.ivar for r in rows]),
            np.stack([r.mask for r in rows]))


@pytest.fixture(scope="module")
def real(sdss_files):
    missing = [p for p in sdss_files if not p.exists()]
    if missing:
        pytest.skip(f"{missing[0]} not present")
    return _on_model_grid(read_spectrum(p) for p in sdss_files)


def _mock(n: int, seed: int, snr_range: tuple[float, float]):
    batch, _ = make_survey(n, np.random.default_rng(seed), setup=ObservingSetup(snr_range=snr_range))
    return _on_model_grid(batch)


@pytest.fixture(scope="module")
def mock():
    """12 mock spectra at SNR 3-50 with masked gaps, masked ends and scattered masked pixels."""
    wave, flux, ivar, mask = _mock(12, 11, (3.0, 50.0))
    rng = np.random.default_rng(4)
    for i in range(0, 12, 2):
        start = rng.integers(0, wave.size - 300)
        mask[i, start : start + rng.integers(20, 300)] = True
    mask[1, :160] = True
    mask[3, -220:] = True
    mask[5, :90] = mask[5, -90:] = True
    mask[7] |= rng.random(wave.size) < 0.3
    ivar[9, 700:760] = 0.0
    flux[9, 700:705] = np.nan
    return wave, flux, ivar, mask


def _relative(new: np.ndarray, old: np.ndarray) -> float:
    return float(np.max(np.abs(new - old) / np.abs(old)))


def _both(wave, flux, ivar, mask, settings):
    good = usable_pixels(flux, ivar, mask)
    return _continuum(wave, flux, ivar, good, settings), _continuum_reference(wave, flux, ivar, good, settings)


# --------------------------------------------------------------------------
# The spline solver
# --------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [1e-2, 1.0, 1e3, 1e7, 1e8])
def test_spline_matches_scipy_with_linear_extension(lam):
    rng = np.random.default_rng(int(np.log10(lam)) + 5)
    x = np.sort(rng.uniform(6000.0, 6400.0, 150))
    y = 50.0 + 5.0 * np.sin(x / 40.0) + rng.normal(0.0, 1.0, x.size)
    w = rng.uniform(0.2, 3.0, x.size)
    spline = fit_smoothing_spline(x, y, w, lam)
    ref = make_smoothing_spline(x, y, w=w, lam=lam)
    # At large lam scipy's B-spline solve itself is off by up to ~5e-7 here (checked against a 40-digit
    # mpmath solve of the same equations, which the Reinsch form matches to ~1e-8).
    rtol = 1e-9 if lam <= 1e3 else RTOL
    np.testing.assert_allclose(spline.f, ref(x), rtol=rtol)
    z = np.linspace(5950.0, 6450.0, 777)  # between the knots and beyond both ends
    np.testing.assert_allclose(evaluate_natural_spline(spline, z), _evaluate(ref, x[0], x[-1], z), rtol=rtol)
    np.testing.assert_array_equal(evaluate_natural_spline(spline, x), spline.f)


def test_spline_solves_the_normal_equations():
    """Independent of scipy: the values minimize ``sum w (y - f)^2 + lam f^T K f`` (dense solve)."""
    rng = np.random.default_rng(2)
    x = np.sort(rng.uniform(0.0, 80.0, 60))
    y = np.cos(x / 9.0) + rng.normal(0.0, 0.3, x.size)
    w = rng.uniform(0.5, 2.0, x.size)
    lam = 40.0
    h = np.diff(x)
    q = np.zeros((x.size, x.size - 2))
    r = np.zeros((x.size - 2, x.size - 2))
    for j in range(x.size - 2):
        q[j : j + 3, j] = 1 / h[j], -1 / h[j] - 1 / h[j + 1], 1 / h[j + 1]
        r[j, j] = (h[j] + h[j + 1]) / 3
        if j < x.size - 3:
            r[j, j + 1] = r[j + 1, j] = h[j + 1] / 6
    k = q @ np.linalg.solve(r, q.T)
    expected = np.linalg.solve(np.diag(w) + lam * k, w * y)
    spline = fit_smoothing_spline(x, y, w, lam)
    np.testing.assert_allclose(spline.f, expected, rtol=1e-10)
    np.testing.assert_allclose(spline.gamma[1:-1], np.linalg.solve(r, q.T @ spline.f), rtol=1e-7, atol=1e-12)


def test_spline_rejects_bad_input():
    x = np.arange(6.0)
    with pytest.raises(ValueError):
        fit_smoothing_spline(x[:2], x[:2], np.ones(2), 1.0)
    with pytest.raises(ValueError):
        fit_smoothing_spline(x[::-1], x, np.ones(6), 1.0)
    with pytest.raises(ValueError):
        fit_smoothing_spline(x, x, np.zeros(6), 1.0)
    with pytest.raises(ValueError):
        fit_smoothing_spline(x, x, np.ones(6), 0.0)


# --------------------------------------------------------------------------
# Same continuum as the scipy reference
# --------------------------------------------------------------------------
@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "ivar", "stiff-wide-bins", "soft-narrow-bins"])
def test_real_spectra_match_reference(real, settings):
    new, old = _both(*real, settings)
    assert new.shape == real[1].shape
    assert _relative(new, old) < RTOL


@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "ivar", "stiff-wide-bins", "soft-narrow-bins"])
def test_mock_spectra_match_reference(mock, settings):
    new, old = _both(*mock, settings)
    assert _relative(new, old) < RTOL


@pytest.mark.parametrize("weights", ["uniform", "ivar"])
def test_low_snr_mock_spectra_match_reference(weights):
    wave, flux, ivar, mask = _mock(6, 12, (1.0, 3.0))
    mask[2, 900:1100] = True
    new, old = _both(wave, flux, ivar, mask, ContinuumSettings(weights=weights))
    assert _relative(new, old) < RTOL


def test_usable_limits_match_reference(mock):
    """min_usable / min_usable_frac at the edge of passing: a sparse spectrum that just qualifies."""
    wave, flux, ivar, mask = mock
    mask = mask[0].copy()
    mask[:200] = mask[1400:] = True
    mask[200:1400] |= np.arange(1200) % 3 != 0  # every third pixel: 2-4 usable per bin, some bins merged
    n_good = int(usable_pixels(flux[0], ivar[0], mask).sum())
    assert 250 < n_good <= 400
    settings = ContinuumSettings(min_usable=n_good, min_usable_frac=(n_good - 0.5) / wave.size,
                                 min_bin_pixels=4)
    new, old = _both(wave, flux[0], ivar[0], mask, settings)
    assert _relative(new, old) < RTOL
    with pytest.raises(NormalizationError, match=f"at least {n_good + 1} are needed"):
        fit_continuum(wave, flux[0], ivar[0], mask, min_usable=n_good + 1)
    with pytest.raises(NormalizationError, match=f"at least {n_good + 1} are needed"):
        fit_continuum(wave, flux[0], ivar[0], mask, min_usable_frac=(n_good + 0.5) / wave.size)


def test_constant_extension_matches_reference():
    wave = model_wavelength()
    flux = np.clip(100.0 - 0.045 * (wave - 6000.0), 1.0, None)
    ivar = np.full(wave.size, 1.0)
    mask = wave > 8000.0
    new, old = _both(wave, flux, ivar, mask, ContinuumSettings())
    assert _relative(new, old) < RTOL
    np.testing.assert_array_equal(new[mask], new[mask][0])  # held constant beyond the usable pixels


def test_public_api_uses_the_fast_path(mock):
    wave, flux, ivar, mask = mock
    good = usable_pixels(flux, ivar, mask)
    fast = _continuum(wave, flux, ivar, good, ContinuumSettings(q=0.6))
    np.testing.assert_array_equal(fit_continuum(wave, flux, ivar, mask, q=0.6), fast)
    np.testing.assert_array_equal(normalize(wave, flux, ivar, mask, q=0.6).continuum, fast)


def test_batch_equals_one_by_one(mock):
    wave, flux, ivar, mask = mock
    batch = normalize(wave, flux, ivar, mask, weights="ivar")
    for i in range(flux.shape[0]):
        single = normalize(wave, flux[i], ivar[i], mask[i], weights="ivar")
        for got, want in zip(batch, single):
            np.testing.assert_array_equal(got[i], want)


# --------------------------------------------------------------------------
# Same errors as the reference
# --------------------------------------------------------------------------
def _error_cases():
    wave = model_wavelength()
    rng = np.random.default_rng(5)
    flux = 100.0 + rng.normal(0.0, 2.0, wave.size)
    ivar = np.full(wave.size, 0.25)
    none = np.zeros(wave.size, dtype=bool)
    few = np.ones(wave.size, dtype=bool)
    few[500:515] = False
    frac = np.ones(wave.size, dtype=bool)
    frac[500:570] = False
    default = ContinuumSettings()
    return [
        ("all masked", AllMaskedError, "no usable pixel", wave, flux, ivar, ~none, default),
        ("ivar zero", AllMaskedError, "no usable pixel", wave, flux, 0.0 * ivar, none, default),
        ("flux nan", AllMaskedError, "no usable pixel", wave, np.full(wave.size, np.nan), ivar, none, default),
        ("min_usable", NormalizationError, "only 15 usable pixels of 1739; at least 20 ", wave, flux, ivar, few,
         ContinuumSettings(min_usable_frac=0.0)),
        ("min_usable_frac", NormalizationError, "only 70 usable pixels of 1739; at least 87 ", wave, flux, ivar,
         frac, default),
        ("nothing kept", NormalizationError, "survived the selection", wave, flux, ivar, none,
         ContinuumSettings(rsv_frac=1e-12)),
        ("negative", NormalizationError, "non-positive or non-finite", wave, -flux, ivar, none, default),
        ("tiny grid", NormalizationError, "only 4 usable pixels of 4;", wave[:4], flux[:4], ivar[:4], none[:4],
         ContinuumSettings(min_usable=5)),
    ]


@pytest.mark.parametrize("case", _error_cases(), ids=lambda c: c[0])
def test_errors_match_reference(case):
    _, error, message, wave, flux, ivar, mask, settings = case
    good = usable_pixels(flux, ivar, mask)
    with pytest.raises(error, match=message) as fast:
        _continuum(wave, flux, ivar, good, settings)
    with pytest.raises(error) as slow:
        _continuum_reference(wave, flux, ivar, good, settings)
    assert str(fast.value) == str(slow.value)
    assert type(fast.value) is type(slow.value)

    # in a batch, the message names the row
    flux2, ivar2 = np.stack([np.abs(flux), np.abs(flux), flux]), np.stack([ivar, ivar, ivar])
    flux2[:2] = np.where(np.isfinite(flux2[:2]), flux2[:2], 100.0)
    ivar2[:2] = np.where(ivar2[:2] > 0, ivar2[:2], 0.25)
    good2 = np.stack([np.ones_like(good), np.ones_like(good), good])
    if settings.rsv_frac < 1e-6 or wave.size < 5:
        good2[:2] = good  # these fail on every row: the first row is named
        row = 0
    else:
        row = 2
    with pytest.raises(error, match=f"^spectrum {row}: ") as fast2:
        _continuum(wave, flux2, ivar2, good2, settings)
    with pytest.raises(error) as slow2:
        _continuum_reference(wave, flux2, ivar2, good2, settings)
    assert str(fast2.value) == str(slow2.value)


def test_bins_match_the_loop_they_replace():
    """The vectorized bin layout equals the former loop over raw bins, merges and remainder included."""

    def loop(x, origin, dwave, min_pixels):
        index = np.ceil((x - origin) / dwave - 0.5).astype(np.int64)
        edges = np.concatenate([[0], np.flatnonzero(np.diff(index)) + 1, [x.size]])
        slices, start = [], 0
        for stop in edges[1:]:
            if stop - start >= min_pixels:
                slices.append((start, int(stop)))
                start = int(stop)
        if start < x.size:
            if slices:
                slices[-1] = (slices[-1][0], x.size)
            else:
                slices.append((0, x.size))
        return slices

    wave = model_wavelength()
    assert _bins(wave[:0], wave[0], 10.0, 3) == loop(wave[:0], wave[0], 10.0, 3) == []
    rng = np.random.default_rng(6)
    for _ in range(300):
        keep = rng.random(wave.size) > rng.uniform(0.0, 0.97)
        if rng.random() < 0.5:
            start = rng.integers(0, wave.size)
            keep[start : start + rng.integers(0, 500)] = False
        x = wave[keep]
        if x.size == 0:
            continue
        min_pixels, dwave = int(rng.integers(1, 12)), float(rng.uniform(1.0, 40.0))
        assert _bins(x, wave[0], dwave, min_pixels) == loop(x, wave[0], dwave, min_pixels)


"""Tests of bayesslam.preparation.continuum (SLAM double-smoothing normalization)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from scipy.interpolate import CubicSpline, make_smoothing_spline

from bayesslam.errors import AllMaskedError, NormalizationError, SpectrumValidationError
from bayesslam.grid import model_wavelength
from bayesslam.preparation.continuum import (
    ContinuumSettings,
    NormalizedSpectrum,
    csaps_to_scipy_lam,
    fit_continuum,
    normalize,
)

DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------
# Independent oracle: the csaps objective solved directly in Reinsch form.
# --------------------------------------------------------------------------
def _reinsch_smooth(x: np.ndarray, y: np.ndarray, w: np.ndarray, p: float) -> np.ndarray:
    """Values at ``x`` of the spline minimizing ``p sum w (y-f)^2 + (1-p) int f''^2``.

    The minimizer is the natural cubic spline whose knot values g and
    interior second derivatives gamma satisfy (Green & Silverman 1994,
    section 2.3.3): ``int f''^2 = g^T Q R^-1 Q^T g`` and the normal
    equations ``(p W + (1-p) Q R^-1 Q^T) g = p W y``, i.e.
    ``(R + (1-p)/p Q^T W^-1 Q) gamma = Q^T y`` and
    ``g = y - (1-p)/p W^-1 Q gamma``. Written from the csaps objective,
    without any reference to scipy's parametrization.
    """
    n = x.size
    h = np.diff(x)
    q_mat = np.zeros((n, n - 2))
    r_mat = np.zeros((n - 2, n - 2))
    for j in range(n - 2):
        q_mat[j, j] = 1 / h[j]
        q_mat[j + 1, j] = -1 / h[j] - 1 / h[j + 1]
        q_mat[j + 2, j] = 1 / h[j + 1]
        r_mat[j, j] = (h[j] + h[j + 1]) / 3
        if j < n - 3:
            r_mat[j, j + 1] = r_mat[j + 1, j] = h[j + 1] / 6
    ratio = (1 - p) / p
    gamma = np.linalg.solve(r_mat + ratio * q_mat.T @ (q_mat / w[:, None]), q_mat.T @ y)
    return y - ratio * (q_mat @ gamma) / w


def _roughness_matrix(x: np.ndarray) -> np.ndarray:
    """``K`` with ``int f''^2 dx = g^T K g`` for the natural cubic spline through ``(x, g)``."""
    n = x.size
    h = np.diff(x)
    q_mat = np.zeros((n, n - 2))
    r_mat = np.zeros((n - 2, n - 2))
    for j in range(n - 2):
        q_mat[j, j] = 1 / h[j]
        q_mat[j + 1, j] = -1 / h[j] - 1 / h[j + 1]
        q_mat[j + 2, j] = 1 / h[j + 1]
        r_mat[j, j] = (h[j] + h[j + 1]) / 3
        if j < n - 3:
            r_mat[j, j + 1] = r_mat[j + 1, j] = h[j + 1] / 6
    return q_mat @ np.linalg.solve(r_mat, q_mat.T)


def _random_problem(seed: int, n: int = 40, span: float = 60.0):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0.0, span, n))
    y = np.sin(x / 8.0) + rng.normal(0.0, 0.2, n)
    w = rng.uniform(0.5, 2.0, n)
    return x, y, w


# --------------------------------------------------------------------------
# The p -> lam conversion
# --------------------------------------------------------------------------
def test_lam_conversion_values():
    assert csaps_to_scipy_lam(0.5) == 1.0
    assert csaps_to_scipy_lam(0.2) == pytest.approx(4.0, rel=1e-15)
    assert csaps_to_scipy_lam(1e-8) == pytest.approx(1e8 - 1, rel=1e-15)


@pytest.mark.parametrize("p", [0.999, 0.9, 0.5, 1e-2, 1e-4, 1e-6])
def test_lam_conversion_matches_direct_csaps_solve(p):
    """scipy with lam = (1-p)/p and non-uniform weights equals the direct csaps minimizer."""
    x, y, w = _random_problem(seed=11)
    expected = _reinsch_smooth(x, y, w, p)
    got = make_smoothing_spline(x, y, w=w, lam=csaps_to_scipy_lam(p))(x)
    assert np.max(np.abs(got - expected)) <= 1e-6 * np.max(np.abs(expected))


@pytest.mark.parametrize("p", [1e-8, 1e-7])
def test_lam_conversion_at_production_scale(p):
    """Production p with x in Angstrom on a stretch of the BOSS grid."""
    x = model_wavelength()[600:760]
    rng = np.random.default_rng(5)
    y = 50.0 * (1.0 + 0.2 * np.sin(x / 40.0)) + rng.normal(0.0, 1.0, x.size)
    w = np.ones(x.size)
    expected = _reinsch_smooth(x, y, w, p)
    got = make_smoothing_spline(x, y, w=w, lam=csaps_to_scipy_lam(p))(x)
    assert np.max(np.abs(got - expected)) <= 1e-6 * np.max(np.abs(expected))


def test_scipy_objective_has_no_extra_factor():
    """scipy's spline minimizes sum w (y-f)^2 + lam int f''^2 exactly as documented.

    Its roughness, integrated exactly (f'' is piecewise linear, so two-point
    Gauss-Legendre is exact per interval), equals g^T K g; and its value of
    the csaps objective is not beaten by small perturbations of its knot values.
    """
    x, y, w = _random_problem(seed=3)
    p = 0.3
    spl = make_smoothing_spline(x, y, w=w, lam=csaps_to_scipy_lam(p))
    g = spl(x)
    k_mat = _roughness_matrix(x)
    nodes, weights = np.polynomial.legendre.leggauss(2)
    d2 = spl.derivative(2)
    mid, half = 0.5 * (x[1:] + x[:-1]), 0.5 * np.diff(x)
    roughness = sum(wt * np.sum(half * d2(mid + half * nd) ** 2) for nd, wt in zip(nodes, weights))
    assert roughness == pytest.approx(g @ k_mat @ g, rel=1e-9)

    def objective(vals):
        return p * np.sum(w * (y - vals) ** 2) + (1 - p) * vals @ k_mat @ vals

    best = objective(g)
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert objective(g + 1e-3 * rng.normal(size=g.size)) > best


def test_p_to_one_gives_natural_interpolant():
    x, y, w = _random_problem(seed=7)
    fine = np.linspace(x[0], x[-1], 400)
    spl = make_smoothing_spline(x, y, w=w, lam=csaps_to_scipy_lam(1.0 - 1e-12))
    natural = CubicSpline(x, y, bc_type="natural")
    assert np.max(np.abs(spl(fine) - natural(fine))) < 1e-5


def test_p_to_zero_gives_least_squares_line():
    x, y, w = _random_problem(seed=7)
    fine = np.linspace(x[0], x[-1], 400)
    spl = make_smoothing_spline(x, y, w=w, lam=csaps_to_scipy_lam(1e-10))
    line = np.polyval(np.polyfit(x, y, 1, w=np.sqrt(w)), fine)
    assert np.max(np.abs(spl(fine) - line)) < 1e-3
    # and a moderate p is far from both limits, so the two checks have teeth
    mid = make_smoothing_spline(x, y, w=w, lam=csaps_to_scipy_lam(0.5))
    assert np.max(np.abs(mid(fine) - line)) > 0.1


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5, float("nan"), float("inf"), "abc", None])
def test_lam_conversion_rejects_bad_p(p):
    with pytest.raises(NormalizationError):
        csaps_to_scipy_lam(p)


@pytest.mark.parametrize("key", ["p1", "p2"])
@pytest.mark.parametrize("bad", [0.0, 1.0, 2.0])
def test_normalize_rejects_bad_p(key, bad):
    wave, flux, ivar, _ = _synthetic(seed=0, n_lines=0)
    with pytest.raises((NormalizationError, SpectrumValidationError)):
        normalize(wave, flux, ivar, **{key: bad})
    with pytest.raises((NormalizationError, SpectrumValidationError)):
        fit_continuum(wave, flux, ivar, **{key: bad})


# --------------------------------------------------------------------------
# Synthetic spectra with a known continuum
# --------------------------------------------------------------------------
def _synthetic(seed: int, n_lines: int = 25, snr: float = 50.0):
    """Smooth continuum times unresolved Gaussian absorption lines, plus noise.

    Lines have depth U(0.1, 0.6) and the width of the BOSS line-spread
    function (R ~ 2000, sigma = lambda / (2.3548 R)).
    """
    rng = np.random.default_rng(seed)
    wave = model_wavelength()
    x = (wave - 7500.0) / 1500.0
    cont = 100.0 * (1.0 + 0.35 * x - 0.25 * x**2 + 0.05 * x**3)
    centre = rng.uniform(wave[0], wave[-1], n_lines)
    depth = rng.uniform(0.1, 0.6, n_lines)
    sigma = centre / (2.3548 * 2000.0)
    profile = np.exp(-0.5 * ((wave - centre[:, None]) / sigma[:, None]) ** 2)
    lines = np.prod(1.0 - depth[:, None] * profile, axis=0)
    err = cont / snr
    flux = cont * lines + rng.normal(0.0, 1.0, wave.size) * err
    return wave, flux, 1.0 / err**2, cont


def _interior(wave: np.ndarray) -> np.ndarray:
    return (wave > 6100.0) & (wave < 8850.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_synthetic_continuum(seed):
    wave, flux, ivar, cont = _synthetic(seed)
    result = normalize(wave, flux, ivar)
    err = np.abs(result.continuum / cont - 1.0)[_interior(wave)]
    assert np.median(err) < 0.01
    assert np.percentile(err, 95) < 0.03
    # Negative control: a plain smoothing spline through all pixels (the
    # "mean" continuum, no pixel selection) is pulled down by the lines.
    naive = make_smoothing_spline(wave, flux, lam=csaps_to_scipy_lam(1e-7))(wave)
    naive_err = np.abs(naive / cont - 1.0)[_interior(wave)]
    assert np.median(err) < 0.75 * np.median(naive_err)


def test_line_free_spectrum_is_unbiased():
    wave, flux, ivar, cont = _synthetic(seed=4, n_lines=0)
    result = normalize(wave, flux, ivar)
    rel = (result.continuum / cont - 1.0)[_interior(wave)]
    assert abs(np.median(rel)) < 0.004
    assert np.max(np.abs(rel)) < 0.015


def test_continuum_scales_with_flux():
    """No absolute threshold hides in the method: scaling the flux scales the continuum."""
    wave, flux, ivar, _ = _synthetic(seed=1)
    base = fit_continuum(wave, flux, ivar)
    scaled = fit_continuum(wave, flux * 1e-17, ivar * 1e34)
    np.testing.assert_allclose(scaled, base * 1e-17, rtol=1e-8)


# --------------------------------------------------------------------------
# Bookkeeping: ivar, clipping, masks, NaN
# --------------------------------------------------------------------------
def _corrupted():
    """Synthetic spectrum with masked, NaN, zero-ivar, and out-of-range pixels."""
    wave, flux, ivar, cont = _synthetic(seed=2)
    flux = flux.copy()
    ivar = ivar.copy()
    mask = np.zeros(wave.size, dtype=bool)
    mask[100:130] = True
    flux[100:130] = 1e6  # garbage under the mask
    flux[300] = np.nan  # NaN flux, ivar > 0
    ivar[400:405] = 0.0
    flux[400:405] = -1e6  # garbage where ivar == 0
    flux[700] = 5.0 * cont[700]  # cosmic ray: normalized flux > 2
    flux[900] = -0.5 * cont[900]  # negative spike: normalized flux < 0
    return wave, flux, ivar, mask, cont


def test_normalized_ivar_and_clipping():
    wave, flux, ivar, mask, _ = _corrupted()
    res = normalize(wave, flux, ivar, mask)
    assert isinstance(res, NormalizedSpectrum)
    for arr in res:
        assert arr.shape == wave.shape
    for arr in (res.flux, res.ivar, res.continuum):
        assert np.all(np.isfinite(arr))
    assert np.all(res.continuum > 0)
    assert not np.any(np.isnan(res.flux))

    ok = ~res.mask
    np.testing.assert_array_equal(res.ivar[ok], ivar[ok] * res.continuum[ok] ** 2)
    np.testing.assert_array_equal(res.flux[ok], flux[ok] / res.continuum[ok])
    assert np.all(res.ivar[res.mask] == 0.0)

    # clipped pixels: value at the clip bound, weight zero, masked
    assert res.flux[700] == 2.0 and res.ivar[700] == 0.0 and res.mask[700]
    assert res.flux[900] == 0.0 and res.ivar[900] == 0.0 and res.mask[900]
    assert np.all((res.flux >= 0.0) & (res.flux <= 2.0))

    # unusable input pixels stay masked with ivar 0 and the documented fill 1.0
    bad_in = mask | ~np.isfinite(flux) | (ivar == 0)
    assert np.all(res.mask[bad_in])
    assert np.all(res.ivar[bad_in] == 0.0)
    assert np.all(res.flux[bad_in] == 1.0)
    # nothing else is masked
    assert res.mask.sum() == bad_in.sum() + 2


def test_masked_pixels_do_not_influence_continuum():
    wave, flux, ivar, mask, _ = _corrupted()
    other = flux.copy()
    other[mask] = -3.0
    other[ivar == 0] = 123.0
    other[300] = np.inf
    a = fit_continuum(wave, flux, ivar, mask)
    b = fit_continuum(wave, other, ivar, mask)
    np.testing.assert_array_equal(a, b)


def test_masked_edges_are_extended_linearly():
    wave, flux, ivar, cont = _synthetic(seed=3)
    mask = np.zeros(wave.size, dtype=bool)
    mask[:150] = True
    mask[-150:] = True
    res = normalize(wave, flux, ivar, mask)
    assert np.all(np.isfinite(res.continuum)) and np.all(res.continuum > 0)
    for side in (slice(0, 140), slice(-140, None)):
        slope = np.diff(res.continuum[side]) / np.diff(wave[side])
        np.testing.assert_allclose(slope, slope[0], rtol=1e-6)
    # and the masked edges still sit near the (smooth) truth
    assert np.max(np.abs(res.continuum / cont - 1.0)) < 0.1


def test_masked_edge_falls_back_to_constant_when_line_would_cross_zero():
    wave = model_wavelength()
    flux = np.clip(100.0 - 0.045 * (wave - 6000.0), 1.0, None)
    ivar = np.full(wave.size, 1.0)
    mask = wave > 8000.0
    res = normalize(wave, flux, ivar, mask)
    assert np.all(res.continuum > 0)
    red = res.continuum[mask]
    np.testing.assert_allclose(red, red[0], rtol=1e-12)
    # noise-free straight line: the continuum reproduces it up to the last usable pixel
    np.testing.assert_allclose(res.continuum[~mask], flux[~mask], rtol=1e-6)
    np.testing.assert_allclose(red[0], flux[~mask][-1], rtol=1e-6)


def test_sparse_usable_pixels_still_normalize():
    """Every third pixel usable: bins hold 2-3 pixels, the method must still cope."""
    wave, flux, ivar, cont = _synthetic(seed=5)
    mask = np.ones(wave.size, dtype=bool)
    mask[::3] = False
    res = normalize(wave, flux, ivar, mask)
    assert np.all(np.isfinite(res.continuum)) and np.all(res.continuum > 0)
    assert np.median(np.abs(res.continuum / cont - 1.0)[_interior(wave)]) < 0.03


def test_ivar_weights_option():
    wave, flux, ivar, _ = _synthetic(seed=6)
    ivar = np.full(wave.size, np.median(ivar))
    uniform = fit_continuum(wave, flux, ivar)
    np.testing.assert_allclose(fit_continuum(wave, flux, ivar, weights="ivar"), uniform, rtol=1e-10)
    ramp = ivar * np.linspace(0.2, 5.0, wave.size)
    different = fit_continuum(wave, flux, ramp, weights="ivar")
    assert not np.allclose(different, uniform, rtol=1e-6)
    with pytest.raises(NormalizationError):
        fit_continuum(wave, flux, ivar, weights="sigma")


def test_batch_equals_rows():
    rows = [_synthetic(seed=s) for s in (7, 8, 9)]
    wave = rows[0][0]
    flux = np.stack([r[1] for r in rows])
    ivar = np.stack([r[2] for r in rows])
    mask = np.zeros(flux.shape, dtype=bool)
    mask[1, 200:260] = True
    batch = normalize(wave, flux, ivar, mask)
    for i in range(3):
        single = normalize(wave, flux[i], ivar[i], mask[i])
        for got, want in zip(batch, single):
            np.testing.assert_array_equal(got[i], want)
    assert batch.flux.shape == flux.shape


def test_batch_error_names_the_row():
    wave, flux, ivar, _ = _synthetic(seed=1)
    flux2 = np.stack([flux, flux])
    ivar2 = np.stack([ivar, np.zeros_like(ivar)])
    with pytest.raises(AllMaskedError, match="spectrum 1"):
        normalize(wave, flux2, ivar2)


def test_pixel_selection_rule():
    """Keep |r - Q_q(bin)| <= rsv_frac * 1.4826 * MAD(bin), bin by bin."""
    from bayesslam.preparation.continuum import _select_continuum

    rng = np.random.default_rng(8)
    x = np.arange(40, dtype=float)  # 4 bins of 10 "Angstrom"
    resid = rng.normal(0.0, 1.0, 40)
    resid[[3, 14, 25]] = [-6.0, -4.0, 5.0]
    keep = _select_continuum(x, resid, 4.5, ContinuumSettings())  # bins 0-9, 10-19, ...
    expected = np.zeros(40, dtype=bool)
    for lo in range(0, 40, 10):
        r = resid[lo : lo + 10]
        sigma = 1.4826 * np.median(np.abs(r - np.median(r)))
        expected[lo : lo + 10] = np.abs(r - np.quantile(r, 0.7)) <= 2.0 * sigma
    np.testing.assert_array_equal(keep, expected)
    assert not keep[[3, 14, 25]].any()
    assert 0 < (~keep).sum() < 20


def test_pixel_selection_matches_loop_reference_on_masked_grids():
    """The vectorized per-bin statistics equal numpy's, also where sparse bins are merged."""
    from bayesslam.preparation.continuum import _bins, _select_continuum

    rng = np.random.default_rng(9)
    wave = model_wavelength()
    for _ in range(10):
        x = wave[rng.random(wave.size) > rng.uniform(0.0, 0.8)]
        resid = rng.standard_t(3, x.size)
        settings = ContinuumSettings(q=rng.uniform(0.1, 0.9), rsv_frac=rng.uniform(0.5, 3.0))
        expected = np.zeros(x.size, dtype=bool)
        for a, b in _bins(x, wave[0], settings.dwave, settings.min_bin_pixels):
            r = resid[a:b]
            sigma = 1.4826 * np.median(np.abs(r - np.median(r)))
            expected[a:b] = np.abs(r - np.quantile(r, settings.q)) <= settings.rsv_frac * sigma
        np.testing.assert_array_equal(_select_continuum(x, resid, wave[0], settings), expected)


def test_sparse_bins_are_merged():
    from bayesslam.preparation.continuum import _bins

    x = np.array([0.0, 1.0, 2.0, 3.0, 12.0, 31.0, 32.0, 33.0, 34.0, 51.0])
    # raw bins (width 10 centred on 0, 10, ...): [0-3], [12], [31-34], [51]
    assert _bins(x, 0.0, 10.0, 3) == [(0, 4), (4, 10)]
    assert _bins(x, 0.0, 10.0, 1) == [(0, 4), (4, 5), (5, 9), (9, 10)]
    assert _bins(x[:2], 0.0, 10.0, 3) == [(0, 2)]


# --------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------
def test_all_masked_raises():
    wave, flux, ivar, _ = _synthetic(seed=0)
    with pytest.raises(AllMaskedError):
        normalize(wave, flux, ivar, np.ones(wave.size, dtype=bool))
    with pytest.raises(AllMaskedError):
        normalize(wave, flux, np.zeros_like(ivar))
    with pytest.raises(AllMaskedError):
        fit_continuum(wave, np.full(wave.size, np.nan), ivar)


def test_too_few_pixels_raise():
    wave, flux, ivar, _ = _synthetic(seed=0)
    mask = np.ones(wave.size, dtype=bool)
    mask[500:515] = False  # 15 usable pixels < 20
    with pytest.raises(NormalizationError, match="usable pixels"):
        normalize(wave, flux, ivar, mask)
    mask[500:570] = False  # 70 usable pixels < 5% of 1739 = 87
    with pytest.raises(NormalizationError, match="usable pixels"):
        normalize(wave, flux, ivar, mask)
    mask[500:600] = False  # 100 usable pixels: enough
    normalize(wave, flux, ivar, mask)


def test_negative_flux_raises():
    wave, flux, ivar, _ = _synthetic(seed=0)
    with pytest.raises(NormalizationError, match="non-positive"):
        normalize(wave, -flux, ivar)


def test_validation_errors():
    wave, flux, ivar, _ = _synthetic(seed=0)
    with pytest.raises(SpectrumValidationError):
        normalize(wave, flux[:-1], ivar[:-1])
    with pytest.raises(SpectrumValidationError):
        normalize(wave[::-1], flux, ivar)
    with pytest.raises(SpectrumValidationError):
        normalize(wave, flux, -ivar)
    with pytest.raises(SpectrumValidationError):
        normalize(wave, flux, ivar, np.zeros(3, dtype=bool))
    with pytest.raises(NormalizationError):
        normalize(wave, flux, ivar, q=1.2)
    with pytest.raises(NormalizationError):
        normalize(wave, flux, ivar, dwave=0.0)
    with pytest.raises(TypeError):
        normalize(wave, flux, ivar, p3=0.5)


def test_settings_defaults_and_roundtrip():
    s = ContinuumSettings()
    d = s.to_dict()
    assert (d["p1"], d["p2"], d["dwave"], d["q"], d["rsv_frac"]) == (1e-8, 1e-7, 10.0, 0.7, 2.0)
    assert (d["clip_min"], d["clip_max"], d["weights"]) == (0.0, 2.0, "uniform")
    assert ContinuumSettings(**json.loads(json.dumps(d))) == s
    with pytest.raises(Exception):
        s.p1 = 0.5  # frozen
    wave, flux, ivar, _ = _synthetic(seed=0)
    a = normalize(wave, flux, ivar, **d)
    b = normalize(wave, flux, ivar)
    np.testing.assert_array_equal(a.continuum, b.continuum)


# --------------------------------------------------------------------------
# Real SDSS M dwarfs
# --------------------------------------------------------------------------
# Pseudo-continuum windows of M dwarfs: the reference (denominator) bands of
# spectral indices, vacuum Angstrom, as tabulated in PyHammer (Kesseli et al.
# 2017, indices from Reid et al. 1995, Kirkpatrick et al. 1991/1999, Covey
# et al. 2007 and others): the VO 7445 side bands, the VO 7912, Na I 8190 and
# TiO 8440 continua. All lie between the strong TiO/VO/CaH bands.
# The Reid et al. (1995) CaH/TiO5 continuum, 7044-7048 A, is not used: it is a
# ~15 A peak between the CaH band and the TiO 7053 band head, far narrower than
# the smoothing scale of the p2 = 1e-7 spline (~60 A), so by construction the
# normalized flux there sits at 1.2-1.5 for M1-M5 dwarfs.
CONTINUUM_WINDOWS = [
    (7352.0, 7402.0),
    (7512.1, 7562.1),
    (8102.2, 8152.2),
    (8153.2, 8177.2),
    (8402.3, 8422.3),
]

# (file, spectral type, largest allowed fraction of valid pixels with
# normalized flux > 1.1 over the whole 6000-9000 A). The M5's deep bands leave
# narrow inter-band peaks above the smooth pseudo-continuum (11% of pixels).
M_DWARFS = [
    ("spec-0618-52049-0372.fits", "M1", 0.10),
    ("spec-1079-52621-0509.fits", "M2", 0.10),
    ("spec-1123-52882-0065.fits", "M5", 0.15),
]


def _read_sdss(name: str):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    with fits.open(path) as hdul:
        tab = hdul[1].data
        wave = 10.0 ** tab["loglam"].astype(float)
        flux = tab["flux"].astype(float)
        ivar = tab["ivar"].astype(float)
        mask = (tab["and_mask"] != 0) | (ivar == 0)
    cut = (wave > 6000.0) & (wave < 9000.0)
    return wave[cut], flux[cut], ivar[cut], mask[cut]


def _window_failures(wave, norm_flux, valid):
    """Reasons the normalized flux fails the continuum-window checks (empty if it passes)."""
    failures = []
    in_any = np.zeros(wave.size, dtype=bool)
    for lo, hi in CONTINUUM_WINDOWS:
        sel = valid & (wave >= lo) & (wave <= hi)
        in_any |= sel
        med = np.median(norm_flux[sel])
        if abs(med - 1.0) > 0.1:
            failures.append(f"median {med:.3f} in {lo}-{hi}")
    p90 = np.percentile(norm_flux[in_any], 90)
    if not 0.95 <= p90 <= 1.1:
        failures.append(f"90th percentile {p90:.3f} over the windows")
    return failures


@pytest.mark.parametrize(("name", "sptype", "max_frac_high"), M_DWARFS)
def test_real_m_dwarf(name, sptype, max_frac_high):
    wave, flux, ivar, mask = _read_sdss(name)
    res = normalize(wave, flux, ivar, mask)
    valid = ~res.mask
    assert np.all(np.isfinite(res.flux)) and np.all(np.isfinite(res.ivar))
    assert np.all(res.continuum > 0)
    assert np.all(res.mask[mask])
    assert valid.sum() > 0.9 * wave.size
    assert _window_failures(wave, res.flux, valid) == []
    assert np.mean(res.flux[valid] > 1.1) < max_frac_high


def test_real_m_dwarf_negative_controls():
    """Continua that are too stiff or too low fail the same window checks."""
    wave, flux, ivar, mask = _read_sdss("spec-1079-52621-0509.fits")
    valid = ~mask
    line = np.polyval(np.polyfit(wave[valid], flux[valid], 1), wave)  # the p -> 0 limit
    assert _window_failures(wave, flux / line, valid) != []
    cont = fit_continuum(wave, flux, ivar, mask)
    assert _window_failures(wave, flux / (0.9 * cont), valid) != []

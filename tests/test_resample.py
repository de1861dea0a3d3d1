"""Tests for bayesslam.preparation.resample: overlap matrix, flux conservation, variance, masks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from bayesslam.errors import AllMaskedError, NoOverlapError, SpectrumValidationError
from bayesslam.grid import boss_wavelength, model_wavelength, pixel_edges
from bayesslam.preparation.resample import (
    COVERAGE_TOLERANCE,
    overlap_matrix,
    rebin,
    rebin_matrix,
)

LINES = [(5500.0, 3.0, 0.4), (6563.0, 4.0, 0.6), (7000.0, 1.5, 0.3), (8500.0, 2.5, 0.5)]


def smooth_flux(wave: np.ndarray) -> np.ndarray:
    """Slope plus Gaussian absorption lines."""
    out = 1.0 + 1e-4 * (wave - 7500.0)
    for centre, sigma, depth in LINES:
        out = out - depth * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)
    return out


def smooth_integral(a: float, b: float) -> float:
    """Exact integral of :func:`smooth_flux` from ``a`` to ``b``."""
    total = (b - a) + 0.5e-4 * ((b - 7500.0) ** 2 - (a - 7500.0) ** 2)
    for centre, sigma, depth in LINES:
        scale = np.sqrt(2.0) * sigma
        gauss = erf((b - centre) / scale) - erf((a - centre) / scale)
        total -= depth * sigma * np.sqrt(np.pi / 2.0) * gauss
    return float(total)


def brute_overlap(wave_in: np.ndarray, wave_out: np.ndarray) -> np.ndarray:
    """Reference overlap matrix by an explicit double loop."""
    e_in, e_out = pixel_edges(wave_in), pixel_edges(wave_out)
    ref = np.zeros((wave_out.size, wave_in.size))
    for j in range(wave_out.size):
        for i in range(wave_in.size):
            ref[j, i] = max(0.0, min(e_in[i + 1], e_out[j + 1]) - max(e_in[i], e_out[j]))
    return ref


def mc_check(wave_in: np.ndarray, wave_out: np.ndarray, seed: int) -> np.ndarray:
    """Rebin 2000 noise realisations; return empirical std / predicted std per pixel."""
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.5, 2.0, wave_in.size)
    truth = smooth_flux(wave_in)
    noisy = truth + sigma * rng.standard_normal((2000, wave_in.size))
    ivar = np.broadcast_to(1.0 / sigma**2, noisy.shape)
    res = rebin(wave_in, noisy, ivar, wave_out)
    assert not res.mask.any()
    # every realisation has the same ivar
    np.testing.assert_allclose(res.ivar, np.broadcast_to(res.ivar[0], res.ivar.shape), rtol=0)
    return res.flux.std(axis=0, ddof=1) * np.sqrt(res.ivar[0])


# ---------------------------------------------------------------- overlap matrix


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlap_matrix_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    wave_in = np.sort(rng.uniform(6000.0, 6100.0, 40))
    wave_out = np.cumsum(rng.uniform(0.5, 5.0, 25)) + 5990.0
    got = overlap_matrix(wave_in, wave_out)
    assert got.shape == (25, 40)
    np.testing.assert_allclose(got.toarray(), brute_overlap(wave_in, wave_out), rtol=0, atol=1e-9)


def test_overlap_matrix_boss_is_diagonal_widths() -> None:
    wave = boss_wavelength()
    w = overlap_matrix(wave, wave)
    assert w.shape == (4648, 4648)
    assert w.nnz == 4648
    np.testing.assert_array_equal(w.diagonal(), np.diff(pixel_edges(wave)))


def test_overlap_matrix_row_and_column_sums_are_widths() -> None:
    wave_in = np.linspace(5000.0, 10000.0, 20001)
    wave_out = model_wavelength()
    w = overlap_matrix(wave_in, wave_out)
    np.testing.assert_allclose(w.sum(axis=1).A1, np.diff(pixel_edges(wave_out)), rtol=1e-12)
    col = w.sum(axis=0).A1
    e_out = pixel_edges(wave_out)
    e_in = pixel_edges(wave_in)
    inside = (e_in[:-1] >= e_out[0]) & (e_in[1:] <= e_out[-1])
    np.testing.assert_allclose(col[inside], np.diff(e_in)[inside], rtol=1e-12)
    assert np.all(col[(e_in[1:] <= e_out[0]) | (e_in[:-1] >= e_out[-1])] == 0)


def test_rebin_matrix_rows_sum_to_one() -> None:
    wave_in = np.linspace(5900.0, 9100.0, 3001)
    r = rebin_matrix(wave_in, model_wavelength())
    np.testing.assert_allclose(r.sum(axis=1).A1, 1.0, rtol=1e-13)


# ---------------------------------------------------------------- flux


def test_integral_conserved_onto_model_grid() -> None:
    wave_in = np.linspace(5000.0, 10000.0, 100001)
    flux_in = smooth_flux(wave_in)
    wave_out = model_wavelength()
    res = rebin(wave_in, flux_in, np.ones_like(flux_in), wave_out)
    assert not res.mask.any()
    np.testing.assert_allclose(res.coverage, 1.0, rtol=0, atol=COVERAGE_TOLERANCE)
    e_out = pixel_edges(wave_out)
    out_integral = np.sum(res.flux * np.diff(e_out))
    # the input's integral over exactly the output span, via the overlap column sums
    in_integral = np.sum(flux_in * overlap_matrix(wave_in, wave_out).sum(axis=0).A1)
    np.testing.assert_allclose(out_integral, in_integral, rtol=1e-10)
    # and the analytic integral of the underlying function over the same span
    np.testing.assert_allclose(out_integral, smooth_integral(e_out[0], e_out[-1]), rtol=1e-6)
    # locally too: pixel means of the function, to the input's sampling accuracy
    exact = np.array([smooth_integral(a, b) for a, b in zip(e_out[:-1], e_out[1:])])
    exact /= np.diff(e_out)
    np.testing.assert_allclose(res.flux, exact, rtol=0, atol=1e-4)


def test_constant_spectrum_stays_constant() -> None:
    rng = np.random.default_rng(3)
    wave_in = np.sort(rng.uniform(5800.0, 9200.0, 5000))
    res = rebin(wave_in, np.full(wave_in.size, 3.7), np.full(wave_in.size, 4.0), model_wavelength())
    assert not res.mask.any()
    np.testing.assert_allclose(res.flux, 3.7, rtol=1e-13, atol=0)


def test_identical_grid_is_identity() -> None:
    rng = np.random.default_rng(4)
    wave = model_wavelength()
    flux = rng.normal(1.0, 0.1, wave.size)
    ivar = rng.uniform(10.0, 100.0, wave.size)
    res = rebin(wave, flux, ivar, wave)
    assert not res.mask.any()
    np.testing.assert_array_equal(res.coverage, 1.0)
    np.testing.assert_allclose(res.flux, flux, rtol=1e-14, atol=0)
    np.testing.assert_allclose(res.ivar, ivar, rtol=1e-14, atol=0)


def test_boss_to_model_subgrid_is_exact_selection() -> None:
    rng = np.random.default_rng(5)
    wave = boss_wavelength()
    flux = rng.normal(1.0, 0.1, wave.size)
    ivar = rng.uniform(10.0, 100.0, wave.size)
    wave_out = model_wavelength()
    sel = np.isin(wave, wave_out)
    res = rebin(wave, flux, ivar, wave_out)
    assert not res.mask.any()
    assert overlap_matrix(wave, wave_out).nnz == wave_out.size
    np.testing.assert_allclose(res.flux, flux[sel], rtol=1e-14, atol=0)
    np.testing.assert_allclose(res.ivar, ivar[sel], rtol=1e-14, atol=0)


def test_rounding_level_edge_offsets_do_not_touch_neighbours() -> None:
    """A sub-grid recomputed independently differs at the 1e-12 A level; no slivers."""
    wave = boss_wavelength()
    wave_out = 10.0 ** (np.log10(wave[100]) + 1e-4 * np.arange(3000))
    assert 0 < np.abs(wave_out - wave[100:3100]).max() < 1e-10
    assert overlap_matrix(wave, wave_out).nnz == wave_out.size
    mask = np.zeros(wave.size, dtype=bool)
    mask[::50] = True
    res = rebin(wave, np.ones(wave.size), np.ones(wave.size), wave_out, mask_in=mask)
    np.testing.assert_array_equal(res.mask, mask[100:3100])
    np.testing.assert_allclose(res.ivar[~res.mask], 1.0, rtol=1e-9)


# ---------------------------------------------------------------- variance


def test_noise_propagation_downsampling_monte_carlo() -> None:
    wave_out = model_wavelength()[200:400]
    wave_in = np.arange(wave_out[0] - 5.123, wave_out[-1] + 5.0, 0.37)
    ratio = mc_check(wave_in, wave_out, seed=6)
    assert abs(np.median(ratio) - 1.0) < 0.02
    assert np.all(np.abs(ratio - 1.0) < 0.10)


def test_noise_propagation_upsampling_monte_carlo() -> None:
    wave_out = model_wavelength()[200:400]
    # log grid 5x coarser than the output, shifted by a non-integer number of output pixels
    wave_in = 10.0 ** (np.log10(wave_out[0]) - 7.3e-4 + 5e-4 * np.arange(45))
    ratio = mc_check(wave_in, wave_out, seed=7)
    assert abs(np.median(ratio) - 1.0) < 0.02
    assert np.all(np.abs(ratio - 1.0) < 0.10)


def test_upsampling_variance_exact_inside_one_input_pixel() -> None:
    wave_out = model_wavelength()[200:400]
    wave_in = 10.0 ** (np.log10(wave_out[0]) - 7.3e-4 + 5e-4 * np.arange(45))
    ivar_in = np.linspace(1.0, 9.0, wave_in.size)
    res = rebin(wave_in, np.ones(wave_in.size), ivar_in, wave_out)
    w = overlap_matrix(wave_in, wave_out)
    single = np.diff(w.indptr) == 1
    assert single.sum() > 100
    src = w.indices[w.indptr[:-1][single]]
    np.testing.assert_allclose(res.ivar[single], ivar_in[src], rtol=1e-12)
    # pixels straddling two input pixels are less noisy than either of them
    two = np.flatnonzero(np.diff(w.indptr) == 2)
    for j in two:
        i0, i1 = w.indices[w.indptr[j] : w.indptr[j + 1]]
        assert res.ivar[j] > max(ivar_in[i0], ivar_in[i1])


# ---------------------------------------------------------------- masks & coverage


@pytest.mark.parametrize("how", ["mask", "ivar0", "nan", "inf"])
def test_bad_input_pixel_masks_exactly_the_pixels_it_touches(how: str) -> None:
    rng = np.random.default_rng(8)
    wave_out = model_wavelength()[100:300]
    wave_in = np.arange(wave_out[0] - 4.0, wave_out[-1] + 4.0, 0.83)
    flux = rng.normal(1.0, 0.05, wave_in.size)
    ivar = np.full(wave_in.size, 100.0)
    mask = np.zeros(wave_in.size, dtype=bool)
    bad = wave_in.size // 2
    if how == "mask":
        mask[bad] = True
    elif how == "ivar0":
        ivar[bad] = 0.0
    else:
        flux[bad] = np.nan if how == "nan" else np.inf
    res = rebin(wave_in, flux, ivar, wave_out, mask_in=mask)
    expected = np.zeros(wave_out.size, dtype=bool)
    expected[overlap_matrix(wave_in, wave_out)[:, bad].nonzero()[0]] = True
    assert 1 <= expected.sum() <= 2
    np.testing.assert_array_equal(res.mask, expected)
    assert np.all(res.ivar[expected] == 0) and np.all(res.ivar[~expected] > 0)
    assert np.all(np.isfinite(res.flux)) and np.all(np.isfinite(res.ivar))
    # masked pixels carry the mean of the usable inputs, not a zero-diluted value
    assert np.all(np.abs(res.flux[expected] - 1.0) < 0.3)
    # unmasked pixels are unaffected by the bad pixel
    flux_ok = np.where(np.arange(wave_in.size) == bad, 1.0, flux)
    clean = rebin(wave_in, flux_ok, np.full(wave_in.size, 100.0), wave_out)
    np.testing.assert_array_equal(res.flux[~expected], clean.flux[~expected])
    np.testing.assert_array_equal(res.ivar[~expected], clean.ivar[~expected])


def test_pixels_outside_coverage_masked() -> None:
    wave_out = model_wavelength()
    wave_in = np.linspace(7000.0, 8000.0, 2001)
    res = rebin(wave_in, smooth_flux(wave_in), np.ones(wave_in.size), wave_out)
    e_in = pixel_edges(wave_in)
    e_out = pixel_edges(wave_out)
    full = (e_out[:-1] >= e_in[0]) & (e_out[1:] <= e_in[-1])
    np.testing.assert_array_equal(res.mask, ~full)
    assert np.all(res.ivar[~full] == 0) and np.all(res.ivar[full] > 0)
    np.testing.assert_allclose(res.coverage[full], 1.0, rtol=0, atol=COVERAGE_TOLERANCE)
    outside = (e_out[1:] <= e_in[0]) | (e_out[:-1] >= e_in[-1])
    assert np.all(res.coverage[outside] == 0) and np.all(res.flux[outside] == 0)
    partial = ~full & ~outside
    assert partial.sum() == 2
    assert np.all((res.coverage[partial] > 0) & (res.coverage[partial] < 1))
    assert np.all(np.isfinite(res.flux))


def test_shared_1d_mask_for_batch() -> None:
    wave_out = model_wavelength()[:50]
    wave_in = np.linspace(wave_out[0] - 3, wave_out[-1] + 3, 300)
    mask = np.zeros(wave_in.size, dtype=bool)
    mask[150] = True
    flux = np.ones((3, wave_in.size))
    res = rebin(wave_in, flux, np.ones_like(flux), wave_out, mask_in=mask)
    single = rebin(wave_in, flux[0], np.ones(wave_in.size), wave_out, mask_in=mask)
    assert res.mask.shape == (3, 50) and res.mask[:, single.mask].all()
    np.testing.assert_array_equal(res.mask, np.broadcast_to(single.mask, (3, 50)))


# ---------------------------------------------------------------- batch


def test_batch_equals_row_by_row() -> None:
    rng = np.random.default_rng(9)
    wave_out = model_wavelength()
    wave_in = boss_wavelength() * (1.0 + rng.uniform(-3e-4, 3e-4))
    flux = rng.normal(1.0, 0.1, (5, wave_in.size))
    ivar = rng.uniform(0.0, 50.0, flux.shape)
    ivar[rng.random(flux.shape) < 0.01] = 0.0
    mask = rng.random(flux.shape) < 0.01
    flux[1, 2000] = np.nan
    res = rebin(wave_in, flux, ivar, wave_out, mask_in=mask)
    assert res.flux.shape == res.ivar.shape == res.mask.shape == (5, wave_out.size)
    assert res.coverage.shape == (wave_out.size,)
    for k in range(5):
        row = rebin(wave_in, flux[k], ivar[k], wave_out, mask_in=mask[k])
        np.testing.assert_allclose(res.flux[k], row.flux, rtol=1e-14, atol=0)
        np.testing.assert_allclose(res.ivar[k], row.ivar, rtol=1e-14, atol=0)
        np.testing.assert_array_equal(res.mask[k], row.mask)
        np.testing.assert_array_equal(res.coverage, row.coverage)


# ---------------------------------------------------------------- errors


def test_no_overlap_error() -> None:
    wave_in = np.linspace(3000.0, 4000.0, 500)
    pattern = r"3000\.\d+-4000\.\d+ A.*6002\.\d+-8955\.\d+ A.*do not overlap"
    with pytest.raises(NoOverlapError, match=pattern):
        rebin(wave_in, np.ones(500), np.ones(500), model_wavelength())
    assert overlap_matrix(wave_in, model_wavelength()).nnz == 0


def test_all_masked_error() -> None:
    wave = model_wavelength()
    with pytest.raises(AllMaskedError, match="No usable pixel"):
        rebin(wave, np.ones(wave.size), np.zeros(wave.size), wave)
    with pytest.raises(AllMaskedError, match="mask"):
        rebin(wave, np.ones(wave.size), np.ones(wave.size), wave, mask_in=np.ones(wave.size, bool))
    # overlapping only a sliver of one target pixel: nothing fully covered
    with pytest.raises(AllMaskedError, match="coverage"):
        rebin(np.array([6001.0, 6001.5, 6001.9]), np.ones(3), np.ones(3), wave)
    flux = np.ones((3, wave.size))
    ivar = np.ones_like(flux)
    ivar[1] = 0.0
    with pytest.raises(AllMaskedError, match=r"rows \[1\]"):
        rebin(wave, flux, ivar, wave)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ivar_in": -np.ones(100)}, "negative"),
        ({"ivar_in": np.r_[np.ones(99), np.nan]}, "NaN or inf"),
        ({"wave_in": np.linspace(7100.0, 7000.0, 100)}, "strictly increasing"),
        ({"wave_in": np.r_[np.linspace(7000.0, 7100.0, 99), 7050.0]}, "strictly increasing"),
        ({"wave_out": model_wavelength()[::-1]}, "strictly increasing"),
        ({"flux_in": np.ones(99)}, "flux_in must have shape"),
        ({"ivar_in": np.ones(99)}, "ivar_in must have the same shape"),
        (
            {"flux_in": np.ones((2, 100)), "ivar_in": np.ones((2, 100)), "mask_in": np.zeros((3, 100), bool)},
            "mask_in",
        ),
        (
            {"flux_in": np.ones((2, 2, 100)), "ivar_in": np.ones((2, 2, 100))},
            "flux_in must have shape",
        ),
    ],
)
def test_validation_errors(kwargs: dict, match: str) -> None:
    args = {
        "wave_in": np.linspace(7000.0, 7100.0, 100),
        "flux_in": np.ones(100),
        "ivar_in": np.ones(100),
        "wave_out": model_wavelength(),
    }
    args.update(kwargs)
    with pytest.raises(SpectrumValidationError, match=match):
        rebin(**args)

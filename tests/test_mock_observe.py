"""Tests for the observational effects: SNR definition, sky lines, bad pixels, Doppler shift, distortion."""

from __future__ import annotations

import numpy as np
import pytest

from bayesslam.mock import LabelRangeError, ObservingSetup
from bayesslam.mock.observe import (
    add_noise,
    calibration_distortion,
    doppler_shift_sub_pixels,
    draw_distortion,
)
from bayesslam.mock.skylines import sky_line_pixels, sky_lines_vacuum
from bayesslam.mock.survey import default_template_model, survey_wavelength
from bayesslam.wavelength import SPEED_OF_LIGHT_KMS


@pytest.fixture(scope="module")
def clean():
    model = default_template_model()
    wave = survey_wavelength()
    teff = np.linspace(3100, 3900, 40)
    flux = model.bin_to_boss(model.rest_flux(teff, np.zeros_like(teff)))
    first = np.searchsorted(model.boss_wave, wave[0])
    return wave, 20.0 * flux[:, first:first + wave.size]


def _realized(flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.array([np.median(f[~m] * np.sqrt(i[~m])) for f, i, m in zip(flux, ivar, mask)])


def test_snr_definition_is_exact_on_noise_free_flux(clean) -> None:
    wave, flux = clean
    snr = np.geomspace(3, 50, len(flux))
    for setup in (ObservingSetup(), ObservingSetup(mask_sky=False)):
        _, ivar, mask = add_noise(flux, wave, snr, np.random.default_rng(0), setup)
        assert np.allclose(_realized(flux, ivar, mask), snr, rtol=1e-10)


@pytest.mark.parametrize(("snr", "mean_tol"), [(3.0, 0.04), (10.0, 0.02), (50.0, 0.01)])
def test_realized_snr_of_noisy_spectra(clean, snr: float, mean_tol: float) -> None:
    """median(flux / sigma) measured on the noisy flux matches the request within a few per cent.

    (The measured median is biased slightly low at low SNR: -2.5 % at SNR 3, -1.3 % at 10.)
    """
    wave, flux = clean
    noisy, ivar, mask = add_noise(flux, wave, np.full(len(flux), snr), np.random.default_rng(1), ObservingSetup())
    ratio = _realized(noisy, ivar, mask) / snr
    assert abs(np.mean(ratio) - 1.0) < mean_tol
    assert np.all(np.abs(ratio - 1.0) < 0.1)


def test_noise_matches_ivar(clean) -> None:
    wave, flux = clean
    noisy, ivar, mask = add_noise(flux, wave, np.full(len(flux), 10.0), np.random.default_rng(2), ObservingSetup())
    pull = ((noisy - flux) * np.sqrt(ivar))[~mask]
    assert np.std(pull) == pytest.approx(1.0, rel=0.01)
    assert abs(np.mean(pull)) < 0.01


def test_sky_lines_and_bad_pixels_are_flagged(clean) -> None:
    wave, flux = clean
    setup = ObservingSetup()
    noisy, ivar, mask = add_noise(flux, wave, np.full(len(flux), 20.0), np.random.default_rng(3), setup)
    sky = sky_line_pixels(wave)[0]
    assert np.all(mask[:, sky]) and np.all(ivar[mask] == 0)
    line = np.argmin(np.abs(wave - sky_lines_vacuum()[-1]))  # OH 8988 A
    assert sky[line] and sky[line - 1] and not sky[line - 8]
    extra = mask & ~sky
    assert 0.0005 < extra.mean() < 0.02  # bad pixels and runs
    loose = ObservingSetup(mask_sky=False, bad_pixel_rate=0.0, bad_runs_mean=0.0)
    noisy, ivar, mask = add_noise(flux, wave, np.full(len(flux), 20.0), np.random.default_rng(3), loose)
    assert not mask.any()
    pull_sky = ((noisy - flux) * np.sqrt(ivar))[:, sky]
    assert np.std(pull_sky) == pytest.approx(1.0, rel=0.05)  # ivar includes the sky residual


def test_sky_lines_move_in_the_rest_frame() -> None:
    wave = survey_wavelength()
    v = 150.0
    observed = sky_line_pixels(wave)[0]
    rest = sky_line_pixels(wave, doppler=1.0 / (1.0 + v / SPEED_OF_LIGHT_KMS))[0]
    assert not np.array_equal(observed, rest)
    assert abs(int(observed.sum()) - int(rest.sum())) < 10


def test_doppler_shift_by_whole_sub_pixels_is_a_translation() -> None:
    rng = np.random.default_rng(4)
    step = 2.5e-5
    rest = rng.normal(size=(3, 400))
    k = np.array([0, 3, -5])
    v = ((10.0 ** (k * step)) - 1.0) * SPEED_OF_LIGHT_KMS
    out = doppler_shift_sub_pixels(rest, v, 50, 300, step)
    for row, shift in enumerate(k):
        assert np.allclose(out[row], rest[row, 50 - shift:350 - shift], atol=1e-8)
    half = doppler_shift_sub_pixels(rest, np.array([((10.0 ** (0.5 * step)) - 1.0) * SPEED_OF_LIGHT_KMS]), 50, 300, step)
    assert np.allclose(half[0], 0.5 * (rest[0, 49:349] + rest[0, 50:350]), atol=1e-6)
    with pytest.raises(LabelRangeError, match="radial velocities"):
        doppler_shift_sub_pixels(rest, np.array([1e4]), 50, 300, step)


def test_calibration_distortion_is_smooth_and_centred() -> None:
    wave = survey_wavelength()
    assert np.allclose(calibration_distortion(wave, np.zeros((1, 3))), 1.0)
    d = draw_distortion(wave, 2000, np.random.default_rng(5), (0.05, 0.03, 0.02))
    assert np.all(d > 0.6) and np.all(d < 1.6)
    assert abs(np.mean(np.log(d))) < 0.005
    assert np.max(np.abs(np.diff(np.log(d), axis=1))) < 1e-3  # no pixel-scale structure
    assert np.array_equal(draw_distortion(wave, 3, np.random.default_rng(5), ()), np.ones((3, wave.size)))

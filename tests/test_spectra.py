"""Validation of Spectrum and SpectrumBatch at construction."""

from __future__ import annotations

import numpy as np
import pytest

from bayesslam import Spectrum, SpectrumBatch, SpectrumMeta, SpectrumValidationError

WAVE = np.linspace(6000.0, 6010.0, 11)


def test_nan_flux_is_masked_with_zero_ivar_not_propagated():
    flux = np.ones(11)
    flux[[2, 5]] = [np.nan, np.inf]
    s = Spectrum(WAVE, flux, np.ones(11))
    assert s.mask[2] and s.mask[5]
    assert s.ivar[2] == 0 and s.ivar[5] == 0
    assert np.all(np.isfinite(s.flux))
    assert s.n_good == 9


def test_zero_ivar_pixels_are_masked_and_masked_pixels_get_zero_ivar():
    ivar = np.ones(11)
    ivar[3] = 0
    mask = np.zeros(11, bool)
    mask[7] = True
    s = Spectrum(WAVE, np.ones(11), ivar, mask)
    assert s.mask[3] and s.mask[7]
    assert s.ivar[7] == 0


@pytest.mark.parametrize(
    "wave, flux, ivar, match",
    [
        (WAVE[::-1], np.ones(11), np.ones(11), "strictly increasing"),
        (WAVE, np.ones(10), np.ones(11), "shapes disagree"),
        (WAVE, np.ones(11), -np.ones(11), "negative inverse variance"),
        (WAVE, np.ones(11), np.full(11, np.nan), "NaN or inf"),
        (np.where(np.arange(11) == 4, np.nan, WAVE), np.ones(11), np.ones(11), "wavelength contains NaN"),
    ],
)
def test_bad_arrays_raise_named_error(wave, flux, ivar, match):
    with pytest.raises(SpectrumValidationError, match=match):
        Spectrum(wave, flux, ivar)


def test_arrays_are_read_only_copies():
    flux = np.ones(11)
    s = Spectrum(WAVE, flux, np.ones(11))
    flux[0] = 5.0
    assert s.flux[0] == 1.0
    with pytest.raises(ValueError):
        s.flux[0] = 2.0


def test_batch_from_spectra_requires_one_grid():
    a = Spectrum(WAVE, np.ones(11), np.ones(11), meta=SpectrumMeta("a"))
    b = Spectrum(WAVE + 0.5, np.ones(11), np.ones(11), meta=SpectrumMeta("b"))
    batch = SpectrumBatch.from_spectra([a, a])
    assert len(batch) == 2 and batch.identifiers == ["a", "a"]
    assert batch[1].meta.identifier == "a"
    with pytest.raises(SpectrumValidationError, match="another wavelength grid"):
        SpectrumBatch.from_spectra([a, b])


def test_batch_meta_count_must_match():
    with pytest.raises(SpectrumValidationError, match="metadata entries"):
        SpectrumBatch(WAVE, np.ones((2, 11)), np.ones((2, 11)), meta=(SpectrumMeta("x"),))

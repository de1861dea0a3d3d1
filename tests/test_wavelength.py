"""Air/vacuum conversion and rest-frame shift."""

from __future__ import annotations

import numpy as np
import pytest

from bayesslam.errors import SpectrumValidationError
from bayesslam.wavelength import (
    SPEED_OF_LIGHT_KMS,
    air_to_vacuum,
    to_rest_frame,
    vacuum_to_air,
)


def test_known_lines_air_to_vacuum():
    # H-alpha 6562.80 A (air) = 6564.61 A (vacuum); Ca II 8542.09 (air) = 8544.44 (vacuum); NIST.
    np.testing.assert_allclose(air_to_vacuum([6562.80, 8542.09]), [6564.61, 8544.44], atol=0.01)


def test_round_trip_is_exact_to_1e_5_angstrom():
    wave = np.linspace(3500.0, 10500.0, 2001)
    np.testing.assert_allclose(air_to_vacuum(vacuum_to_air(wave)), wave, atol=1e-5, rtol=0)


def test_rest_frame_shift_follows_cz_convention():
    wave = np.array([6000.0, 8000.0])
    v = 150.0
    np.testing.assert_allclose(to_rest_frame(wave, v) * (1 + v / SPEED_OF_LIGHT_KMS), wave)
    with pytest.raises(SpectrumValidationError, match="radial velocity"):
        to_rest_frame(wave, np.nan)

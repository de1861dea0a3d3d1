"""Tests for bayesslam.mock.relations: published Teff scale and M-dwarf log g chain."""

from __future__ import annotations

import numpy as np
import pytest

from bayesslam.mock import LabelRangeError
from bayesslam.mock.relations import (
    LOGG_SUN,
    mann2015_mass,
    mann2015_mk_from_radius,
    mann2015_radius,
    mdwarf_logg,
    mdwarf_logg_scatter,
    spectral_type_to_teff,
    surface_gravity,
)


@pytest.mark.parametrize(
    ("spt", "teff"), [("K7", 4090.0), ("M0", 3850.0), ("M3V", 3430.0), ("m4.5", 3110.0), ("M6", 2810.0)]
)
def test_pecaut_mamajek_values(spt: str, teff: float) -> None:
    assert spectral_type_to_teff(spt) == teff


@pytest.mark.parametrize("spt", ["G2", "M10", "L0", "", "M3III"])
def test_unknown_spectral_type_raises(spt: str) -> None:
    with pytest.raises(LabelRangeError):
        spectral_type_to_teff(spt)


def test_mann2015_radius_by_hand() -> None:
    # X = 1: R = a + b + c + d = 16.7700 - 54.3210 + 57.6627 - 19.6994 = 0.4123; times (1 + 0.4565 [Fe/H]).
    assert mann2015_radius(3500.0, 0.0) == pytest.approx(0.4123, abs=1e-12)
    assert mann2015_radius(3500.0, 0.2) == pytest.approx(0.4123 * (1 + 0.4565 * 0.2), abs=1e-12)


def test_mk_radius_inversion_and_mass() -> None:
    radius = np.linspace(0.15, 0.6, 20)
    mk = mann2015_mk_from_radius(radius)
    assert np.allclose(1.9515 - 0.3520 * mk + 0.01680 * mk**2, radius)
    assert np.all(mk < 10.5)
    # Mann et al. (2015) eq. 10 at M_K = 6: hand-evaluated polynomial.
    expected = 0.5858 + 0.3872 * 6 - 0.1217 * 36 + 0.0106 * 216 - 2.7262e-4 * 1296
    assert mann2015_mass(6.0) == pytest.approx(expected, abs=1e-12)
    assert surface_gravity(1.0, 1.0) == LOGG_SUN


def test_mdwarf_logg_is_physical_and_monotonic() -> None:
    teff = np.linspace(3100.0, 3900.0, 9)
    logg = mdwarf_logg(teff, 0.0)
    assert np.all(np.diff(logg) < 0)  # cooler M dwarfs are denser
    assert 4.80 < float(mdwarf_logg(3500.0, 0.0)) < 4.88
    assert np.all(mdwarf_logg(3500.0, 0.3) < mdwarf_logg(3500.0, -0.3))  # metal-rich stars are larger


def test_logg_scatter_propagated_from_published_scatters() -> None:
    rng = np.random.default_rng(5)
    for teff in (3200.0, 3500.0, 3800.0):
        assert 0.03 < mdwarf_logg_scatter(teff, 0.0, rng) < 0.05


def test_mdwarf_logg_outside_calibration_raises() -> None:
    with pytest.raises(LabelRangeError):
        mdwarf_logg(4500.0, 0.0)
    with pytest.raises(LabelRangeError):
        mdwarf_logg(np.nan, 0.0)

"""Tests for mock populations: real label distribution, domain, binaries, clusters."""

from __future__ import annotations

import numpy as np
import pytest

from bayesslam.mock import (
    PAPER_DOMAIN,
    Domain,
    LabelRangeError,
    draw_binary_labels,
    draw_cluster_labels,
    draw_labels,
)
from bayesslam.mock.population import ALPHA_M_SD, birky2020_labels, draw_teff_fe_h


def test_birky_table_is_shipped() -> None:
    teff, fe_h = birky2020_labels()
    assert teff.size == fe_h.size == 5875
    assert 2900 < teff.min() < teff.max() < 4100
    assert -0.5 < fe_h.min() < fe_h.max() < 0.5


def test_labels_are_deterministic_and_inside_the_domain() -> None:
    a = draw_labels(2000, np.random.default_rng(3))
    b = draw_labels(2000, np.random.default_rng(3))
    c = draw_labels(2000, np.random.default_rng(4))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(PAPER_DOMAIN.contains(a))
    assert np.std(a["alpha_m"]) == pytest.approx(ALPHA_M_SD, rel=0.1)


def test_labels_follow_the_real_distribution() -> None:
    """The resampled labels keep the Birky et al. (2020) distribution inside the domain."""
    teff_all, fe_h_all = birky2020_labels()
    inside = (teff_all >= 3100) & (teff_all <= 3900) & (fe_h_all >= -0.6) & (fe_h_all <= 0.5)
    labels = draw_labels(20000, np.random.default_rng(0))
    assert np.median(labels["teff"]) == pytest.approx(np.median(teff_all[inside]), abs=20)
    assert np.median(labels["fe_h"]) == pytest.approx(np.median(fe_h_all[inside]), abs=0.02)
    assert np.std(labels["fe_h"]) == pytest.approx(np.std(fe_h_all[inside]), rel=0.05)
    uniform = draw_labels(20000, np.random.default_rng(0), distribution="uniform")
    assert np.std(uniform["teff"]) == pytest.approx(800 / np.sqrt(12), rel=0.03)


def test_logg_is_truncated_to_the_domain_or_free() -> None:
    rng = np.random.default_rng(2)
    labels = draw_labels(3000, rng)
    assert labels["logg"].min() >= 4.45 and labels["logg"].max() <= 4.95
    free = draw_labels(3000, rng, Domain(logg=None))
    assert free["logg"].max() > 5.0  # the relation itself exceeds the paper's 4.95 below ~3350 K


def test_binaries_share_metallicity_and_alpha_and_differ_in_teff() -> None:
    primary, secondary = draw_binary_labels(500, np.random.default_rng(7))
    assert np.array_equal(primary["fe_h"], secondary["fe_h"])
    assert np.array_equal(primary["alpha_m"], secondary["alpha_m"])
    assert np.all(np.abs(primary["teff"] - secondary["teff"]) >= 50.0)
    assert np.corrcoef(primary["teff"], secondary["teff"])[0, 1] < 0.2  # independent Teff
    assert np.all(PAPER_DOMAIN.contains(primary)) and np.all(PAPER_DOMAIN.contains(secondary))


@pytest.mark.parametrize(("fe_h", "dispersion"), [(0.1, 0.05), (-0.3, 0.02), (0.2, 0.0)])
def test_cluster_dispersion_matches(fe_h: float, dispersion: float) -> None:
    n = 2000
    members = draw_cluster_labels(n, np.random.default_rng(11), fe_h, dispersion)
    assert np.mean(members["fe_h"]) == pytest.approx(fe_h, abs=4 * dispersion / np.sqrt(n) + 1e-12)
    assert np.std(members["fe_h"]) == pytest.approx(dispersion, rel=0.06, abs=1e-12)
    assert np.std(members["alpha_m"]) == pytest.approx(dispersion, rel=0.06, abs=1e-12)
    assert np.std(members["teff"]) > 100


def test_invalid_requests_raise() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(LabelRangeError):
        draw_cluster_labels(10, rng, 0.8, 0.05)
    with pytest.raises(LabelRangeError):
        draw_cluster_labels(10, rng, 0.0, -0.1)
    with pytest.raises(LabelRangeError):
        draw_teff_fe_h(10, rng, distribution="gaussian")
    with pytest.raises(LabelRangeError):
        Domain(teff=(3900.0, 3100.0))
    with pytest.raises(LabelRangeError):
        draw_teff_fe_h(10, rng, Domain(teff=(3100.0, 3200.0), fe_h=(-2.0, -1.5)))

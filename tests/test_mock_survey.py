"""Tests for mock surveys: determinism, label independence, groups, SNR, range errors, pipeline consistency."""

from __future__ import annotations

import numpy as np
import pytest

from bayesslam.grid import model_wavelength
from bayesslam.mock import (
    LabelRangeError,
    ObservingSetup,
    make_binaries,
    make_cluster,
    make_labels,
    make_survey,
    noiseless_normalized,
    observe_labels,
)
from bayesslam.preparation import prepare_spectrum
from bayesslam.spectra import SpectrumBatch


def test_survey_is_deterministic_for_a_seed() -> None:
    a, la = make_survey(30, np.random.default_rng(123), n_binaries=2, n_cluster=3)
    b, lb = make_survey(30, np.random.default_rng(123), n_binaries=2, n_cluster=3)
    c, _ = make_survey(30, np.random.default_rng(124), n_binaries=2, n_cluster=3)
    assert isinstance(a, SpectrumBatch) and len(a) == len(la) == 37
    assert np.array_equal(a.flux, b.flux) and np.array_equal(a.ivar, b.ivar) and np.array_equal(a.mask, b.mask)
    assert all(np.array_equal(la[k], lb[k]) for k in la.colnames)
    assert not np.array_equal(a.flux, c.flux)
    # the random stream is consumed chunk by chunk: the result is fixed by (seed, chunk_size)
    d, ld = make_survey(30, np.random.default_rng(123), n_binaries=2, n_cluster=3, chunk_size=7)
    e, _ = make_survey(30, np.random.default_rng(123), n_binaries=2, n_cluster=3, chunk_size=7)
    assert np.array_equal(d.flux, e.flux)
    assert all(np.array_equal(la[k], ld[k]) for k in la.colnames)  # labels, SNR, v_rad drawn up front


def test_labels_table_and_metadata() -> None:
    batch, labels = make_survey(10, np.random.default_rng(1))
    for name in ("identifier", "teff", "logg", "fe_h", "alpha_m", "snr", "v_rad", "group", "group_id"):
        assert name in labels.colnames
    assert batch.identifiers == list(labels["identifier"])
    assert [m.v_rad for m in batch.meta] == pytest.approx(list(labels["v_rad"]))
    assert [m.snr for m in batch.meta] == pytest.approx(list(labels["snr"]))
    assert all(not m.rest_frame for m in batch.meta)
    assert labels["identifier"][0] == "spec-90000-60001-0001"  # MJD 60000 + seed (1): the survey's name
    assert set(labels["mjd"]) == {60001}
    assert np.all((labels["snr"] >= 3) & (labels["snr"] <= 50))
    assert batch.wave[0] > 5800 and batch.wave[-1] < 9200
    assert np.allclose(np.diff(np.log10(batch.wave)), 1e-4)


def test_spectrum_does_not_depend_on_logg_or_alpha() -> None:
    teff, fe_h = np.array([3300.0, 3600.0, 3850.0]), np.array([-0.2, 0.1, 0.3])
    one = make_labels(teff, [4.5, 4.6, 4.7], fe_h, [-0.1, 0.0, 0.1])
    two = make_labels(teff, [4.9, 4.9, 4.5], fe_h, [0.3, -0.2, 0.0])
    a, la = observe_labels(one, np.random.default_rng(9))
    b, lb = observe_labels(two, np.random.default_rng(9))
    assert np.array_equal(a.flux, b.flux) and np.array_equal(a.ivar, b.ivar)
    assert not np.array_equal(la["logg"], lb["logg"])
    # positive control: changing [Fe/H] does change the spectrum
    three = make_labels(teff, [4.5, 4.6, 4.7], fe_h + 0.2, [-0.1, 0.0, 0.1])
    c, _ = observe_labels(three, np.random.default_rng(9))
    assert not np.allclose(a.flux, c.flux)


def test_binaries_and_cluster_products() -> None:
    batch, labels = make_binaries(6, np.random.default_rng(2))
    assert len(batch) == 12 and set(labels["group"]) == {"binary"}
    for pair in range(6):
        rows = labels[labels["group_id"] == pair]
        assert len(rows) == 2
        assert rows["fe_h"][0] == rows["fe_h"][1] and rows["alpha_m"][0] == rows["alpha_m"][1]
        assert abs(rows["teff"][0] - rows["teff"][1]) >= 50
    batch, labels = make_cluster(400, np.random.default_rng(3), fe_h=0.15, dispersion=0.04)
    assert np.std(labels["fe_h"]) == pytest.approx(0.04, rel=0.1)
    assert np.mean(labels["fe_h"]) == pytest.approx(0.15, abs=0.01)
    assert set(labels["group_id"]) == {0}


def test_realized_snr_in_survey() -> None:
    batch, labels = make_survey(60, np.random.default_rng(4), setup=ObservingSetup(snr_range=(10.0, 40.0)))
    good = ~batch.mask
    realized = np.array([np.median(f[g] * np.sqrt(i[g])) for f, i, g in zip(batch.flux, batch.ivar, good)])
    ratio = realized / np.asarray(labels["snr"])
    assert abs(np.mean(ratio) - 1.0) < 0.02
    assert np.all(np.abs(ratio - 1.0) < 0.06)


def test_out_of_range_labels_raise() -> None:
    rng = np.random.default_rng(0)
    for teff, fe_h in ((2500.0, 0.0), (4500.0, 0.0), (3500.0, 1.0)):
        with pytest.raises(LabelRangeError):
            observe_labels(make_labels(teff, 4.8, fe_h, 0.0), rng)
    with pytest.raises(LabelRangeError):
        noiseless_normalized(3500.0, -1.5)
    with pytest.raises(LabelRangeError):
        observe_labels(make_labels(3500.0, 4.8, 0.0, 0.0), rng, v_rad=5000.0)


def test_mock_goes_through_the_real_pipeline() -> None:
    """A noise-free-ish mock prepared like real data gives the noise-free normalized model spectrum."""
    labels = make_labels([3300.0, 3750.0], 4.8, [0.2, -0.3], 0.0)
    setup = ObservingSetup(snr_range=(1e4, 1e4), mask_sky=False, sky_residual=0.0,
                           bad_pixel_rate=0.0, bad_runs_mean=0.0)
    truth = noiseless_normalized(labels["teff"], labels["fe_h"])
    assert truth.shape == (2, model_wavelength().size)
    batch, table = observe_labels(labels, np.random.default_rng(5), setup=setup, v_rad=np.array([0.0, 69.05]))
    for i in range(2):
        prepared, _ = prepare_spectrum(batch[i])
        diff = (prepared.flux - truth[i])[~prepared.mask]
        assert np.sqrt(np.mean(diff**2)) < 0.002  # distortion removed by the normalization, shift undone
        wrong, _ = prepare_spectrum(batch[i], v_rad=-300.0)  # negative control
        assert np.sqrt(np.mean((wrong.flux - truth[i])[~wrong.mask] ** 2)) > 0.02


def test_diagnostic_figure_is_written(tmp_path) -> None:
    from bayesslam.mock.figures import plot_mock_vs_templates

    path = plot_mock_vs_templates(tmp_path / "fig.png")
    assert path.stat().st_size > 50_000

"""Catalog rows: columns, the three sigmas side by side, flag bits, FITS output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from toymodel import make_toy_model, simulate

from bayesslam.catalog import (
    PAPER_SNR_LAWS,
    Flag,
    TrainingDomain,
    build_catalog,
    describe_flags,
    flag_names,
    write_catalog,
)
from bayesslam.infer import fit_map


@pytest.fixture(scope="module", autouse=True)
def _in_float64(x64):
    """The tests here build JAX arrays and emulators themselves: 64 bits for them (see conftest.x64)."""


def test_catalog_columns_flags_and_fits_output(tmp_path: Path):
    toy = make_toy_model()
    truth, flux, ivar = simulate(toy, 5, snr=30)
    ivar[4] = 0.0  # no data: the optimizer cannot fit it
    fit = fit_map(toy, flux, ivar)
    snr = np.array([30.0, 15.0, 1.5, 30.0, 30.0])
    domain = TrainingDomain(toy.training_labels, constrained=np.array([True, True, True, False]))
    units = ("K", "dex", "dex", "dex")
    table = build_catalog([f"s{i}" for i in range(5)], snr, fit, domain=domain, label_units=units,
                          v_rad=np.array([10.0, np.nan, 0.0, 5.0, 5.0]),
                          rest_frame=np.array([True, False, True, True, True]), n_model_pixels=300)
    for column in ("TEFF_MAP", "TEFF_MAP_ERR", "TEFF_SNR_ERR", "TEFF_ERR", "RHO_TEFF_FE_H", "CHI2", "REDUCED_CHI2",
                   "FLAGS", "FLAG_NAMES", "DENSITY_PERCENTILE", "SOURCE"):
        assert column in table.colnames
    # columns that were not computed are not written: no posterior, no calibration here
    for column in ("TEFF_MEDIAN", "TEFF_MEAN", "TEFF_P16", "TEFF_POST_ERR", "TEFF_RHAT", "N_DIVERGENT",
                   "TEFF_SYS_ERR", "TEFF_CAL_P16"):
        assert column not in table.colnames
    assert table["FLAG_NAMES"][4] == ",".join(flag_names(int(table["FLAGS"][4]))) and "FIT_FAILED" in table["FLAG_NAMES"][4]
    assert table["FE_H_SNR_ERR"][1] == PAPER_SNR_LAWS["fe_h"](15.0)
    assert np.isnan(table["ALPHA_M_SNR_ERR"][0])  # the paper gives no law for [alpha/M]
    flags = np.asarray(table["FLAGS"])
    assert flags[2] & Flag.LOW_SNR and not flags[0] & Flag.LOW_SNR
    # an unknown radial velocity is flagged; SNR 30 and 1.5 lie outside the paper's laws' range 2.3-19
    assert flags[1] & Flag.RV_UNKNOWN and not flags[0] & Flag.RV_UNKNOWN and np.isnan(table["V_RAD"][1])
    assert flags[0] & Flag.SNR_LAW_EXTRAPOLATED and flags[2] & Flag.SNR_LAW_EXTRAPOLATED
    assert not flags[1] & Flag.SNR_LAW_EXTRAPOLATED
    np.testing.assert_allclose(table["MASKED_FRAC"], 1.0 - fit.n_good / 300.0)
    assert flags[4] & Flag.FIT_FAILED and not flags[0] & Flag.FIT_FAILED
    path = write_catalog(table, tmp_path / "catalog.fits")
    back = Table.read(path, hdu="CATALOG")
    assert list(back["IDENTIFIER"]) == [f"s{i}" for i in range(5)]
    # units and a description on the columns (FITS TUNIT, TCOMM)
    header = fits.getheader(path, "CATALOG")
    for number in range(1, header["TFIELDS"] + 1):
        assert header.get(f"TCOMM{number}"), header[f"TTYPE{number}"]
    assert str(back["TEFF_MAP"].unit) == "K" and back["FE_H_ERR"].unit is None  # FITS units have no dex:
    assert header[f"TCOMM{back.colnames.index('FE_H_ERR') + 1}"].endswith("[dex]")  # the description says it
    assert back.meta["FLAGBIT6"] == "LOW_SNR"
    assert "OUTSIDE_DOMAIN" in describe_flags()
    # each bit's own meaning, not the class docstring
    assert "edge of the prior box" in describe_flags().splitlines()[1] and len(set(describe_flags().splitlines())) == len(Flag)
    assert flag_names(24) == ["RHAT_HIGH", "LOW_ESS"] and flag_names(0) == []


def _calibration(posterior: bool = True):
    from bayesslam.calibration import ErrorCalibration, ModelCalibration

    names = ("teff", "logg", "fe_h", "alpha_m")
    laplace = ErrorCalibration(names, "laplace", np.array([1.0, 1.5, 2.4, 2.0]), np.array([5.0, 0.05, 0.02, 0.05]))
    post = ErrorCalibration(names, "posterior", np.array([0.9, 1.2, 2.0, 0.8]), np.array([2.0, 0.04, 0.03, 0.0]))
    return ModelCalibration(laplace, post if posterior else None)


def test_calibrated_columns(tmp_path: Path):
    from scipy.stats import norm

    from bayesslam.infer import sample_emcee

    toy = make_toy_model()
    _, flux, ivar = simulate(toy, 3, snr=30, seed=4)
    fit = fit_map(toy, flux, ivar)
    snr = np.full(3, 30.0)
    ids = ["a", "b", "c"]

    raw = build_catalog(ids, snr, fit)
    assert raw.meta["ERRCALIB"] == "none"
    np.testing.assert_array_equal(raw["FE_H_ERR"], raw["FE_H_MAP_ERR"])
    assert "FE_H_SYS_ERR" not in raw.colnames and "FE_H_CAL_P16" not in raw.colnames

    calibration = _calibration()
    table = build_catalog(ids, snr, fit, calibration=calibration)
    assert table.meta["ERRCALIB"] == "laplace"
    np.testing.assert_allclose(table["FE_H_ERR"], np.sqrt((2.4 * fit.sigma[:, 2]) ** 2 + 0.02**2))
    np.testing.assert_array_equal(table["FE_H_SYS_ERR"], np.full(3, 0.02))
    np.testing.assert_allclose(table["TEFF_CAL_P84"] - table["TEFF_MAP"], table["TEFF_ERR"])
    np.testing.assert_allclose(table["TEFF_MAP"] - table["TEFF_CAL_P2_5"], norm.ppf(0.975) * table["TEFF_ERR"])
    assert np.all(table["FE_H_ERR"] > table["FE_H_MAP_ERR"])

    post = sample_emcee(toy, flux, ivar, seed=1, n_walkers=16, n_steps=400, n_burn=100, progress=False)
    sampled = build_catalog(ids, snr, fit, post, calibration=calibration)
    assert sampled.meta["ERRCALIB"] == "posterior"
    sd = post.summary["sd"]
    np.testing.assert_allclose(sampled["LOGG_ERR"], np.sqrt((1.2 * sd[:, 1]) ** 2 + 0.04**2))
    np.testing.assert_allclose(sampled["TEFF_MEAN"], post.summary["mean"][:, 0])
    assert "N_DIVERGENT" in sampled.colnames and "TEFF_RHAT" in sampled.colnames
    quantiles = calibration.posterior.quantiles(post.draws(1), [0.15865525393145707, 0.975])
    assert sampled["FE_H_CAL_P16"][1] == pytest.approx(quantiles[0, 2])
    assert sampled["FE_H_CAL_P97_5"][1] == pytest.approx(quantiles[1, 2])
    # a floor and a scale > 1 widen the interval; scale < 1 and no floor narrow it ([alpha/M] here)
    assert np.all(sampled["FE_H_CAL_P84"] - sampled["FE_H_CAL_P16"] > sampled["FE_H_P84"] - sampled["FE_H_P16"])
    assert np.all(sampled["ALPHA_M_CAL_P84"] - sampled["ALPHA_M_CAL_P16"] < sampled["ALPHA_M_P84"] - sampled["ALPHA_M_P16"])
    # a posterior but only a Laplace calibration (which describes Laplace sigmas): the posterior's own sd
    mixed = build_catalog(ids, snr, fit, post, calibration=_calibration(posterior=False))
    assert mixed.meta["ERRCALIB"] == "none"
    np.testing.assert_allclose(mixed["FE_H_ERR"], post.summary["sd"][:, 2])
    assert "FE_H_CAL_P16" not in mixed.colnames
    back = Table.read(write_catalog(sampled, tmp_path / "calibrated.fits"), hdu="CATALOG")
    assert back.meta["ERRCALIB"] == "posterior"
    np.testing.assert_allclose(back["TEFF_CAL_P97_5"], sampled["TEFF_CAL_P97_5"])

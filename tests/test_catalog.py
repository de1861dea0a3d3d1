"""Catalog rows: columns, the three sigmas side by side, flag bits, FITS output."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from astropy.table import Table
from toymodel import make_toy_model, simulate

from bayesslam.catalog import Flag, build_catalog, describe_flags, write_catalog
from bayesslam.domain import TrainingDomain
from bayesslam.fit import fit_map
from bayesslam.snr_law import PAPER_SNR_LAWS

jax.config.update("jax_enable_x64", True)


def test_catalog_columns_flags_and_fits_output(tmp_path: Path):
    toy = make_toy_model()
    truth, flux, ivar = simulate(toy, 5, snr=30)
    ivar[4] = 0.0  # no data: the optimizer cannot fit it
    fit = fit_map(toy, flux, ivar)
    snr = np.array([30.0, 15.0, 1.5, 30.0, 30.0])
    domain = TrainingDomain(toy.training_labels, constrained=np.array([True, True, True, False]))
    table = build_catalog([f"s{i}" for i in range(5)], snr, fit, domain=domain)
    for column in ("TEFF_MAP", "TEFF_MAP_ERR", "TEFF_MEDIAN", "TEFF_P16", "TEFF_P84", "TEFF_POST_ERR",
                   "TEFF_SNR_ERR", "RHO_TEFF_FE_H", "CHI2", "REDUCED_CHI2", "FLAGS", "DENSITY_PERCENTILE"):
        assert column in table.colnames
    assert table["FE_H_SNR_ERR"][1] == PAPER_SNR_LAWS["fe_h"](15.0)
    assert np.isnan(table["ALPHA_M_SNR_ERR"][0])  # the paper gives no law for [alpha/M]
    flags = np.asarray(table["FLAGS"])
    assert flags[2] & Flag.LOW_SNR and not flags[0] & Flag.LOW_SNR
    assert flags[4] & Flag.FIT_FAILED and not flags[0] & Flag.FIT_FAILED
    path = write_catalog(table, tmp_path / "catalog.fits")
    back = Table.read(path)
    assert list(back["IDENTIFIER"]) == [f"s{i}" for i in range(5)]
    assert back.meta["FLAGBIT6"] == "LOW_SNR"
    assert "OUTSIDE_DOMAIN" in describe_flags()

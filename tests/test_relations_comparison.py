"""Comparing two catalogs (bayesslam.relations.comparison): known offsets and scatters come back, pairs match."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from bayesslam.relations import (
    MissingColumnError,
    NoMatchError,
    RelationsError,
    UnitsError,
    binned_statistics,
    compare_catalogs,
    error_column,
    label_column,
    match_on_sky,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N = 2000
#: Injected: Teff offset +50 K with errors 30 K (A) and 40 K (B), nothing else (std 50 K, z sd 1);
#: [Fe/H] offset -0.10 dex with errors 0.05 and 0.05 dex plus an intrinsic scatter 0.08 (std 0.1068, z sd 1.510).
TEFF_OFFSET, TEFF_ERR_A, TEFF_ERR_B = 50.0, 30.0, 40.0
FEH_OFFSET, FEH_ERR, FEH_SCATTER = -0.10, 0.05, 0.08


def _catalogs(seed: int = 11) -> tuple[Table, Table]:
    """A and B: the same N stars in a 2x2 deg field (B shuffled, positions jittered by 0.1"), labels with the
    offsets above; plus a star of A whose only B neighbour is 5" away."""
    rng = np.random.default_rng(seed)
    ra = 150.0 + 2.0 * rng.random(N)
    dec = 2.0 + 2.0 * rng.random(N)
    teff = rng.uniform(3000, 4000, N)
    feh = rng.uniform(-1.0, 0.4, N)
    snr = rng.uniform(5, 100, N)
    a = Table({"id": [f"s{i}" for i in range(N)], "ra": ra, "dec": dec,
               "TEFF": teff + TEFF_ERR_A * rng.standard_normal(N), "TEFF_ERR": np.full(N, TEFF_ERR_A),
               "FE_H": feh + FEH_ERR * rng.standard_normal(N), "FE_H_ERR": np.full(N, FEH_ERR)})
    jitter = 0.1 / 3600.0
    b = Table({"id": [f"s{i}" for i in range(N)], "ra": ra + jitter * rng.standard_normal(N) / np.cos(np.radians(dec)),
               "dec": dec + jitter * rng.standard_normal(N),
               "TEFF": teff + TEFF_OFFSET + TEFF_ERR_B * rng.standard_normal(N), "TEFF_ERR": np.full(N, TEFF_ERR_B),
               "FE_H": feh + FEH_OFFSET + FEH_SCATTER * rng.standard_normal(N) + FEH_ERR * rng.standard_normal(N),
               "FE_H_ERR": np.full(N, FEH_ERR), "SNR": snr})
    # the star with no counterpart within 1": A's row 0 gets a lone neighbour 5" north in B instead of its own
    b["dec"][0] = a["dec"][0] + 5.0 / 3600.0
    b["ra"][0] = a["ra"][0]
    order = rng.permutation(N)
    return a, b[order]


@pytest.fixture(scope="module")
def catalogs() -> tuple[Table, Table]:
    return _catalogs()


def test_offsets_and_scatter_come_back(catalogs, caplog):
    a, b = catalogs
    with caplog.at_level("INFO", logger="bayesslam"):
        comparison = compare_catalogs(a, b)
        comparison.log_summary()
    summary = comparison.summary()
    assert summary["n_matched"] == N - 1 and comparison.match == "sky, within 1 arcsec"
    teff, feh = summary["labels"]["teff"], summary["labels"]["fe_h"]
    assert teff["column_a"] == "TEFF" and teff["error_b"] == "TEFF_ERR"
    n = N - 1
    std_teff = np.hypot(TEFF_ERR_A, TEFF_ERR_B)
    std_feh = np.sqrt(2 * FEH_ERR**2 + FEH_SCATTER**2)
    # the median's standard error is 1.2533 sigma / sqrt(n); std's sigma / sqrt(2n); allow 4 of them
    assert abs(teff["bias"] - TEFF_OFFSET) < 4 * 1.2533 * std_teff / np.sqrt(n)
    assert abs(feh["bias"] - FEH_OFFSET) < 4 * 1.2533 * std_feh / np.sqrt(n)
    for stats, std in ((teff, std_teff), (feh, std_feh)):
        assert stats["n"] == n
        assert abs(stats["std"] - std) < 4 * std / np.sqrt(2 * n)
        assert abs(stats["mad_std"] - std) < 4 * 1.6 * std / np.sqrt(2 * n)
    # z: the Teff errors plus its offset (50 / 50 = 1 sigma) give sd(z) 1; [Fe/H]'s scatter makes it 1.51
    assert teff["z_std"] == pytest.approx(1.0, abs=0.05)
    assert feh["z_std"] == pytest.approx(std_feh / np.sqrt(2 * FEH_ERR**2), abs=0.06)
    assert feh["fraction_within_1sigma"] < 0.6
    # the log prints them back
    assert "A vs B: 1999 of 2000 / 2000 rows matched" in caplog.text
    line = next(x for x in caplog.messages if x.strip().startswith("teff"))
    assert f"{teff['bias']:.4g}" in line and f"{teff['std']:.4g}" in line


def test_sky_match_pairs_the_right_rows_and_ignores_a_source_5_arcsec_away(catalogs):
    a, b = catalogs
    rows_a, rows_b, separation = match_on_sky(a, b)
    assert rows_a.size == N - 1 and 0 not in rows_a
    np.testing.assert_array_equal(a["id"][rows_a], b["id"][rows_b])
    assert np.max(separation) < 1.0
    # with a 6" radius the lone source is A's row 0's match
    rows_a, rows_b, separation = match_on_sky(a, b, radius=6 * u.arcsec)
    assert rows_a[0] == 0 and separation[0] == pytest.approx(5.0, abs=1e-6)
    assert match_on_sky(a, b, radius="6arcsec")[0].size == N
    # several A rows nearest to one B row: only the closest keeps it
    crowded_a = Table({"ra": [10.0, 10.0], "dec": [0.0, 0.3 / 3600.0]})
    crowded_b = Table({"ra": [10.0, 20.0], "dec": [0.1 / 3600.0, 5.0]})
    rows_a, rows_b, _ = match_on_sky(crowded_a, crowded_b)
    assert rows_a.tolist() == [0] and rows_b.tolist() == [0]


def test_identifier_match_and_bayesslam_column_names():
    """A bayesslam catalog (posterior medians, calibrated errors) against an ASPCAP-like table, by identifier."""
    rng = np.random.default_rng(5)
    n = 300
    ids = np.array([f"2M{i:08d}" for i in range(n)])
    teff = rng.uniform(3100, 3900, n)
    ours = Table({"IDENTIFIER": ids, "TEFF_MEDIAN": teff + 20 * rng.standard_normal(n), "TEFF_MAP": teff,
                  "TEFF_ERR": np.full(n, 20.0), "FE_H_MAP": np.zeros(n) + 0.02 * rng.standard_normal(n),
                  "FE_H_ERR": np.full(n, 0.02)})
    theirs = Table({"IDENTIFIER": ids[::-1], "TEFF": (teff - 100.0 + 30 * rng.standard_normal(n))[::-1],
                    "TEFF_ERR": np.full(n, 30.0), "FE_H": np.full(n, 0.1), "extra": np.ones(n)})
    assert label_column(ours, "teff") == "TEFF_MEDIAN" and label_column(ours, "fe_h") == "FE_H_MAP"
    assert error_column(ours, "TEFF_MEDIAN") == "TEFF_ERR" and error_column(theirs, "FE_H") is None
    comparison = compare_catalogs(ours, theirs, names=("bayesslam", "ASPCAP"))
    assert comparison.match == "identifier IDENTIFIER"
    summary = comparison.summary()["labels"]
    assert set(summary) == {"teff", "fe_h"}
    assert summary["teff"]["bias"] == pytest.approx(-100.0, abs=8.0)
    assert summary["teff"]["std"] == pytest.approx(np.hypot(20, 30), rel=0.15)
    assert "z_std" in summary["teff"] and "z_std" not in summary["fe_h"]  # ASPCAP-like B has no FE_H error
    np.testing.assert_array_equal(comparison.matched["IDENTIFIER_A"], comparison.matched["IDENTIFIER_B"])
    # an explicit mapping and a column of other names
    explicit = compare_catalogs(ours, theirs, labels={"TEFF_MAP": "TEFF"}, match_on="IDENTIFIER")
    assert list(explicit.labels) == ["TEFF_MAP"] and "DELTA_TEFF_MAP" in explicit.matched.colnames
    renamed = theirs.copy()
    renamed.rename_column("IDENTIFIER", "APOGEE")
    assert compare_catalogs(ours, renamed, match_on=("IDENTIFIER", "APOGEE")).n_matched == n


def test_binned_statistics_in_equal_number_bins():
    rng = np.random.default_rng(2)
    snr = rng.uniform(5, 100, 1000)
    delta = np.where(snr > 50, 0.2, 0.0) + 0.01 * rng.standard_normal(1000)
    bins = binned_statistics(delta, snr, n_bins=4)
    assert [b["n"] for b in bins] == [250, 250, 250, 250]
    assert bins[0]["lo"] == pytest.approx(snr.min()) and bins[-1]["hi"] == pytest.approx(snr.max())
    assert bins[0]["bias"] == pytest.approx(0.0, abs=0.01) and bins[-1]["bias"] == pytest.approx(0.2, abs=0.01)
    # through compare_catalogs: bin_by a column of B (SNR), found as SNR_B
    a, b = _catalogs(seed=4)
    comparison = compare_catalogs(a, b, bin_by="SNR", n_bins=4)
    assert comparison.bin_by == "SNR_B"
    binned = comparison.summary()["binned"]["teff"]
    assert len(binned) == 4 and sum(x["n"] for x in binned) == N - 1
    for x in binned:
        assert x["bias"] == pytest.approx(TEFF_OFFSET, abs=10.0)


def test_report_files(tmp_path: Path, catalogs):
    a, b = catalogs
    comparison = compare_catalogs(a, b, bin_by="TEFF", n_bins=3, names=("survey", "reference"))
    written = comparison.write(tmp_path / "report")
    assert [p.name for p in written] == ["matched.fits", "one_to_one.png", "residuals.png", "zscores.png",
                                         "summary.json"]
    for p in written[1:4]:
        assert p.read_bytes()[:8] == PNG_MAGIC
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["names"] == ["survey", "reference"] and summary["bin_by"] == "TEFF_A"
    assert {"n", "bias", "std", "mad_std"} <= set(summary["labels"]["fe_h"])
    matched = Table.read(tmp_path / "report" / "matched.fits")
    assert len(matched) == N - 1
    assert {"id_A", "id_B", "SEPARATION", "DELTA_TEFF", "Z_FE_H"} <= set(matched.colnames)
    with pytest.raises(RelationsError, match="exist.*pass overwrite"):
        comparison.write(tmp_path / "report")
    assert comparison.write(tmp_path / "report", overwrite=True, table_format="csv")[0].name == "matched.csv"


# --- bad input: named errors that say what to do -------------------------------------------------------------

def test_missing_columns(catalogs):
    a, b = catalogs
    with pytest.raises(MissingColumnError, match=r"catalog B has no column nope \(its columns: id, ra, dec"):
        compare_catalogs(a, b, labels={"TEFF": "nope"})
    with pytest.raises(MissingColumnError, match="no label column in common"):
        compare_catalogs(a[["id", "ra", "dec"]], b)
    with pytest.raises(MissingColumnError, match="cannot cross-match.*--match-on"):
        compare_catalogs(a[["id", "TEFF"]], b[["id", "TEFF"]])
    with pytest.raises(MissingColumnError, match="no column GAIA"):
        compare_catalogs(a, b, match_on="GAIA")
    with pytest.raises(MissingColumnError, match="no column RA_ICRS"):
        match_on_sky(a, b, ra_dec_a=("RA_ICRS", "DE_ICRS"))
    with pytest.raises(MissingColumnError, match="SNR_X"):
        compare_catalogs(a, b, bin_by="SNR_X")


def test_no_matches(catalogs):
    a, b = catalogs
    far = b.copy()
    far["dec"] = np.clip(far["dec"] + 1.0 / 60.0, -90, 90)  # 1 arcmin away: nothing within 1"
    with pytest.raises(NoMatchError, match="no pair within 1 arcsec.*check the units of ra/dec"):
        compare_catalogs(a, far)
    other = b.copy()
    other["id"] = [f"x{i}" for i in range(N)]
    with pytest.raises(NoMatchError, match="no identifier"):
        compare_catalogs(a, other, match_on="id")
    with pytest.raises(NoMatchError, match="only 1 pair"):
        compare_catalogs(a[1:2], b)


def test_wrong_units_and_repeated_identifiers(catalogs):
    a, b = catalogs
    hours = a.copy()
    hours["ra"] = hours["ra"] * 3.0  # beyond 360
    with pytest.raises(UnitsError, match="ra of A has values outside 0-360 deg"):
        compare_catalogs(hours, b)
    dec = b.copy()
    dec["dec"][3] = 95.0
    with pytest.raises(UnitsError, match="dec of B has values outside -90..90"):
        compare_catalogs(a, dec)
    with pytest.raises(UnitsError, match="is not an angle"):
        compare_catalogs(a, b, match_radius="1 kg")
    # a coordinate column with a unit is converted
    radians = a.copy()
    radians["ra"] = np.radians(radians["ra"]) * u.rad
    radians["dec"] = np.radians(radians["dec"]) * u.rad
    assert compare_catalogs(radians, b).n_matched == N - 1
    twice = b.copy()
    twice["id"][5] = twice["id"][6]
    with pytest.raises(RelationsError, match="repeated in column id of B"):
        compare_catalogs(a, twice, match_on="id")
    negative = b.copy()
    negative["TEFF_ERR"][0] = -1.0
    with pytest.raises(UnitsError, match="negative values"):
        compare_catalogs(a, negative)


def test_radian_looking_coordinates_are_warned_about(caplog):
    rng = np.random.default_rng(0)
    t = Table({"ra": rng.uniform(0, 6, 20), "dec": rng.uniform(-1.5, 1.5, 20), "TEFF": np.ones(20)})
    with caplog.at_level(logging.WARNING, logger="bayesslam"):
        compare_catalogs(t, t.copy())
    assert "if they are radians" in caplog.text

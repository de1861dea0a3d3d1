"""M dwarfs from a Gaia table (bayesslam.relations.selection): hand-computed cases at every cut's boundary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from bayesslam.errors import BayesSlamError
from bayesslam.relations import (
    CUT_COLUMNS,
    MDwarfCuts,
    MissingColumnError,
    RelationsError,
    UnitsError,
    absolute_magnitude,
    apply_cuts,
    deredden,
    plot_cmd,
    select_mdwarfs,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# At parallax = 100 mas, M_G = G + 5 log10(100) - 10 = G exactly, so each row below puts the dereddened
# (M_G0, (BP-RP)_0) at the value written. Each pair is one star just inside and one just outside one cut
# (0.01 mag or 0.01 in RUWE away), and passes every other cut:
#   M_G0 > 6 at (BP-RP)_0 = 1.5 (lines there: 3.28*1.5+0.10 = 5.02 and 3.75*1.5+7.50 = 13.125);
#   M_G0 < 3.75 (BP-RP)_0 + 7.50 at (BP-RP)_0 = 2.0: the line is at 15.00;
#   M_G0 > 3.28 (BP-RP)_0 + 0.10 at (BP-RP)_0 = 2.5: the line is at 8.30;
#   RUWE < 1.4 at M_G0 = 10, (BP-RP)_0 = 2.0.
#  name            M_G0   (BP-RP)_0  RUWE  selected  the cut it fails
BOUNDARY = [
    ("mg0_in", 6.01, 1.5, 1.0, True, None),
    ("mg0_out", 5.99, 1.5, 1.0, False, "pass_mg0"),
    ("upper_in", 14.99, 2.0, 1.0, True, None),
    ("upper_out", 15.01, 2.0, 1.0, False, "pass_upper"),
    ("lower_in", 8.31, 2.5, 1.0, True, None),
    ("lower_out", 8.29, 2.5, 1.0, False, "pass_lower"),
    ("ruwe_in", 10.0, 2.0, 1.39, True, None),
    ("ruwe_out", 10.0, 2.0, 1.41, False, "pass_ruwe"),
]


def _gaia_table(a_g: float = 0.0, e_bp_rp: float = 0.0) -> Table:
    """The boundary stars as a Gaia table, their observed G and BP-RP reddened by ``a_g`` and ``e_bp_rp``."""
    names, mg0, colour, ruwe = zip(*[(r[0], r[1], r[2], r[3]) for r in BOUNDARY])
    n = len(names)
    table = Table()
    table["source_id"] = np.arange(1, n + 1, dtype=np.int64) * 1000003
    table["name"] = names
    table["parallax"] = np.full(n, 100.0)
    table["parallax_error"] = np.full(n, 0.5)
    table["phot_g_mean_mag"] = np.array(mg0) + a_g
    table["bp_rp"] = np.array(colour) + e_bp_rp
    table["ruwe"] = np.array(ruwe)
    table["ag_gspphot"] = np.full(n, a_g)
    table["ebpminrp_gspphot"] = np.full(n, e_bp_rp)
    return table


def _check_boundaries(selection) -> None:
    table = selection.table
    for row, (name, _, _, _, selected, failing) in zip(table, BOUNDARY):
        assert row["name"] == name
        assert bool(row["selected"]) is selected, name
        for cut in CUT_COLUMNS:
            assert bool(row[cut]) is (cut != failing), (name, cut)
    assert list(selection.selected["name"]) == [r[0] for r in BOUNDARY if r[4]]


def test_absolute_magnitude_and_dereddening_by_hand():
    # 10 pc: M = m; 50 mas: M = 12 + 5 log10(50) - 10 = 10.49485002
    assert float(absolute_magnitude(10.0, 100.0)) == pytest.approx(10.0, abs=1e-12)
    assert float(absolute_magnitude(12.0, 50.0)) == pytest.approx(10.49485002, abs=1e-7)
    assert float(absolute_magnitude(12.0, 1.0)) == pytest.approx(2.0, abs=1e-12)
    np.testing.assert_array_equal(np.isnan(absolute_magnitude([10.0, 10.0, 10.0], [0.0, -1.0, np.nan])), True)
    m0, c0 = deredden(9.0, 2.3, a_g=0.25, e_bp_rp=0.12)
    assert float(m0) == pytest.approx(8.75) and float(c0) == pytest.approx(2.18)


def test_boundary_stars_without_extinction():
    selection = select_mdwarfs(_gaia_table())
    np.testing.assert_allclose(selection.table["m_g0"], [r[1] for r in BOUNDARY], atol=1e-9)
    np.testing.assert_allclose(selection.table["bp_rp0"], [r[2] for r in BOUNDARY], atol=1e-12)
    np.testing.assert_array_equal(selection.table["a_g_used"], 0.0)
    _check_boundaries(selection)
    counts = selection.counts()
    assert counts == {"n_rows": 8, "fail_mg0": 1, "fail_upper": 1, "fail_lower": 1, "fail_ruwe": 1,
                      "fail_parallax": 0, "n_selected": 4}


def test_boundary_stars_with_extinction_columns():
    """Reddened by A_G = 0.30 and E(BP-RP) = 0.12: without dereddening the boundaries move, with it they hold."""
    table = _gaia_table(a_g=0.30, e_bp_rp=0.12)
    selection = select_mdwarfs(table, extinction_columns=True)
    np.testing.assert_allclose(selection.table["m_g0"], [r[1] for r in BOUNDARY], atol=1e-9)
    np.testing.assert_allclose(selection.table["bp_rp0"], [r[2] for r in BOUNDARY], atol=1e-9)
    np.testing.assert_allclose(selection.table["a_g_used"], 0.30)
    _check_boundaries(selection)
    # the same constants given by hand: the same selection
    _check_boundaries(select_mdwarfs(table, a_g=0.30, e_bp_rp=0.12))
    # negative control: ignoring the extinction, mg0_out (G = 6.29) passes M_G0 > 6 and lower_in fails its line
    # (M_G0 = 8.61 against 3.28 * 2.62 + 0.10 = 8.6936)
    ignored = select_mdwarfs(table).table
    rows = {name: i for i, name in enumerate(ignored["name"])}
    assert ignored["pass_mg0"][rows["mg0_out"]] and not ignored["pass_lower"][rows["lower_in"]]


def test_missing_gsp_phot_values_fall_back_to_the_constants(caplog):
    table = _gaia_table(a_g=0.30, e_bp_rp=0.12)
    table["ag_gspphot"] = np.ma.masked_array(table["ag_gspphot"], mask=[True] + [False] * 7)
    with caplog.at_level("INFO", logger="bayesslam"):
        selection = select_mdwarfs(table, extinction_columns=True, a_g=0.05, e_bp_rp=0.02)
    assert selection.table["a_g_used"][0] == pytest.approx(0.05) and selection.table["e_bp_rp_used"][0] == 0.02
    assert selection.table["a_g_used"][1] == pytest.approx(0.30)
    assert "1 of 8 rows have no GSP-Phot extinction" in caplog.text


def test_parallax_quality_cuts():
    table = _gaia_table()
    table["parallax"][2] = -3.0  # upper_in: a negative parallax fails
    table["parallax_error"][6] = 100.0 / 4.99  # ruwe_in: parallax_over_error 4.99
    table["parallax_error"][4] = 100.0 / 5.0  # lower_in: exactly 5 passes (>=)
    plain = select_mdwarfs(table)
    assert not plain.table["pass_parallax"][2] and not plain.table["selected"][2]
    assert plain.table["pass_parallax"][6]
    strict = select_mdwarfs(table, min_parallax_over_error=5.0)
    assert not strict.table["pass_parallax"][6] and strict.table["pass_parallax"][4]
    assert strict.cuts.min_parallax_over_error == 5.0
    # parallax_over_error itself is used when present
    table["parallax_over_error"] = np.full(len(table), 3.0)
    assert not np.any(select_mdwarfs(table, cuts=MDwarfCuts(min_parallax_over_error=5.0)).table["pass_parallax"])


def test_apply_cuts_takes_arrays():
    passed = apply_cuts([6.01, 5.99], [1.5, 1.5], [1.0, 1.0])
    np.testing.assert_array_equal(passed["selected"], [True, False])
    # a star with NaN colour fails the colour cuts, not the others
    nan = apply_cuts([10.0], [np.nan], [1.0])
    assert not nan["pass_upper"][0] and not nan["pass_lower"][0] and nan["pass_ruwe"][0]
    with pytest.raises(MissingColumnError, match="parallax_over_error"):
        apply_cuts([10.0], [2.0], [1.0], cuts=MDwarfCuts(min_parallax_over_error=5.0))


@pytest.mark.parametrize("ending", [".csv", ".fits", ".ecsv", ".vot"])
def test_reads_and_writes_every_table_format(tmp_path: Path, ending: str):
    path = tmp_path / f"gaia{ending}"
    _gaia_table().write(path, format={".csv": "ascii.csv", ".fits": "fits", ".ecsv": "ascii.ecsv",
                                      ".vot": "votable"}[ending])
    selection = select_mdwarfs(path)
    assert selection.n_selected == 4
    out = selection.write(tmp_path / f"selected{ending}")
    back = Table.read(out, format={".csv": "ascii.csv", ".fits": "fits", ".ecsv": "ascii.ecsv",
                                   ".vot": "votable"}[ending])
    assert len(back) == 4 and "pass_ruwe" in back.colnames
    with pytest.raises(RelationsError, match="exists; pass overwrite"):
        selection.write(out)
    assert len(Table.read(selection.write(tmp_path / "all.fits", all_rows=True))) == 8


def test_plot_cmd(tmp_path: Path):
    rng = np.random.default_rng(3)
    n = 400
    table = Table({"source_id": np.arange(n), "parallax": rng.uniform(5, 50, n),
                   "phot_g_mean_mag": rng.uniform(8, 18, n), "bp_rp": rng.uniform(0.5, 4.5, n),
                   "ruwe": rng.uniform(0.8, 1.8, n)})
    selection = select_mdwarfs(table)
    assert 0 < selection.n_selected < n
    path = plot_cmd(selection, tmp_path / "cmd.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


# --- bad input: named errors that say what to do -------------------------------------------------------------

def test_missing_columns_are_named():
    table = _gaia_table()
    del table["ruwe"]
    with pytest.raises(MissingColumnError, match=r"no column ruwe \(its columns: source_id, name, parallax"):
        select_mdwarfs(table)
    no_gsp_phot = _gaia_table()
    no_gsp_phot.remove_columns(["ag_gspphot", "ebpminrp_gspphot"])
    with pytest.raises(MissingColumnError, match="no column ag_gspphot, ebpminrp_gspphot"):
        select_mdwarfs(no_gsp_phot, extinction_columns=True)
    no_error = _gaia_table()
    del no_error["parallax_error"]
    with pytest.raises(MissingColumnError, match="parallax_error"):
        select_mdwarfs(no_error, min_parallax_over_error=5)
    assert issubclass(MissingColumnError, BayesSlamError) and issubclass(MissingColumnError, ValueError)


def test_wrong_units_are_refused():
    arcsec = _gaia_table()
    arcsec["parallax"] = arcsec["parallax"] / 1000.0
    with pytest.raises(UnitsError, match="look like arcseconds.*multiply them by 1000"):
        select_mdwarfs(arcsec)
    assert len(select_mdwarfs(arcsec, check_units=False).table) == 8
    # a parallax column with a unit is converted
    with_unit = _gaia_table()
    with_unit["parallax"] = (with_unit["parallax"] / 1000.0) * u.arcsec
    np.testing.assert_allclose(select_mdwarfs(with_unit).table["m_g0"], [r[1] for r in BOUNDARY], atol=1e-9)
    negative = _gaia_table()
    negative["parallax"] = -negative["parallax"]
    with pytest.raises(UnitsError, match="every parallax is <= 0"):
        select_mdwarfs(negative)
    empty = _gaia_table()
    empty["bp_rp"] = np.nan
    with pytest.raises(UnitsError, match="column bp_rp has no finite value"):
        select_mdwarfs(empty)
    flux = _gaia_table()
    flux["phot_g_mean_mag"] = 1e5
    with pytest.raises(UnitsError, match="no Gaia G magnitude"):
        select_mdwarfs(flux)
    bad_ruwe = _gaia_table()
    bad_ruwe["ruwe"][0] = -1.0
    with pytest.raises(UnitsError, match="ruwe has negative values"):
        select_mdwarfs(bad_ruwe)


def test_unreadable_files(tmp_path: Path):
    with pytest.raises(RelationsError, match="does not exist"):
        select_mdwarfs(tmp_path / "missing.fits")
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file at all")
    with pytest.raises(RelationsError, match="cannot read Gaia table"):
        select_mdwarfs(junk)

"""``bayesslam select`` and ``bayesslam compare`` end to end on small tables written to tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.table import Table

from bayesslam.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _gaia(n: int = 300, seed: int = 1) -> Table:
    rng = np.random.default_rng(seed)
    parallax = rng.uniform(2, 60, n)
    return Table({"source_id": np.arange(n, dtype=np.int64) + 4_000_000_000_000_000_000,
                  "parallax": parallax, "parallax_error": parallax / rng.uniform(2, 50, n),
                  "phot_g_mean_mag": rng.uniform(9, 19, n), "bp_rp": rng.uniform(0.5, 4.5, n),
                  "ruwe": rng.uniform(0.8, 2.0, n), "ag_gspphot": rng.uniform(0, 0.3, n),
                  "ebpminrp_gspphot": rng.uniform(0, 0.15, n)})


def _catalogs(tmp_path: Path, n: int = 400) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(10, 11, n), rng.uniform(-30, -29, n)
    teff = rng.uniform(3000, 4000, n)
    a = Table({"sdss_id": np.arange(n), "ra": ra, "dec": dec, "teff": teff + 25 * rng.standard_normal(n),
               "teff_err": np.full(n, 25.0)})
    b = Table({"sdss_id": np.arange(n)[::-1], "ra": ra[::-1], "dec": dec[::-1],
               "teff": (teff + 80.0 + 25 * rng.standard_normal(n))[::-1], "teff_err": np.full(n, 25.0),
               "snr": rng.uniform(5, 50, n)})
    a.write(tmp_path / "a.csv")
    b.write(tmp_path / "b.fits")
    return tmp_path / "a.csv", tmp_path / "b.fits"


def test_select_writes_the_selected_rows_and_the_cmd(tmp_path: Path, caplog):
    _gaia().write(tmp_path / "gaia.csv")
    out, plot = tmp_path / "mdwarfs.fits", tmp_path / "cmd.png"
    args = ["select", str(tmp_path / "gaia.csv"), "-o", str(out), "--plot", str(plot)]
    with caplog.at_level("INFO", logger="bayesslam"):
        assert main(args) == 0
    selected = Table.read(out)
    assert 0 < len(selected) < 300
    assert np.all(selected["selected"]) and np.all(selected["ruwe"] < 1.4) and np.all(selected["m_g0"] > 6)
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert f"{len(selected)} of 300 stars selected" in caplog.text and "RUWE < 1.4" in caplog.text
    # existing outputs need --overwrite
    caplog.clear()
    with caplog.at_level("INFO", logger="bayesslam"):
        assert main(args) == 2
    assert "exists; pass --overwrite" in caplog.text
    # the options: GSP-Phot extinctions, a parallax-quality cut, every row kept
    every = tmp_path / "all.ecsv"
    assert main(["select", str(tmp_path / "gaia.csv"), "-o", str(every), "--extinction-columns",
                 "--min-parallax-over-error", "10", "--keep-rejected"]) == 0
    table = Table.read(every)
    assert len(table) == 300 and table.meta["EXTINCT"] == "columns"
    np.testing.assert_allclose(table["a_g_used"], table["ag_gspphot"])
    poe = table["parallax"] / table["parallax_error"]
    assert not np.any(table["selected"] & (poe < 10))
    assert np.sum(table["selected"]) < len(selected) + 1


def test_select_with_a_missing_column_exits_with_a_message(tmp_path: Path, caplog, capsys):
    gaia = _gaia()
    del gaia["ruwe"]
    gaia.write(tmp_path / "gaia.fits")
    with caplog.at_level("INFO", logger="bayesslam"):
        status = main(["select", str(tmp_path / "gaia.fits"), "-o", str(tmp_path / "out.fits")])
    assert status == 2
    assert "error: the Gaia table has no column ruwe" in caplog.text
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out + caplog.text
    assert not (tmp_path / "out.fits").exists()


def test_compare_writes_the_report_and_logs_the_summary(tmp_path: Path, caplog):
    a, b = _catalogs(tmp_path)
    report = tmp_path / "report"
    with caplog.at_level("INFO", logger="bayesslam"):
        assert main(["compare", str(a), str(b), "-o", str(report), "--bin-by", "snr", "--bins", "3"]) == 0
    names = sorted(p.name for p in report.iterdir())
    assert names == ["matched.fits", "one_to_one.png", "residuals.png", "summary.json", "zscores.png"]
    summary = json.loads((report / "summary.json").read_text())
    teff = summary["labels"]["teff"]
    assert summary["n_matched"] == 400 and summary["match"] == "sky, within 1 arcsec"
    assert abs(teff["bias"] - 80.0) < 6.0 and abs(teff["std"] - np.hypot(25, 25)) < 4.0
    assert len(summary["binned"]["teff"]) == 3
    line = next(x for x in caplog.messages if x.strip().startswith("teff"))
    assert f"{teff['bias']:.4g}" in line and f"{teff['mad_std']:.4g}" in line
    # by identifier, with names, CSV, over the existing report
    caplog.clear()
    with caplog.at_level("INFO", logger="bayesslam"):
        assert main(["compare", str(a), str(b), "-o", str(report), "--match-on", "sdss_id", "--labels",
                     "teff:teff", "--names", "mine,theirs", "--csv"]) == 2
        assert "pass --overwrite" in caplog.text
        assert main(["compare", str(a), str(b), "-o", str(report), "--match-on", "sdss_id", "--labels",
                     "teff:teff", "--names", "mine,theirs", "--csv", "--overwrite"]) == 0
    assert "identifier sdss_id" in caplog.text
    assert json.loads((report / "summary.json").read_text())["names"] == ["mine", "theirs"]
    assert len(Table.read(report / "matched.csv")) == 400


def test_compare_errors_exit_with_a_message(tmp_path: Path, caplog, capsys):
    a, b = _catalogs(tmp_path)
    with caplog.at_level("INFO", logger="bayesslam"):
        assert main(["compare", str(a), str(b), "-o", str(tmp_path / "r1"), "--labels", "logg"]) == 2
        assert "catalog A has no column logg" in caplog.text
        assert main(["compare", str(a), str(b), "-o", str(tmp_path / "r2"), "--match-radius", "0.001arcsec",
                     "--radec-b", "dec,ra"]) == 2
        assert "check the units of ra/dec" in caplog.text or "outside" in caplog.text
        assert main(["compare", str(a), str(tmp_path / "nothing.fits"), "-o", str(tmp_path / "r3")]) == 2
        assert "does not exist" in caplog.text
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out + caplog.text

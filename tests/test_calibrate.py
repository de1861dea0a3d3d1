"""``bayesslam calibrate`` and :func:`bayesslam.calibration_report.calibration_report` with the shipped default model.

One library run on 60 mock stars (MAP + Laplace, numbers only) is shared by the report tests; the
held-out path runs on the 12 mock files of examples/data/mock with their label table; the command
runs end to end, figures included, on a few mock stars. The first test to fit pays the MAP
compilation (~5 s); the figures of the command's run take ~8 s of its time here.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

import bayesslam
from bayesslam.cli import main
from bayesslam.calibration_report import CalibrationReport, calibration_report
from bayesslam.validation import ValidationError

#: 13 mock spectra in the SDSS spec layout with labels.csv (their true labels).
MOCK_FILES = Path(__file__).resolve().parent.parent / "examples" / "data" / "mock"
N_STARS, SEED = 60, 1
LABELS = ("teff", "logg", "fe_h", "alpha_m")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[CalibrationReport, Path]:
    folder = tmp_path_factory.mktemp("calibrate")
    report = calibration_report(None, mock=N_STARS, seed=SEED, folder=folder / "report",
                                write_model=folder / "recalibrated.npz", n_bootstrap=50, figures=False)
    return report, folder


@pytest.mark.slow
def test_report_json_has_every_number(run):
    report, folder = run
    record = json.loads((folder / "report" / "report.json").read_text())
    assert record == report.summary()
    assert {"format", "model", "stars", "settings", "coverage", "snr_laws", "error_calibration", "sbc", "figures",
            "files", "elapsed_s"} <= set(record)
    assert record["format"] == "bayesslam.calibration-report" and record["sbc"] is None
    assert record["model"]["label_names"] == list(LABELS)
    assert record["stars"]["source"] == "mock" and record["stars"]["n_input"] == N_STARS
    assert record["stars"]["n_used"] == report.n_star >= N_STARS - 2
    assert record["stars"]["catalog_snr"]["min"] >= 3.0 and record["stars"]["catalog_snr"]["max"] <= 50.0
    # coverage at 68% and 95%: raw, with the model's calibration (the default model carries one), per SNR bin and quartile
    for kind in ("laplace", "laplace_calibrated"):
        entry = record["coverage"][kind]
        for level in ("68", "95"):
            assert all(0.0 <= entry[level][name] <= 1.0 for name in LABELS)
        assert len(entry["by_snr"]) == 4 and sum(b["n"] for b in entry["by_snr"]) == report.n_star
        assert all(b["snr"][0] <= b["snr"][1] for b in entry["by_snr"])
        assert all(len(entry["by_label_quartile"][name]) == 4 for name in LABELS)
        assert all(0.0 <= q["68"] <= 1.0 for name in LABELS for q in entry["by_label_quartile"][name])
    assert record["coverage"]["laplace_refitted"] is None  # 60 stars: halves too small for an out-of-sample check
    # the paper's error product: scatter against SNR falls with SNR for the labels the spectra constrain
    laws = record["snr_laws"]
    assert laws["stars_per_bin"] == 15
    for name in ("teff", "fe_h"):
        fitted = laws["labels"][name]["fitted"]
        assert fitted["a"] > 0 and fitted["b"] < 0 and fitted["b_err"] is not None
        assert len(laws["labels"][name]["bins"]["snr"]) == 4
        assert laws["labels"][name]["paper"] is not None
    assert laws["labels"]["alpha_m"]["paper"] is None
    fitted = record["error_calibration"]["fitted"]
    assert fitted["kind"] == "laplace" and fitted["n_stars"] == report.n_star
    assert all(fitted["scale"][name] > 0 and fitted["floor"][name] >= 0 for name in LABELS)
    assert set(report.snr_laws) >= {"teff", "fe_h"}
    assert record["figures"] == {}
    coverage = json.loads((folder / "report" / "coverage.json").read_text())
    assert set(coverage["kinds"]) == {"laplace", "laplace, calibrated"}
    with open(folder / "report" / "stars.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == record["stars"]["n_prepared"] and {"identifier", "snr", "teff_true", "teff_map"} <= set(rows[0])
    text = "\n".join(report.lines())
    assert all(name in text for name in LABELS) and "paper" in text


@pytest.mark.slow
def test_write_model_gives_the_model_the_calibration_fitted_on_these_stars(run):
    report, folder = run
    default, recalibrated = bayesslam.load_model(), bayesslam.load_model(folder / "recalibrated.npz")
    assert report.model_path == folder / "recalibrated.npz"
    assert report.summary()["files"]["model"] == str(folder / "recalibrated.npz")
    new = recalibrated.error_calibration
    fitted = report.summary()["error_calibration"]["fitted"]
    assert np.allclose(new.laplace.scale, [fitted["scale"][name] for name in LABELS])
    assert np.allclose(new.laplace.floor, [fitted["floor"][name] for name in LABELS])
    assert new.laplace.source.startswith("bayesslam calibrate") and new.laplace.n_stars == report.n_star
    # the rest of the model is the default's: emulator, posterior calibration (MAP only here), SNR laws
    old = default.error_calibration
    assert (new.posterior is None) == (old.posterior is None)
    if old.posterior is not None:
        assert np.array_equal(new.posterior.scale, old.posterior.scale)
    for name, array in default.emulator_arrays.items():
        assert np.array_equal(np.asarray(recalibrated.emulator_arrays[name]), np.asarray(array)), name
    laws = [None if m.snr_laws is None else {n: law.to_metadata() for n, law in m.snr_laws.items()}
            for m in (default, recalibrated)]
    assert laws[0] == laws[1]


@pytest.mark.slow
def test_the_command_runs_on_a_few_mock_stars_and_writes_the_figures(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="bayesslam"):
        assert main(["calibrate", "default", "--mock", "8", "--seed", "2", "-o", str(tmp_path / "report")]) == 0
    record = json.loads((tmp_path / "report" / "report.json").read_text())
    assert record["stars"]["n_input"] == 8 and record["error_calibration"]["fitted"] is None  # too few stars
    assert all(law["fitted"] is None for law in record["snr_laws"]["labels"].values())  # fewer than 4 SNR bins
    for key in ("coverage_curves", "coverage_pit", "coverage_laplace_by_snr", "coverage_laplace_calibrated_by_truth",
                "snr_laws", "calibration_curves"):
        assert (tmp_path / "report" / record["figures"][key]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "coverage of the central 68% / 95% intervals" in caplog.text and "SNR laws" in caplog.text
    # an existing report is refused without --overwrite
    assert main(["calibrate", "default", "--mock", "8", "-o", str(tmp_path / "report")]) == 2
    assert "exists and is not empty" in caplog.text


def test_held_out_files_with_their_label_table(tmp_path):
    files = sorted(MOCK_FILES.glob("spec-*.fits"))
    report = calibration_report(None, spectra=files, labels=MOCK_FILES / "labels.csv", folder=tmp_path / "report",
                                figures=False)
    record = report.summary()
    assert record["stars"]["source"] == "held-out" and record["stars"]["n_input"] == len(files) == 12
    assert "labels.csv" in record["stars"]["description"]
    with open(MOCK_FILES / "labels.csv", newline="") as stream:
        table = {row["identifier"]: row for row in csv.DictReader(stream)}
    with open(tmp_path / "report" / "stars.csv", newline="") as stream:
        for row in csv.DictReader(stream):
            assert float(row["fe_h_true"]) == pytest.approx(float(table[row["identifier"]]["fe_h"]))
    # too few stars to fit a calibration: with write_model the report is written, then the reason raised
    with pytest.raises(ValidationError, match="no error calibration could be fitted"):
        calibration_report(None, spectra=files, labels=MOCK_FILES / "labels.csv", folder=tmp_path / "again",
                           write_model=tmp_path / "m.npz", figures=False)
    assert (tmp_path / "again" / "report.json").exists() and not (tmp_path / "m.npz").exists()


def _label_table_without(path: Path, column: str) -> Path:
    with open(MOCK_FILES / "labels.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, [c for c in rows[0] if c != column])
        writer.writeheader()
        writer.writerows({k: v for k, v in row.items() if k != column} for row in rows)
    return path


@pytest.mark.parametrize("extra, message", [
    ([], "give held-out stars"),
    (["--spectra", str(MOCK_FILES)], "need their true labels"),
    (["--mock", "5", "--labels", str(MOCK_FILES / "labels.csv")], "mock stars bring their own"),
    (["--spectra", str(MOCK_FILES), "--labels", "NO_FE_H"], "missing column(s) ['fe_h']"),
    (["--mock", "5", "--snr", "10", "3"], "0 < low <= high"),
    (["--spectra", str(MOCK_FILES / "nothing-*.fits"), "--labels", str(MOCK_FILES / "labels.csv")], "no file matches"),
    (["--mock", "5", "--sbc", "1"], "at least 2 simulations"),
])
def test_bad_input_exits_2_with_the_reason(tmp_path, caplog, capsys, extra, message):
    extra = [str(_label_table_without(tmp_path / "labels.csv", "fe_h")) if arg == "NO_FE_H" else arg for arg in extra]
    with caplog.at_level(logging.INFO, logger="bayesslam"):
        assert main(["calibrate", "default", *extra, "-o", str(tmp_path / "report")]) == 2
    assert message in caplog.text and "Traceback" not in caplog.text + capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_spectra_and_mock_together_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["calibrate", "default", "--mock", "5", "--spectra", str(MOCK_FILES), "-o", str(tmp_path / "r")])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_library_refuses_existing_outputs_and_a_missing_model(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "old.txt").write_text("x")
    with pytest.raises(ValidationError, match="exists and is not empty"):
        calibration_report(None, mock=5, folder=tmp_path / "report")
    (tmp_path / "model.npz").write_text("x")
    with pytest.raises(ValidationError, match="model.npz exists"):
        calibration_report(None, mock=5, folder=tmp_path / "new", write_model=tmp_path / "model.npz")
    with pytest.raises(ValidationError, match="does not exist"):
        calibration_report(tmp_path / "absent.npz", mock=5, folder=tmp_path / "new")
    with pytest.raises(ValidationError, match="sampler"):
        calibration_report(None, mock=5, folder=tmp_path / "new", sampler="hmc")

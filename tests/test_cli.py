"""End to end through the command line: a mock survey written as files, then prepared."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bayesslam.cli import main
from bayesslam.prepare import read_prepared


def test_mock_then_prepare(tmp_path: Path):
    folder = tmp_path / "mock"
    assert main(["mock", "--n", "6", "--seed", "3", "--binaries", "1", "-o", str(folder)]) == 0
    files = sorted(folder.glob("spec-*.fits"))
    assert len(files) == 8
    with open(folder / "labels.csv") as handle:
        labels = list(csv.DictReader(handle))
    pair = [row for row in labels if row["group"] == "binary"]
    assert len(pair) == 2 and pair[0]["fe_h"] == pair[1]["fe_h"]
    out = tmp_path / "prepared.fits"
    assert main(["prepare", *map(str, files), "-o", str(out)]) == 0
    prepared = read_prepared(out)
    assert len(prepared) == 8 and not prepared.failures
    assert sorted(prepared.spectra.identifiers) == sorted(row["identifier"] for row in labels)
    assert np.all(np.isfinite(prepared.spectra.flux))

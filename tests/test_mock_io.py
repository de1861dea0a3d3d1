"""Mock surveys written in real formats read back through bayesslam.io.read_spectrum."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from bayesslam.errors import SpectrumValidationError, UnknownFormatError
from bayesslam.io import read_spectrum
from bayesslam.mock import generate_survey_files, make_survey, write_survey


def test_sdss_spec_files_read_back(tmp_path) -> None:
    batch, labels = make_survey(4, np.random.default_rng(1), n_binaries=1)
    paths, labels_path = write_survey(batch, labels, tmp_path)
    table = Table.read(labels_path, format="ascii.csv")
    assert len(paths) == len(table) == 6
    for i, path in enumerate(paths):
        spectrum = read_spectrum(path)
        row = table[table["identifier"] == spectrum.meta.identifier]
        assert len(row) == 1 and row["file"][0] == path.name
        assert np.allclose(spectrum.wave, batch.wave, rtol=1e-9)
        assert np.allclose(spectrum.flux, batch.flux[i], rtol=1e-6, atol=1e-6)
        assert np.array_equal(spectrum.mask, batch.mask[i])
        assert np.allclose(spectrum.ivar, batch.ivar[i], rtol=1e-6)
        assert spectrum.meta.v_rad == pytest.approx(row["v_rad"][0], abs=1e-3)
        assert not spectrum.meta.rest_frame


def test_sdssv_mwm_files_read_back(tmp_path) -> None:
    batch, labels = make_survey(3, np.random.default_rng(2), rest_frame=True)
    paths, labels_path = write_survey(batch, labels, tmp_path, format="sdssv-mwm")
    table = Table.read(labels_path, format="ascii.csv")
    for i, path in enumerate(paths):
        spectrum = read_spectrum(path)
        assert spectrum.n_pixels == 4648 and spectrum.meta.rest_frame
        assert str(table["identifier"][i]) == spectrum.meta.identifier
        inside = (spectrum.wave > batch.wave[0] - 0.1) & (spectrum.wave < batch.wave[-1] + 0.1)
        assert np.allclose(spectrum.flux[inside], batch.flux[i], rtol=1e-6, atol=1e-6)
        assert np.array_equal(spectrum.mask[inside], batch.mask[i])
        assert spectrum.meta.v_rad == pytest.approx(table["v_rad"][i], abs=1e-3)


def test_writer_refuses_inconsistent_requests(tmp_path) -> None:
    batch, labels = make_survey(2, np.random.default_rng(3))
    with pytest.raises(SpectrumValidationError, match="rest frame"):
        write_survey(batch, labels, tmp_path, format="sdssv-mwm")
    with pytest.raises(UnknownFormatError):
        write_survey(batch, labels, tmp_path, format="lamost")
    with pytest.raises(SpectrumValidationError):
        write_survey(batch, labels[::-1], tmp_path)


def test_generate_survey_files_matches_make_survey(tmp_path) -> None:
    summary = generate_survey_files(tmp_path, 5, seed=8, n_binaries=1, n_cluster=2, snr_range=(5.0, 20.0))
    assert summary["n_spectra"] == 9 and (tmp_path / "survey.json").is_file()
    table = Table.read(summary["labels_file"], format="ascii.csv")
    assert list(table["group"]).count("binary") == 2 and list(table["group"]).count("cluster") == 2
    assert np.all((table["snr"] >= 5) & (table["snr"] <= 20))
    from bayesslam.mock import ObservingSetup

    batch, labels = make_survey(5, np.random.default_rng(8), n_binaries=1, n_cluster=2,
                                setup=ObservingSetup(snr_range=(5.0, 20.0)))
    for i, name in enumerate(table["file"]):
        spectrum = read_spectrum(tmp_path / name)
        assert spectrum.meta.identifier == labels["identifier"][i]
        assert np.allclose(spectrum.flux, batch.flux[i], rtol=1e-6, atol=1e-6)

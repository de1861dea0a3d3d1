"""The prepare stage and the `bayesslam prepare` command, on real SDSS files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from bayesslam import AllMaskedError, NoOverlapError, Spectrum, SpectrumMeta
from bayesslam.cli import main
from bayesslam.grid import model_wavelength
from bayesslam.io import read_spectrum
from bayesslam.preparation import (
    prepare_files,
    prepare_spectrum,
    read_prepared,
    write_prepared,
)


def test_prepare_spectrum_puts_real_spectrum_on_model_grid(sdss_files):
    raw = read_spectrum(sdss_files[1])
    prepared, continuum = prepare_spectrum(raw)
    np.testing.assert_array_equal(prepared.wave, model_wavelength())
    assert prepared.meta.rest_frame and prepared.meta.v_rad == raw.meta.v_rad
    good = ~prepared.mask
    assert good.mean() > 0.9
    assert np.all(continuum > 0) and np.all(np.isfinite(prepared.flux))
    assert 0.9 < np.median(prepared.flux[good]) < 1.1


def test_no_overlap_and_all_masked_raise_named_errors():
    blue = np.linspace(3600.0, 5000.0, 700)
    with pytest.raises(NoOverlapError, match="overlap"):
        prepare_spectrum(Spectrum(blue, np.ones(700), np.ones(700), meta=SpectrumMeta("blue", v_rad=0.0)))
    red = np.linspace(5800.0, 9200.0, 2000)
    with pytest.raises(AllMaskedError):
        prepare_spectrum(Spectrum(red, np.ones(2000), np.zeros(2000), meta=SpectrumMeta("dark", v_rad=0.0)))


def test_one_bad_file_does_not_stop_the_batch(tmp_path: Path, sdss_files):
    truncated = tmp_path / "spec-truncated.fits"
    truncated.write_bytes(sdss_files[0].read_bytes()[:30000])
    nan_file = tmp_path / "nanflux.npz"
    wave = np.linspace(5800, 9200, 2000)
    np.savez(nan_file, wavelength=wave, flux=np.full(2000, np.nan), ivar=np.ones(2000))
    negative = tmp_path / "negivar.npz"
    np.savez(negative, wavelength=wave, flux=np.ones(2000), ivar=-np.ones(2000))
    paths = [sdss_files[0], truncated, nan_file, sdss_files[1], negative]
    prepared = prepare_files(paths, progress=False)
    assert prepared.spectra.identifiers == ["spec-0618-52049-0372", "spec-1079-52621-0509"]
    failed = {Path(f.source).name: f for f in prepared.failures}
    assert failed["spec-truncated.fits"].error == "CorruptFileError"
    assert failed["nanflux.npz"].error == "AllMaskedError"
    assert failed["negivar.npz"].error == "SpectrumValidationError"
    assert "negative inverse variance" in failed["negivar.npz"].reason


def test_prepared_file_round_trip_and_readable_with_astropy_alone(tmp_path: Path, sdss_files):
    prepared = prepare_files(sdss_files, progress=False)
    path = write_prepared(prepared, tmp_path / "prepared.fits")
    with fits.open(path, checksum=True) as hdul:
        names = [h.name for h in hdul]
        assert names == ["PRIMARY", "WAVE", "FLUX", "IVAR", "MASK", "CONTINUUM", "META", "FAILED"]
        assert hdul["FLUX"].data.shape == (4, model_wavelength().size)
        np.testing.assert_allclose(hdul["WAVE"].data, model_wavelength())
        assert list(hdul["META"].data["IDENTIFIER"]) == [p.stem for p in sdss_files]
        assert hdul[0].header["CONTINUUM P1"] == 1e-8
    back = read_prepared(path)
    np.testing.assert_allclose(back.spectra.flux, prepared.spectra.flux, rtol=1e-6)
    np.testing.assert_array_equal(back.spectra.mask, prepared.spectra.mask)
    assert back.settings["p2"] == 1e-7 and back.spectra.identifiers == prepared.spectra.identifiers


def test_cli_prepare_reports_failures_and_writes_good_ones(tmp_path: Path, sdss_files, caplog):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    out = tmp_path / "out.fits"
    status = main(["prepare", *map(str, sdss_files), str(bad), "-o", str(out), "--plot", str(tmp_path / "p.png")])
    assert status == 0
    assert "notes.txt" in caplog.text and "UnknownFormatError" in caplog.text
    prepared = read_prepared(out)
    assert len(prepared) == 4
    assert [Path(f.source).name for f in prepared.failures] == ["notes.txt"]
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert main(["prepare", str(sdss_files[0]), "-o", str(out)]) == 2  # refuses to overwrite


def test_console_script_runs(tmp_path: Path, sdss_files):
    out = tmp_path / "cli.fits"
    result = subprocess.run(
        ["bayesslam", "prepare", str(sdss_files[2]), "-o", str(out)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "prepared 1 of 1 spectra" in result.stderr
    assert out.exists()


def test_module_entry_point(tmp_path: Path, sdss_files):
    out = tmp_path / "m.fits"
    result = subprocess.run(
        [sys.executable, "-m", "bayesslam", "prepare", str(sdss_files[2]), "-o", str(out)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.exists()

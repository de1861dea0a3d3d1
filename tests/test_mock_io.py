"""Mock surveys written in real formats read back through bayesslam.io.read_spectrum."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from bayesslam.errors import SpectrumValidationError, UnknownFormatError
from bayesslam.io import read_spectrum
from bayesslam.mock import (
    LabelRangeError,
    generate_survey_files,
    make_survey,
    survey_mjd,
    write_survey,
)


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


def test_surveys_of_different_seeds_never_share_names(tmp_path) -> None:
    """Surveys of two seeds share no file name or identifier; one seed always gives the same names."""
    first = generate_survey_files(tmp_path / "one", 3, seed=1)
    second = generate_survey_files(tmp_path / "two", 3, seed=2)
    names = [sorted(p.name for p in (tmp_path / sub).glob("spec-*.fits")) for sub in ("one", "two")]
    assert names[0] == ["spec-90000-60001-0001.fits", "spec-90000-60001-0002.fits", "spec-90000-60001-0003.fits"]
    assert names[1][0] == "spec-90000-60002-0001.fits" and not set(names[0]) & set(names[1])
    assert (first["mjd"], second["mjd"]) == (60001, 60002)
    again = generate_survey_files(tmp_path / "again", 3, seed=1)
    assert sorted(p.name for p in (tmp_path / "again").glob("spec-*.fits")) == names[0] and again["mjd"] == 60001
    # the identifiers read back from the files differ too (the catalog's IDENTIFIER)
    ids = {read_spectrum(p).meta.identifier for sub in ("one", "two") for p in (tmp_path / sub).glob("spec-*.fits")}
    assert len(ids) == 6
    # SDSS-V mwmStar files are named by sdss_id, which follows the survey's MJD
    mwm = [generate_survey_files(tmp_path / f"mwm{seed}", 2, seed=seed, format="sdssv-mwm") for seed in (1, 2)]
    mwm_names = [{p.name for p in (tmp_path / f"mwm{seed}").glob("mwmStar-*.fits")} for seed in (1, 2)]
    assert len(mwm_names[0]) == len(mwm_names[1]) == 2 and not mwm_names[0] & mwm_names[1]
    assert mwm[0]["mjd"] != mwm[1]["mjd"]


def test_survey_names_in_memory() -> None:
    """make_survey names a survey by the generator it starts from: its seed, or its state when already drawn from."""
    _, a = make_survey(2, np.random.default_rng(3))
    _, b = make_survey(2, np.random.default_rng(4))
    assert list(a["identifier"]) == ["spec-90000-60003-0001", "spec-90000-60003-0002"]
    assert not set(a["identifier"]) & set(b["identifier"])
    assert survey_mjd(3) == survey_mjd(np.random.default_rng(3)) == 60003 and survey_mjd(40003) == 60003
    rng = np.random.default_rng(3)
    _, first = make_survey(2, rng)
    _, then = make_survey(2, rng)  # two surveys from one generator, one after the other
    assert list(first["identifier"]) == list(a["identifier"]) and not set(first["identifier"]) & set(then["identifier"])
    _, given = make_survey(2, np.random.default_rng(3), mjd=61234)
    assert given["identifier"][0] == "spec-90000-61234-0001" and given["sdss_id"][0] == 900_000_000 + 1234 * 10_000_000
    with pytest.raises(LabelRangeError, match="MJD"):
        make_survey(2, np.random.default_rng(3), mjd=59999)

"""Readers (format chosen from content) and writers, on real files and files written to the data models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from bayesslam import CorruptFileError, Spectrum, SpectrumMeta, UnknownFormatError
from bayesslam.grid import BOSS_NPIX, boss_wavelength
from bayesslam.io import identify_format, read_spectrum, write_spectrum
from bayesslam.wavelength import (
    SPEED_OF_LIGHT_KMS,
    air_to_vacuum,
    to_rest_frame,
    vacuum_to_air,
)

# Expected values read off the files' SPECOBJ rows and COADD tables.
SDSS_EXPECTED = {
    "spec-0618-52049-0372.fits": dict(loglam0=3.5812, snr=50.09, plate=618, mjd=52049, fiber=372),
    "spec-1079-52621-0509.fits": dict(loglam0=3.5797, snr=23.99, plate=1079, mjd=52621, fiber=509),
    "spec-1123-52882-0065.fits": dict(loglam0=3.5800, snr=10.22, plate=1123, mjd=52882, fiber=65),
    "spec-5047-55833-0936.fits": dict(loglam0=3.5552, snr=48.57, plate=5047, mjd=55833, fiber=936),
}


@pytest.mark.parametrize("name", sorted(SDSS_EXPECTED))
def test_sdss_spec_reader_grid_ids_and_snr(data_dir: Path, name: str):
    expected = SDSS_EXPECTED[name]
    path = data_dir / name
    assert identify_format(path).name == "sdss-spec"
    s = read_spectrum(path)
    with fits.open(path) as hdul:
        n_pix = len(hdul[1].data)
        z = float(hdul[2].data["Z"][0])
    assert s.meta.identifier == name.removesuffix(".fits")
    assert s.meta.extra["plate"] == expected["plate"]
    assert s.meta.extra["mjd"] == expected["mjd"]
    assert s.meta.extra["fiberid"] == expected["fiber"]
    assert s.meta.snr == pytest.approx(expected["snr"], abs=0.01)
    assert s.meta.v_rad == pytest.approx(z * SPEED_OF_LIGHT_KMS)
    assert not s.meta.rest_frame
    # the BOSS log-lambda grid family, exactly: log10(lambda) = loglam0 + 1e-4 i, in Angstrom
    np.testing.assert_allclose(np.log10(s.wave), expected["loglam0"] + 1e-4 * np.arange(n_pix), atol=1e-12)
    assert 3550 < s.wave[0] < 3900 and 9000 < s.wave[-1] < 10400
    assert s.n_good > 0.9 * n_pix


@pytest.mark.parametrize("name", ["spec-0618-52049-0372.fits", "spec-1079-52621-0509.fits", "spec-5047-55833-0936.fits"])
def test_sdss_wavelengths_are_vacuum(data_dir: Path, name: str):
    """K I 7699 and Na I 8183/8195 absorption minima sit at their vacuum, not air, rest wavelengths."""
    s = read_spectrum(data_dir / name)
    wave = to_rest_frame(s.wave, s.meta.v_rad)
    offsets = []
    for line_air in (7698.96, 8183.26, 8194.82):
        line_vac = float(air_to_vacuum(line_air))
        window = (wave > line_vac - 5) & (wave < line_vac + 5)
        offsets.append(wave[window][np.argmin(s.flux[window])] - line_vac)
    assert abs(np.mean(offsets)) < 1.0  # the air positions are 2.2-2.3 A bluer


def _sdssv_example(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(data_dir / "sdssv_example_spectrum.npz") as npz:
        return np.array(npz["loglam"]), np.array(npz["flux"])


def test_real_sdssv_example_lies_on_the_boss_grid(data_dir: Path):
    loglam, flux = _sdssv_example(data_dir)
    index = (loglam - 3.5523) / 1e-4
    assert np.max(np.abs(index - np.round(index))) < 0.01  # loglam was stored in 32 bits
    assert np.all(np.diff(np.round(index)) == 1)
    assert loglam.size == 4170 and flux.size == 4170


def test_generic_npz_without_ivar_is_refused_with_reason(data_dir: Path):
    path = data_dir / "sdssv_example_spectrum.npz"
    assert identify_format(path).name == "table"
    with pytest.raises(CorruptFileError, match="ivar"):
        read_spectrum(path)


def _example_on_boss_grid(data_dir: Path, snr: float = 30.0) -> Spectrum:
    loglam, flux = _sdssv_example(data_dir)
    start = int(round((loglam[0] - 3.5523) / 1e-4))
    wave = boss_wavelength()[start : start + loglam.size]
    sigma = np.median(flux) / snr
    meta = SpectrumMeta("27021598685558821", snr, -12.5, "", True, {"sdss_id": 27021598685558821})
    return Spectrum(wave, flux, np.full(flux.size, sigma**-2), meta=meta)


def test_sdssv_mwm_round_trip_on_real_flux(tmp_path: Path, data_dir: Path):
    original = _example_on_boss_grid(data_dir)
    path = write_spectrum(original, tmp_path / "mwmStar-0.6.0-27021598685558821.fits", format="sdssv-mwm")
    assert identify_format(path).name == "sdssv-mwm"
    s = read_spectrum(path)
    assert s.meta.identifier == "27021598685558821"
    assert s.meta.rest_frame and s.meta.v_rad == pytest.approx(-12.5)
    assert s.n_pixels == BOSS_NPIX
    np.testing.assert_allclose(s.wave, boss_wavelength(), rtol=1e-14)
    covered = ~s.mask
    assert covered.sum() == original.n_pixels
    np.testing.assert_allclose(s.flux[covered], original.flux, rtol=1e-6)
    np.testing.assert_allclose(s.ivar[covered], original.ivar, rtol=1e-6)
    with fits.open(path) as hdul:
        assert hdul["BOSS/APO"].header["CRVAL"] == 3.5523
        assert hdul["BOSS/APO"].header["NPIXELS"] == 4648


def test_sdssv_mwm_writer_refuses_off_grid_spectrum(tmp_path: Path):
    wave = np.linspace(6000, 7000, 500)
    s = Spectrum(wave, np.ones(500), np.ones(500))
    with pytest.raises(CorruptFileError, match="BOSS log-lambda grid"):
        write_spectrum(s, tmp_path / "x.fits", format="sdssv-mwm")


def test_sdssv_spec_lite_with_spall_row(tmp_path: Path, data_dir: Path):
    """SDSS-V spec-lite layout: upper-case COADD columns and a SPALL row (FIELD, CATALOGID, XCSAO_RV)."""
    original = _example_on_boss_grid(data_dir)
    coadd = fits.BinTableHDU.from_columns(
        [
            fits.Column("FLUX", "E", array=original.flux),
            fits.Column("LOGLAM", "E", array=np.log10(original.wave)),
            fits.Column("IVAR", "E", array=original.ivar),
            fits.Column("AND_MASK", "J", array=np.zeros(original.n_pixels, np.int32)),
        ],
        name="COADD",
    )
    spall = fits.BinTableHDU.from_columns(
        [
            fits.Column("FIELD", "J", array=[104193]),
            fits.Column("MJD", "J", array=[60087]),
            fits.Column("CATALOGID", "K", array=[27021598685558821]),
            fits.Column("SN_MEDIAN_ALL", "E", array=[30.0]),
            fits.Column("XCSAO_RV", "E", array=[-12.5]),
            fits.Column("Z", "E", array=[-4.0e-5]),
        ],
        name="SPALL",
    )
    path = tmp_path / "spec-104193-60087-27021598685558821.fits"
    fits.HDUList([fits.PrimaryHDU(), coadd, spall]).writeto(path)
    s = read_spectrum(path)
    assert s.meta.identifier == "spec-104193-60087-27021598685558821"
    assert s.meta.extra["catalogid"] == 27021598685558821 and s.meta.extra["field"] == 104193
    assert s.meta.v_rad == pytest.approx(-12.5)  # XCSAO_RV preferred to c z
    np.testing.assert_allclose(s.wave, original.wave, rtol=1e-12)


def test_sdss_writer_round_trip_keeps_mask_and_velocity(tmp_path: Path, data_dir: Path):
    original = read_spectrum(data_dir / "spec-1123-52882-0065.fits")
    path = write_spectrum(original, tmp_path / "spec-0001-50000-0001.fits", format="sdss-spec")
    s = read_spectrum(path)
    np.testing.assert_array_equal(s.mask, original.mask)
    np.testing.assert_allclose(s.flux, original.flux, rtol=1e-6)
    np.testing.assert_allclose(s.wave, original.wave, rtol=1e-12)
    assert s.meta.v_rad == pytest.approx(original.meta.v_rad, abs=0.01)


def _lamost_image(tmp_path: Path, vacuum: bool) -> tuple[Path, np.ndarray]:
    wave_vac = 10 ** (3.5682 + 1e-4 * np.arange(3909))
    wave = wave_vac if vacuum else vacuum_to_air(wave_vac)
    flux = 100 + 0.01 * (wave - 6000)
    andmask = np.zeros_like(wave)
    andmask[100:110] = 4
    data = np.vstack([flux, np.full_like(wave, 0.04), wave, andmask, andmask]).astype(np.float32)
    header = fits.Header()
    header["TELESCOP"] = "LAMOST"
    header["OBSID"] = 123456789
    header["VACUUM"] = vacuum
    header["Z"] = 1e-4
    header["SNRI"] = 35.0
    path = tmp_path / f"spec-lamost-{int(vacuum)}.fits"
    fits.PrimaryHDU(data, header).writeto(path)
    return path, wave_vac


@pytest.mark.parametrize("vacuum", [True, False])
def test_lamost_primary_image(tmp_path: Path, vacuum: bool):
    path, wave_vac = _lamost_image(tmp_path, vacuum)
    assert identify_format(path).name == "lamost"
    s = read_spectrum(path)
    np.testing.assert_allclose(s.wave, wave_vac, atol=2e-3)  # float32 storage, air converted to vacuum
    assert s.meta.identifier == "123456789"
    assert s.meta.snr == 35.0 and s.meta.v_rad == pytest.approx(1e-4 * SPEED_OF_LIGHT_KMS)
    assert s.mask[100:110].all() and s.mask.sum() == 10


def test_lamost_dr8_table(tmp_path: Path):
    wave = 10 ** (3.5682 + 1e-4 * np.arange(3909))
    cols = [
        fits.Column("FLUX", f"{wave.size}E", array=np.ones((1, wave.size))),
        fits.Column("IVAR", f"{wave.size}E", array=np.ones((1, wave.size))),
        fits.Column("WAVELENGTH", f"{wave.size}D", array=wave[None]),
        fits.Column("ANDMASK", f"{wave.size}E", array=np.zeros((1, wave.size))),
        fits.Column("ORMASK", f"{wave.size}E", array=np.zeros((1, wave.size))),
    ]
    header = fits.Header()
    header["TELESCOP"] = "LAMOST"
    header["OBSID"] = 42
    path = tmp_path / "lamost-dr8.fits"
    fits.HDUList([fits.PrimaryHDU(header=header), fits.BinTableHDU.from_columns(cols, name="COADD")]).writeto(path)
    assert identify_format(path).name == "lamost"
    s = read_spectrum(path)
    assert s.meta.identifier == "42" and s.n_pixels == wave.size


def test_generic_tables_fits_npz_csv(tmp_path: Path):
    wave = np.linspace(6000, 9000, 300)
    flux = 1 + 0.1 * np.sin(wave / 50)
    ivar = np.full(300, 100.0)
    mask = np.zeros(300)
    mask[10] = 1
    np.savez(tmp_path / "s.npz", wavelength=wave, flux=flux, ivar=ivar, mask=mask, snr=12.0, identifier="npzstar")
    with open(tmp_path / "s.csv", "w") as handle:
        handle.write("wavelength,flux,ivar,mask\n")
        for row in zip(wave, flux, ivar, mask):
            handle.write(",".join(repr(float(v)) for v in row) + "\n")
    table = fits.BinTableHDU.from_columns(
        [fits.Column("WAVELENGTH", "D", array=wave), fits.Column("FLUX", "D", array=flux),
         fits.Column("IVAR", "D", array=ivar), fits.Column("MASK", "J", array=mask.astype(int))]
    )
    table.header["AIRORVAC"] = "air"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "s.fits")
    for name in ("s.npz", "s.csv", "s.fits"):
        assert identify_format(tmp_path / name).name == "table"
        s = read_spectrum(tmp_path / name)
        assert s.mask[10] and s.mask.sum() == 1
        np.testing.assert_allclose(s.flux, flux)
    assert read_spectrum(tmp_path / "s.npz").meta.identifier == "npzstar"
    assert read_spectrum(tmp_path / "s.npz").meta.snr == 12.0
    np.testing.assert_allclose(read_spectrum(tmp_path / "s.csv").wave, wave)
    np.testing.assert_allclose(read_spectrum(tmp_path / "s.fits").wave, air_to_vacuum(wave))


def test_unknown_and_empty_files(tmp_path: Path):
    text = tmp_path / "notes.txt"
    text.write_text("not a spectrum\n")
    with pytest.raises(UnknownFormatError, match="not a recognised spectrum format"):
        read_spectrum(text)
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        read_spectrum(empty)
    with pytest.raises(CorruptFileError, match="no such file"):
        read_spectrum(tmp_path / "missing.fits")
    with pytest.raises(UnknownFormatError, match="no reader named"):
        read_spectrum(text, format="hdf5")


@pytest.mark.parametrize("keep_bytes", [2880, 30000, 400000])
def test_truncated_fits_raises_corrupt_file_error(tmp_path: Path, data_dir: Path, keep_bytes: int):
    data = (data_dir / "spec-1079-52621-0509.fits").read_bytes()
    path = tmp_path / "spec-truncated.fits"
    path.write_bytes(data[:keep_bytes])
    with pytest.raises(CorruptFileError, match="truncated|damaged|cannot be read"):
        read_spectrum(path)

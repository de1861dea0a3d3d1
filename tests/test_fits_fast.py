"""The fast FITS reader (bayesslam.io.fitsutil) gives exactly astropy's spectra, or leaves the file to astropy."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from bayesslam import BayesSlamError, CorruptFileError, Spectrum, UnknownFormatError
from bayesslam.io import identify_format, read_spectrum
from bayesslam.io.fitsutil import _Decline, _open_fast, _reader_mode, all_columns, read_fits
from bayesslam.io.sdss import read_sdss_spec
from bayesslam.mock import make_survey, write_survey

DATA = Path(__file__).parent / "data"
REAL = sorted(DATA.glob("spec-*.fits")) + sorted((DATA / "non_m_dwarfs").glob("*.fits"))


def _read(path: Path, mode: str, reader=read_spectrum, **options) -> Spectrum:
    with _reader_mode(mode):
        return reader(path, **options)


def _same_value(a, b) -> bool:
    """Equal, of the same type (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and np.isnan(a):
        return bool(np.isnan(b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


def _assert_same(fast: Spectrum, slow: Spectrum, meta: bool = True) -> None:
    """Bit-identical arrays (dtype included) and equal metadata, value types included."""
    for name in ("wave", "flux", "ivar", "mask"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name
    if meta:
        for field in dataclasses.fields(slow.meta):
            a, b = getattr(fast.meta, field.name), getattr(slow.meta, field.name)
            assert _same_value(a, b), (field.name, a, b)


def _assert_fast_equals_astropy(path: Path, reader=read_spectrum, **options) -> Spectrum:
    fast = _read(path, "fast", reader, **options)  # raises if the fast reader declines
    slow = _read(path, "astropy", reader, **options)
    _assert_same(fast, slow)
    _assert_same(_read(path, "auto", reader, **options), slow)
    return fast


def test_real_files_are_in_the_test() -> None:
    assert len(REAL) == 8


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_sdss_files_read_identically(path: Path) -> None:
    with _reader_mode("fast"):
        fast_format = identify_format(path).name
    with _reader_mode("astropy"):
        assert identify_format(path).name == fast_format == "sdss-spec"
    spectrum = _assert_fast_equals_astropy(path)
    assert spectrum.meta.extra["plate"] > 0 and np.isfinite(spectrum.meta.snr)


@pytest.fixture(scope="module")
def mock_files(tmp_path_factory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("fast_fits_mock")
    batch, labels = make_survey(4, np.random.default_rng(11), n_binaries=1)
    spec, _ = write_survey(batch, labels, folder / "spec")
    batch, labels = make_survey(3, np.random.default_rng(12), rest_frame=True)
    mwm, _ = write_survey(batch, labels, folder / "mwm", format="sdssv-mwm")
    return {"sdss-spec": spec, "sdssv-mwm": mwm}


@pytest.mark.parametrize("format", ["sdss-spec", "sdssv-mwm"])
def test_mock_files_of_each_format_read_identically(mock_files, format: str) -> None:
    for path in mock_files[format]:
        with _reader_mode("fast"):
            assert identify_format(path).name == format
        _assert_fast_equals_astropy(path)


def test_mwm_options_read_identically(mock_files) -> None:
    path = mock_files["sdssv-mwm"][0]
    from bayesslam.io.sdssv import read_sdssv_mwm

    _assert_fast_equals_astropy(path, read_sdssv_mwm, hdu="boss/apo")
    _assert_fast_equals_astropy(path, read_sdssv_mwm, hdu="BOSS/LCO", row=0)
    for mode in ("auto", "astropy"):  # the same error on both paths
        with pytest.raises(CorruptFileError, match="no BOSS spectrum"):
            _read(path, mode, read_sdssv_mwm, row=3)


def test_sdssv_spec_lite_and_generic_tables_read_identically(tmp_path: Path) -> None:
    wave = 10 ** (3.5523 + 1e-4 * np.arange(3000))
    flux = 1 + 0.1 * np.sin(wave / 50)
    ivar = np.full(wave.size, 100.0)
    coadd = fits.BinTableHDU.from_columns(
        [fits.Column("FLUX", "E", array=flux), fits.Column("LOGLAM", "E", array=np.log10(wave)),
         fits.Column("IVAR", "E", array=ivar), fits.Column("AND_MASK", "J", array=np.zeros(wave.size, np.int32))],
        name="COADD",
    )
    spall = fits.BinTableHDU.from_columns(
        [fits.Column("FIELD", "J", array=[104193]), fits.Column("MJD", "J", array=[60087]),
         fits.Column("CATALOGID", "K", array=[27021598685558821]), fits.Column("SN_MEDIAN_ALL", "E", array=[30.0]),
         fits.Column("XCSAO_RV", "E", array=[-12.5]), fits.Column("Z", "E", array=[-4.0e-5]),
         fits.Column("CLASS", "6A", array=[" STAR "]), fits.Column("SN_MEDIAN", "5E", array=[np.arange(5.0)])],
        name="SPALL",
    )
    lite = tmp_path / "spec-104193-60087-27021598685558821.fits"
    fits.HDUList([fits.PrimaryHDU(), coadd, spall]).writeto(lite)
    s = _assert_fast_equals_astropy(lite)
    assert s.meta.extra["catalogid"] == 27021598685558821 and s.meta.extra["class"] == "STAR"

    table = fits.BinTableHDU.from_columns(
        [fits.Column("WAVELENGTH", "D", array=wave), fits.Column("Flux", "D", array=flux),
         fits.Column("ivar", "E", array=ivar), fits.Column("MASK", "J", array=(np.arange(wave.size) == 7).astype(int))]
    )
    table.header["AIRORVAC"] = "air"
    table.header["SNR"] = 12.5
    primary = fits.PrimaryHDU()
    primary.header["OBJECT"] = "star-in-primary"
    primary.header["SNR"] = 99  # the table's card wins, as in the merged astropy headers
    generic = tmp_path / "generic.fits"
    fits.HDUList([primary, fits.ImageHDU(np.zeros((3, 4), np.float32)), table]).writeto(generic)
    with _reader_mode("fast"):
        assert identify_format(generic).name == "table"
    s = _assert_fast_equals_astropy(generic)
    assert s.meta.identifier == "star-in-primary" and s.meta.snr == 12.5 and s.mask[7]


def test_gzipped_copy(tmp_path: Path) -> None:
    path = tmp_path / "spec-1079-52621-0509.fits.gz"
    path.write_bytes(gzip.compress((DATA / "spec-1079-52621-0509.fits").read_bytes()))
    s = _assert_fast_equals_astropy(path, read_sdss_spec)
    assert s.meta.identifier == "spec-1079-52621-0509"
    _assert_same(s, _read(DATA / "spec-1079-52621-0509.fits", "astropy", read_sdss_spec), meta=False)
    for mode in ("auto", "astropy"):  # not identified as FITS (its first bytes are gzip's), as before
        with _reader_mode(mode), pytest.raises(UnknownFormatError):
            read_spectrum(path)
    # a cut gzip stream: the fast reader declines; astropy reads the HDUs that are complete, as before
    broken = tmp_path / "broken.fits.gz"
    broken.write_bytes(path.read_bytes()[:-5000])
    with _reader_mode("fast"), pytest.raises(_Decline, match="gzip"):
        read_sdss_spec(broken)
    _assert_same(_read(broken, "auto", read_sdss_spec), _read(broken, "astropy", read_sdss_spec))


def _hdu_layout(path: Path) -> tuple[list[int], list[int]]:
    """Where each HDU's data starts and ends."""
    with fits.open(path) as hdul:
        infos = [hdu.fileinfo() for hdu in hdul]
    return [i["datLoc"] for i in infos], [i["datLoc"] + i["datSpan"] for i in infos]


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
@pytest.mark.parametrize("name", ["spec-1079-52621-0509.fits", "non_m_dwarfs/spec-7454-56751-0770.fits"])
def test_truncated_and_damaged_copies_fail_as_before(tmp_path: Path, name: str) -> None:
    data = (DATA / name).read_bytes()
    starts, ends = _hdu_layout(DATA / name)
    end_card = b"END" + b" " * 77
    cuts = [9, 2880, 2880 + 80, 30000, ends[1] - 2880, ends[1] + 1000, ends[-1] - 2880, ends[-1] - 1]
    damaged = {f"cut{cut}": data[:cut] for cut in cuts}
    damaged["garbage-after"] = data + b"garbage" * 10
    damaged["zeros-after"] = data + bytes(2880)
    damaged["no-end-card"] = data[: starts[0]].replace(end_card, b" " * 80) + data[starts[0] :]
    damaged["bad-end-card"] = data[: starts[1]].replace(end_card, b"END     = 1" + b" " * 69) + data[starts[1] :]
    damaged["bad-naxis2"] = data.replace(b"NAXIS2  = ", b"NAXIS2  = 1", 1)
    for label in ("no-end-card", "bad-end-card"):
        assert damaged[label] != data
    for label, content in damaged.items():
        path = tmp_path / f"{label}.fits"
        path.write_bytes(content)
        outcome = {}
        for mode in ("auto", "astropy"):
            try:
                outcome[mode] = _read(path, mode)
            except BayesSlamError as exc:
                outcome[mode] = type(exc)
        if isinstance(outcome["astropy"], Spectrum):
            _assert_same(outcome["auto"], outcome["astropy"])
        else:
            assert outcome["auto"] is outcome["astropy"], label
        if label.startswith("cut"):
            assert outcome["astropy"] is CorruptFileError, label
            with _reader_mode("fast"), pytest.raises(_Decline):
                read_sdss_spec(path)
    # a file cut exactly after an HDU is a valid, shorter FITS file: read by both, identically
    shorter = tmp_path / "spec-0001-50000-0001.fits"
    shorter.write_bytes(data[: ends[2]])
    _assert_fast_equals_astropy(shorter)


def test_unsupported_column_falls_back_to_astropy(tmp_path: Path) -> None:
    """A scaled flux column (TSCAL/TZERO) and a TNULL metadata column: astropy reads them, with the same result."""
    original = read_spectrum(DATA / "spec-1123-52882-0065.fits")
    scale = float(np.max(np.abs(original.flux))) / 30000
    coadd = fits.BinTableHDU.from_columns(
        [fits.Column("flux", "I", array=np.round(original.flux / scale).astype(np.int16)),
         fits.Column("loglam", "E", array=np.log10(original.wave).astype(np.float32)),
         fits.Column("ivar", "E", array=original.ivar.astype(np.float32))],
        name="COADD",
    )
    specobj = fits.BinTableHDU.from_columns(
        [fits.Column("PLATE", "J", array=[1123]), fits.Column("Z", "E", array=[1e-4])], name="SPECOBJ"
    )
    path = tmp_path / "spec-scaled.fits"
    fits.HDUList([fits.PrimaryHDU(), coadd, specobj]).writeto(path)
    with fits.open(path, mode="update") as hdul:  # the stored integers scaled on reading
        hdul[1].header["TSCAL1"] = scale
        hdul[1].header["TZERO1"] = 0.0
        hdul[2].header["TNULL1"] = -1
    with _reader_mode("fast"), pytest.raises(_Decline, match="TSCAL"):
        read_sdss_spec(path)
    assert _read(path, "fast", identify_format).name == "sdss-spec"  # identifying needs no column data
    auto, slow = _read(path, "auto"), _read(path, "astropy")
    _assert_same(auto, slow)
    assert auto.meta.extra["plate"] == 1123
    np.testing.assert_allclose(auto.flux, original.flux, atol=scale)


def test_unsupported_columns_that_are_not_read_do_not_matter(tmp_path: Path) -> None:
    """Heap (P), bit (X), TDIM and scaled columns elsewhere in the tables: the fast reader still reads the file."""
    original = read_spectrum(DATA / "spec-5047-55833-0936.fits")
    n = original.n_pixels
    coadd = fits.BinTableHDU.from_columns(
        [fits.Column("bits", "12X", array=np.zeros((n, 12), bool)),
         fits.Column("flux", "E", array=original.flux.astype(np.float32)),
         fits.Column("LogLam", "E", array=np.log10(original.wave).astype(np.float32)),
         fits.Column("ivar", "E", array=original.ivar.astype(np.float32)),
         fits.Column("and_mask", "J", bzero=2**31, array=np.where(original.mask, 1 << 24, 0).astype(np.uint32)),
         fits.Column("scaled", "I", array=np.zeros(n, np.int16))],
        name="COADD",
    )
    specobj = fits.BinTableHDU.from_columns(
        [fits.Column("HEAP", "PJ()", array=np.array([np.arange(3, dtype=np.int32)], dtype=object)),
         fits.Column("PLATE", "J", array=[5047]), fits.Column("GRID", "6E", dim="(3,2)", array=[np.ones((2, 3))]),
         fits.Column("CLASS", "6A", array=["STAR"]), fits.Column("SN_MEDIAN_ALL", "E", array=[48.5]),
         fits.Column("PLUG_RA", "D", array=[12.25]), fits.Column("FLAG", "L", array=[True]),
         fits.Column("Z", "D", array=[-1e-4])],
        name="SPECOBJ",
    )
    path = tmp_path / "spec-5047-55833-0936.fits"
    fits.HDUList([fits.PrimaryHDU(), coadd, specobj]).writeto(path)
    with fits.open(path, mode="update") as hdul:
        hdul[1].header["TSCAL6"] = 0.5
        hdul[1].header["TZERO6"] = 3.0
    s = _assert_fast_equals_astropy(path)
    np.testing.assert_array_equal(s.mask, original.mask)
    assert s.meta.extra["class"] == "STAR" and s.meta.extra["plug_ra"] == 12.25


def test_every_supported_column_type_as_astropy_gives_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 5
    columns = [
        fits.Column("l", "L", array=[True, False, True, True, False]),
        fits.Column("l3", "3L", array=rng.random((n, 3)) > 0.5),
        fits.Column("b", "B", array=rng.integers(0, 255, n).astype(np.uint8)),
        fits.Column("i", "I", array=rng.integers(-3000, 3000, n).astype(np.int16)),
        fits.Column("j", "2J", array=rng.integers(-2**31, 2**31 - 1, (n, 2)).astype(np.int32)),
        fits.Column("k", "K", array=rng.integers(-2**62, 2**62, n)),
        fits.Column("u16", "I", bzero=2**15, array=np.array([0, 1, 2**15, 2**16 - 1, 7], np.uint16)),
        fits.Column("u32", "J", bzero=2**31, array=np.array([0, 1, 2**31, 2**32 - 1, 7], np.uint32)),
        fits.Column("u64", "2K", bzero=2**63, array=np.array([[0, 2**63], [1, 2**64 - 1]] + [[5, 6]] * 3, np.uint64)),
        fits.Column("e", "E", array=rng.normal(size=n).astype(np.float32)),
        fits.Column("d", "4D", array=rng.normal(size=(n, 4))),
        fits.Column("c", "C", array=rng.normal(size=n) + 1j),
        fits.Column("m", "M", array=rng.normal(size=n) - 2j),
        fits.Column("s", "7A", array=["ab  ", "  c", "", "d\x00e", "1234567"]),
        fits.Column("one", "1A", array=["x", "y", " ", "z", ""]),
    ]
    path = tmp_path / "types.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)]).writeto(path)

    def read(hdul):
        return all_columns(hdul[1])

    with _reader_mode("fast"):
        fast = read_fits(path, read)
    with _reader_mode("astropy"):
        slow = read_fits(path, read)
    assert list(fast) == list(slow)
    for name in slow:
        assert fast[name].dtype == slow[name].dtype and fast[name].shape == slow[name].shape, name
        assert np.array_equal(fast[name], slow[name]), name
    assert fast["u64"][1, 1] == 2**64 - 1 and fast["s"][1] == "  c"


def test_header_values_as_astropy_parses_them() -> None:
    """Every card of the real files' headers that the fast reader parses has astropy's value and type."""
    parsed = 0
    for path in REAL:
        with _open_fast(path) as hdus, fits.open(path) as hdul:
            assert len(hdus) == len(hdul)
            for fast, slow in zip(hdus, hdul):
                assert fast.name == slow.name and fast.data_offset == slow.fileinfo()["datLoc"]
                for key in set(slow.header.keys()) - {"COMMENT", "HISTORY", ""}:
                    if len(key) > 8 or list(slow.header.keys()).count(key) > 1:
                        continue
                    try:
                        value = fast.header.get(key)
                    except _Decline:
                        continue
                    assert value == slow.header[key] and type(value) is type(slow.header[key]), (path.name, key)
                    parsed += 1
    assert parsed > 5000

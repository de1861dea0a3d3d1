"""SDSS/BOSS ``spec`` files: SDSS-I..IV ``spec-PLATE-MJD-FIBER.fits`` and SDSS-V spec-lite files.

Layout (SDSS data model, ``BOSS_SPECTRO_REDUX/RUN2D/spectra/PLATE4/spec``):
HDU1 ``COADD`` table with columns ``flux`` (1e-17 erg/s/cm2/A), ``loglam``
(log10 vacuum Angstrom), ``ivar``, ``and_mask``, ``or_mask``, ``wdisp``,
``sky``, ``model``; HDU2 the ``SPECOBJ`` row (SDSS-I..IV: PLATE, MJD,
FIBERID, SN_MEDIAN_ALL, Z, CLASS, SUBCLASS) or the ``SPALL`` row (SDSS-V:
FIELD, MJD, CATALOGID, SDSS_ID, SN_MEDIAN_ALL, XCSAO_RV). SDSS-V spec-lite
coadds use the same log-lambda grid family ``3.5523 + 1e-4 i``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
from astropy.io import fits

from bayesslam.errors import CorruptFileError
from bayesslam.io.fitsutil import column, first_row, has_columns, is_fits, read_fits
from bayesslam.spectra import Spectrum, SpectrumMeta
from bayesslam.wavelength import SPEED_OF_LIGHT_KMS

__all__ = [
    "SPPIXMASK_BITS",
    "DEFAULT_BAD_BITS",
    "bits_to_mask",
    "snap_loglam",
    "identify_sdss_spec",
    "read_sdss_spec",
    "write_sdss_spec",
]

#: SDSS spectral pixel mask bits (idlutils ``sdssMaskbits.par``, SPPIXMASK).
SPPIXMASK_BITS: dict[str, int] = {
    "NOPLUG": 0, "BADTRACE": 1, "BADFLAT": 2, "BADARC": 3, "MANYBADCOLUMNS": 4,
    "MANYREJECTED": 5, "LARGESHIFT": 6, "BADSKYFIBER": 7, "NEARWHOPPER": 8, "WHOPPER": 9,
    "SMEARIMAGE": 10, "SMEARHIGHSN": 11, "SMEARMEDSN": 12, "NEARBADPIXEL": 16, "LOWFLAT": 17,
    "FULLREJECT": 18, "PARTIALREJECT": 19, "SCATTEREDLIGHT": 20, "CROSSTALK": 21, "NOSKY": 22,
    "BRIGHTSKY": 23, "NODATA": 24, "COMBINEREJ": 25, "BADFLUXFACTOR": 26, "BADSKYCHI": 27,
    "REDMONSTER": 28,
}

#: and_mask bits that make a pixel unusable by default (the pipeline also sets ivar = 0 for most).
DEFAULT_BAD_BITS: tuple[str, ...] = (
    "FULLREJECT", "NOSKY", "BRIGHTSKY", "NODATA", "COMBINEREJ", "BADFLUXFACTOR", "BADSKYCHI",
)

_WRITE_BIT = "NODATA"
_LOGLAM_STEP = 1e-4


def bits_to_mask(flags: np.ndarray, bad_bits: Iterable[str]) -> np.ndarray:
    """Return a boolean mask of pixels that have any of the named SPPIXMASK bits set."""
    value = 0
    for name in bad_bits:
        if name not in SPPIXMASK_BITS:
            raise ValueError(f"unknown SDSS pixel-mask bit {name!r}; known: {sorted(SPPIXMASK_BITS)}")
        value |= 1 << SPPIXMASK_BITS[name]
    return (np.asarray(flags).astype(np.int64) & value) != 0


def snap_loglam(loglam: np.ndarray, step: float = _LOGLAM_STEP, tol: float = 2e-6) -> np.ndarray:
    """Snap float32-stored log-lambda values onto their exact ``step`` grid when they lie on one.

    SDSS stores ``loglam`` in 32 bits; the pipeline grid is exactly
    ``k * 1e-4``. Values further than ``tol`` from the grid are returned
    unchanged.
    """
    loglam = np.asarray(loglam, dtype=float)
    snapped = np.round(loglam / step) * step
    if np.max(np.abs(snapped - loglam)) < tol:
        return snapped
    return loglam


def identify_sdss_spec(path: Path) -> bool:
    """Whether ``path`` is an SDSS/BOSS spec file (HDU1 table with loglam, flux, ivar)."""
    if not is_fits(path):
        return False
    return read_fits(path, lambda hdul: len(hdul) > 1 and has_columns(hdul[1], "loglam", "flux", "ivar"))


def _row_value(row: Any, lookup: dict[str, str], key: str, default: Any = None) -> Any:
    if row is None or key.lower() not in lookup:
        return default
    value = row[lookup[key.lower()]]
    if isinstance(value, (bytes, str)):
        return value.decode() if isinstance(value, bytes) else str(value).strip()
    if np.ndim(value) == 0:
        return value.item() if hasattr(value, "item") else value
    return np.array(value).tolist()


def _metadata(path: Path, hdul: Any) -> SpectrumMeta:
    row, names = first_row(hdul[2]) if len(hdul) > 2 else (None, [])
    lookup = {n.lower(): n for n in names}
    extra: dict[str, Any] = {}
    for key in ("PLATE", "MJD", "FIBERID", "FIELD", "CATALOGID", "SDSS_ID", "SPECOBJID",
                "CLASS", "SUBCLASS", "Z", "Z_ERR", "XCSAO_RV", "PLUG_RA", "PLUG_DEC", "RA", "DEC"):
        value = _row_value(row, lookup, key)
        if value is not None:
            extra[key.lower()] = value.strip() if isinstance(value, str) else value
    snr = _row_value(row, lookup, "SN_MEDIAN_ALL", float("nan"))
    v_rad = float("nan")
    rv = extra.get("xcsao_rv")
    if rv is not None and np.isfinite(rv) and abs(rv) < 1e4:
        v_rad = float(rv)
    elif extra.get("z") is not None and np.isfinite(extra["z"]):
        v_rad = float(extra["z"]) * SPEED_OF_LIGHT_KMS
    return SpectrumMeta(
        identifier=path.name.removesuffix(".gz").removesuffix(".fits"),
        snr=float(snr),
        v_rad=v_rad,
        source=str(path),
        rest_frame=False,
        extra=extra,
    )


def read_sdss_spec(path: str | Path, bad_bits: Iterable[str] = DEFAULT_BAD_BITS) -> Spectrum:
    """Read an SDSS/BOSS spec file (observed frame, vacuum Angstrom).

    Parameters
    ----------
    path : str or pathlib.Path
        The ``spec-*.fits`` file.
    bad_bits : iterable of str
        ``and_mask`` bits (names in :data:`SPPIXMASK_BITS`) that mask a pixel,
        in addition to ivar = 0.

    Returns
    -------
    Spectrum
        Identifier = file name without extension; SNR = ``SN_MEDIAN_ALL``;
        v_rad = ``XCSAO_RV`` (SDSS-V) or ``c * Z``.
    """
    path = Path(path)
    try:
        bad_bits = tuple(bad_bits)  # an iterator must serve both readers
    except TypeError:
        pass  # fails in bits_to_mask, as before

    def read(hdul: Any) -> tuple[np.ndarray, ...]:
        if len(hdul) < 2 or not has_columns(hdul[1], "loglam", "flux", "ivar"):
            raise CorruptFileError(f"{path}: HDU1 lacks the loglam, flux and ivar columns of a spec file.")
        table = hdul[1]
        loglam = snap_loglam(column(table, "loglam"))
        flux = column(table, "flux").astype(float)
        ivar = column(table, "ivar").astype(float)
        mask = np.zeros(flux.shape, dtype=bool)
        if has_columns(table, "and_mask"):
            mask = bits_to_mask(column(table, "and_mask"), bad_bits)
        return loglam, flux, ivar, mask, _metadata(path, hdul)

    loglam, flux, ivar, mask, meta = read_fits(path, read)
    return Spectrum(10.0**loglam, flux, ivar, mask, meta)


def write_sdss_spec(spectrum: Spectrum, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a spectrum in the SDSS spec layout (HDU1 COADD, HDU2 SPECOBJ).

    Masked pixels are written with ivar 0 and the ``NODATA`` and_mask bit.
    Metadata keys ``plate``, ``mjd``, ``fiberid``, ``class``, ``subclass`` are
    taken from ``spectrum.meta.extra`` when present; v_rad is written as ``Z``.

    Parameters
    ----------
    spectrum : Spectrum
        Vacuum wavelengths, observed frame.
    path : str or pathlib.Path
        Output file.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path)
    extra = dict(spectrum.meta.extra)
    and_mask = np.where(spectrum.mask, 1 << SPPIXMASK_BITS[_WRITE_BIT], 0).astype(np.int32)
    coadd = fits.BinTableHDU.from_columns(
        [
            fits.Column("flux", "E", array=spectrum.flux.astype(np.float32)),
            fits.Column("loglam", "E", array=np.log10(spectrum.wave).astype(np.float32)),
            fits.Column("ivar", "E", array=np.where(spectrum.mask, 0.0, spectrum.ivar).astype(np.float32)),
            fits.Column("and_mask", "J", array=and_mask),
            fits.Column("or_mask", "J", array=and_mask),
            fits.Column("wdisp", "E", array=np.ones(spectrum.n_pixels, np.float32)),
            fits.Column("sky", "E", array=np.zeros(spectrum.n_pixels, np.float32)),
            fits.Column("model", "E", array=np.zeros(spectrum.n_pixels, np.float32)),
        ],
        name="COADD",
    )
    v_rad = spectrum.meta.v_rad if np.isfinite(spectrum.meta.v_rad) else 0.0
    specobj = fits.BinTableHDU.from_columns(
        [
            fits.Column("PLATE", "J", array=[int(extra.get("plate", 0))]),
            fits.Column("MJD", "J", array=[int(extra.get("mjd", 0))]),
            fits.Column("FIBERID", "J", array=[int(extra.get("fiberid", 0))]),
            fits.Column("CLASS", "6A", array=[str(extra.get("class", "STAR"))]),
            fits.Column("SUBCLASS", "21A", array=[str(extra.get("subclass", ""))]),
            fits.Column("SN_MEDIAN_ALL", "E", array=[spectrum.meta.snr]),
            fits.Column("Z", "E", array=[v_rad / SPEED_OF_LIGHT_KMS]),
        ],
        name="SPECOBJ",
    )
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = ("bayesslam", "written by bayesslam.io.write_sdss_spec")
    fits.HDUList([primary, coadd, specobj]).writeto(path, overwrite=overwrite)
    return path

"""SDSS-V Milky Way Mapper BOSS coadds (``mwmStar`` / ``mwmVisit`` files, Astra data model).

Layout (SDSS-V DR19 data model, ``mwmStar-{v_astra}-{sdss_id}.fits``): the
primary HDU carries the source (``SDSS_ID``, ``CATALOGID``, ``RA``, ``DEC``);
HDU1 ``BOSS/APO`` and HDU2 ``BOSS/LCO`` are tables, one row per spectrum,
with array columns ``flux`` (1e-17 erg/s/cm2/A), ``ivar`` and
``pixel_flags`` on the common log-lambda grid given by the header cards
``CRVAL`` (3.5523), ``CDELT`` (1e-4) and ``NPIXELS`` (4648), vacuum Angstrom,
and scalar columns such as ``snr`` and ``xcsao_v_rad`` (km/s). The wavelength
array itself is not stored; a ``wavelength`` column, where present, is used.
Spectra are in the star's rest frame (the coadds are shifted by ``xcsao_v_rad``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
from astropy.io import fits

from bayesslam.errors import CorruptFileError
from bayesslam.grid import BOSS_DLOGLAM, BOSS_LOGLAM0, BOSS_NPIX
from bayesslam.io.fitsutil import column, has_columns, is_fits, n_rows, read_fits
from bayesslam.io.sdss import DEFAULT_BAD_BITS, bits_to_mask
from bayesslam.spectra import Spectrum, SpectrumMeta

__all__ = ["identify_sdssv_mwm", "read_sdssv_mwm", "write_sdssv_mwm"]

_BOSS_HDU_NAMES = ("BOSS/APO", "BOSS/LCO")


def _boss_hdus(hdul: Any) -> list[Any]:
    return [
        hdu for hdu in hdul[1:]
        if has_columns(hdu, "flux", "ivar", "pixel_flags")
        and (hdu.name.upper() in _BOSS_HDU_NAMES or "BOSS" in hdu.name.upper())
    ]


def identify_sdssv_mwm(path: Path) -> bool:
    """Whether ``path`` is an SDSS-V mwmStar/mwmVisit file with a BOSS table HDU."""
    if not is_fits(path):
        return False
    return read_fits(path, lambda hdul: bool(_boss_hdus(hdul)))


def _loglam(hdu: Any, row: int, n_pix: int) -> np.ndarray:
    if has_columns(hdu, "wavelength"):
        return np.log10(column(hdu, "wavelength", row).astype(float))
    header = hdu.header
    crval = float(header.get("CRVAL", BOSS_LOGLAM0))
    cdelt = float(header.get("CDELT", BOSS_DLOGLAM))
    npix = int(header.get("NPIXELS", n_pix))
    if npix != n_pix:
        raise CorruptFileError(
            f"HDU {hdu.name}: header NPIXELS = {npix} but the flux has {n_pix} pixels."
        )
    return crval + cdelt * np.arange(n_pix)


def _scalar(hdu: Any, row: int, name: str) -> Any:
    if not has_columns(hdu, name):
        return None
    value = column(hdu, name, row)
    if value.dtype.kind in "SU":
        return str(value.item().decode() if isinstance(value.item(), bytes) else value.item()).strip()
    return value.item()


def read_sdssv_mwm(
    path: str | Path,
    hdu: str | None = None,
    row: int = 0,
    bad_bits: Iterable[str] = DEFAULT_BAD_BITS,
) -> Spectrum:
    """Read one BOSS spectrum from an SDSS-V mwmStar/mwmVisit file.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.
    hdu : str, optional
        ``"BOSS/APO"`` or ``"BOSS/LCO"``; default: the first BOSS HDU with a row.
    row : int
        Row of that HDU (mwmVisit files hold one row per visit).
    bad_bits : iterable of str
        ``pixel_flags`` bits (SDSS SPPIXMASK names) that mask a pixel.

    Returns
    -------
    Spectrum
        Vacuum Angstrom, rest frame; identifier ``sdss_id`` (or catalogid, or
        the file name), SNR from ``snr``, v_rad from ``xcsao_v_rad``.
    """
    path = Path(path)

    def read(hdul: Any) -> tuple[Any, ...]:
        candidates = _boss_hdus(hdul)
        if hdu is not None:
            candidates = [h for h in candidates if h.name.upper() == hdu.upper()]
        candidates = [h for h in candidates if (rows := n_rows(h)) is not None and rows > row]
        if not candidates:
            raise CorruptFileError(
                f"{path}: no BOSS spectrum (row {row}"
                + (f" of HDU {hdu}" if hdu else "")
                + ") in this mwm file; it may hold APOGEE data only."
            )
        table = candidates[0]
        flux = column(table, "flux", row).astype(float)
        ivar = column(table, "ivar", row).astype(float)
        flags = column(table, "pixel_flags", row)
        loglam = _loglam(table, row, flux.size)
        primary = hdul[0].header
        sdss_id = _scalar(table, row, "sdss_id") or primary.get("SDSS_ID")
        catalogid = _scalar(table, row, "catalogid") or primary.get("CATALOGID")
        snr = _scalar(table, row, "snr")
        v_rad = _scalar(table, row, "xcsao_v_rad")
        extra = {
            "sdss_id": sdss_id,
            "catalogid": catalogid,
            "telescope": _scalar(table, row, "telescope"),
            "hdu": table.name,
            "row": row,
        }
        return flux, ivar, flags, loglam, sdss_id, catalogid, snr, v_rad, extra

    flux, ivar, flags, loglam, sdss_id, catalogid, snr, v_rad, extra = read_fits(path, read)
    identifier = str(sdss_id) if sdss_id not in (None, "", 0) else (
        str(catalogid) if catalogid not in (None, "", 0) else path.name.removesuffix(".fits")
    )
    meta = SpectrumMeta(
        identifier=identifier,
        snr=float(snr) if snr is not None else float("nan"),
        v_rad=float(v_rad) if v_rad is not None else float("nan"),
        source=str(path),
        rest_frame=True,
        extra={k: v for k, v in extra.items() if v is not None},
    )
    mask = bits_to_mask(flags, bad_bits)
    return Spectrum(10.0**loglam, flux, ivar, mask, meta)


def write_sdssv_mwm(spectrum: Spectrum, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a spectrum as an SDSS-V mwmStar file with one ``BOSS/APO`` row.

    The spectrum must lie on the BOSS grid ``3.5523 + 1e-4 i`` (any
    contiguous part of it); it is placed on the full 4648-pixel grid with
    ivar 0 outside its coverage. Masked pixels get ivar 0 and the NODATA flag.

    Raises
    ------
    CorruptFileError
        If the spectrum is not on the BOSS log-lambda grid (resample it first).
    """
    path = Path(path)
    index = (np.log10(spectrum.wave) - BOSS_LOGLAM0) / BOSS_DLOGLAM
    start = int(np.round(index[0]))
    if (
        np.max(np.abs(index - np.round(index))) > 1e-3
        or np.any(np.diff(np.round(index)) != 1)
        or start < 0
        or start + spectrum.n_pixels > BOSS_NPIX
    ):
        raise CorruptFileError(
            f"spectrum {spectrum.meta.identifier!r} is not on the SDSS-V BOSS log-lambda grid; "
            "resample it onto bayesslam.grid.boss_wavelength() before writing an mwmStar file."
        )
    sl = slice(start, start + spectrum.n_pixels)
    flux = np.zeros(BOSS_NPIX, np.float32)
    ivar = np.zeros(BOSS_NPIX, np.float32)
    flags = np.full(BOSS_NPIX, 1 << 24, np.int64)
    flux[sl] = spectrum.flux
    ivar[sl] = np.where(spectrum.mask, 0.0, spectrum.ivar)
    flags[sl] = np.where(spectrum.mask, 1 << 24, 0)
    extra = dict(spectrum.meta.extra)
    sdss_id = int(extra.get("sdss_id", 0) or 0)
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column("sdss_id", "K", array=[sdss_id]),
            fits.Column("catalogid", "K", array=[int(extra.get("catalogid", 0) or 0)]),
            fits.Column("telescope", "6A", array=["apo25m"]),
            fits.Column("snr", "E", array=[spectrum.meta.snr]),
            fits.Column("xcsao_v_rad", "E", array=[spectrum.meta.v_rad]),
            fits.Column("flux", f"{BOSS_NPIX}E", array=flux[None, :]),
            fits.Column("ivar", f"{BOSS_NPIX}E", array=ivar[None, :]),
            fits.Column("pixel_flags", f"{BOSS_NPIX}K", array=flags[None, :]),
        ],
        name="BOSS/APO",
    )
    table.header["CRVAL"] = (BOSS_LOGLAM0, "log10(lambda / Angstrom) of the first pixel")
    table.header["CDELT"] = (BOSS_DLOGLAM, "log10(lambda) step per pixel")
    table.header["NPIXELS"] = (BOSS_NPIX, "pixels per spectrum")
    empty = fits.BinTableHDU.from_columns(table.columns, nrows=0, name="BOSS/LCO")
    primary = fits.PrimaryHDU()
    primary.header["SDSS_ID"] = sdss_id
    primary.header["ORIGIN"] = ("bayesslam", "written by bayesslam.io.write_sdssv_mwm")
    fits.HDUList([primary, table, empty]).writeto(path, overwrite=overwrite)
    return path

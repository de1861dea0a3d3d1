"""Generic tables of spectra: FITS binary table, ``.npz`` or CSV.

Columns (case-insensitive): ``wavelength`` (Angstrom; or ``loglam`` =
log10 Angstrom), ``flux``, ``ivar`` and optionally ``mask`` (non-zero =
bad). Wavelengths are vacuum unless the reader is told ``medium="air"``
(or a FITS header card ``AIRORVAC = 'air'`` / an npz entry ``medium`` says so).
Optional metadata: FITS header cards or npz scalars ``identifier``, ``snr``,
``v_rad`` (km/s) and ``rest_frame``.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bayesslam.errors import CorruptFileError, SpectrumValidationError
from bayesslam.io.fitsutil import FastHDU, all_columns, has_columns, is_fits, read_fits
from bayesslam.spectra import Spectrum, SpectrumMeta
from bayesslam.wavelength import air_to_vacuum

__all__ = ["identify_table", "read_table"]


def _columns_ok(names: set[str]) -> bool:
    return ("wavelength" in names or "loglam" in names) and "flux" in names


def _first_table(hdul) -> Any:
    for hdu in hdul[1:]:
        if has_columns(hdu, "flux") and (has_columns(hdu, "wavelength") or has_columns(hdu, "loglam")):
            return hdu
    return None


def identify_table(path: Path) -> bool:
    """Whether ``path`` is a FITS/npz/CSV table with wavelength (or loglam) and flux columns."""
    suffix = path.suffix.lower()
    if is_fits(path):
        return read_fits(path, lambda hdul: _first_table(hdul) is not None)
    if suffix == ".npz" or zipfile.is_zipfile(path):
        try:
            with np.load(path, allow_pickle=False) as data:
                return _columns_ok({k.lower() for k in data.files})
        except (OSError, ValueError, zipfile.BadZipFile):
            return False
    if suffix in (".csv", ".txt"):
        with open(path, newline="") as handle:
            header = next(csv.reader(handle), [])
        return _columns_ok({h.strip().lower() for h in header})
    return False


_META_KEYS = ("IDENT", "OBJECT", "SNR", "V_RAD", "AIRORVAC")


def _load_fits(path: Path, hdul: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    hdu = _first_table(hdul)
    if hdu is None:
        raise CorruptFileError(f"{path}: no table with wavelength and flux columns.")
    cols = all_columns(hdu)
    if isinstance(hdu, FastHDU):  # the table's card, else the primary's (as the merged astropy headers below)
        header = {k: h[k] for k in _META_KEYS for h in (hdul[0].header, hdu.header) if k in h}
    else:
        header = {**hdul[0].header, **hdu.header}
    meta = {k.lower(): header[k] for k in _META_KEYS if k in header}
    if "ident" in meta:
        meta["identifier"] = meta.pop("ident")
    elif "object" in meta:
        meta["identifier"] = meta.pop("object")
    if "airorvac" in meta:
        meta["medium"] = str(meta.pop("airorvac")).strip().lower()
    return cols, meta


def _load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return (columns, metadata) from a FITS, npz or CSV table."""
    if is_fits(path):
        return read_fits(path, lambda hdul: _load_fits(path, hdul))
    if path.suffix.lower() == ".npz" or zipfile.is_zipfile(path):
        try:
            with np.load(path, allow_pickle=False) as data:
                entries = {k.lower(): np.array(data[k]) for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise CorruptFileError(f"{path}: cannot be read as .npz ({exc}).") from exc
        cols = {k: v for k, v in entries.items() if v.ndim == 1}
        meta = {k: v.item() for k, v in entries.items() if v.ndim == 0}
        return cols, meta
    try:
        data = np.genfromtxt(path, delimiter=",", names=True, dtype=float, encoding="utf-8")
    except ValueError as exc:
        raise CorruptFileError(f"{path}: cannot be read as CSV ({exc}).") from exc
    if data.dtype.names is None or data.ndim != 1:
        raise CorruptFileError(f"{path}: the CSV needs a header row and at least two data rows.")
    return {n.lower(): np.asarray(data[n]) for n in data.dtype.names}, {}


def read_table(
    path: str | Path,
    medium: str | None = None,
    identifier: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Spectrum:
    """Read a spectrum from a generic FITS/npz/CSV table.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.
    medium : {"vacuum", "air"}, optional
        Wavelength medium; default: the file's own statement, else vacuum.
    identifier : str, optional
        Identifier to use (default: the file's, else the file name).
    overrides : mapping, optional
        Metadata values (``snr``, ``v_rad``, ``rest_frame``) that replace the file's.

    Raises
    ------
    CorruptFileError
        If a required column (wavelength or loglam, flux, ivar) is missing.
    """
    path = Path(path)
    cols, meta = _load(path)
    meta.update(overrides or {})
    if "ivar" not in cols:
        raise CorruptFileError(
            f"{path}: no 'ivar' column. bayesslam needs the inverse variance of every pixel; "
            "add an ivar column (1/sigma**2, 0 for bad pixels)."
        )
    if "flux" not in cols or ("wavelength" not in cols and "loglam" not in cols):
        raise CorruptFileError(f"{path}: needs columns wavelength (or loglam), flux and ivar.")
    wave = cols["wavelength"].astype(float) if "wavelength" in cols else 10.0 ** cols["loglam"].astype(float)
    medium = (medium or str(meta.get("medium", "vacuum"))).lower()
    if medium not in ("vacuum", "air"):
        raise SpectrumValidationError(f"{path}: medium must be 'vacuum' or 'air', not {medium!r}.")
    if medium == "air":
        wave = air_to_vacuum(wave)
    mask = cols["mask"].astype(float) != 0 if "mask" in cols else None
    spectrum_meta = SpectrumMeta(
        identifier=str(identifier or meta.get("identifier") or path.stem),
        snr=float(meta.get("snr", float("nan"))),
        v_rad=float(meta.get("v_rad", float("nan"))),
        source=str(path),
        rest_frame=bool(meta.get("rest_frame", False)),
    )
    return Spectrum(wave, cols["flux"].astype(float), cols["ivar"].astype(float), mask, spectrum_meta)

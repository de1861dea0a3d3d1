"""LAMOST low-resolution (DR1-DR7 style) spectra.

Layout (LAMOST LRS data release FITS): the primary HDU is a 2-D image of 5
rows (flux, ivar, wavelength, andmask, ormask) with header cards ``OBSID``,
``DESIG``, ``SNRI``/``SNRR``..., ``Z``, ``CLASS``, ``SUBCLASS`` and
``VACUUM`` (wavelengths in vacuum when true). Newer releases (DR8 onwards)
store the same quantities as array columns ``FLUX``, ``IVAR``,
``WAVELENGTH``, ``ANDMASK``, ``ORMASK`` of a one-row table in HDU1; both are
read. Air wavelengths (``VACUUM = F``) are converted to vacuum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from bayesslam.errors import CorruptFileError
from bayesslam.io.fitsutil import column, has_columns, is_fits, open_fits
from bayesslam.spectra import Spectrum, SpectrumMeta
from bayesslam.wavelength import SPEED_OF_LIGHT_KMS, air_to_vacuum

__all__ = ["identify_lamost", "read_lamost"]

_TABLE_COLUMNS = ("flux", "ivar", "wavelength", "andmask")


def _is_lamost_header(header: fits.Header) -> bool:
    return "LAMOST" in str(header.get("TELESCOP", "")).upper()


def identify_lamost(path: Path) -> bool:
    """Whether ``path`` is a LAMOST LRS spectrum (5-row primary image or DR8+ table)."""
    if not is_fits(path):
        return False
    with open_fits(path) as hdul:
        primary = hdul[0]
        if primary.header.get("NAXIS") == 2 and primary.header.get("NAXIS2", 0) >= 3:
            return _is_lamost_header(primary.header) or primary.header.get("NAXIS2") == 5
        return len(hdul) > 1 and has_columns(hdul[1], *_TABLE_COLUMNS) and _is_lamost_header(
            primary.header
        )


def read_lamost(path: str | Path) -> Spectrum:
    """Read a LAMOST LRS spectrum (observed frame, vacuum Angstrom).

    Pixels with a non-zero ``andmask`` or ivar 0 are masked. SNR is ``SNRI``
    (the i band overlaps the M-dwarf model window), v_rad is ``c * Z``.
    """
    path = Path(path)
    with open_fits(path) as hdul:
        header = hdul[0].header
        if hdul[0].data is not None and hdul[0].data.ndim == 2:
            data = np.array(hdul[0].data, dtype=float)
            if data.shape[0] < 4:
                raise CorruptFileError(f"{path}: LAMOST primary image has {data.shape[0]} rows, need 5.")
            flux, ivar, wave, andmask = data[0], data[1], data[2], data[3]
        elif len(hdul) > 1 and has_columns(hdul[1], *_TABLE_COLUMNS):
            table = hdul[1]
            flux = column(table, "flux", 0).astype(float)
            ivar = column(table, "ivar", 0).astype(float)
            wave = column(table, "wavelength", 0).astype(float)
            andmask = column(table, "andmask", 0)
        else:
            raise CorruptFileError(f"{path}: no LAMOST spectrum found (neither 5-row image nor table).")
        vacuum = header.get("VACUUM", True)
        z = header.get("Z", None)
        snr = header.get("SNRI", header.get("SNRR", float("nan")))
        identifier = str(header.get("OBSID", header.get("DESIG", path.name.removesuffix(".fits")))).strip()
        extra = {k.lower(): header[k] for k in ("OBSID", "DESIG", "CLASS", "SUBCLASS", "Z", "Z_ERR",
                                                 "SNRU", "SNRG", "SNRR", "SNRI", "SNRZ") if k in header}
    if not vacuum:
        wave = air_to_vacuum(wave)
    z_ok = isinstance(z, (int, float)) and np.isfinite(z) and z > -1
    meta = SpectrumMeta(
        identifier=identifier,
        snr=float(snr) if isinstance(snr, (int, float)) else float("nan"),
        v_rad=float(z) * SPEED_OF_LIGHT_KMS if z_ok else float("nan"),
        source=str(path),
        rest_frame=False,
        extra=extra,
    )
    return Spectrum(wave, flux, ivar, np.asarray(andmask) != 0, meta)

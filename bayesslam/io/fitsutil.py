"""Safe FITS access shared by the FITS readers: damaged files become :class:`CorruptFileError`."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning

from bayesslam.errors import BayesSlamError, CorruptFileError

__all__ = ["FITS_MAGIC", "is_fits", "open_fits", "column", "column_names", "has_columns"]

FITS_MAGIC = b"SIMPLE  ="


def is_fits(path: Path) -> bool:
    """Whether the file starts with the FITS signature."""
    with open(path, "rb") as handle:
        return handle.read(len(FITS_MAGIC)) == FITS_MAGIC


@contextmanager
def open_fits(path: Path) -> Iterator[fits.HDUList]:
    """Open a FITS file; any damage (truncation, bad headers, short data) is a CorruptFileError.

    Everything read inside the ``with`` block is covered, so readers should
    copy the arrays they need before leaving it.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*truncated.*", category=AstropyUserWarning)
            warnings.filterwarnings("error", category=VerifyWarning)
            with fits.open(path, memmap=False) as hdul:
                yield hdul
    except BayesSlamError:
        raise
    except (AstropyUserWarning, VerifyWarning) as exc:
        raise CorruptFileError(
            f"{path}: the FITS file is truncated or damaged ({exc}). Download it again."
        ) from exc
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise CorruptFileError(
            f"{path}: cannot be read as FITS ({type(exc).__name__}: {exc}). The file may be "
            "damaged or incomplete; download it again."
        ) from exc


def column_names(hdu: fits.hdu.base.ExtensionHDU) -> list[str]:
    """A table HDU's column names from its header (``TTYPEn``), without parsing its columns (that is slow)."""
    header = hdu.header
    return [str(header.get(f"TTYPE{i}", "")).strip() for i in range(1, int(header.get("TFIELDS", 0)) + 1)]


def has_columns(hdu: fits.hdu.base.ExtensionHDU, *names: str) -> bool:
    """Whether a table HDU has all ``names`` as columns (case-insensitive)."""
    if not isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        return False
    present = {n.lower() for n in column_names(hdu)}
    return all(n.lower() in present for n in names)


def column(hdu: fits.BinTableHDU, name: str, row: int | None = None) -> np.ndarray:
    """Return a column (case-insensitive) as a float or int numpy array copy."""
    lookup = {n.lower(): n for n in column_names(hdu)}
    data = hdu.data[lookup[name.lower()]]
    if row is not None:
        data = data[row]
    return np.array(data)

"""Safe FITS access shared by the FITS readers: damaged files become :class:`CorruptFileError`.

Two ways in, with one result:

* :func:`open_fits` -- astropy (any FITS file astropy reads);
* :func:`read_fits` -- :mod:`bayesslam.io.fastfits`, a small pure-numpy reader
  of uncompressed (or gzipped) FITS files whose tables use fixed-width binary
  columns, an order of
  magnitude faster than astropy because it builds no ``Column`` objects,
  tried first, with astropy as the fallback for everything it does not
  promise to read *exactly* as astropy does: scaled (other than unsigned
  integers), ``TDIM`` or ``TNULL`` columns it is asked for, bit and heap
  columns, headers with repeated or unusual cards, and damaged, truncated
  or otherwise unusual files -- astropy then raises today's errors.

The helpers :func:`column`, :func:`column_names`, :func:`has_columns`,
:func:`first_row`, :func:`n_rows` and :func:`all_columns` accept an HDU of
either kind, so a reader's code is the same on both paths.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning

from bayesslam.errors import BayesSlamError, CorruptFileError
from bayesslam.io.fastfits import _MODE, FITS_MAGIC, FastHDU, _Decline, _open_fast, _reader_mode  # noqa: F401

__all__ = [
    "FITS_MAGIC",
    "is_fits",
    "open_fits",
    "read_fits",
    "FastHDU",
    "column",
    "column_names",
    "has_columns",
    "first_row",
    "n_rows",
    "all_columns",
]


logger = logging.getLogger(__name__)

T = TypeVar("T")


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


def read_fits(path: str | Path, read: Callable[[Sequence[Any]], T]) -> T:
    """``read(hdus)`` on the file's HDUs: the fast reader's, else (it declined) astropy's in :func:`open_fits`.

    ``read`` must give the same result on both (use the helpers of this
    module) and copy what it returns; any exception it raises on the fast
    path sends the file to astropy, whose errors (``CorruptFileError`` for
    damaged files) are the ones raised.
    """
    path = Path(path)
    mode = _MODE.get()
    if mode != "astropy":
        try:
            with _open_fast(path) as hdus:
                return read(hdus)
        except Exception as exc:
            if mode == "fast":
                raise
            logger.debug("%s: read by astropy (%s: %s)", path, type(exc).__name__, exc)
    with open_fits(path) as hdul:
        return read(hdul)


# ---------------------------------------------------------------------------------------------
# Helpers that take an HDU of either reader


def column_names(hdu: Any) -> list[str]:
    """A table HDU's column names from its header (``TTYPEn``), without parsing its columns (that is slow)."""
    if isinstance(hdu, FastHDU):
        return hdu.column_names()
    header = hdu.header
    return [str(header.get(f"TTYPE{i}", "")).strip() for i in range(1, int(header.get("TFIELDS", 0)) + 1)]


def has_columns(hdu: Any, *names: str) -> bool:
    """Whether a table HDU has all ``names`` as columns (case-insensitive)."""
    if isinstance(hdu, FastHDU):
        if not hdu.is_table:
            return False
    elif not isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        return False
    present = {n.lower() for n in column_names(hdu)}
    return all(n.lower() in present for n in names)


def column(hdu: Any, name: str, row: int | None = None) -> np.ndarray:
    """Return a column (case-insensitive) as a float or int numpy array copy."""
    lookup = {n.lower(): n for n in column_names(hdu)}
    if isinstance(hdu, FastHDU):
        return np.array(hdu.field(lookup[name.lower()], row))
    data = hdu.data[lookup[name.lower()]]
    if row is not None:
        data = data[row]
    return np.array(data)


class _FastRow:
    """``hdu.data[row]`` of a fast-read table: ``row[name]`` as astropy's ``FITS_record`` gives it."""

    def __init__(self, hdu: FastHDU, row: int):
        self._hdu, self._row = hdu, row

    def __getitem__(self, name: str) -> Any:
        return self._hdu.field(name, self._row)


def first_row(hdu: Any) -> tuple[Any, list[str]]:
    """``(row, names)``: a binary table's first row (``row[name]``) and its column names; ``(None, [])`` if none."""
    if isinstance(hdu, FastHDU):
        if not hdu.is_bintable:
            if hdu.is_table:
                raise _Decline("ASCII table")
            return None, []
        if hdu.n_rows < 1:
            raise _Decline("table without rows")  # astropy raises IndexError
        return _FastRow(hdu, 0), list(hdu.layout().names)
    if isinstance(hdu, fits.BinTableHDU) and hdu.data is not None:
        return hdu.data[0], hdu.columns.names
    return None, []


def n_rows(hdu: Any) -> int | None:
    """Rows of a table HDU's data; None where astropy's ``hdu.data`` is None."""
    if isinstance(hdu, FastHDU):
        if not hdu.is_bintable:
            raise _Decline("not a binary table")
        hdu.layout()
        return hdu.n_rows
    return None if hdu.data is None else len(hdu.data)


def all_columns(hdu: Any) -> dict[str, np.ndarray]:
    """Every column of a table, by lower-case name (a later name wins), as astropy's arrays."""
    if isinstance(hdu, FastHDU):
        return {name.lower(): hdu.field(name) for name in hdu.layout().names}
    return {n.lower(): np.array(hdu.data[n]) for n in hdu.columns.names}

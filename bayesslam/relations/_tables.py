"""Reading tables (astropy ``Table.read``: FITS, CSV, ECSV, VOTable) and their columns as float arrays."""

from __future__ import annotations

import gzip
import io
import logging
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import Table

from bayesslam._files import atomic_write
from bayesslam.relations.errors import RelationsError, UnitsError

__all__ = ["read_table", "write_table", "float_column", "text_column"]

logger = logging.getLogger(__name__)

#: File endings astropy reads without being told the format, and the format to name for the others.
_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".vot": "votable", ".xml": "votable", ".txt": "ascii",
            ".dat": "ascii"}


def read_table(source: str | Path | Table, *, what: str = "table") -> Table:
    """An astropy table from a Table or a file (FITS, CSV, ECSV, VOTable; ``.gz`` too).

    Parameters
    ----------
    source : str, pathlib.Path or astropy.table.Table
        A table (returned as it is) or a file. A FITS file with several
        tables gives its first (the ``CATALOG`` extension of a bayesslam
        catalog).
    what : str
        What the table is, for messages.

    Returns
    -------
    astropy.table.Table

    Raises
    ------
    RelationsError
        The file does not exist or astropy cannot read it as a table.
    """
    if isinstance(source, Table):
        return source
    path = Path(source)
    if not path.is_file():
        raise RelationsError(f"{what} {path} does not exist (or is not a file); check the path.")
    suffixes = [s.lower() for s in path.suffixes]
    ending = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else \
        (suffixes[-1] if suffixes else "")
    kwargs = {"format": _FORMATS[ending]} if ending in _FORMATS else {}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*hdu= was not specified.*")
            warnings.filterwarnings("ignore", category=u.UnitsWarning)
            table = Table.read(path, **kwargs)
    except Exception as exc:  # astropy raises many kinds (IORegistryError, ValueError, OSError, ...)
        raise RelationsError(f"cannot read {what} {path} as a table ({type(exc).__name__}: {exc}); give a FITS, "
                             "CSV, ECSV or VOTable file (astropy.table.Table.read).") from exc
    logger.debug("read %s %s: %d rows, %d columns", what, path, len(table), len(table.colnames))
    return table


def float_column(table: Table, name: str, *, unit: str | u.UnitBase | None = None, what: str = "the table"
                 ) -> np.ndarray:
    """A column as a flat float array, masked entries NaN, converted to ``unit`` if the column has a unit.

    Parameters
    ----------
    table : astropy.table.Table
    name : str
        The column (it must exist).
    unit : str or astropy.units.UnitBase, optional
        The unit the values are wanted in. A column that carries a unit is
        converted to it; a column without one is taken to be in it already.
    what : str
        The table's name, for messages.

    Raises
    ------
    RelationsError
        The column is not numeric.
    UnitsError
        The column's unit cannot be converted to ``unit``.
    """
    column = table[name]
    try:
        values = np.ma.filled(np.ma.asarray(column, dtype=float), np.nan)
    except (TypeError, ValueError) as exc:
        raise RelationsError(f"column {name} of {what} is not numeric (dtype {column.dtype}); name a numeric "
                             "column.") from exc
    if values.ndim != 1:
        raise RelationsError(f"column {name} of {what} has shape {values.shape}; one value per row is needed.")
    have = getattr(column, "unit", None)
    if unit is not None and have is not None and str(have) not in ("", "dimensionless") \
            and not isinstance(have, u.UnrecognizedUnit):
        try:
            values = (values * have).to_value(unit)
        except u.UnitConversionError as exc:
            raise UnitsError(f"column {name} of {what} is in {have}, which cannot be converted to {unit}; give "
                             f"it in {unit}.") from exc
    return np.asarray(values, dtype=float)


def text_column(table: Table, name: str) -> np.ndarray:
    """A column as stripped strings (bytes decoded; integers such as Gaia ``source_id`` exactly)."""
    column = table[name]
    masked = np.ma.getmaskarray(column)
    if masked.ndim != 1:
        raise RelationsError(f"column {name} has shape {masked.shape}; one identifier per row is needed.")
    out = [(x.decode() if isinstance(x, bytes) else str(x)).strip() for x in np.ma.getdata(column)]
    return np.array(["" if m else x for x, m in zip(out, masked)] or [""], dtype=str)[:len(out)]


#: Formats :func:`write_table` writes, by file ending.
_WRITE_FORMATS = {".fits": "fits", ".fit": "fits", ".fts": "fits", ".csv": "ascii.csv", ".ecsv": "ascii.ecsv",
                  ".vot": "votable", ".xml": "votable"}


def write_table(table: Table, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a table atomically, in the format its ending names (FITS, CSV, ECSV, VOTable; ``.fits.gz`` too).

    Parameters
    ----------
    table : astropy.table.Table
    path : str or pathlib.Path
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    RelationsError
        The file exists and ``overwrite`` is false, or its ending names no format.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise RelationsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it.")
    suffixes = [s.lower() for s in path.suffixes]
    zipped = bool(suffixes) and suffixes[-1] == ".gz"
    ending = (suffixes[-2] if zipped and len(suffixes) > 1 else suffixes[-1] if suffixes else "")
    if ending not in _WRITE_FORMATS or (zipped and _WRITE_FORMATS[ending] != "fits"):
        raise RelationsError(f"cannot tell the format of {path} from its ending; name the file .fits, .fits.gz, "
                             ".csv, .ecsv or .vot.")
    fmt = _WRITE_FORMATS[ending]
    if fmt.startswith("ascii"):
        text = io.StringIO()
        table.write(text, format=fmt)
        content = text.getvalue().encode()
    else:
        binary = io.BytesIO()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=u.UnitsWarning)
            table.write(binary, format=fmt)
        content = gzip.compress(binary.getvalue()) if zipped else binary.getvalue()
    return atomic_write(path, content)

"""A registry of spectrum readers, each with an ``identify`` test on a file's content.

``read_spectrum(path)`` asks every registered reader, in order, whether it
recognises the file and reads it with the first that does. New formats are
added with :func:`register_reader`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bayesslam.errors import BayesSlamError, CorruptFileError, UnknownFormatError
from bayesslam.spectra import Spectrum

__all__ = ["READER_KEY", "Reader", "register_reader", "registered_readers", "identify_format", "read_spectrum"]

#: The key of ``SpectrumMeta.extra`` where :func:`read_spectrum` records the name of the reader that read a file.
READER_KEY = "reader"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reader:
    """A spectrum file format that bayesslam can read.

    Parameters
    ----------
    name : str
        Short name of the format (e.g. ``"sdss-spec"``).
    identify : callable
        ``identify(path) -> bool``; must not raise for files of other formats.
    read : callable
        ``read(path, **options) -> Spectrum``.
    description : str
        One line for users.
    """

    name: str
    identify: Callable[[Path], bool]
    read: Callable[..., Spectrum]
    description: str = ""


_READERS: list[Reader] = []


def register_reader(reader: Reader, *, first: bool = False) -> None:
    """Add a reader to the registry (replacing one of the same name).

    Parameters
    ----------
    reader : Reader
        The format to add.
    first : bool
        Ask this reader before the others (for a format more specific than an
        existing one).
    """
    _READERS[:] = [r for r in _READERS if r.name != reader.name]
    if first:
        _READERS.insert(0, reader)
    else:
        _READERS.append(reader)


def registered_readers() -> tuple[Reader, ...]:
    """Return the registered readers in the order they are asked."""
    return tuple(_READERS)


def identify_format(path: str | Path) -> Reader:
    """Return the reader that recognises ``path``.

    Raises
    ------
    CorruptFileError
        If the file does not exist, is empty, or is unreadable.
    UnknownFormatError
        If no registered reader recognises it.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise CorruptFileError(f"{path}: the file is empty.")
    for reader in _READERS:
        try:
            if reader.identify(path):
                return reader
        except BayesSlamError:
            raise
        except Exception as exc:  # an identify test must never stop the search
            logger.debug("reader %s could not test %s: %s", reader.name, path, exc)
    names = ", ".join(r.name for r in _READERS)
    raise UnknownFormatError(
        f"{path}: not a recognised spectrum format (tried: {names}). For other surveys write a "
        "FITS table, .npz or .csv with columns wavelength (vacuum Angstrom), flux, ivar[, mask], "
        "or register a reader with bayesslam.io.register_reader."
    )


def read_spectrum(path: str | Path, format: str | None = None, **options: Any) -> Spectrum:
    """Read one spectrum, choosing the reader from the file's content.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.
    format : str, optional
        Force a reader by name instead of identifying the file.
    **options
        Passed to the reader (see each reader's documentation).

    Returns
    -------
    Spectrum
        Vacuum wavelengths in Angstrom, flux, ivar and mask as stored in the
        file (observed frame unless the format says otherwise); the reader's
        name is in ``meta.extra["reader"]`` (:data:`READER_KEY`).

    Raises
    ------
    UnknownFormatError, CorruptFileError, SpectrumValidationError
        For files that cannot be read as spectra.
    """
    path = Path(path)
    if format is None:
        reader = identify_format(path)
    else:
        matches = [r for r in _READERS if r.name == format]
        if not matches:
            raise UnknownFormatError(
                f"no reader named {format!r}; known: {', '.join(r.name for r in _READERS)}."
            )
        reader = matches[0]
    logger.debug("reading %s as %s", path, reader.name)
    spectrum = reader.read(path, **options)
    if READER_KEY in spectrum.meta.extra:
        return spectrum
    meta = dataclasses.replace(spectrum.meta, extra={**spectrum.meta.extra, READER_KEY: reader.name})
    return dataclasses.replace(spectrum, meta=meta)

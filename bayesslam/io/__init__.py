"""The read stage: spectra (readers chosen from a file's content), writers of real layouts, label tables.

Registered readers, asked in this order:

``sdss-spec``
    SDSS/BOSS ``spec-PLATE-MJD-FIBER.fits`` and SDSS-V spec-lite files.
``sdssv-mwm``
    SDSS-V Milky Way Mapper ``mwmStar`` / ``mwmVisit`` BOSS coadds.
``lamost``
    LAMOST low-resolution spectra (5-row image or DR8+ table).
``table``
    Any FITS table, ``.npz`` or CSV with wavelength, flux, ivar[, mask].
"""

from __future__ import annotations

from pathlib import Path

from bayesslam.errors import UnknownFormatError
from bayesslam.io.labels import (
    STANDARD_LABELS,
    LabelTableError,
    label_table_names,
    read_label_table,
    table_label_names,
)
from bayesslam.io.lamost import identify_lamost, read_lamost
from bayesslam.io.registry import (
    READER_KEY,
    Reader,
    identify_format,
    read_spectrum,
    register_reader,
    registered_readers,
)
from bayesslam.io.sdss import identify_sdss_spec, read_sdss_spec, write_sdss_spec
from bayesslam.io.sdssv import identify_sdssv_mwm, read_sdssv_mwm, write_sdssv_mwm
from bayesslam.io.table import identify_table, read_table
from bayesslam.spectra import Spectrum

__all__ = [
    "LabelTableError",
    "STANDARD_LABELS",
    "label_table_names",
    "table_label_names",
    "Reader",
    "read_label_table",
    "register_reader",
    "registered_readers",
    "READER_KEY",
    "identify_format",
    "read_spectrum",
    "write_spectrum",
    "WRITERS",
]

register_reader(Reader("sdss-spec", identify_sdss_spec, read_sdss_spec, "SDSS/BOSS spec and SDSS-V spec-lite"))
register_reader(Reader("sdssv-mwm", identify_sdssv_mwm, read_sdssv_mwm, "SDSS-V mwmStar/mwmVisit BOSS coadds"))
register_reader(Reader("lamost", identify_lamost, read_lamost, "LAMOST low-resolution spectra"))
register_reader(Reader("table", identify_table, read_table, "generic FITS/npz/CSV table"))

#: Writers of real survey layouts, by format name.
WRITERS = {"sdss-spec": write_sdss_spec, "sdssv-mwm": write_sdssv_mwm}


def write_spectrum(spectrum: Spectrum, path: str | Path, format: str = "sdss-spec", *, overwrite: bool = False) -> Path:
    """Write a spectrum in a real survey layout.

    Parameters
    ----------
    spectrum : Spectrum
        Vacuum wavelengths. ``"sdss-spec"`` files are observed frame; for
        ``"sdssv-mwm"`` the spectrum must be on the BOSS log-lambda grid and,
        like real mwmStar coadds, in the rest frame.
    path : str or pathlib.Path
        Output file.
    format : {"sdss-spec", "sdssv-mwm"}
        The layout.
    overwrite : bool
        Replace an existing file.
    """
    if format not in WRITERS:
        raise UnknownFormatError(f"no writer for format {format!r}; choose one of {sorted(WRITERS)}.")
    return WRITERS[format](spectrum, path, overwrite=overwrite)

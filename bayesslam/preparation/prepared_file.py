"""The prepared-spectra file: continuum-normalized spectra on one model grid, and the inputs that failed.

A :class:`PreparedSpectra` is what :mod:`bayesslam.preparation.prepare` returns:
a :class:`~bayesslam.spectra.SpectrumBatch` of normalized spectra, their continua,
the normalization settings and the failed inputs with their reasons. On disk it
is one FITS file readable with astropy alone (HDUs ``WAVE``, ``FLUX``, ``IVAR``,
``MASK``, ``CONTINUUM``, ``META``, ``FAILED``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from astropy.io import fits

from bayesslam._files import atomic_write
from bayesslam.errors import CorruptFileError
from bayesslam.io.fitsutil import open_fits
from bayesslam.spectra import SpectrumBatch, SpectrumMeta

__all__ = [
    "PREPARED_FORMAT",
    "PREPARED_VERSION",
    "Failure",
    "PreparedSpectra",
    "write_prepared",
    "read_prepared",
    "is_prepared_file",
    "settings_json",
]

PREPARED_FORMAT = "bayesslam-prepared"
PREPARED_VERSION = 1


@dataclass(frozen=True)
class Failure:
    """A spectrum that could not be prepared: where it came from and why."""

    source: str
    error: str
    reason: str


@dataclass(frozen=True)
class PreparedSpectra:
    """Continuum-normalized spectra on one model grid.

    Attributes
    ----------
    spectra : SpectrumBatch
        Normalized flux, normalized ivar (``ivar * continuum**2``) and mask
        on the model grid; ``meta`` keeps identifier, SNR, v_rad, source.
    continuum : numpy.ndarray
        The fitted pseudo-continua, shape ``(n_star, n_pix)``, in the input
        flux units.
    settings : dict
        The continuum-normalization settings used.
    failures : tuple of Failure
        Inputs that were skipped, with the reason.
    """

    spectra: SpectrumBatch
    continuum: np.ndarray
    settings: Mapping[str, Any] = field(default_factory=dict)
    failures: tuple[Failure, ...] = ()

    def __len__(self) -> int:
        return len(self.spectra)

    @property
    def wave(self) -> np.ndarray:
        """The model wavelength grid (vacuum Angstrom)."""
        return self.spectra.wave


def write_prepared(prepared: PreparedSpectra, path: str | Path, *, overwrite: bool = False) -> Path:
    """Save prepared spectra as one FITS file (readable with astropy alone).

    HDUs: ``WAVE`` (vacuum Angstrom, float64), ``FLUX``, ``IVAR``,
    ``CONTINUUM`` (float32, ``n_star x n_pix``), ``MASK`` (uint8, 1 = bad),
    ``META`` (IDENTIFIER, SOURCE, SNR, V_RAD, REST_FRAME, N_GOOD) and
    ``FAILED`` (SOURCE, ERROR, REASON). The primary header holds the format
    name and version, and the normalization settings as JSON in ``SETTINGS``
    history cards.
    """
    path = Path(path)
    batch = prepared.spectra
    primary = fits.PrimaryHDU()
    header = primary.header
    header["BSLMFMT"] = (PREPARED_FORMAT, "bayesslam file type")
    header["BSLMVER"] = (PREPARED_VERSION, "bayesslam prepared-file schema version")
    header["NSTAR"] = (len(batch), "number of prepared spectra")
    header["NFAILED"] = (len(prepared.failures), "number of inputs that failed")
    header["WAVEUNIT"] = ("Angstrom", "vacuum wavelength")
    for key, value in prepared.settings.items():
        header[f"HIERARCH CONTINUUM {key.upper()}"] = value
    header.add_comment("Continuum-normalized spectra: FLUX/CONTINUUM; IVAR = ivar * continuum**2.")
    wave_hdu = fits.ImageHDU(np.asarray(batch.wave, dtype=np.float64), name="WAVE")
    wave_hdu.header["BUNIT"] = "Angstrom"
    meta = batch.meta
    meta_hdu = fits.BinTableHDU.from_columns(
        [
            fits.Column("IDENTIFIER", f"{max(1, max(len(m.identifier) for m in meta))}A",
                        array=[m.identifier for m in meta]),
            fits.Column("SOURCE", f"{max(1, max(len(m.source) for m in meta))}A", array=[m.source for m in meta]),
            fits.Column("SNR", "D", array=[m.snr for m in meta]),
            fits.Column("V_RAD", "D", unit="km/s", array=[m.v_rad for m in meta]),
            fits.Column("REST_FRAME", "L", array=[m.rest_frame for m in meta]),
            fits.Column("N_GOOD", "J", array=(~batch.mask).sum(axis=1)),
        ],
        name="META",
    )
    failures = prepared.failures
    failed_hdu = fits.BinTableHDU.from_columns(
        [
            fits.Column("SOURCE", f"{max([1] + [len(f.source) for f in failures])}A", array=[f.source for f in failures]),
            fits.Column("ERROR", f"{max([1] + [len(f.error) for f in failures])}A", array=[f.error for f in failures]),
            fits.Column("REASON", f"{max([1] + [len(f.reason) for f in failures])}A", array=[f.reason for f in failures]),
        ],
        name="FAILED",
    )
    hdul = fits.HDUList(
        [
            primary,
            wave_hdu,
            fits.ImageHDU(batch.flux.astype(np.float32), name="FLUX"),
            fits.ImageHDU(batch.ivar.astype(np.float32), name="IVAR"),
            fits.ImageHDU(batch.mask.astype(np.uint8), name="MASK"),
            fits.ImageHDU(prepared.continuum.astype(np.float32), name="CONTINUUM"),
            meta_hdu,
            failed_hdu,
        ]
    )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    return atomic_write(path, lambda stream: hdul.writeto(stream, checksum=True))


def read_prepared(path: str | Path) -> PreparedSpectra:
    """Read a file written by :func:`write_prepared`.

    Raises
    ------
    CorruptFileError
        If the file is not a bayesslam prepared file, or of a newer schema.
    """
    path = Path(path)
    with open_fits(path) as hdul:
        header = hdul[0].header
        if header.get("BSLMFMT") != PREPARED_FORMAT:
            raise CorruptFileError(f"{path}: not a bayesslam prepared-spectra file (run `bayesslam prepare`).")
        if int(header.get("BSLMVER", 0)) > PREPARED_VERSION:
            raise CorruptFileError(
                f"{path}: prepared-file schema {header['BSLMVER']} is newer than this bayesslam "
                f"understands ({PREPARED_VERSION}); upgrade bayesslam."
            )
        settings = {
            key.split(" ", 1)[1].lower(): value
            for key, value in header.items()
            if key.startswith("CONTINUUM ")
        }
        meta_rows = hdul["META"].data
        meta = tuple(
            SpectrumMeta(
                identifier=str(row["IDENTIFIER"]).strip(),
                snr=float(row["SNR"]),
                v_rad=float(row["V_RAD"]),
                source=str(row["SOURCE"]).strip(),
                rest_frame=bool(row["REST_FRAME"]),
            )
            for row in meta_rows
        )
        failures = tuple(
            Failure(str(r["SOURCE"]).strip(), str(r["ERROR"]).strip(), str(r["REASON"]).strip())
            for r in hdul["FAILED"].data
        )
        batch = SpectrumBatch(
            wave=np.array(hdul["WAVE"].data, dtype=float),
            flux=np.array(hdul["FLUX"].data, dtype=float),
            ivar=np.array(hdul["IVAR"].data, dtype=float),
            mask=np.array(hdul["MASK"].data, dtype=bool),
            meta=meta,
        )
        continuum = np.array(hdul["CONTINUUM"].data, dtype=float)
    return PreparedSpectra(batch, continuum, settings, failures)


def is_prepared_file(path: str | Path) -> bool:
    """Whether ``path`` is a FITS file written by :func:`write_prepared`."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        header = fits.getheader(path, 0)
    except (OSError, ValueError):
        return False
    return header.get("BSLMFMT") == PREPARED_FORMAT


def settings_json(prepared: PreparedSpectra) -> str:
    """The normalization settings as a JSON string (for model metadata)."""
    return json.dumps(dict(prepared.settings), sort_keys=True)

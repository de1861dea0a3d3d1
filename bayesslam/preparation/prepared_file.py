"""The prepared-spectra file: continuum-normalized spectra on one model grid, and the inputs that failed.

A :class:`PreparedSpectra` is what :mod:`bayesslam.preparation.prepare` returns:
a :class:`~bayesslam.spectra.SpectrumBatch` of normalized spectra, their continua,
the normalization settings and the failed inputs with their reasons. On disk it
is one FITS file readable with astropy alone (HDUs ``WAVE``, ``FLUX``, ``IVAR``,
``MASK``, ``CONTINUUM``, ``META``, ``FAILED``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from astropy.io import fits

from bayesslam._files import atomic_write
from bayesslam.errors import CorruptFileError, SpectrumValidationError
from bayesslam.io.fitsutil import open_fits
from bayesslam.spectra import SpectrumBatch, SpectrumMeta, check_arrays, same_grid

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

logger = logging.getLogger(__name__)

PREPARED_FORMAT = "bayesslam-prepared"
PREPARED_VERSION = 1


@dataclass(frozen=True)
class Failure:
    """An input that could not be used: where it came from, which star (when known) and why.

    Attributes
    ----------
    source : str
        The file (or other input) it came from.
    error : str
        The exception's class name (e.g. ``CorruptFileError``).
    reason : str
        The message: what is wrong and what to do.
    identifier : str
        The star's identifier, when the input got as far as naming it (a
        bad star inside a prepared file); empty otherwise.
    """

    source: str
    error: str
    reason: str
    identifier: str = ""


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

    def take(self, stars: np.ndarray, failures: Sequence[Failure] = ()) -> "PreparedSpectra":
        """The spectra at the indices ``stars``, in that order, with ``failures`` added to the failed inputs."""
        stars = np.asarray(stars, dtype=np.int64)
        batch = self.spectra
        taken = SpectrumBatch(wave=batch.wave, flux=batch.flux[stars], ivar=batch.ivar[stars], mask=batch.mask[stars],
                              meta=tuple(batch.meta[i] for i in stars))
        return PreparedSpectra(taken, self.continuum[stars], self.settings, self.failures + tuple(failures))

    @classmethod
    def concatenate(cls, parts: Sequence["PreparedSpectra"]) -> "PreparedSpectra":
        """One set from several on the same grid, in order (settings of the first; failures of all).

        Raises
        ------
        SpectrumValidationError
            If the parts are on different grids, or there are none.
        """
        parts = list(parts)
        if not parts:
            raise SpectrumValidationError("no prepared spectra to concatenate.")
        if len(parts) == 1:
            return parts[0]
        wave = parts[0].wave
        for part in parts[1:]:
            if not same_grid(part.wave, wave):
                raise SpectrumValidationError("prepared spectra on different wavelength grids cannot be combined.")
        batches = [p.spectra for p in parts if len(p)]
        failures = tuple(f for p in parts for f in p.failures)
        if not batches:
            return cls(parts[0].spectra, parts[0].continuum, parts[0].settings, failures)
        batch = SpectrumBatch(
            wave=wave,
            flux=np.concatenate([b.flux for b in batches]),
            ivar=np.concatenate([b.ivar for b in batches]),
            mask=np.concatenate([b.mask for b in batches]),
            meta=tuple(m for b in batches for m in b.meta),
        )
        continuum = np.concatenate([p.continuum for p in parts if len(p)])
        return cls(batch, continuum, parts[0].settings, failures)

    @property
    def wave(self) -> np.ndarray:
        """The model wavelength grid (vacuum Angstrom)."""
        return self.spectra.wave


def write_prepared(prepared: PreparedSpectra, path: str | Path, *, overwrite: bool = False) -> Path:
    """Save prepared spectra as one FITS file (readable with astropy alone).

    HDUs: ``WAVE`` (vacuum Angstrom, float64), ``FLUX``, ``IVAR``,
    ``CONTINUUM`` (float32, ``n_star x n_pix``), ``MASK`` (uint8, 1 = bad),
    ``META`` (IDENTIFIER, SOURCE, SNR, V_RAD, REST_FRAME, N_GOOD) and
    ``FAILED`` (SOURCE, IDENTIFIER, ERROR, REASON). The primary header holds the format
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
            fits.Column("IDENTIFIER", f"{max([1] + [len(f.identifier) for f in failures])}A",
                        array=[f.identifier for f in failures]),
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

    A star whose arrays fail validation (e.g. negative ivar written by
    another program) is left out and listed in ``failures`` with its
    identifier; the other stars are read.

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
        failed = hdul["FAILED"].data
        names = failed.columns.names if failed is not None else []
        failures = tuple(
            Failure(str(r["SOURCE"]).strip(), str(r["ERROR"]).strip(), str(r["REASON"]).strip(),
                    str(r["IDENTIFIER"]).strip() if "IDENTIFIER" in names else "")
            for r in (failed if failed is not None else [])
        )
        wave = np.array(hdul["WAVE"].data, dtype=float)
        flux = np.array(hdul["FLUX"].data, dtype=float)
        ivar = np.array(hdul["IVAR"].data, dtype=float)
        mask = np.array(hdul["MASK"].data, dtype=bool)
        continuum = np.array(hdul["CONTINUUM"].data, dtype=float)
    keep, bad = _valid_rows(path, wave, flux, ivar, mask, meta)
    batch = SpectrumBatch(wave=wave, flux=flux[keep], ivar=ivar[keep], mask=mask[keep],
                          meta=tuple(meta[i] for i in keep))
    return PreparedSpectra(batch, continuum[keep], settings, failures + bad)


def _valid_rows(path: Path, wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray,
                meta: tuple[SpectrumMeta, ...]) -> tuple[np.ndarray, tuple[Failure, ...]]:
    """Rows that pass :func:`~bayesslam.spectra.check_arrays`, and a failure for each row that does not."""
    try:
        check_arrays(wave, flux, ivar, mask, what=str(path))
        return np.arange(len(meta)), ()
    except SpectrumValidationError:
        pass  # find the bad rows: one check per star
    keep, bad = [], []
    for i, m in enumerate(meta):
        try:
            check_arrays(wave, flux[i], ivar[i], mask[i], what=f"{path}: star {m.identifier!r} (row {i})")
            keep.append(i)
        except SpectrumValidationError as exc:
            bad.append(Failure(str(path), type(exc).__name__, str(exc), m.identifier))
    if bad:
        logger.warning("%s: %d of %d stars fail validation and are left out: %s", path, len(bad), len(meta),
                       ", ".join(f.identifier for f in bad))
    return np.asarray(keep, dtype=np.int64), tuple(bad)


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

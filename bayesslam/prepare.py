"""Spectra in, normalized spectra on the model grid out: read -> rest frame -> rebin -> normalize.

The result of preparing many files is a :class:`PreparedSpectra`: a
:class:`~bayesslam.spectra.SpectrumBatch` of continuum-normalized spectra on
one model grid, the continua, the normalization settings, and the files that
failed with their reasons. It is saved as one FITS file readable with astropy
alone (HDUs ``WAVE``, ``FLUX``, ``IVAR``, ``MASK``, ``CONTINUUM``, ``META``,
``FAILED``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from astropy.io import fits
from tqdm.auto import tqdm

from bayesslam.continuum import ContinuumSettings, normalize
from bayesslam.errors import CorruptFileError, SpectrumValidationError
from bayesslam.grid import model_wavelength
from bayesslam.io import read_spectrum
from bayesslam.io.fitsutil import open_fits
from bayesslam.resample import rebin
from bayesslam.spectra import Spectrum, SpectrumBatch, SpectrumMeta
from bayesslam.wavelength import to_rest_frame

__all__ = [
    "PREPARED_FORMAT",
    "PREPARED_VERSION",
    "Failure",
    "PreparedSpectra",
    "prepare_spectrum",
    "prepare_spectra",
    "prepare_files",
    "write_prepared",
    "read_prepared",
    "is_prepared_file",
]

logger = logging.getLogger(__name__)

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


def prepare_spectrum(
    spectrum: Spectrum,
    wave_out: np.ndarray | None = None,
    *,
    v_rad: float | None = None,
    rest_frame: bool = True,
    settings: ContinuumSettings | None = None,
) -> tuple[Spectrum, np.ndarray]:
    """Put one spectrum on the model grid, in the rest frame, continuum-normalized.

    Parameters
    ----------
    spectrum : Spectrum
        As read from a file (vacuum Angstrom).
    wave_out : numpy.ndarray, optional
        Model grid; default :func:`bayesslam.grid.model_wavelength`.
    v_rad : float, optional
        Radial velocity (km/s) overriding ``spectrum.meta.v_rad``.
    rest_frame : bool
        Shift to the rest frame (skipped for spectra already there). When no
        velocity is known the spectrum is used as it is and a warning logged.
    settings : ContinuumSettings, optional
        Normalization settings (production defaults).

    Returns
    -------
    (Spectrum, numpy.ndarray)
        The normalized spectrum on ``wave_out`` (its meta records the velocity
        applied in ``v_rad`` and ``rest_frame=True`` when shifted) and the
        continuum.

    Raises
    ------
    NoOverlapError, AllMaskedError, NormalizationError
        If the spectrum cannot be put on the grid.
    """
    wave_out = model_wavelength() if wave_out is None else np.asarray(wave_out, dtype=float)
    settings = settings or ContinuumSettings()
    meta = spectrum.meta
    wave_in = spectrum.wave
    velocity = meta.v_rad if v_rad is None else float(v_rad)
    if rest_frame and not meta.rest_frame:
        if np.isfinite(velocity):
            wave_in = to_rest_frame(wave_in, velocity)
            meta = SpectrumMeta(meta.identifier, meta.snr, velocity, meta.source, True, meta.extra)
        else:
            logger.warning("%s: no radial velocity known; using the wavelengths as they are.", meta.identifier)
    binned = rebin(wave_in, spectrum.flux, spectrum.ivar, wave_out, spectrum.mask)
    normed = normalize(wave_out, binned.flux, binned.ivar, binned.mask, **settings.to_dict())
    return Spectrum(wave_out, normed.flux, normed.ivar, normed.mask, meta), normed.continuum


def prepare_spectra(
    spectra: Iterable[Spectrum | tuple[str, Exception]],
    wave_out: np.ndarray | None = None,
    *,
    rest_frame: bool = True,
    settings: ContinuumSettings | None = None,
    progress: bool = True,
    total: int | None = None,
) -> PreparedSpectra:
    """Prepare many spectra; one that fails is recorded, never stops the batch.

    Parameters
    ----------
    spectra : iterable
        Spectra, or ``(source, exception)`` pairs for inputs that already
        failed to load (these are recorded as failures).
    wave_out, rest_frame, settings
        As in :func:`prepare_spectrum`.
    progress : bool
        Show a progress bar.
    total : int, optional
        Number of inputs, for the progress bar.

    Raises
    ------
    SpectrumValidationError
        If no spectrum at all could be prepared (the message lists why).
    """
    wave_out = model_wavelength() if wave_out is None else np.asarray(wave_out, dtype=float)
    settings = settings or ContinuumSettings()
    done: list[Spectrum] = []
    continua: list[np.ndarray] = []
    failures: list[Failure] = []
    for item in tqdm(spectra, total=total, disable=not progress, desc="prepare", unit="spectrum"):
        if isinstance(item, tuple):
            source, exc = item
        else:
            source = item.meta.source or item.meta.identifier
            try:
                prepared, continuum = prepare_spectrum(item, wave_out, rest_frame=rest_frame, settings=settings)
            except Exception as error:  # one bad spectrum never stops a survey
                exc = error
            else:
                done.append(prepared)
                continua.append(continuum)
                continue
        failures.append(Failure(str(source), type(exc).__name__, str(exc)))
        logger.warning("skipped %s: %s: %s", source, type(exc).__name__, exc)
    if not done:
        reasons = "; ".join(f"{f.source}: {f.reason}" for f in failures[:5])
        raise SpectrumValidationError(f"no spectrum could be prepared ({len(failures)} failed): {reasons}")
    return PreparedSpectra(
        spectra=SpectrumBatch.from_spectra(done),
        continuum=np.stack(continua),
        settings=settings.to_dict(),
        failures=tuple(failures),
    )


def _read_all(paths: list[Path], read_options: Mapping[str, Any]) -> Iterable[Spectrum | tuple[str, Exception]]:
    for path in paths:
        try:
            yield read_spectrum(path, **read_options)
        except Exception as exc:  # recorded by prepare_spectra
            yield (str(path), exc)


def prepare_files(
    paths: Iterable[str | Path],
    wave_out: np.ndarray | None = None,
    *,
    rest_frame: bool = True,
    settings: ContinuumSettings | None = None,
    progress: bool = True,
    read_options: Mapping[str, Any] | None = None,
) -> PreparedSpectra:
    """Read, shift, rebin and normalize many spectrum files.

    Parameters
    ----------
    paths : iterable of path
        Files in any registered format (mixed formats are fine).
    wave_out, rest_frame, settings, progress
        As in :func:`prepare_spectra`.
    read_options : mapping, optional
        Passed to :func:`bayesslam.io.read_spectrum`.

    Returns
    -------
    PreparedSpectra
        The good spectra; unreadable or unusable files are listed in
        ``failures`` with the reason.
    """
    paths = [Path(p) for p in paths]
    return prepare_spectra(
        _read_all(paths, read_options or {}),
        wave_out,
        rest_frame=rest_frame,
        settings=settings,
        progress=progress,
        total=len(paths),
    )


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
    path.parent.mkdir(parents=True, exist_ok=True)
    hdul.writeto(path, overwrite=overwrite, checksum=True)
    return path


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

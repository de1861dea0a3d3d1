"""Spectra in, normalized spectra on the model grid out: read -> rest frame -> rebin -> normalize.

One spectrum (:func:`prepare_spectrum`), many (:func:`prepare_spectra`) or
files (:func:`prepare_files`); the result of many is a
:class:`~bayesslam.preparation.prepared_file.PreparedSpectra`, in which an input
that fails is recorded with its reason and never stops the batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from tqdm.auto import tqdm

from bayesslam.errors import SpectrumValidationError
from bayesslam.grid import model_wavelength
from bayesslam.io import read_spectrum
from bayesslam.preparation.continuum import ContinuumSettings, normalize
from bayesslam.preparation.prepared_file import Failure, PreparedSpectra
from bayesslam.preparation.resample import rebin
from bayesslam.spectra import Spectrum, SpectrumBatch, SpectrumMeta
from bayesslam.wavelength import to_rest_frame

__all__ = ["NothingPreparedError", "prepare_spectrum", "prepare_spectra", "prepare_files"]

logger = logging.getLogger(__name__)


class NothingPreparedError(SpectrumValidationError):
    """No input at all could be prepared; ``failures`` says why for each."""

    def __init__(self, message: str, failures: tuple[Failure, ...]) -> None:
        super().__init__(message)
        self.failures = failures


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
    NothingPreparedError
        If no spectrum at all could be prepared (the message lists why; its
        ``failures`` holds every reason).
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
        raise NothingPreparedError(f"no spectrum could be prepared ({len(failures)} failed): {reasons}", tuple(failures))
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

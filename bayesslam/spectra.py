"""Spectrum records: one star (:class:`Spectrum`) or many on one grid (:class:`SpectrumBatch`).

Both hold vacuum wavelengths in Angstrom, flux, inverse variance and a boolean
pixel mask (``True`` = bad pixel), and validate themselves at construction:
shapes agree, wavelengths strictly increase, ivar is finite and non-negative.
Non-finite flux is not propagated: such pixels are masked and get ivar 0. A
masked pixel always has ivar 0, so ``ivar`` alone is a complete weight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

import numpy as np

from bayesslam.errors import SpectrumValidationError

__all__ = ["SpectrumMeta", "Spectrum", "SpectrumBatch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpectrumMeta:
    """Metadata of one spectrum.

    Parameters
    ----------
    identifier : str
        A unique name of the spectrum (e.g. ``"spec-1079-52621-0509"``).
    snr : float
        Median signal-to-noise ratio per pixel as reported by the survey, or
        NaN when unknown.
    v_rad : float
        Heliocentric radial velocity in km/s used or to be used for the
        rest-frame shift (NaN when unknown).
    source : str
        The file the spectrum came from ("" when built in memory).
    rest_frame : bool
        Whether the wavelengths are already in the star's rest frame.
    extra : dict
        Any further survey-specific values (plate, MJD, fiber, class, ...).
    """

    identifier: str = ""
    snr: float = float("nan")
    v_rad: float = float("nan")
    source: str = ""
    rest_frame: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


def _validate_arrays(
    wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray | None, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check and clean spectral arrays; return float64 copies and a boolean mask."""
    wave = np.asarray(wave, dtype=float)
    flux = np.array(flux, dtype=float)
    ivar = np.array(ivar, dtype=float)
    if wave.ndim != 1:
        raise SpectrumValidationError(f"{what}: wavelength must be 1-D, got shape {wave.shape}.")
    if wave.size < 2:
        raise SpectrumValidationError(f"{what}: need at least two pixels, got {wave.size}.")
    if flux.shape != ivar.shape or flux.shape[-1] != wave.size:
        raise SpectrumValidationError(
            f"{what}: shapes disagree: wavelength {wave.shape}, flux {flux.shape}, "
            f"ivar {ivar.shape}. Flux and ivar must have one value per wavelength pixel."
        )
    if not np.all(np.isfinite(wave)):
        raise SpectrumValidationError(f"{what}: wavelength contains NaN or inf.")
    if np.any(np.diff(wave) <= 0):
        raise SpectrumValidationError(
            f"{what}: wavelengths must strictly increase; sort the pixels (and flux/ivar with them)."
        )
    if np.any(wave <= 0):
        raise SpectrumValidationError(f"{what}: wavelengths must be positive (Angstrom).")
    if not np.all(np.isfinite(ivar)):
        raise SpectrumValidationError(
            f"{what}: inverse variance contains NaN or inf; give ivar = 0 for pixels without data."
        )
    if np.any(ivar < 0):
        n_bad = int(np.sum(ivar < 0))
        raise SpectrumValidationError(
            f"{what}: {n_bad} pixels have negative inverse variance; ivar must be >= 0 "
            "(did you pass sigma or variance instead of 1/sigma**2?)."
        )
    if mask is None:
        mask_arr = np.zeros(flux.shape, dtype=bool)
    else:
        mask_arr = np.array(mask, dtype=bool)
        if mask_arr.shape != flux.shape:
            raise SpectrumValidationError(
                f"{what}: mask shape {mask_arr.shape} differs from flux shape {flux.shape}."
            )
    bad_flux = ~np.isfinite(flux)
    if np.any(bad_flux):
        logger.debug("%s: masking %d non-finite flux pixels", what, int(bad_flux.sum()))
    mask_arr = mask_arr | bad_flux | (ivar == 0)
    flux[bad_flux] = 0.0
    ivar[mask_arr] = 0.0
    return wave, flux, ivar, mask_arr


@dataclass(frozen=True)
class Spectrum:
    """One star's spectrum.

    Parameters
    ----------
    wave : numpy.ndarray
        Strictly increasing vacuum wavelengths in Angstrom, shape ``(n,)``.
    flux : numpy.ndarray
        Flux density, shape ``(n,)`` (any consistent unit).
    ivar : numpy.ndarray
        Inverse variance of ``flux``, shape ``(n,)``, finite and >= 0.
    mask : numpy.ndarray, optional
        Boolean bad-pixel mask, ``True`` = do not use. Pixels with non-finite
        flux or zero ivar are added to it.
    meta : SpectrumMeta, optional
        Identifier, SNR, radial velocity, source file.

    Raises
    ------
    SpectrumValidationError
        If the arrays are inconsistent.
    """

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray | None = None
    meta: SpectrumMeta = field(default_factory=SpectrumMeta)

    def __post_init__(self) -> None:
        what = f"spectrum {self.meta.identifier!r}" if self.meta.identifier else "spectrum"
        wave, flux, ivar, mask = _validate_arrays(self.wave, self.flux, self.ivar, self.mask, what)
        if flux.ndim != 1:
            raise SpectrumValidationError(f"{what}: flux must be 1-D, got shape {flux.shape}.")
        for name, value in (("wave", wave), ("flux", flux), ("ivar", ivar), ("mask", mask)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def n_pixels(self) -> int:
        """Number of pixels."""
        return int(self.wave.size)

    @property
    def n_good(self) -> int:
        """Number of usable (unmasked) pixels."""
        return int(np.sum(~self.mask))

    def with_arrays(self, **changes: Any) -> "Spectrum":
        """Return a copy with some of ``wave``, ``flux``, ``ivar``, ``mask``, ``meta`` replaced."""
        return replace(self, **changes)


@dataclass(frozen=True)
class SpectrumBatch:
    """Many spectra on one shared wavelength grid.

    Parameters
    ----------
    wave : numpy.ndarray
        Shared strictly increasing vacuum wavelengths in Angstrom, shape ``(n_pix,)``.
    flux, ivar : numpy.ndarray
        Shape ``(n_star, n_pix)``.
    mask : numpy.ndarray, optional
        Boolean, shape ``(n_star, n_pix)``, ``True`` = bad.
    meta : tuple of SpectrumMeta, optional
        One entry per star.
    """

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray | None = None
    meta: tuple[SpectrumMeta, ...] = ()

    def __post_init__(self) -> None:
        wave, flux, ivar, mask = _validate_arrays(
            self.wave, self.flux, self.ivar, self.mask, "spectrum batch"
        )
        if flux.ndim != 2:
            raise SpectrumValidationError(
                f"spectrum batch: flux must be 2-D (n_star, n_pixel), got shape {flux.shape}."
            )
        meta = tuple(self.meta) if self.meta else tuple(
            SpectrumMeta(identifier=f"star{i}") for i in range(flux.shape[0])
        )
        if len(meta) != flux.shape[0]:
            raise SpectrumValidationError(
                f"spectrum batch: {len(meta)} metadata entries for {flux.shape[0]} spectra."
            )
        for name, value in (("wave", wave), ("flux", flux), ("ivar", ivar), ("mask", mask)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "meta", meta)

    def __len__(self) -> int:
        return int(self.flux.shape[0])

    def __getitem__(self, index: int) -> Spectrum:
        return Spectrum(self.wave, self.flux[index], self.ivar[index], self.mask[index], self.meta[index])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def identifiers(self) -> list[str]:
        """The identifiers of the spectra, in order."""
        return [m.identifier for m in self.meta]

    @classmethod
    def from_spectra(cls, spectra: Iterable[Spectrum]) -> "SpectrumBatch":
        """Stack spectra that share one wavelength grid.

        Raises
        ------
        SpectrumValidationError
            If the list is empty or the grids differ (resample them first).
        """
        spectra = list(spectra)
        if not spectra:
            raise SpectrumValidationError("cannot build a spectrum batch from no spectra.")
        wave = spectra[0].wave
        for s in spectra[1:]:
            if s.wave.shape != wave.shape or not np.allclose(s.wave, wave, rtol=1e-10, atol=0):
                raise SpectrumValidationError(
                    f"spectrum {s.meta.identifier!r} is on another wavelength grid than "
                    f"{spectra[0].meta.identifier!r}; resample all spectra onto one grid first "
                    "(bayesslam.preparation.prepare)."
                )
        return cls(
            wave=wave,
            flux=np.stack([s.flux for s in spectra]),
            ivar=np.stack([s.ivar for s in spectra]),
            mask=np.stack([s.mask for s in spectra]),
            meta=tuple(s.meta for s in spectra),
        )

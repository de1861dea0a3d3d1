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

__all__ = ["SpectrumMeta", "Spectrum", "SpectrumBatch", "check_arrays", "check_wavelengths", "same_grid"]

logger = logging.getLogger(__name__)


def same_grid(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two wavelength grids are the same (same size, equal to 1e-10 relative)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-10, atol=0))


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


def check_wavelengths(wave: Any, *, what: str = "spectrum", name: str = "wavelength") -> np.ndarray:
    """Check a wavelength grid (1-D, at least two pixels, finite, positive, strictly increasing).

    Returns
    -------
    numpy.ndarray
        The grid as float64.

    Raises
    ------
    SpectrumValidationError
        If a check fails (the message names the first offending pixel).
    """
    wave = np.asarray(wave, dtype=float)
    if wave.ndim != 1 or wave.size < 2:
        raise SpectrumValidationError(f"{what}: {name} must be 1-D with at least two pixels, got shape {wave.shape}.")
    if not np.all(np.isfinite(wave)):
        raise SpectrumValidationError(f"{what}: {name} contains NaN or inf.")
    if np.any(wave <= 0):
        raise SpectrumValidationError(f"{what}: {name} must be positive (Angstrom).")
    steps = np.diff(wave)
    if np.any(steps <= 0):
        bad = int(np.flatnonzero(steps <= 0)[0])
        raise SpectrumValidationError(
            f"{what}: {name} must be strictly increasing, but {name}[{bad + 1}] = {wave[bad + 1]!r} <= "
            f"{name}[{bad}] = {wave[bad]!r}; sort the pixels (and flux and ivar with them) and drop duplicates."
        )
    return wave


def check_arrays(
    wave: Any,
    flux: Any,
    ivar: Any,
    mask: Any = None,
    *,
    what: str = "spectrum",
    names: tuple[str, str, str, str] = ("wavelength", "flux", "ivar", "mask"),
    hint: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check spectral arrays and return clean float64 copies: the one validation of spectra in bayesslam.

    The records (:class:`Spectrum`, :class:`SpectrumBatch`) call it, and so do
    the functions that take bare arrays (rebinning, normalization, inference),
    so every path refuses the same inputs with the same named error.

    Parameters
    ----------
    wave : array_like, shape (n,)
        Wavelengths: finite, positive, strictly increasing, at least two.
    flux, ivar : array_like, shape (n,) or (n_star, n)
        Flux and inverse variance (finite and >= 0).
    mask : array_like of bool, optional
        ``True`` = bad pixel; the shape of ``flux``, or ``(n,)`` for one mask
        shared by all spectra.
    what : str
        What the arrays are, for messages (e.g. ``"spectrum 'spec-1079...'"``).
    names : tuple of str
        The names of the four arrays in messages (e.g. the caller's argument names).
    hint : str
        A sentence added to shape errors (e.g. how to get spectra on the right grid).

    Returns
    -------
    (wave, flux, ivar, mask) : numpy.ndarray
        Float64 copies and a boolean mask of the shape of ``flux``. Pixels
        with non-finite flux are masked (their flux set to 0); masked pixels
        have ivar 0, so ``ivar`` alone is a complete weight.

    Raises
    ------
    SpectrumValidationError
        If any check fails; the message names the array and what to do.
    """
    wave_name, flux_name, ivar_name, mask_name = names
    wave = check_wavelengths(wave, what=what, name=wave_name)
    flux = np.array(flux, dtype=float)
    ivar = np.array(ivar, dtype=float)
    hint = f" {hint}" if hint else ""
    n = wave.size
    if flux.ndim not in (1, 2) or flux.shape[-1] != n:
        raise SpectrumValidationError(
            f"{what}: shapes disagree: {flux_name} must have shape ({n},) or (n_star, {n}) to match {wave_name} "
            f"({n} pixels), got {flux.shape}.{hint}"
        )
    if ivar.shape != flux.shape:
        raise SpectrumValidationError(
            f"{what}: shapes disagree: {ivar_name} must have the same shape as {flux_name} {flux.shape}, got "
            f"{ivar.shape}. Flux and ivar need one value per wavelength pixel.{hint}"
        )
    if not np.all(np.isfinite(ivar)):
        raise SpectrumValidationError(
            f"{what}: {ivar_name} contains NaN or inf; give ivar = 0 for pixels without data."
        )
    if np.any(ivar < 0):
        raise SpectrumValidationError(
            f"{what}: {int(np.sum(ivar < 0))} pixels have negative inverse variance; {ivar_name} must be >= 0 "
            "(did you pass sigma or variance instead of 1/sigma**2?)."
        )
    if mask is None:
        mask_arr = np.zeros(flux.shape, dtype=bool)
    else:
        mask_arr = np.asarray(mask).astype(bool)
        if mask_arr.shape not in (flux.shape, (n,)):
            raise SpectrumValidationError(
                f"{what}: {mask_name} must have the shape of {flux_name} {flux.shape} (or ({n},) for one mask "
                f"shared by all spectra), got {mask_arr.shape}."
            )
        mask_arr = np.broadcast_to(mask_arr, flux.shape)
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
        wave, flux, ivar, mask = check_arrays(self.wave, self.flux, self.ivar, self.mask, what=what)
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
        wave, flux, ivar, mask = check_arrays(self.wave, self.flux, self.ivar, self.mask, what="spectrum batch")
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
            if not same_grid(s.wave, wave):
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

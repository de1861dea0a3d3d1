"""The real BOSS M-dwarf templates of Kesseli et al. (2017): reading, labelling, preparing.

The templates (ApJS 230, 16; MIT licence, distributed with PyHammer) are
co-adds of many SDSS/BOSS spectra of dwarfs of one spectral type and one
[Fe/H] bin. Each FITS file holds in HDU1 the columns ``LogLam`` (log10 vacuum
Angstrom, about 14 times oversampled), ``Flux`` (relative), ``PropErr``
(propagated BOSS error) and ``Std`` (scatter of the co-added spectra);
``manifest.csv`` beside them lists the type, the [Fe/H] bin and the number of
co-added spectra.

Labels: Teff from the spectral type with Pecaut & Mamajek (2013)
(:func:`bayesslam.mock.relations.spectral_type_to_teff`); [Fe/H] the centre
of the template's bin as stated in the manifest (``"0.0 > FeH > -0.5"`` gives
-0.25). Open-ended bins (``"FeH < -1.0"``) have no centre and are never used.

This module is used by ``scripts/build_template_model.py`` only; the package
at run time reads the fitted model, never the templates.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from bayesslam.errors import CorruptFileError
from bayesslam.mock.relations import spectral_type_to_teff
from bayesslam.preparation.continuum import normalize
from bayesslam.preparation.resample import rebin

__all__ = [
    "TemplateInfo",
    "TemplateSelection",
    "parse_feh_range",
    "read_manifest",
    "select_templates",
    "read_template",
    "prepare_template",
]

logger = logging.getLogger(__name__)

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_SPT_ORDER = ["K5", "K7", "M0", "M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8", "M9"]


@dataclass(frozen=True)
class TemplateInfo:
    """One template of the manifest with its labels.

    Attributes
    ----------
    file : str
        File name inside the template folder.
    spt : str
        Spectral type (``"M3"``).
    n_coadded : int
        Number of BOSS spectra co-added.
    feh_range : tuple of float or None
        ``(low, high)`` bounds of the [Fe/H] bin, or None if open-ended.
    teff : float
        Pecaut & Mamajek (2013) Teff of the spectral type (K).
    fe_h : float
        Centre of the [Fe/H] bin (NaN if open-ended).
    """

    file: str
    spt: str
    n_coadded: int
    feh_range: tuple[float, float] | None
    teff: float
    fe_h: float

    @property
    def name(self) -> str:
        """The file name without ``.fits`` (``"M3_+0.5_Dwarf"``)."""
        return self.file.removesuffix(".fits")


@dataclass(frozen=True)
class TemplateSelection:
    """Which templates enter the template-model fit.

    Parameters
    ----------
    spt_min, spt_max : str
        Earliest and latest spectral type, inclusive (default K7-M6: 4090 K
        down to 2810 K, enclosing the paper's 3100-3900 K with margin).
    max_bin_width : float
        Largest [Fe/H] bin width in dex (default 0.5: excludes the 1-1.5 dex
        wide bins of M5-M8, whose centre is a poor label).
    min_coadded : int
        Fewest co-added spectra (default 2: excludes single-spectrum
        "templates").
    """

    spt_min: str = "K7"
    spt_max: str = "M6"
    max_bin_width: float = 0.5
    min_coadded: int = 2

    def accepts(self, info: TemplateInfo) -> tuple[bool, str]:
        """Return whether a template is selected, and why not if it is not."""
        if info.spt not in _SPT_ORDER:
            return False, f"spectral type {info.spt} unknown"
        rank = _SPT_ORDER.index(info.spt)
        if not _SPT_ORDER.index(self.spt_min) <= rank <= _SPT_ORDER.index(self.spt_max):
            return False, f"spectral type outside {self.spt_min}-{self.spt_max}"
        if info.feh_range is None:
            return False, "open-ended [Fe/H] bin"
        if info.feh_range[1] - info.feh_range[0] > self.max_bin_width + 1e-9:
            return False, f"[Fe/H] bin wider than {self.max_bin_width} dex"
        if info.n_coadded < self.min_coadded:
            return False, f"fewer than {self.min_coadded} co-added spectra"
        return True, ""


def parse_feh_range(comment: str) -> tuple[float, float] | None:
    """Return the ``(low, high)`` bounds of a manifest [Fe/H] comment, or None if open-ended.

    ``"0.0 > FeH > -0.5"`` and ``"-1.0 > FeH > -0.5"`` both mean an interval
    (the manifest writes the bounds in either order); ``"FeH < -1.0"`` and
    ``"FeH > 0.0"`` are open-ended.
    """
    numbers = [float(x) for x in _NUMBER.findall(comment or "")]
    if len(numbers) != 2:
        return None
    return (min(numbers), max(numbers))


def read_manifest(folder: str | Path) -> list[TemplateInfo]:
    """Read ``manifest.csv`` of the Kesseli et al. (2017) template folder.

    Parameters
    ----------
    folder : str or pathlib.Path
        The folder holding the template FITS files and ``manifest.csv``.

    Returns
    -------
    list of TemplateInfo
        Every K and M template with a spectral type in the Pecaut & Mamajek
        table.

    Raises
    ------
    CorruptFileError
        If the manifest is missing or lacks its columns.
    """
    path = Path(folder) / "manifest.csv"
    if not path.is_file():
        raise CorruptFileError(
            f"{path} not found: give the folder of the Kesseli et al. (2017) templates "
            "(with manifest.csv), e.g. ../shared/data/kesseli2017_boss_templates."
        )
    out = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                file, spt = row["file"], row["spt"]
                n_coadded = int(row["n_coadded"])
                comment = row["feh_range_comment"]
            except (KeyError, ValueError) as exc:
                raise CorruptFileError(f"{path}: unexpected row {row!r} ({exc}).") from None
            feh_range = parse_feh_range(comment)
            fe_h = float("nan") if feh_range is None else 0.5 * (feh_range[0] + feh_range[1])
            out.append(TemplateInfo(file, spt, n_coadded, feh_range, spectral_type_to_teff(spt), fe_h))
    return out


def select_templates(
    infos: list[TemplateInfo], selection: TemplateSelection | None = None
) -> tuple[list[TemplateInfo], list[tuple[TemplateInfo, str]]]:
    """Split templates into those that enter the fit and those left out (with the reason)."""
    selection = selection or TemplateSelection()
    kept, dropped = [], []
    for info in infos:
        ok, why = selection.accepts(info)
        if ok:
            kept.append(info)
        else:
            dropped.append((info, why))
    return kept, dropped


def read_template(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one template: vacuum wavelength (A), flux and inverse variance.

    The inverse variance is ``1 / PropErr**2``; pixels whose ``PropErr`` is
    not finite and positive get ivar 0. In the files these are stretches
    where no co-added spectrum had data and the flux was filled with a
    constant (e.g. M4_+0.5 at 6964-7000 A), so they must not be used.

    Raises
    ------
    CorruptFileError
        If HDU1 lacks the ``LogLam``, ``Flux`` and ``PropErr`` columns.
    """
    path = Path(path)
    with fits.open(path, memmap=False) as hdul:
        if len(hdul) < 2 or not {"LogLam", "Flux", "PropErr"} <= set(hdul[1].columns.names):
            raise CorruptFileError(f"{path}: not a Kesseli et al. (2017) template (HDU1 LogLam/Flux/PropErr).")
        data = hdul[1].data
        wave = 10.0 ** np.asarray(data["LogLam"], dtype=float)
        flux = np.asarray(data["Flux"], dtype=float)
        err = np.asarray(data["PropErr"], dtype=float)
    good = np.isfinite(err) & (err > 0) & np.isfinite(flux)
    ivar = np.zeros_like(flux)
    ivar[good] = 1.0 / err[good] ** 2
    return wave, np.where(np.isfinite(flux), flux, 0.0), ivar


def prepare_template(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    boss_wave: np.ndarray,
    fine_wave: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put a template on the model grids and split it into normalized flux and continuum.

    The template is rebinned by pixel overlap (:func:`bayesslam.preparation.resample.rebin`)
    onto the BOSS pixels ``boss_wave`` and onto their sub-pixels
    ``fine_wave``; the SLAM pseudo-continuum is fitted with the package's
    production normalization (:func:`bayesslam.preparation.continuum.normalize`) on the
    BOSS pixels, where its smoothing parameters mean what they mean in
    production, and interpolated (it is smooth) onto the sub-pixels.

    Returns
    -------
    norm_fine : numpy.ndarray
        Normalized flux on ``fine_wave`` (NaN where the template has no data).
    log_continuum_fine : numpy.ndarray
        Natural log of the continuum on ``fine_wave``.
    norm_boss : numpy.ndarray
        Normalized flux on ``boss_wave`` as the normalization returns it
        (NaN where masked).
    """
    on_boss = rebin(wave, flux, ivar, boss_wave)
    on_fine = rebin(wave, flux, ivar, fine_wave)
    normed = normalize(boss_wave, on_boss.flux, on_boss.ivar, on_boss.mask)
    log_cont_boss = np.log(normed.continuum)
    log_cont_fine = np.interp(np.log(fine_wave), np.log(boss_wave), log_cont_boss)
    norm_fine = np.where(on_fine.mask, np.nan, on_fine.flux / np.exp(log_cont_fine))
    norm_boss = np.where(normed.mask, np.nan, normed.flux)
    return norm_fine, log_cont_fine, norm_boss

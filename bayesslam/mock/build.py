"""Fit the template model to prepared templates: order selection by leave-one-out, then the final fit.

:func:`build_from_arrays` is pure (arrays in, :class:`TemplateModel` out) so it
can be tested on synthetic templates; :func:`build_from_folder` reads the real
Kesseli et al. (2017) FITS files first (``scripts/build_template_model.py``).

Order selection
---------------
Candidates are ``1, t..t**dT, f..f**dF, t f`` for ``dT`` in 1..4 and ``dF`` in
1..2 (normalized flux), and ``1, t..t**dT`` for ``dT`` in 1..4 (log
continuum). Each is scored by the leave-one-out RMS residual over the
*interior* templates (those whose Teff lies strictly inside the range of the
other templates' Teff, i.e. where predicting them is interpolation, as it is
inside the model's valid range) on the BOSS pixels of the production window.
The simplest candidate within 2 % of the best score is chosen.
"""

from __future__ import annotations

import hashlib
import logging
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import astropy
import numpy as np
import scipy

from bayesslam.grid import boss_wavelength
from bayesslam.mock.errors import TemplateModelError
from bayesslam.mock.relations import PECAUT_MAMAJEK_TEFF, PECAUT_MAMAJEK_VERSION
from bayesslam.mock.template_model import (
    TemplateModel,
    design_matrix,
    family_exponents,
    fit_per_pixel,
    production_window_mask,
    scale_labels,
    select_family,
    sub_pixel_wavelength,
)
from bayesslam.mock.templates import (
    TemplateInfo,
    TemplateSelection,
    prepare_template,
    read_manifest,
    read_template,
    select_templates,
)
from bayesslam.preparation.continuum import ContinuumSettings

__all__ = [
    "DEFAULT_WINDOW",
    "DEFAULT_OVERSAMPLE",
    "DEFAULT_TEFF_RANGE",
    "DEFAULT_FE_H_RANGE",
    "NORM_CANDIDATES",
    "CONT_CANDIDATES",
    "model_pixels",
    "interior_templates",
    "score_candidates",
    "build_from_arrays",
    "build_from_folder",
]

logger = logging.getLogger(__name__)

#: Rest-frame wavelength range (vacuum A) of the model: the production window
#: 6001.755-8957.321 A with room for Doppler shifts and the observed margin.
DEFAULT_WINDOW: tuple[float, float] = (5750.0, 9250.0)
#: Sub-pixels per BOSS pixel (about 17 km/s each).
DEFAULT_OVERSAMPLE: int = 4
#: Valid labels: the paper's 3100-3900 K and -0.6..+0.5 dex with margin, inside the templates.
DEFAULT_TEFF_RANGE: tuple[float, float] = (3000.0, 4000.0)
DEFAULT_FE_H_RANGE: tuple[float, float] = (-0.75, 0.5)
NORM_CANDIDATES: tuple[tuple[int, int], ...] = tuple((dt, df) for dt in (1, 2, 3, 4) for df in (1, 2))
CONT_CANDIDATES: tuple[int, ...] = (1, 2, 3, 4)
_TOLERANCE = 0.02


def model_pixels(window: Sequence[float]) -> tuple[int, int]:
    """First BOSS pixel and number of BOSS pixels whose centres lie inside ``window``."""
    wave = boss_wavelength()
    inside = np.flatnonzero((wave >= window[0]) & (wave <= window[1]))
    if inside.size < 10:
        raise TemplateModelError(f"window {window} holds fewer than 10 BOSS pixels.")
    return int(inside[0]), int(inside.size)


def interior_templates(teff: np.ndarray) -> np.ndarray:
    """True for templates whose Teff lies strictly inside the Teff range of the others."""
    teff = np.asarray(teff, dtype=float)
    return (teff > teff.min()) & (teff < teff.max())


def _binned_loo(loo: np.ndarray, oversample: int) -> np.ndarray:
    """Leave-one-out residuals of BOSS-binned predictions (mean of the sub-pixel ones)."""
    n_obj, n_sub = loo.shape
    with np.errstate(invalid="ignore"):
        blocks = loo.reshape(n_obj, n_sub // oversample, oversample)
        good = np.isfinite(blocks)
        total = np.where(good, blocks, 0.0).sum(axis=-1)
        count = good.sum(axis=-1)
    return np.where(count == oversample, total / np.maximum(count, 1), np.nan)


def score_candidates(
    t: np.ndarray,
    f: np.ndarray,
    values: np.ndarray,
    candidates: Sequence[np.ndarray],
    interior: np.ndarray,
    pixel_mask: np.ndarray,
    oversample: int,
) -> list[float]:
    """Leave-one-out RMS of each candidate design over interior templates and masked BOSS pixels."""
    scores = []
    for exponents in candidates:
        _, _, loo = fit_per_pixel(design_matrix(t, f, exponents), values)
        binned = _binned_loo(loo, oversample)[:, pixel_mask]
        scores.append(float(np.sqrt(np.nanmean(binned[interior] ** 2))))
    return scores


def build_from_arrays(
    teff: np.ndarray,
    fe_h: np.ndarray,
    norm_sub: np.ndarray,
    log_cont_sub: np.ndarray,
    norm_boss: np.ndarray,
    first_pixel: int,
    oversample: int,
    *,
    teff_range: tuple[float, float] = DEFAULT_TEFF_RANGE,
    fe_h_range: tuple[float, float] = DEFAULT_FE_H_RANGE,
    norm_candidates: Sequence[tuple[int, int]] = NORM_CANDIDATES,
    cont_candidates: Sequence[int] = CONT_CANDIDATES,
    names: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> TemplateModel:
    """Select the orders and fit the template model to prepared templates.

    Parameters
    ----------
    teff, fe_h : numpy.ndarray, shape (n_templates,)
        Template labels.
    norm_sub : numpy.ndarray, shape (n_templates, n_boss * oversample)
        Normalized flux on the sub-pixels (NaN = no data).
    log_cont_sub : numpy.ndarray, same shape
        Natural log of the pseudo-continuum on the sub-pixels.
    norm_boss : numpy.ndarray, shape (n_templates, n_boss)
        Normalized flux on the BOSS pixels (kept in the model for tests).
    first_pixel, oversample : int
        The BOSS pixels covered and the sub-pixels per BOSS pixel.
    teff_range, fe_h_range : (float, float)
        Declared valid label range.
    norm_candidates, cont_candidates
        Model families to choose from (see the module docstring).
    names : sequence of str, optional
        Template names, for the diagnostics.
    meta : dict, optional
        Extra metadata (provenance) to store.

    Returns
    -------
    TemplateModel
        With diagnostics in ``meta``: candidate scores, chosen orders, and
        per-template in-sample and leave-one-out RMS residuals (normalized
        flux, BOSS pixels of the production window).
    """
    teff = np.asarray(teff, dtype=float)
    fe_h = np.asarray(fe_h, dtype=float)
    n_obj, n_sub = norm_sub.shape
    n_boss = n_sub // oversample
    if n_boss * oversample != n_sub or norm_boss.shape != (n_obj, n_boss):
        raise TemplateModelError("template arrays do not match the pixel layout.")
    names = list(names) if names is not None else [f"template{i}" for i in range(n_obj)]
    t, f = scale_labels(teff, fe_h)
    boss = sub_pixel_wavelength(first_pixel, n_boss, 1)
    window = production_window_mask(boss)
    interior = interior_templates(teff)

    # Log continuum: shape only (mean 0 over the production window).
    sub_window = np.repeat(window, oversample)
    log_cont = log_cont_sub - np.mean(log_cont_sub[:, sub_window], axis=1, keepdims=True)

    norm_designs = [family_exponents(dt, df) for dt, df in norm_candidates]
    norm_scores = score_candidates(t, f, norm_sub, norm_designs, interior, window, oversample)
    n_terms = {k: len(e) for k, e in zip(norm_candidates, norm_designs)}
    chosen = select_family(dict(zip(norm_candidates, norm_scores)), n_terms, _TOLERANCE)
    norm_exponents = family_exponents(*chosen)

    cont_designs = [family_exponents(dt, 0) for dt in cont_candidates]
    cont_scores = score_candidates(t, f, log_cont, cont_designs, interior, window, oversample)
    cont_keys = [(dt, 0) for dt in cont_candidates]
    chosen_cont = select_family(
        dict(zip(cont_keys, cont_scores)), {k: len(e) for k, e in zip(cont_keys, cont_designs)}, _TOLERANCE
    )
    cont_exponents = family_exponents(chosen_cont[0], 0)

    norm_coef, norm_resid, norm_loo = fit_per_pixel(design_matrix(t, f, norm_exponents), norm_sub)
    cont_coef, _, _ = fit_per_pixel(design_matrix(t, f, cont_exponents), log_cont)
    scatter = np.sqrt(np.nanmean(norm_resid**2, axis=0))

    model_boss = design_matrix(t, f, norm_exponents) @ norm_coef
    model_boss = model_boss.reshape(n_obj, n_boss, oversample).mean(axis=-1)
    resid_boss = (norm_boss - model_boss)[:, window]
    rms = np.sqrt(np.nanmean(resid_boss**2, axis=1))
    loo_boss = _binned_loo(norm_loo, oversample)[:, window]
    loo_rms = np.sqrt(np.nanmean(loo_boss**2, axis=1))
    log_cont_boss = log_cont.reshape(n_obj, n_boss, oversample).mean(axis=-1)

    logger.info("normalized flux: chose (dT, dF) = %s among %s", chosen, dict(zip(norm_candidates, norm_scores)))
    logger.info("log continuum: chose dT = %d among %s", chosen_cont[0], dict(zip(cont_candidates, cont_scores)))
    diagnostics = {
        "order_selection": {
            "criterion": (
                "leave-one-out RMS of the normalized flux (log continuum) over interior templates "
                "(Teff strictly inside the others' range) and BOSS pixels of the production window; "
                f"simplest candidate within {100 * _TOLERANCE:.0f}% of the best"
            ),
            "family": "1, t..t^dT, f..f^dF, t*f with t=(Teff-3500)/500, f=[Fe/H]/0.5",
            "norm_candidates": {f"dT={dt},dF={df}": s for (dt, df), s in zip(norm_candidates, norm_scores)},
            "norm_chosen": {"teff_degree": chosen[0], "fe_h_degree": chosen[1]},
            "norm_exponents": norm_exponents.tolist(),
            "cont_candidates": {f"dT={dt}": s for dt, s in zip(cont_candidates, cont_scores)},
            "cont_chosen": {"teff_degree": chosen_cont[0]},
            "cont_exponents": cont_exponents.tolist(),
        },
        "fit_residuals": [
            {"name": n, "teff": float(a), "fe_h": float(b), "interior": bool(c),
             "rms": float(r), "loo_rms": float(lr)}
            for n, a, b, c, r, lr in zip(names, teff, fe_h, interior, rms, loo_rms)
        ],
    }
    full_meta = dict(meta or {})
    full_meta.update(diagnostics)
    full_meta["train_names"] = names
    return TemplateModel(
        first_pixel=int(first_pixel),
        n_boss=int(n_boss),
        oversample=int(oversample),
        norm_exponents=norm_exponents,
        norm_coef=norm_coef,
        norm_scatter=scatter,
        cont_exponents=cont_exponents,
        cont_coef=cont_coef,
        teff_range=tuple(float(x) for x in teff_range),
        fe_h_range=tuple(float(x) for x in fe_h_range),
        train_teff=teff,
        train_fe_h=fe_h,
        train_norm_boss=norm_boss,
        train_log_continuum_boss=log_cont_boss,
        meta=full_meta,
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_from_folder(
    folder: str | Path,
    *,
    window: tuple[float, float] = DEFAULT_WINDOW,
    oversample: int = DEFAULT_OVERSAMPLE,
    selection: TemplateSelection | None = None,
    teff_range: tuple[float, float] = DEFAULT_TEFF_RANGE,
    fe_h_range: tuple[float, float] = DEFAULT_FE_H_RANGE,
) -> TemplateModel:
    """Read, label, select and prepare the Kesseli et al. (2017) templates, then fit the model.

    Parameters
    ----------
    folder : str or pathlib.Path
        Folder with the template FITS files and ``manifest.csv``.
    window : (float, float)
        Rest-frame wavelength range (vacuum A) of the model.
    oversample : int
        Sub-pixels per BOSS pixel.
    selection : TemplateSelection, optional
        Which templates enter the fit (default K7-M6, bins <= 0.5 dex wide,
        >= 2 co-added spectra).
    teff_range, fe_h_range : (float, float)
        Declared valid label range; must lie inside the templates' labels.

    Returns
    -------
    TemplateModel
    """
    folder = Path(folder)
    selection = selection or TemplateSelection()
    kept, dropped = select_templates(read_manifest(folder), selection)
    if len(kept) < 6:
        raise TemplateModelError(f"only {len(kept)} templates selected; need at least 6.")
    teffs = np.array([k.teff for k in kept])
    fehs = np.array([k.fe_h for k in kept])
    if not (teffs.min() <= teff_range[0] < teff_range[1] <= teffs.max()):
        raise TemplateModelError(f"valid Teff range {teff_range} is not inside the templates' {teffs.min()}-{teffs.max()} K.")
    if not (fehs.min() <= fe_h_range[0] < fe_h_range[1] <= fehs.max()):
        raise TemplateModelError(f"valid [Fe/H] range {fe_h_range} is not inside the templates' {fehs.min()}-{fehs.max()}.")
    first_pixel, n_boss = model_pixels(window)
    boss = sub_pixel_wavelength(first_pixel, n_boss, 1)
    sub = sub_pixel_wavelength(first_pixel, n_boss, oversample)
    norm_sub, log_cont_sub, norm_boss = [], [], []
    for info in kept:
        wave, flux, ivar = read_template(folder / info.file)
        a, b, c = prepare_template(wave, flux, ivar, boss, sub)
        norm_sub.append(a)
        log_cont_sub.append(b)
        norm_boss.append(c)
        logger.info("prepared %s (Teff %.0f K, [Fe/H] %+.2f)", info.name, info.teff, info.fe_h)
    meta = {
        "description": (
            "Per-pixel polynomial model of the continuum-normalized flux and log pseudo-continuum of the "
            "Kesseli et al. (2017) SDSS/BOSS M-dwarf templates as functions of Teff and [Fe/H]."
        ),
        "sources": {
            "templates": "Kesseli et al. 2017, ApJS 230, 16 (PyHammer templates, MIT licence, (c) 2016 Aurora Kesseli)",
            "teff_from_spectral_type": (
                f"Pecaut & Mamajek 2013, ApJS 208, 9, Table 5 (Mamajek online table v{PECAUT_MAMAJEK_VERSION})"
            ),
            "fe_h": "centre of each template's [Fe/H] bin as stated in manifest.csv",
        },
        "teff_by_spectral_type": {k.spt: PECAUT_MAMAJEK_TEFF[k.spt] for k in kept},
        "templates": [_info_dict(k, _sha256(folder / k.file)) for k in kept],
        "dropped": [{"name": k.name, "reason": why} for k, why in dropped],
        "selection": asdict(selection),
        "window": [float(x) for x in window],
        "continuum_settings": ContinuumSettings().to_dict(),
        "resampling": "bayesslam.preparation.resample.rebin (pixel overlap) onto BOSS pixels and sub-pixels",
        "versions": {
            "numpy": np.__version__, "scipy": scipy.__version__, "astropy": astropy.__version__,
            "python": platform.python_version(),
        },
    }
    return build_from_arrays(
        teffs, fehs, np.array(norm_sub), np.array(log_cont_sub), np.array(norm_boss),
        first_pixel, oversample, teff_range=teff_range, fe_h_range=fe_h_range,
        names=[k.name for k in kept], meta=meta,
    )


def _info_dict(info: TemplateInfo, sha256: str) -> dict[str, Any]:
    return {
        "name": info.name, "file": info.file, "spt": info.spt, "n_coadded": info.n_coadded,
        "feh_range": list(info.feh_range) if info.feh_range else None,
        "teff": info.teff, "fe_h": info.fe_h, "sha256": sha256,
    }

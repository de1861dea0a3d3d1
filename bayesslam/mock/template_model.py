"""A data-driven model of the real BOSS M-dwarf templates: smooth per-pixel functions of (Teff, [Fe/H]).

The model has two parts, both linear in a few monomials of the scaled labels
``t = (Teff - 3500 K) / 500 K`` and ``f = [Fe/H] / 0.5 dex`` (the approach of
The Cannon, Ness et al. 2015; a different model family from the SVR emulator):

* the continuum-normalized flux, ``n_j(t, f) = sum_k a_jk t**p_k f**q_k`` on
  every sub-pixel ``j``;
* the natural log of the SLAM pseudo-continuum, normalized to mean 0 over the
  production window, ``log c_j(t) = sum_k b_jk t**k`` (Teff only).

Their product ``n_j * exp(log c_j)`` is a rest-frame, un-normalized spectrum
with the overall shape of the real templates, which the mock then observes.

The model lives on sub-pixels of the SDSS-V BOSS grid: BOSS pixels
``first_pixel .. first_pixel + n_boss - 1`` each split into ``oversample``
equal steps in log-wavelength, so that Doppler shifts can be applied before
binning onto BOSS pixels. Fitting, order selection and I/O are pure numpy; the
file is ``<stem>.npz`` (arrays) plus ``<stem>.json`` (metadata), no pickle.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from bayesslam.grid import BOSS_DLOGLAM, BOSS_LOGLAM0, BOSS_NPIX, PRODUCTION_WINDOW
from bayesslam.mock.errors import LabelRangeError, TemplateModelError

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "TEFF_CENTER",
    "TEFF_SCALE",
    "FE_H_CENTER",
    "FE_H_SCALE",
    "TemplateModel",
    "sub_pixel_wavelength",
    "scale_labels",
    "design_matrix",
    "family_exponents",
    "fit_per_pixel",
    "loo_rms_by_template",
    "select_family",
    "default_model_path",
    "load_template_model",
    "save_template_model",
    "production_window_mask",
]

logger = logging.getLogger(__name__)

SCHEMA = "bayesslam-mock-template-model"
SCHEMA_VERSION = 1
TEFF_CENTER = 3500.0
TEFF_SCALE = 500.0
FE_H_CENTER = 0.0
FE_H_SCALE = 0.5

_ARRAYS = (
    "norm_exponents", "norm_coef", "norm_scatter", "cont_exponents", "cont_coef",
    "train_teff", "train_fe_h", "train_norm_boss", "train_log_continuum_boss",
)


def sub_pixel_wavelength(first_pixel: int, n_boss: int, oversample: int) -> np.ndarray:
    """Centres (vacuum A) of ``oversample`` equal log-steps inside each of ``n_boss`` BOSS pixels.

    The sub-pixels tile the BOSS pixels exactly: BOSS pixel ``i`` spans
    ``log10(lambda) = 3.5523 + 1e-4 (i -+ 1/2)``.
    """
    i = np.arange(first_pixel, first_pixel + n_boss)[:, None]
    k = (np.arange(oversample) + 0.5) / oversample - 0.5
    return 10.0 ** (BOSS_LOGLAM0 + BOSS_DLOGLAM * (i + k)).ravel()


def scale_labels(teff: np.ndarray, fe_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the scaled labels ``t = (Teff - 3500) / 500`` and ``f = [Fe/H] / 0.5``."""
    t = (np.asarray(teff, dtype=float) - TEFF_CENTER) / TEFF_SCALE
    f = (np.asarray(fe_h, dtype=float) - FE_H_CENTER) / FE_H_SCALE
    return t, f


def design_matrix(t: np.ndarray, f: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """Monomials ``t**p * f**q`` for each row ``(p, q)`` of ``exponents``; shape ``(n, n_terms)``."""
    t = np.atleast_1d(np.asarray(t, dtype=float))
    f = np.atleast_1d(np.asarray(f, dtype=float))
    exponents = np.asarray(exponents, dtype=int).reshape(-1, 2)
    return t[:, None] ** exponents[:, 0] * f[:, None] ** exponents[:, 1]


def family_exponents(teff_degree: int, fe_h_degree: int, cross: bool = True) -> np.ndarray:
    """Exponents of the model family: ``1, t..t**dT, f..f**dF`` and, if ``cross``, ``t f``.

    Returns
    -------
    numpy.ndarray
        Integer array of shape ``(n_terms, 2)`` of ``(p, q)`` pairs.
    """
    rows = [(0, 0)] + [(p, 0) for p in range(1, teff_degree + 1)]
    rows += [(0, q) for q in range(1, fe_h_degree + 1)]
    if cross and teff_degree >= 1 and fe_h_degree >= 1:
        rows.append((1, 1))
    return np.array(rows, dtype=int)


def fit_per_pixel(
    design: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares of every pixel on a shared design, with exact leave-one-out residuals.

    Parameters
    ----------
    design : numpy.ndarray, shape (n_obj, n_terms)
        Shared design matrix.
    values : numpy.ndarray, shape (n_obj, n_pix)
        Values to fit; non-finite entries get weight 0.
    weights : numpy.ndarray, shape (n_obj, n_pix), optional
        Non-negative weights (default 1 where ``values`` is finite).

    Returns
    -------
    coef : numpy.ndarray, shape (n_terms, n_pix)
    residual : numpy.ndarray, shape (n_obj, n_pix)
        ``values - design @ coef`` (NaN where the weight is 0).
    loo_residual : numpy.ndarray, shape (n_obj, n_pix)
        Leave-one-out residuals ``r_i / (1 - h_ii)`` from the hat matrix of
        each pixel's weighted fit (NaN where the weight is 0 or the object
        has leverage 1, i.e. it alone fixes a coefficient).

    Raises
    ------
    TemplateModelError
        If some pixel has fewer usable objects than terms.
    """
    design = np.asarray(design, dtype=float)
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    w = finite.astype(float) if weights is None else np.where(finite, np.asarray(weights, dtype=float), 0.0)
    y = np.where(finite, values, 0.0)
    n_terms = design.shape[1]
    if np.any((w > 0).sum(axis=0) < n_terms):
        raise TemplateModelError(
            f"some pixels have fewer than {n_terms} usable templates for {n_terms} terms; "
            "choose a lower order or more templates."
        )
    normal = np.einsum("ip,ik,il->pkl", w, design, design)
    rhs = np.einsum("ip,ik,ip->pk", w, design, y)
    inv = np.linalg.inv(normal)
    coef = np.einsum("pkl,pl->kp", inv, rhs)
    fitted = design @ coef
    leverage = np.einsum("ik,pkl,il->ip", design, inv, design) * w
    usable = w > 0
    residual = np.where(usable, y - fitted, np.nan)
    ok = usable & (leverage < 1.0 - 1e-9)
    loo = np.full_like(residual, np.nan)
    loo[ok] = residual[ok] / (1.0 - leverage[ok])
    return coef, residual, loo


def loo_rms_by_template(loo_residual: np.ndarray, pixel_mask: np.ndarray | None = None) -> np.ndarray:
    """Root-mean-square leave-one-out residual of each object over (a subset of) pixels."""
    r = loo_residual if pixel_mask is None else loo_residual[:, pixel_mask]
    return np.sqrt(np.nanmean(r**2, axis=1))


def select_family(
    scores: Mapping[tuple[int, int], float], n_terms: Mapping[tuple[int, int], int], tolerance: float = 0.02
) -> tuple[int, int]:
    """Pick the simplest model whose score is within ``tolerance`` (fraction) of the best.

    Parameters
    ----------
    scores : mapping
        ``(teff_degree, fe_h_degree) -> leave-one-out rms`` (lower is better).
    n_terms : mapping
        Number of coefficients of each candidate.
    tolerance : float
        Relative slack, as in the "one standard error" rule: a model with
        fewer coefficients is preferred unless it is worse by more than this.

    Returns
    -------
    (int, int)
        The chosen ``(teff_degree, fe_h_degree)``.
    """
    best = min(scores.values())
    candidates = [k for k, v in scores.items() if v <= best * (1.0 + tolerance)]
    return min(candidates, key=lambda k: (n_terms[k], scores[k]))


@dataclass(frozen=True)
class TemplateModel:
    """The fitted template model: arrays plus metadata, with pure evaluation methods.

    Attributes
    ----------
    first_pixel : int
        Index of the first BOSS pixel covered (on ``3.5523 + 1e-4 i``).
    n_boss : int
        Number of BOSS pixels covered.
    oversample : int
        Sub-pixels per BOSS pixel.
    norm_exponents : numpy.ndarray, shape (n_terms, 2)
        Monomial exponents ``(p, q)`` of the normalized-flux model.
    norm_coef : numpy.ndarray, shape (n_terms, n_sub)
        Normalized-flux coefficients per sub-pixel.
    norm_scatter : numpy.ndarray, shape (n_sub,)
        RMS residual of the templates about the fit per sub-pixel.
    cont_exponents : numpy.ndarray, shape (n_cont_terms, 2)
        Monomial exponents of the log-continuum model (``q = 0``: Teff only).
    cont_coef : numpy.ndarray, shape (n_cont_terms, n_sub)
        Log-continuum coefficients per sub-pixel.
    teff_range, fe_h_range : (float, float)
        The labels where the model is valid; requests outside raise
        :class:`~bayesslam.mock.errors.LabelRangeError`.
    train_teff, train_fe_h : numpy.ndarray
        Labels of the templates used in the fit.
    train_norm_boss : numpy.ndarray, shape (n_templates, n_boss)
        Their normalized flux on the BOSS pixels (NaN where masked), kept for
        tests and figures (the original FITS files are not shipped).
    train_log_continuum_boss : numpy.ndarray, shape (n_templates, n_boss)
        Their log continuum (mean 0 over the production window).
    meta : dict
        The JSON metadata (provenance, choices, diagnostics).
    """

    first_pixel: int
    n_boss: int
    oversample: int
    norm_exponents: np.ndarray
    norm_coef: np.ndarray
    norm_scatter: np.ndarray
    cont_exponents: np.ndarray
    cont_coef: np.ndarray
    teff_range: tuple[float, float]
    fe_h_range: tuple[float, float]
    train_teff: np.ndarray
    train_fe_h: np.ndarray
    train_norm_boss: np.ndarray
    train_log_continuum_boss: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_sub = self.n_boss * self.oversample
        if self.first_pixel < 0 or self.first_pixel + self.n_boss > BOSS_NPIX:
            raise TemplateModelError("template model: BOSS pixel range outside the 4648-pixel grid.")
        for name in ("norm_coef", "cont_coef"):
            arr = getattr(self, name)
            if arr.ndim != 2 or arr.shape[1] != n_sub:
                raise TemplateModelError(f"template model: {name} has shape {arr.shape}, expected (*, {n_sub}).")
        if self.norm_coef.shape[0] != len(self.norm_exponents) or self.cont_coef.shape[0] != len(self.cont_exponents):
            raise TemplateModelError("template model: coefficient and exponent counts disagree.")
        for name in _ARRAYS:
            getattr(self, name).setflags(write=False)

    @property
    def wave(self) -> np.ndarray:
        """Sub-pixel centres (vacuum A, rest frame), shape ``(n_boss * oversample,)``."""
        return sub_pixel_wavelength(self.first_pixel, self.n_boss, self.oversample)

    @property
    def boss_wave(self) -> np.ndarray:
        """Centres of the BOSS pixels covered (vacuum A)."""
        return 10.0 ** (BOSS_LOGLAM0 + BOSS_DLOGLAM * np.arange(self.first_pixel, self.first_pixel + self.n_boss))

    @property
    def sub_step(self) -> float:
        """Sub-pixel step in log10(lambda)."""
        return BOSS_DLOGLAM / self.oversample

    def check_labels(self, teff: np.ndarray, fe_h: np.ndarray) -> None:
        """Raise :class:`LabelRangeError` if any label lies outside the model's valid range."""
        teff = np.asarray(teff, dtype=float)
        fe_h = np.asarray(fe_h, dtype=float)
        for name, values, (lo, hi), unit in (
            ("Teff", teff, self.teff_range, "K"),
            ("[Fe/H]", fe_h, self.fe_h_range, "dex"),
        ):
            bad = ~np.isfinite(values) | (values < lo) | (values > hi)
            if np.any(bad):
                first = np.atleast_1d(values)[np.atleast_1d(bad)][0]
                raise LabelRangeError(
                    f"{int(np.sum(bad))} {name} value(s) outside the template model's valid range "
                    f"{lo:g}-{hi:g} {unit} (first: {first!r}); the model is an empirical fit to the "
                    "Kesseli et al. (2017) templates and is not defined there. Restrict the labels "
                    "(bayesslam.mock.Domain) to the valid range."
                )

    def normalized_flux(self, teff: np.ndarray, fe_h: np.ndarray, *, check_range: bool = True) -> np.ndarray:
        """Normalized flux on the sub-pixels, shape ``(n, n_sub)``.

        ``check_range=False`` skips the valid-range check (used to compare the
        model with the edge templates of the fit, which lie outside it).
        """
        if check_range:
            self.check_labels(teff, fe_h)
        t, f = scale_labels(teff, fe_h)
        return design_matrix(t, f, self.norm_exponents) @ self.norm_coef

    def log_continuum(self, teff: np.ndarray) -> np.ndarray:
        """Log pseudo-continuum (mean 0 over the production window), shape ``(n, n_sub)``."""
        t, _ = scale_labels(teff, 0.0)
        return design_matrix(t, np.zeros_like(np.atleast_1d(t)), self.cont_exponents) @ self.cont_coef

    def rest_flux(self, teff: np.ndarray, fe_h: np.ndarray, *, check_range: bool = True) -> np.ndarray:
        """Rest-frame un-normalized flux on the sub-pixels: ``normalized * exp(log continuum)``."""
        return self.normalized_flux(teff, fe_h, check_range=check_range) * np.exp(self.log_continuum(teff))

    def bin_to_boss(self, sub_flux: np.ndarray) -> np.ndarray:
        """Average sub-pixels into their BOSS pixels (exact pixel-overlap rebinning here)."""
        sub_flux = np.asarray(sub_flux, dtype=float)
        shape = sub_flux.shape[:-1] + (self.n_boss, self.oversample)
        return sub_flux.reshape(shape).mean(axis=-1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of the model file."""
        return {name: np.asarray(getattr(self, name)) for name in _ARRAYS}


def default_model_path() -> Path:
    """Path stem of the template model shipped in ``bayesslam/mock/data``."""
    return Path(str(resources.files("bayesslam.mock") / "data" / "template_model"))


def _stem(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".npz", ".json") else path


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write a compressed npz with fixed member timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            archive.writestr(info, buffer.getvalue())


def save_template_model(model: TemplateModel, path: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.npz`` (arrays, compressed, float32) and ``<stem>.json`` (metadata); return both paths.

    The JSON records the SHA-256 of the npz so that a mismatched pair is
    detected on load; the npz is byte-reproducible for equal arrays.
    """
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    npz_path, json_path = stem.with_suffix(".npz"), stem.with_suffix(".json")
    arrays = model.to_arrays()
    arrays = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    _write_npz(npz_path, arrays)
    meta = dict(model.meta)
    meta.update(
        schema=SCHEMA,
        schema_version=SCHEMA_VERSION,
        first_pixel=int(model.first_pixel),
        n_boss=int(model.n_boss),
        oversample=int(model.oversample),
        teff_range=[float(x) for x in model.teff_range],
        fe_h_range=[float(x) for x in model.fe_h_range],
        label_scaling={"teff_center": TEFF_CENTER, "teff_scale": TEFF_SCALE,
                       "fe_h_center": FE_H_CENTER, "fe_h_scale": FE_H_SCALE},
        arrays_sha256=hashlib.sha256(npz_path.read_bytes()).hexdigest(),
    )
    json_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return npz_path, json_path


def load_template_model(path: str | Path | None = None) -> TemplateModel:
    """Load a template model (default: the one shipped with the package).

    Parameters
    ----------
    path : str or pathlib.Path, optional
        ``<stem>``, ``<stem>.npz`` or ``<stem>.json``.

    Returns
    -------
    TemplateModel

    Raises
    ------
    TemplateModelError
        If a file is missing, of another schema, or the pair does not match.
    """
    stem = default_model_path() if path is None else _stem(path)
    npz_path, json_path = stem.with_suffix(".npz"), stem.with_suffix(".json")
    if not npz_path.is_file() or not json_path.is_file():
        raise TemplateModelError(
            f"template model {stem} not found (need {npz_path.name} and {json_path.name}); "
            "rebuild it with scripts/build_template_model.py."
        )
    try:
        meta = json.loads(json_path.read_text())
    except json.JSONDecodeError as exc:
        raise TemplateModelError(f"{json_path}: not valid JSON ({exc}).") from None
    if meta.get("schema") != SCHEMA or int(meta.get("schema_version", -1)) > SCHEMA_VERSION:
        raise TemplateModelError(
            f"{json_path}: schema {meta.get('schema')!r} v{meta.get('schema_version')} is not a "
            f"{SCHEMA} v<= {SCHEMA_VERSION} file."
        )
    digest = hashlib.sha256(npz_path.read_bytes()).hexdigest()
    if digest != meta.get("arrays_sha256"):
        raise TemplateModelError(f"{npz_path}: checksum differs from {json_path.name}; the pair does not match.")
    with np.load(npz_path, allow_pickle=False) as data:
        arrays = {name: np.array(data[name]) for name in _ARRAYS}
    for name, arr in arrays.items():
        if arr.dtype.kind == "f":
            arrays[name] = np.ascontiguousarray(arr, dtype=float)
    return TemplateModel(
        first_pixel=int(meta["first_pixel"]),
        n_boss=int(meta["n_boss"]),
        oversample=int(meta["oversample"]),
        teff_range=tuple(meta["teff_range"]),
        fe_h_range=tuple(meta["fe_h_range"]),
        meta=meta,
        **arrays,
    )


def production_window_mask(wave: np.ndarray, window: Sequence[float] = PRODUCTION_WINDOW) -> np.ndarray:
    """True for wavelengths inside the production window (inclusive)."""
    wave = np.asarray(wave, dtype=float)
    return (wave >= window[0]) & (wave <= window[1])

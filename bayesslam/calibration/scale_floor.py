"""Calibrated label uncertainties: a statistical scale and a systematic floor, measured on known labels.

The Laplace and posterior widths of bayesslam assume that the emulator is the
truth up to its per-pixel variance ``s_j**2``. A trained SVR emulator is not:
its label derivatives carry spurious components fitted to the training
spectra's noise (so the spectra look more informative than they are), and
its errors are smooth in label space and coherent across pixels (so they do
not average down with SNR). On the default model's held-out mock stars the
[Fe/H] errors are 2-3 times the Laplace sigma at every SNR
(docs/calibration.md has the measurements, including what did not work).

This module describes that empirically, per label, in the label space where
it is measured. A calibrated label is the reported estimate plus two error
terms: the statistical error, ``scale`` times the one the model computed, and
a systematic error ``N(0, floor**2)`` (the emulator's error in label units),

* for a Gaussian (MAP + Laplace) sigma: ``sqrt((scale * sigma)**2 + floor**2)``
  (:func:`calibrated_sigma`);
* for posterior draws: each draw is moved away from the posterior median by
  ``scale`` and the result is convolved with ``N(0, floor**2)``
  (:func:`calibrated_quantiles`, :func:`calibrated_draws`); its standard
  deviation is ``sqrt((scale * sd)**2 + floor**2)``.

``scale`` and ``floor`` are fitted on stars with known labels (for the
default model: a held-out mock survey) so that the central 68.27% and 95%
intervals contain the true labels at their nominal rates in every bin of
statistical width (i.e. of SNR): :func:`fit_error_calibration` (Laplace) and
:func:`fit_posterior_calibration` (draws) minimize the binomial chi-square of
the observed coverage, computed from the probability integral transform
(PIT) of the true labels, over the bins and both levels. Bootstrap
resampling of the stars gives their sampling errors. A model file carries
its calibration in its metadata (``calibration``, :class:`ModelCalibration`);
catalogs report calibrated sigmas and intervals beside the raw ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy.special import ndtr

from bayesslam.calibration.intervals import (
    KINDS,
    LEVELS,
    CalibrationError,
    _check_scale_floor,
    _draws_and_truth,
    _in_central,
    _pair,
    calibrated_draws,
    calibrated_quantiles,
    calibrated_sigma,
    coverage,
    draws_pit,
    half_width,
    pit_coverage,
)

__all__ = [
    "CalibrationFit",
    "ErrorCalibration",
    "ModelCalibration",
    "fit_error_calibration",
    "fit_posterior_calibration",
]

logger = logging.getLogger(__name__)


def _groups(width: np.ndarray, n_bins: int) -> np.ndarray:
    """Membership ``(n_star, n_group)`` of ``n_bins`` equal-size bins of ``width``, plus all stars (overall)."""
    edges = np.quantile(width, np.linspace(0.0, 1.0, n_bins + 1))
    which = np.clip(np.searchsorted(edges, width, side="right") - 1, 0, n_bins - 1)
    member = (which[:, None] == np.arange(n_bins)[None, :]).astype(float)
    return np.column_stack([member, np.ones(width.size)]) if n_bins > 1 else member


def _loss(inside: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Binomial chi-square of the coverage at both levels, summed over the groups of ``weights``.

    ``inside[l]`` is ``(..., n_star)``, 1 where a star's true label lies in
    the central ``LEVELS[l]`` interval; ``weights`` is ``(n_star, n_group)``
    (star counts per group: membership, times bootstrap multiplicities).
    """
    n = weights.sum(axis=0)
    out = 0.0
    for level, hits in zip(LEVELS, inside):
        c = (hits @ weights) / n
        out = out + np.sum((c - level) ** 2 / (level * (1.0 - level) / n), axis=-1)
    return out


def _inside(pit: np.ndarray) -> list[np.ndarray]:
    return [_in_central(pit, level).astype(float) for level in LEVELS]


def _fit_one(pit_of: Callable[[np.ndarray, np.ndarray], np.ndarray], width: np.ndarray, typical_error: float,
             n_bins: int, n_bootstrap: int, rng: np.random.Generator, fit_floor: bool) -> tuple[float, float, float, float]:
    """Grid search of (scale, floor) for one label, then a local grid, then the bootstrap on that grid."""
    groups = _groups(width, n_bins)
    scales = np.geomspace(0.2, 10.0, 41)
    floors = np.concatenate([[0.0], np.geomspace(1e-3, 3.0, 30) * typical_error]) if fit_floor else np.zeros(1)
    values = _loss(_inside(pit_of(scales, floors)), groups)
    i, j = np.unravel_index(np.argmin(values), values.shape)
    fine_s = np.linspace(scales[max(i - 2, 0)], scales[min(i + 2, scales.size - 1)], 33)
    fine_f = np.linspace(0.0, floors[min(j + 2, floors.size - 1)], 33) if fit_floor else np.zeros(1)
    inside = _inside(pit_of(fine_s, fine_f))
    values = _loss(inside, groups)
    i, j = np.unravel_index(np.argmin(values), values.shape)
    scale, floor = float(fine_s[i]), float(fine_f[j])
    if n_bootstrap <= 0:
        return scale, floor, float("nan"), float("nan")
    n = width.size
    boot = np.empty((n_bootstrap, 2))
    for b in range(n_bootstrap):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        values = _loss(inside, groups * counts[:, None])
        bi, bj = np.unravel_index(np.argmin(values), values.shape)
        boot[b] = fine_s[bi], fine_f[bj]
    return scale, floor, float(np.std(boot[:, 0], ddof=1)), float(np.std(boot[:, 1], ddof=1))


@dataclass(frozen=True)
class CalibrationFit:
    """Fitted ``scale`` and ``floor`` per label with bootstrap sampling errors (NaN without bootstrap)."""

    scale: np.ndarray
    floor: np.ndarray
    scale_err: np.ndarray
    floor_err: np.ndarray


def _fit(pit_factory: Callable[[int, np.ndarray], Callable[[np.ndarray, np.ndarray], np.ndarray]],
         usable: np.ndarray, width: np.ndarray, typical: np.ndarray, n_bins: int, min_stars: int,
         n_bootstrap: int, seed: int, fit_floor: bool) -> CalibrationFit:
    if n_bins < 1:
        raise CalibrationError(f"n_bins must be >= 1, got {n_bins}")
    n_label = usable.shape[1]
    rng = np.random.default_rng(seed)
    result = np.full((4, n_label), np.nan)
    for k in range(n_label):
        ok = usable[:, k]
        if ok.sum() < max(min_stars, n_bins):
            raise CalibrationError(f"label {k}: {int(ok.sum())} usable stars, at least {max(min_stars, n_bins)} are needed")
        result[:, k] = _fit_one(pit_factory(k, ok), width[ok, k], float(typical[k]), n_bins, n_bootstrap, rng, fit_floor)
    return CalibrationFit(*result)


def fit_error_calibration(errors: np.ndarray, sigma: np.ndarray, *, n_bins: int = 4, min_stars: int = 40,
                          n_bootstrap: int = 0, seed: int = 0, fit_floor: bool = True) -> CalibrationFit:
    """Per-label ``scale`` and ``floor`` making ``sqrt((scale sigma)**2 + floor**2)`` cover as a Normal.

    The stars of each label are split into ``n_bins`` bins of equal size by
    their statistical sigma (so that low- and high-SNR stars are calibrated
    alike); the pair minimizes the binomial chi-square of the observed
    coverage of the central 68.27% and 95% intervals in all bins (a grid
    search, then a finer local grid). Coverage is robust to the heavy tails
    of real error distributions, where a Gaussian likelihood fit of the two
    numbers would chase the outliers.

    Parameters
    ----------
    errors, sigma : numpy.ndarray, ``(n_star, n_label)``
        Estimated minus true labels and their statistical sigmas (stars with
        non-finite values or sigma 0 are ignored).
    n_bins : int
        Bins of statistical sigma.
    min_stars : int
        Fewest usable stars per label.
    n_bootstrap : int
        Bootstrap resamplings of the stars for the sampling errors (0: none).
    seed : int
        Seed of the bootstrap.
    fit_floor : bool
        Fit the floor (False: scale only, floor 0).

    Returns
    -------
    CalibrationFit

    Raises
    ------
    CalibrationError
        Bad shapes or values, or fewer than ``min_stars`` usable stars for a label.
    """
    errors, sigma = _pair(errors, sigma)
    usable = np.isfinite(errors) & np.isfinite(sigma) & (sigma > 0)

    def factory(k: int, ok: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        e, s = errors[ok, k], sigma[ok, k]

        def pit_of(scales: np.ndarray, floors: np.ndarray) -> np.ndarray:
            total = np.sqrt((scales[:, None, None] * s) ** 2 + floors[None, :, None] ** 2)
            with np.errstate(divide="ignore"):
                return ndtr(-e / total)

        return pit_of

    typical = np.array([np.median(np.abs(errors[usable[:, k], k])) if usable[:, k].any() else 1.0
                        for k in range(errors.shape[1])])
    return _fit(factory, usable, sigma, typical, n_bins, min_stars, n_bootstrap, seed, fit_floor)


def fit_posterior_calibration(truth: np.ndarray, draws: np.ndarray, *, n_bins: int = 4, min_stars: int = 40,
                              n_bootstrap: int = 0, seed: int = 0, fit_floor: bool = True,
                              max_draws: int = 100) -> CalibrationFit:
    """Per-label ``scale`` and ``floor`` making calibrated posterior intervals cover at their nominal rates.

    As :func:`fit_error_calibration`, with the coverage of the central
    intervals of the calibrated posteriors (:func:`draws_pit`) and bins of
    the raw posterior standard deviation.

    Parameters
    ----------
    truth : numpy.ndarray, ``(n_star, n_label)``
    draws : numpy.ndarray, ``(n_star, n_draw, n_label)``
        Posterior draws; stars with any non-finite draw are ignored.
    max_draws : int
        Draws per star used by the fit (evenly thinned).
    n_bins, min_stars, n_bootstrap, seed, fit_floor
        As in :func:`fit_error_calibration`.

    Returns
    -------
    CalibrationFit
    """
    truth, draws = _draws_and_truth(truth, draws)
    draws = draws[:, :: max(1, draws.shape[1] // max_draws)]
    sd = np.std(draws, axis=1, ddof=1)
    usable = np.isfinite(truth) & np.all(np.isfinite(draws), axis=1) & (sd > 0)
    median = np.median(draws, axis=1)

    def factory(k: int, ok: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        t, m = truth[ok, k], median[ok, k]
        dev = draws[ok, :, k] - m[:, None]

        def pit_of(scales: np.ndarray, floors: np.ndarray) -> np.ndarray:
            out = np.empty((scales.size, floors.size, t.size))
            for i, a in enumerate(scales):
                diff = (t - m)[:, None] - a * dev  # (star, draw)
                for j, f in enumerate(floors):
                    if f > 0:
                        out[i, j] = np.mean(ndtr(diff / f), axis=-1)
                    else:
                        out[i, j] = np.mean((diff > 0) + 0.5 * (diff == 0), axis=-1)
            return out

        return pit_of

    typical = np.array([np.median(np.abs(median[usable[:, k], k] - truth[usable[:, k], k])) if usable[:, k].any()
                        else 1.0 for k in range(truth.shape[1])])
    return _fit(factory, usable, sd, typical, n_bins, min_stars, n_bootstrap, seed, fit_floor)


# ----------------------------------------------------------------------------------------------- records

def _as_label_dict(names: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, values)}


@dataclass(frozen=True)
class ErrorCalibration:
    """One kind of statistical width's measured calibration per label, and where it came from.

    Attributes
    ----------
    label_names : tuple of str
    kind : str
        ``"laplace"`` (applies to MAP Laplace sigmas) or ``"posterior"``
        (applies to posterior draws and standard deviations).
    scale : numpy.ndarray, ``(n_label,)``
        Multiplier of the statistical error.
    floor : numpy.ndarray, ``(n_label,)``
        Systematic error (standard deviation, the labels' units).
    scale_err, floor_err : numpy.ndarray, ``(n_label,)``
        Bootstrap sampling errors of ``scale`` and ``floor`` (NaN: not measured).
    n_stars : int
        Calibration stars used.
    source : str
        How the calibration stars were made (e.g. a mock survey and its seed).
    coverage_before, coverage_after : dict
        Per label, the coverage ``[68.27%, 95%]`` on the calibration stars
        of the raw and the calibrated intervals.
    """

    label_names: tuple[str, ...]
    kind: str
    scale: np.ndarray
    floor: np.ndarray
    scale_err: np.ndarray = field(default_factory=lambda: np.array([]))
    floor_err: np.ndarray = field(default_factory=lambda: np.array([]))
    n_stars: int = 0
    source: str = ""
    coverage_before: Mapping[str, Sequence[float]] = field(default_factory=dict)
    coverage_after: Mapping[str, Sequence[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.label_names)
        if self.kind not in KINDS:
            raise CalibrationError(f"calibration kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("scale", "floor", "scale_err", "floor_err"):
            value = np.asarray(getattr(self, name), dtype=float)
            if name.endswith("_err") and value.size == 0:
                value = np.full(n, np.nan)
            if value.shape != (n,):
                raise CalibrationError(f"calibration {name} has shape {value.shape}, expected ({n},) for {self.label_names}")
            object.__setattr__(self, name, value)
        _check_scale_floor(self.scale, self.floor)

    def apply(self, sigma: np.ndarray) -> np.ndarray:
        """Calibrated sigma for statistical ``sigma`` of shape ``(..., n_label)``."""
        return calibrated_sigma(sigma, self.scale, self.floor)

    def gaussian_intervals(self, estimate: np.ndarray, sigma: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated central ``level`` interval ``estimate -+ z * calibrated sigma``."""
        half = half_width(level) * self.apply(sigma)
        estimate = np.asarray(estimate, dtype=float)
        return estimate - half, estimate + half

    def quantiles(self, draws: np.ndarray, probs: Sequence[float]) -> np.ndarray:
        """Quantiles of the calibrated posteriors of ``draws`` (see :func:`calibrated_quantiles`)."""
        return calibrated_quantiles(draws, self.scale, self.floor, probs)

    def draws(self, draws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draws of the calibrated posteriors (see :func:`calibrated_draws`)."""
        return calibrated_draws(draws, self.scale, self.floor, rng)

    @classmethod
    def measure(cls, label_names: Sequence[str], estimates: np.ndarray, truth: np.ndarray, sigma: np.ndarray,
                source: str = "", n_bins: int = 4, n_bootstrap: int = 200, seed: int = 0) -> "ErrorCalibration":
        """Fit a ``"laplace"`` calibration from estimated labels, true labels and statistical sigmas.

        Stars with non-finite estimates (e.g. failed fits set to NaN) are ignored.
        """
        errors = np.asarray(estimates, dtype=float) - np.asarray(truth, dtype=float)
        fit = fit_error_calibration(errors, sigma, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
        names = tuple(label_names)
        total = calibrated_sigma(sigma, fit.scale, fit.floor)
        before = {n: [float(coverage(errors, sigma, lv)[k]) for lv in LEVELS] for k, n in enumerate(names)}
        after = {n: [float(coverage(errors, total, lv)[k]) for lv in LEVELS] for k, n in enumerate(names)}
        out = cls(names, "laplace", fit.scale, fit.floor, fit.scale_err, fit.floor_err,
                  int(np.sum(np.all(np.isfinite(errors), axis=1))), source, before, after)
        out._log()
        return out

    @classmethod
    def measure_posterior(cls, label_names: Sequence[str], draws: np.ndarray, truth: np.ndarray, source: str = "",
                          n_bins: int = 4, n_bootstrap: int = 100, seed: int = 0) -> "ErrorCalibration":
        """Fit a ``"posterior"`` calibration from posterior draws ``(n_star, n_draw, n_label)`` and true labels."""
        fit = fit_posterior_calibration(truth, draws, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
        names = tuple(label_names)
        raw = draws_pit(truth, draws)
        cal = draws_pit(truth, draws, fit.scale, fit.floor)
        before = {n: [float(pit_coverage(raw, lv)[k]) for lv in LEVELS] for k, n in enumerate(names)}
        after = {n: [float(pit_coverage(cal, lv)[k]) for lv in LEVELS] for k, n in enumerate(names)}
        n_stars = int(np.sum(np.all(np.isfinite(np.asarray(draws, dtype=float)), axis=(1, 2))))
        out = cls(names, "posterior", fit.scale, fit.floor, fit.scale_err, fit.floor_err, n_stars, source,
                  before, after)
        out._log()
        return out

    def _log(self) -> None:
        logger.info("%s calibration: scale %s +- %s, floor %s +- %s; 68%%/95%% coverage %s -> %s", self.kind,
                    np.round(self.scale, 3), np.round(self.scale_err, 3), np.round(self.floor, 4),
                    np.round(self.floor_err, 4), dict(self.coverage_before), dict(self.coverage_after))

    def to_metadata(self) -> dict[str, Any]:
        """JSON-serializable record (NaN sampling errors become ``None``)."""
        names = self.label_names

        def errs(values: np.ndarray) -> dict[str, float | None]:
            return {n: (float(v) if np.isfinite(v) else None) for n, v in zip(names, values)}

        return {
            "kind": self.kind,
            "scale": _as_label_dict(names, self.scale),
            "floor": _as_label_dict(names, self.floor),
            "scale_err": errs(self.scale_err),
            "floor_err": errs(self.floor_err),
            "n_stars": int(self.n_stars),
            "source": self.source,
            "levels": list(LEVELS),
            "coverage_before": {n: list(map(float, v)) for n, v in self.coverage_before.items()},
            "coverage_after": {n: list(map(float, v)) for n, v in self.coverage_after.items()},
        }

    @classmethod
    def from_metadata(cls, record: Mapping[str, Any], label_names: Sequence[str]) -> "ErrorCalibration":
        """Read :meth:`to_metadata`'s record for a model with these labels.

        Raises
        ------
        CalibrationError
            When the record is not a mapping, lacks a label of the model, or
            holds an unusable value.
        """
        if not isinstance(record, Mapping):
            raise CalibrationError(f"calibration record must be a JSON object, got {type(record).__name__}")
        names = tuple(label_names)
        values: dict[str, np.ndarray] = {}
        for key in ("scale", "floor", "scale_err", "floor_err"):
            entry = record.get(key, {} if key.endswith("_err") else None)
            if not isinstance(entry, Mapping):
                raise CalibrationError(f"calibration record has no {key} mapping")
            if key.endswith("_err"):
                values[key] = np.array([np.nan if entry.get(n) is None else _number(entry[n], key) for n in names])
                continue
            missing = [n for n in names if n not in entry]
            if missing:
                raise CalibrationError(f"calibration record has no {key} for {missing}")
            values[key] = np.array([_number(entry[n], key) for n in names])
        try:
            n_stars = int(record.get("n_stars", 0))
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"calibration n_stars is not an integer: {record.get('n_stars')!r}") from exc
        return cls(names, str(record.get("kind", "")), values["scale"], values["floor"], values["scale_err"],
                   values["floor_err"], n_stars, str(record.get("source", "")),
                   dict(record.get("coverage_before", {})), dict(record.get("coverage_after", {})))


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalibrationError(f"calibration {key} value {value!r} is not a number")
    return float(value)


@dataclass(frozen=True)
class ModelCalibration:
    """A model's error calibrations: one for Laplace sigmas, one for posteriors (either may be missing)."""

    laplace: ErrorCalibration | None = None
    posterior: ErrorCalibration | None = None

    def __post_init__(self) -> None:
        for kind in KINDS:
            value = getattr(self, kind)
            if value is not None and value.kind != kind:
                raise CalibrationError(f"the {kind} calibration has kind {value.kind!r}")
        if self.laplace is not None and self.posterior is not None:
            if self.laplace.label_names != self.posterior.label_names:
                raise CalibrationError("the laplace and posterior calibrations have different labels")

    @property
    def label_names(self) -> tuple[str, ...]:
        """Labels of the calibrations (empty when there are none)."""
        first = self.laplace or self.posterior
        return () if first is None else first.label_names

    def to_metadata(self) -> dict[str, Any]:
        """JSON-serializable record for a model file's metadata (``calibration``)."""
        return {kind: getattr(self, kind).to_metadata() for kind in KINDS if getattr(self, kind) is not None}

    @classmethod
    def from_metadata(cls, record: Mapping[str, Any], label_names: Sequence[str]) -> "ModelCalibration":
        """Read :meth:`to_metadata`'s record.

        Raises
        ------
        CalibrationError
            When the record is not a mapping, has unknown kinds or an unusable entry.
        """
        if not isinstance(record, Mapping):
            raise CalibrationError(f"calibration record must be a JSON object, got {type(record).__name__}")
        unknown = set(record) - set(KINDS)
        if unknown:
            raise CalibrationError(f"calibration record has unknown kinds {sorted(unknown)}; known: {KINDS}")
        parts = {kind: ErrorCalibration.from_metadata(record[kind], label_names) for kind in KINDS if kind in record}
        for kind, part in parts.items():
            if part.kind != kind:
                raise CalibrationError(f"calibration record {kind!r} says kind {part.kind!r}")
        return cls(**parts)

"""Coverage curves: the observed coverage of central intervals at every nominal level, with binomial bands.

A label's uncertainties are calibrated when its central ``p`` intervals
contain the true label in a fraction ``p`` of the stars, at every ``p``.
The coverage curve shows the observed fraction against ``p`` (by default
0.01, 0.02 ... 0.99): on the diagonal for calibrated intervals, below it
for over-confident ones (intervals too narrow), above for under-confident
ones. The band is the central binomial interval of the observed fraction
that calibrated intervals give with the same number of stars (pointwise: the
levels of one curve are strongly correlated, so a curve that wanders just
outside the band at a few neighbouring levels is one excursion, not many).

Everything goes through the probability integral transform (PIT) of the
true labels, computed with :mod:`~bayesslam.calibration.intervals` (Gaussian
sigmas: :func:`~bayesslam.calibration.intervals.gaussian_pit`; calibrated
draws: :func:`~bayesslam.calibration.intervals.draws_pit`) or, for raw
posterior draws, as a randomized rank (:func:`~bayesslam.calibration.sbc.rank_pit`,
exactly uniform for calibrated draws however few there are). A true label
lies in the central ``p`` interval when ``|PIT - 0.5| <= p / 2``
(:func:`~bayesslam.calibration.intervals.pit_coverage`).
:func:`binned_coverage_curves` splits the stars by another quantity (the
SNR, or each label's own true value: its quartiles) and gives one curve per bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats

from bayesslam.calibration.intervals import (
    CalibrationError,
    calibrated_sigma,
    draws_pit,
    gaussian_pit,
    pit_coverage,
)
from bayesslam.calibration.sbc import rank_pit, sbc_ranks

__all__ = [
    "COVERAGE_LEVELS",
    "BinnedCoverage",
    "CoverageCurve",
    "binned_coverage_curves",
    "binned_pit_coverage_curves",
    "coverage_curve",
    "pit_coverage_curve",
    "truth_pit",
]

#: Nominal levels of a coverage curve: 0.01, 0.02 ... 0.99.
COVERAGE_LEVELS: np.ndarray = np.round(np.arange(1, 100) / 100.0, 2)


@dataclass(frozen=True)
class CoverageCurve:
    """Observed against nominal coverage of central intervals, per label.

    Attributes
    ----------
    levels : numpy.ndarray, ``(n_level,)``
        Nominal probabilities of the central intervals.
    observed : numpy.ndarray, ``(n_level, n_label)``
        Fraction of stars whose true label lies inside (NaN: no star).
    n : numpy.ndarray, ``(n_label,)``
        Stars with a finite PIT.
    lower, upper : numpy.ndarray, ``(n_level, n_label)``
        Central ``band`` binomial interval of the observed fraction for
        calibrated intervals (pointwise).
    band : float
    label_names : tuple of str
    """

    levels: np.ndarray
    observed: np.ndarray
    n: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    band: float
    label_names: tuple[str, ...]

    @property
    def deviation(self) -> np.ndarray:
        """``observed - levels``, ``(n_level, n_label)``: negative where intervals are too narrow."""
        return self.observed - self.levels[:, None]

    @property
    def max_abs_deviation(self) -> np.ndarray:
        """Largest ``|observed - nominal|`` over the levels, per label."""
        return np.fmax.reduce(np.abs(self.deviation), axis=0)

    @property
    def mean_deviation(self) -> np.ndarray:
        """Mean of ``observed - nominal`` over the levels, per label (negative: over-confident)."""
        deviation = self.deviation
        count = np.sum(np.isfinite(deviation), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, np.nansum(deviation, axis=0) / count, np.nan)

    @property
    def fraction_outside(self) -> np.ndarray:
        """Fraction of the levels at which the observed coverage lies outside the band, per label."""
        outside = (self.observed < self.lower) | (self.observed > self.upper)
        return np.where(self.n > 0, np.mean(outside, axis=0), np.nan)

    def at(self, level: float) -> np.ndarray:
        """Observed coverage at the nominal ``level`` (one of :attr:`levels`), per label."""
        index = np.flatnonzero(np.isclose(self.levels, level))
        if index.size == 0:
            raise CalibrationError(f"level {level} is not one of this curve's levels")
        return self.observed[index[0]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: levels, band, and per label ``n``, the observed curve, its band and summary numbers."""
        per_label = {}
        for k, name in enumerate(self.label_names):
            per_label[name] = {
                "n": int(self.n[k]),
                "observed": _floats(self.observed[:, k]),
                "lower": _floats(self.lower[:, k]),
                "upper": _floats(self.upper[:, k]),
                "max_abs_deviation": _float(self.max_abs_deviation[k]),
                "mean_deviation": _float(self.mean_deviation[k]),
                "fraction_outside": _float(self.fraction_outside[k]),
            }
        return {"levels": _floats(self.levels), "band": float(self.band), "labels": per_label}


def _float(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _floats(values: np.ndarray) -> list[float | None]:
    return [_float(v) for v in np.asarray(values, dtype=float).ravel()]


def _levels(levels: Sequence[float] | np.ndarray | None) -> np.ndarray:
    levels = COVERAGE_LEVELS if levels is None else np.atleast_1d(np.asarray(levels, dtype=float))
    if levels.ndim != 1 or levels.size == 0 or not np.all((levels > 0) & (levels < 1)):
        raise CalibrationError(f"coverage levels must be probabilities strictly inside (0, 1), got {levels}")
    return levels


def _names(label_names: Sequence[str] | None, n_label: int) -> tuple[str, ...]:
    if label_names is None:
        return tuple(f"label{k}" for k in range(n_label))
    if len(label_names) != n_label:
        raise CalibrationError(f"{len(label_names)} label names for {n_label} labels")
    return tuple(label_names)


def pit_coverage_curve(pit: np.ndarray, *, levels: Sequence[float] | None = None, band: float = 0.95,
                       label_names: Sequence[str] | None = None) -> CoverageCurve:
    """The coverage curve of PIT values of true labels.

    Parameters
    ----------
    pit : numpy.ndarray, ``(n_star, n_label)``
        PIT of each true label under its star's posterior (NaN: star left
        out for that label, e.g. outside a bin).
    levels : sequence of float, optional
        Nominal levels in (0, 1); default :data:`COVERAGE_LEVELS`.
    band : float
        Probability of the binomial band.
    label_names : sequence of str, optional

    Returns
    -------
    CoverageCurve
    """
    pit = np.asarray(pit, dtype=float)
    if pit.ndim == 1:
        pit = pit[:, None]
    if pit.ndim != 2:
        raise CalibrationError(f"pit must be (n_star, n_label), got shape {pit.shape}")
    finite = pit[np.isfinite(pit)]
    if np.any((finite < 0) | (finite > 1)):
        raise CalibrationError("PIT values must lie in [0, 1]")
    levels = _levels(levels)
    if not 0.0 < band < 1.0:
        raise CalibrationError(f"band must be a probability in (0, 1), got {band}")
    observed = np.stack([pit_coverage(pit, level) for level in levels])
    n = np.sum(np.isfinite(pit), axis=0)
    lower, upper = stats.binom.interval(band, n[None, :], levels[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        lower, upper = lower / n, upper / n
    return CoverageCurve(levels, observed, n, lower, upper, float(band), _names(label_names, pit.shape[1]))


def _require_finite(name: str, value: np.ndarray) -> None:
    bad = ~np.isfinite(value)
    if np.any(bad):
        stars = np.flatnonzero(np.any(bad.reshape(bad.shape[0], -1), axis=1))
        raise CalibrationError(
            f"{name} has NaN or inf for {stars.size} star(s) (first: {stars[:5].tolist()}); drop the stars "
            "whose fit failed (e.g. MapResult.status != FitStatus.CONVERGED) before measuring coverage")


def truth_pit(truth: np.ndarray, *, draws: np.ndarray | None = None, estimate: np.ndarray | None = None,
              sigma: np.ndarray | None = None, scale: np.ndarray | float | None = None,
              floor: np.ndarray | float | None = None,
              rng: np.random.Generator | int | None = None) -> np.ndarray:
    """PIT of true labels under posterior draws, or under Gaussians ``N(estimate, sigma**2)``.

    Give either ``draws`` or ``estimate`` and ``sigma``. Raw draws give the
    randomized rank PIT (:func:`~bayesslam.calibration.sbc.rank_pit`); with
    ``scale``/``floor`` the draws are calibrated first and the PIT is exact
    (:func:`~bayesslam.calibration.intervals.draws_pit`). With Gaussians,
    ``scale`` and ``floor`` give the calibrated sigma
    ``sqrt((scale sigma)**2 + floor**2)``.

    Parameters
    ----------
    truth : numpy.ndarray, ``(n_star, n_label)``
    draws : numpy.ndarray, ``(n_star, n_draw, n_label)``, optional
    estimate, sigma : numpy.ndarray, ``(n_star, n_label)``, optional
    scale, floor : array_like, optional
        Per-label calibration (default none).
    rng : numpy.random.Generator or int, optional
        Randomization of the rank PIT (default seed 0).

    Returns
    -------
    numpy.ndarray, ``(n_star, n_label)``

    Raises
    ------
    CalibrationError
        On neither or both kinds of input, shapes that do not match,
        NaN or inf anywhere, or negative sigmas.
    """
    truth = np.atleast_2d(np.asarray(truth, dtype=float))
    gaussian = estimate is not None or sigma is not None
    if (draws is None) == (not gaussian) or (gaussian and (estimate is None or sigma is None)):
        raise CalibrationError("give either draws, or both estimate and sigma")
    _require_finite("truth", truth)
    if draws is not None:
        draws = np.asarray(draws, dtype=float)
        if draws.ndim != 3 or draws.shape[0] != truth.shape[0] or draws.shape[2] != truth.shape[1]:
            raise CalibrationError(
                f"draws {draws.shape} must be (n_star, n_draw, n_label) for truth {truth.shape} (n_star, n_label)")
        _require_finite("draws", draws)
        if scale is None and floor is None:
            return rank_pit(sbc_ranks(truth, draws, rng=rng), draws.shape[1], rng)
        return draws_pit(truth, draws, scale, floor)
    estimate = np.atleast_2d(np.asarray(estimate, dtype=float))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=float))
    if estimate.shape != truth.shape or sigma.shape != truth.shape:
        raise CalibrationError(f"estimate {estimate.shape} and sigma {sigma.shape} must have the shape of truth "
                               f"{truth.shape} (n_star, n_label)")
    _require_finite("estimate", estimate)
    _require_finite("sigma", sigma)
    if scale is not None or floor is not None:
        sigma = calibrated_sigma(sigma, scale, floor)
    return gaussian_pit(estimate - truth, sigma)


def coverage_curve(truth: np.ndarray, *, draws: np.ndarray | None = None, estimate: np.ndarray | None = None,
                   sigma: np.ndarray | None = None, scale: np.ndarray | float | None = None,
                   floor: np.ndarray | float | None = None, levels: Sequence[float] | None = None,
                   band: float = 0.95, label_names: Sequence[str] | None = None,
                   rng: np.random.Generator | int | None = None) -> CoverageCurve:
    """The coverage curve of posterior draws or Gaussian sigmas on stars with known labels.

    Parameters as :func:`truth_pit` and :func:`pit_coverage_curve`.

    Returns
    -------
    CoverageCurve

    Examples
    --------
    >>> import numpy as np
    >>> from bayesslam.calibration import coverage_curve
    >>> rng = np.random.default_rng(1)
    >>> truth, sigma = np.zeros((2000, 1)), np.full((2000, 1), 0.1)
    >>> curve = coverage_curve(truth, estimate=rng.normal(0.0, 0.1, (2000, 1)), sigma=sigma)
    >>> bool(abs(curve.at(0.68)[0] - 0.68) < 0.04)
    True
    """
    pit = truth_pit(truth, draws=draws, estimate=estimate, sigma=sigma, scale=scale, floor=floor, rng=rng)
    return pit_coverage_curve(pit, levels=levels, band=band, label_names=label_names)


@dataclass(frozen=True)
class BinnedCoverage:
    """Coverage curves of the stars in bins of another quantity.

    Attributes
    ----------
    name : str
        The quantity (``"snr"``, ``"truth"`` ...).
    edges : numpy.ndarray, ``(n_bin + 1,)`` or ``(n_label, n_bin + 1)``
        Bin edges: shared by every label, or each label's own (when each
        label is binned by its own column, e.g. its true value).
    curves : tuple of CoverageCurve
        One per bin (a label's stars outside the bin are left out).
    """

    name: str
    edges: np.ndarray
    curves: tuple[CoverageCurve, ...]

    def bin_label(self, b: int, k: int = 0) -> str:
        """``"lo-hi"`` of bin ``b`` (for label ``k`` when each label has its own edges)."""
        edges = self.edges if self.edges.ndim == 1 else self.edges[k]
        return f"{edges[b]:.4g}-{edges[b + 1]:.4g}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the quantity, the edges and each bin's :meth:`CoverageCurve.to_dict`."""
        return {"name": self.name, "edges": np.asarray(self.edges, dtype=float).tolist(),
                "bins": [curve.to_dict() for curve in self.curves]}


def _edges(values: np.ndarray, bins: int | Sequence[float]) -> np.ndarray:
    if np.ndim(bins) == 0:
        n_bins = int(bins)
        if n_bins < 1:
            raise CalibrationError(f"bins must be >= 1, got {bins}")
        return np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1))
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise CalibrationError(f"bin edges must be increasing, at least two, got {edges}")
    return edges


def _in_bin(values: np.ndarray, edges: np.ndarray, b: int) -> np.ndarray:
    """``edges[b] <= v < edges[b + 1]``, the last bin closed on the right."""
    last = b == edges.size - 2
    return (values >= edges[b]) & ((values <= edges[b + 1]) if last else (values < edges[b + 1]))


def binned_pit_coverage_curves(pit: np.ndarray, by: np.ndarray, *, bins: int | Sequence[float] = 4,
                               name: str = "", levels: Sequence[float] | None = None, band: float = 0.95,
                               label_names: Sequence[str] | None = None) -> BinnedCoverage:
    """Coverage curves of PIT values in bins of ``by``; see :func:`binned_coverage_curves`."""
    pit = np.asarray(pit, dtype=float)
    if pit.ndim == 1:
        pit = pit[:, None]
    by = np.asarray(by, dtype=float)
    if by.shape not in ((pit.shape[0],), pit.shape):
        raise CalibrationError(f"by has shape {by.shape}; give one value per star {(pit.shape[0],)} or per star "
                               f"and label {pit.shape}")
    if not np.all(np.isfinite(by)):
        raise CalibrationError(f"by ({name or 'the binning quantity'}) has NaN or inf values")
    columns = by[:, None] if by.ndim == 1 else by
    edges = np.stack([_edges(columns[:, k], bins) for k in range(columns.shape[1])])
    curves = []
    for b in range(edges.shape[1] - 1):
        inside = np.stack([_in_bin(columns[:, k], edges[k], b) for k in range(columns.shape[1])], axis=1)
        binned = np.where(np.broadcast_to(inside, pit.shape), pit, np.nan)
        curves.append(pit_coverage_curve(binned, levels=levels, band=band, label_names=label_names))
    return BinnedCoverage(name, edges[0] if by.ndim == 1 else edges, tuple(curves))


def binned_coverage_curves(truth: np.ndarray, by: np.ndarray, *, bins: int | Sequence[float] = 4,
                           name: str = "", draws: np.ndarray | None = None, estimate: np.ndarray | None = None,
                           sigma: np.ndarray | None = None, scale: np.ndarray | float | None = None,
                           floor: np.ndarray | float | None = None, levels: Sequence[float] | None = None,
                           band: float = 0.95, label_names: Sequence[str] | None = None,
                           rng: np.random.Generator | int | None = None) -> BinnedCoverage:
    """Coverage curves of the stars in bins of ``by`` (e.g. SNR bins, or each label's quartiles).

    Parameters
    ----------
    truth : numpy.ndarray, ``(n_star, n_label)``
    by : numpy.ndarray, ``(n_star,)`` or ``(n_star, n_label)``
        The quantity the stars are binned by: one value per star (the same
        bins for every label, e.g. the SNR), or one per star and label (each
        label binned by its own column, e.g. ``by=truth`` for the quartiles
        of each label's true value).
    bins : int or sequence of float
        Equal-number bins (quantiles of ``by``; per label for a 2-d ``by``), or edges.
    name : str
        What ``by`` is, for plots and records.
    draws, estimate, sigma, scale, floor, levels, band, label_names, rng
        As :func:`coverage_curve`.

    Returns
    -------
    BinnedCoverage

    Raises
    ------
    CalibrationError
        Also when ``by`` does not have a value for every star or holds NaN.
    """
    pit = truth_pit(truth, draws=draws, estimate=estimate, sigma=sigma, scale=scale, floor=floor, rng=rng)
    return binned_pit_coverage_curves(pit, by, bins=bins, name=name, levels=levels, band=band,
                                      label_names=label_names)

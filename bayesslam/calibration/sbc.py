"""Simulation-based calibration (SBC): rank statistics of true labels among posterior draws, and their uniformity.

Talts et al. (2018, arXiv:1804.06788): draw labels from the prior, simulate
data from them, sample the posterior of each simulated data set and count
how many of ``L`` posterior draws fall below the true label. If the
inference is exact (the likelihood and prior it uses are the ones the data
came from, and the sampler samples them), each label's rank is uniform over
``0 .. L``, whatever the prior, the data and the label. Posteriors that are
too narrow pile the ranks at both ends (a U-shaped histogram), too wide in
the middle, biased to one side.

Pure functions on numpy arrays (:mod:`bayesslam.validation.sbc` runs the
samplers): :func:`thin_draws` (evenly spaced draws, which cuts their
autocorrelation, as Talts et al. recommend), :func:`sbc_ranks`,
:func:`rank_pit` (ranks as randomized probability integral transforms,
exactly uniform on (0, 1) under calibration), :func:`rank_uniformity`
(chi-square over rank bins and Kolmogorov-Smirnov tests, with p-values),
:func:`rank_histogram` (counts per bin with the binomial band expected under
uniformity) and :func:`ecdf_difference` (the ECDF of the PIT minus the
uniform CDF; the simultaneous confidence bands of Säilynoja et al. 2022 are
ArviZ's, drawn by :mod:`bayesslam.validation.plotting`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats

from bayesslam.calibration.intervals import CalibrationError

__all__ = [
    "RankHistogram",
    "RankUniformity",
    "default_rank_bins",
    "ecdf_difference",
    "rank_histogram",
    "rank_pit",
    "rank_uniformity",
    "sbc_ranks",
    "thin_draws",
]


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A generator from a generator, a seed, or ``None`` (seed 0: results are reproducible by default)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)


def thin_draws(draws: np.ndarray, n_keep: int) -> np.ndarray:
    """Keep ``n_keep`` evenly spaced draws of each simulation (a constant stride: thinning).

    Parameters
    ----------
    draws : numpy.ndarray, ``(n_sim, n_draw, n_label)``
        Posterior draws in sampling order (chains one after the other).
    n_keep : int
        Draws to keep, at most ``n_draw``.

    Returns
    -------
    numpy.ndarray, ``(n_sim, n_keep, n_label)``
        Every ``n_draw // n_keep``-th draw, from the first.
    """
    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 3:
        raise CalibrationError(f"draws must be (n_sim, n_draw, n_label), got shape {draws.shape}")
    n_keep = int(n_keep)
    if not 1 <= n_keep <= draws.shape[1]:
        raise CalibrationError(f"cannot keep {n_keep} of {draws.shape[1]} draws; sample at least {n_keep} draws "
                               "or rank among fewer")
    stride = draws.shape[1] // n_keep
    return draws[:, ::stride][:, :n_keep]


def sbc_ranks(truth: np.ndarray, draws: np.ndarray, *, n_draws: int | None = None,
              rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Rank of each true label among its posterior draws: the number of draws below it.

    Parameters
    ----------
    truth : numpy.ndarray, ``(n_sim, n_label)``
        The labels the data were simulated from (finite).
    draws : numpy.ndarray, ``(n_sim, n_draw, n_label)``
        Posterior draws of each simulation.
    n_draws : int, optional
        Thin the draws to this many first (:func:`thin_draws`); default all.
    rng : numpy.random.Generator or int, optional
        Breaks ties between the truth and draws at random (default seed 0).

    Returns
    -------
    numpy.ndarray, ``(n_sim, n_label)``, float
        Ranks in ``0 .. L`` (``L`` the number of draws); NaN for a
        simulation whose draws of that label are not all finite (a failed fit).

    Raises
    ------
    CalibrationError
        On shapes that do not match, or non-finite true labels.
    """
    truth = np.atleast_2d(np.asarray(truth, dtype=float))
    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 3 or draws.shape[0] != truth.shape[0] or draws.shape[2] != truth.shape[1]:
        raise CalibrationError(
            f"draws {draws.shape} must be (n_sim, n_draw, n_label) for truth {truth.shape} (n_sim, n_label)")
    if not np.all(np.isfinite(truth)):
        raise CalibrationError(f"{int(np.sum(~np.isfinite(truth)))} true labels are NaN or inf; SBC needs every "
                               "true label")
    if n_draws is not None:
        draws = thin_draws(draws, n_draws)
    below = np.sum(draws < truth[:, None, :], axis=1)
    ties = np.sum(draws == truth[:, None, :], axis=1)
    ranks = (below + np.floor(_rng(rng).uniform(size=below.shape) * (ties + 1))).astype(float)
    ranks[~np.all(np.isfinite(draws), axis=1)] = np.nan
    return ranks


def _check_ranks(ranks: np.ndarray, n_draws: int) -> np.ndarray:
    ranks = np.asarray(ranks, dtype=float)
    if ranks.ndim == 1:
        ranks = ranks[:, None]
    if ranks.ndim != 2:
        raise CalibrationError(f"ranks must be (n_sim, n_label), got shape {ranks.shape}")
    if int(n_draws) < 1:
        raise CalibrationError(f"n_draws must be >= 1, got {n_draws}")
    finite = ranks[np.isfinite(ranks)]
    if np.any((finite < 0) | (finite > n_draws) | (finite != np.round(finite))):
        raise CalibrationError(f"ranks must be integers in 0..{n_draws} (NaN: missing); are they ranks among "
                               f"{n_draws} draws?")
    return ranks


def rank_pit(ranks: np.ndarray, n_draws: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Ranks as randomized probability integral transforms ``(rank + U) / (L + 1)``, ``U ~ Uniform(0, 1)``.

    A rank uniform over ``0 .. L`` gives a value exactly uniform on (0, 1),
    so continuous tests (Kolmogorov-Smirnov), ECDF bands and coverage curves
    apply without corrections for ties. NaN ranks stay NaN.
    """
    ranks = _check_ranks(ranks, n_draws)
    jitter = _rng(rng).uniform(size=ranks.shape)
    return (ranks + jitter) / (int(n_draws) + 1)


def default_rank_bins(n_sim: int, n_draws: int) -> int:
    """Bins of a rank histogram: about 10 expected simulations a bin, 2 to 20 bins, at most ``L + 1``.

    Where a divisor of ``L + 1`` is at least half that number, the largest
    such divisor, so that every bin holds as many rank values.
    """
    target = int(max(2, min(20, n_sim // 10, n_draws + 1)))
    divisors = [b for b in range(2, target + 1) if (n_draws + 1) % b == 0 and 2 * b >= target]
    return divisors[-1] if divisors else target


def _bin_of(n_draws: int, n_bins: int) -> np.ndarray:
    """Bin index of every rank value ``0 .. L`` (``floor(r * B / (L + 1))``: equal widths up to one rank)."""
    return (np.arange(n_draws + 1) * n_bins) // (n_draws + 1)


@dataclass(frozen=True)
class RankHistogram:
    """Counts of ranks per bin, and what uniform ranks give.

    Attributes
    ----------
    edges : numpy.ndarray, ``(n_bin + 1,)``
        Bin edges in rank units (bin ``b`` holds the ranks ``edges[b] <= r < edges[b + 1]``).
    counts : numpy.ndarray, ``(n_bin, n_label)``
    expected : numpy.ndarray, ``(n_bin, n_label)``
        Mean count under uniform ranks.
    lower, upper : numpy.ndarray, ``(n_bin, n_label)``
        Central ``prob`` binomial interval of each count under uniform ranks (pointwise).
    prob : float
    """

    edges: np.ndarray
    counts: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    prob: float


def rank_histogram(ranks: np.ndarray, n_draws: int, n_bins: int | None = None, prob: float = 0.99) -> RankHistogram:
    """Histogram of ranks with the binomial band of uniform ranks (Talts et al.'s gray band).

    Parameters
    ----------
    ranks : numpy.ndarray, ``(n_sim, n_label)``
        From :func:`sbc_ranks` (NaN: left out).
    n_draws : int
        ``L``, the draws each rank is among (ranks are ``0 .. L``).
    n_bins : int, optional
        Default :func:`default_rank_bins`.
    prob : float
        Probability of the band.
    """
    ranks = _check_ranks(ranks, n_draws)
    if not 0.0 < prob < 1.0:
        raise CalibrationError(f"prob must lie in (0, 1), got {prob}")
    n_bins = default_rank_bins(int(np.sum(np.isfinite(ranks[:, 0]))), n_draws) if n_bins is None else int(n_bins)
    if not 1 <= n_bins <= n_draws + 1:
        raise CalibrationError(f"n_bins must lie in 1..{n_draws + 1} (one rank a bin at most), got {n_bins}")
    bin_of = _bin_of(n_draws, n_bins)
    share = np.bincount(bin_of, minlength=n_bins) / (n_draws + 1)
    n = np.sum(np.isfinite(ranks), axis=0)
    counts = np.zeros((n_bins, ranks.shape[1]))
    for k in range(ranks.shape[1]):
        finite = ranks[np.isfinite(ranks[:, k]), k].astype(int)
        counts[:, k] = np.bincount(bin_of[finite], minlength=n_bins)
    lower, upper = stats.binom.interval(prob, n[None, :], share[:, None])
    edges = np.concatenate([[0], np.flatnonzero(np.diff(bin_of)) + 1, [n_draws + 1]]).astype(float)
    return RankHistogram(edges, counts, share[:, None] * n[None, :], lower, upper, float(prob))


@dataclass(frozen=True)
class RankUniformity:
    """Tests of uniform ranks, per label.

    Attributes
    ----------
    n_draws : int
        ``L`` (ranks are ``0 .. L``).
    n_bins : int
        Bins of the chi-square test.
    n : numpy.ndarray, ``(n_label,)``
        Simulations with a finite rank.
    chi2, chi2_pvalue : numpy.ndarray, ``(n_label,)``
        Pearson's chi-square of the rank histogram against uniform ranks
        (``n_bins - 1`` degrees of freedom) and its p-value.
    ks, ks_pvalue : numpy.ndarray, ``(n_label,)``
        Kolmogorov-Smirnov distance of the randomized PIT (:func:`rank_pit`)
        from Uniform(0, 1) and its p-value.
    label_names : tuple of str
    """

    n_draws: int
    n_bins: int
    n: np.ndarray
    chi2: np.ndarray
    chi2_pvalue: np.ndarray
    ks: np.ndarray
    ks_pvalue: np.ndarray
    label_names: tuple[str, ...] = ()

    @property
    def min_pvalue(self) -> np.ndarray:
        """The smaller of the two p-values, per label."""
        return np.minimum(self.chi2_pvalue, self.ks_pvalue)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the settings, and per label ``n``, ``chi2``, ``chi2_pvalue``, ``ks``, ``ks_pvalue``."""
        names = self.label_names or tuple(f"label{k}" for k in range(len(self.n)))
        per_label = {name: {"n": int(self.n[k]), "chi2": float(self.chi2[k]), "chi2_pvalue": float(self.chi2_pvalue[k]),
                            "ks": float(self.ks[k]), "ks_pvalue": float(self.ks_pvalue[k])}
                     for k, name in enumerate(names)}
        return {"n_draws": int(self.n_draws), "n_bins": int(self.n_bins), "labels": per_label}


def rank_uniformity(ranks: np.ndarray, n_draws: int, *, n_bins: int | None = None,
                    rng: np.random.Generator | int | None = None,
                    label_names: Sequence[str] = ()) -> RankUniformity:
    """Chi-square and Kolmogorov-Smirnov tests of uniform ranks, per label.

    Parameters
    ----------
    ranks : numpy.ndarray, ``(n_sim, n_label)``
        From :func:`sbc_ranks` (NaN: left out).
    n_draws : int
        ``L`` (ranks are ``0 .. L``).
    n_bins : int, optional
        Bins of the chi-square test (default :func:`default_rank_bins`: about
        10 expected per bin). Bins hold equal numbers of rank values up to
        one; the expected counts are exact for unequal ones.
    rng : numpy.random.Generator or int, optional
        The randomization of :func:`rank_pit` for the KS test (default seed 0).
    label_names : sequence of str
        Kept for :meth:`RankUniformity.to_dict`.

    Returns
    -------
    RankUniformity

    Raises
    ------
    CalibrationError
        On ranks outside ``0 .. L``, or a label with fewer than 2 finite ranks.
    """
    ranks = _check_ranks(ranks, n_draws)
    n = np.sum(np.isfinite(ranks), axis=0)
    if np.any(n < 2):
        raise CalibrationError(f"each label needs at least 2 finite ranks, got {n.tolist()}")
    hist = rank_histogram(ranks, n_draws, n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.sum((hist.counts - hist.expected) ** 2 / hist.expected, axis=0)
    dof = hist.counts.shape[0] - 1
    chi2_p = stats.chi2.sf(chi2, dof) if dof > 0 else np.ones_like(chi2)
    pit = rank_pit(ranks, n_draws, rng)
    ks, ks_p = np.empty(ranks.shape[1]), np.empty(ranks.shape[1])
    for k in range(ranks.shape[1]):
        test = stats.kstest(pit[np.isfinite(pit[:, k]), k], "uniform")
        ks[k], ks_p[k] = test.statistic, test.pvalue
    if label_names and len(label_names) != ranks.shape[1]:
        raise CalibrationError(f"{len(label_names)} label names for {ranks.shape[1]} labels")
    return RankUniformity(int(n_draws), int(hist.counts.shape[0]), n, chi2, chi2_p, ks, ks_p, tuple(label_names))


def ecdf_difference(pit: np.ndarray, eval_points: np.ndarray | int = 99) -> tuple[np.ndarray, np.ndarray]:
    """ECDF of PIT values minus the uniform CDF, at ``eval_points``, per label.

    Parameters
    ----------
    pit : numpy.ndarray, ``(n_sim, n_label)``
        E.g. :func:`rank_pit` (NaN: left out).
    eval_points : numpy.ndarray or int
        Points in (0, 1), or how many evenly spaced ones (default 99: 0.01 ... 0.99).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The points ``(n_point,)`` and ``ECDF(z) - z``, ``(n_point, n_label)``.
    """
    pit = np.asarray(pit, dtype=float)
    if pit.ndim == 1:
        pit = pit[:, None]
    z = (np.arange(1, int(eval_points) + 1) / (int(eval_points) + 1) if np.ndim(eval_points) == 0
         else np.asarray(eval_points, dtype=float))
    if np.any((z <= 0) | (z >= 1)):
        raise CalibrationError("eval_points must lie in (0, 1)")
    out = np.empty((z.size, pit.shape[1]))
    for k in range(pit.shape[1]):
        values = np.sort(pit[np.isfinite(pit[:, k]), k])
        if values.size == 0:
            raise CalibrationError(f"label {k} has no finite PIT value")
        out[:, k] = np.searchsorted(values, z, side="right") / values.size - z
    return z, out

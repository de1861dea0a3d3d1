"""Pairs of stars that should share a label: do the per-star errors explain the scatter?

Qiu et al. (2025) validated their [Fe/H] with 256 M+M wide binaries: the two
stars of a wide binary formed together, so they share [Fe/H] and
[alpha/M], and the difference of their measured labels,
``Delta = B - A``, is pure measurement error (Delta[Fe/H] = -0.01 +- 0.11
dex in the paper). If the per-star errors are right, the z-score
``z = Delta / sqrt(err_a**2 + err_b**2)`` has unit standard deviation and
68.27% of the pairs have ``|z| < 1`` (95% have ``|z| < 1.96``). A z
standard deviation above one, or too few pairs within one sigma, says the
errors are too small; :attr:`PairComparison.excess_scatter` is the extra
per-pair scatter, found by maximum likelihood, that would make them right.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from astropy.stats import mad_std
from scipy.optimize import minimize_scalar

from bayesslam._files import atomic_write
from bayesslam.errors import BayesSlamError

__all__ = ["PairComparison", "PairError", "compare_pairs", "pairs_from_groups", "pairs_from_table",
           "plot_pair_comparison"]

logger = logging.getLogger(__name__)

_Z95 = 1.959964
_SUMMARY = ("median_delta", "mean_delta", "std_delta", "mad_std_delta", "median_sigma", "z_std", "z_mad_std",
            "fraction_within_1sigma", "fraction_within_2sigma", "excess_scatter", "excess_scatter_per_star")


class PairError(BayesSlamError, ValueError):
    """Pairs that cannot be compared (unequal lengths, too few usable pairs, bad errors, unknown stars)."""


@dataclass(frozen=True)
class PairComparison:
    """Differences of one label within pairs of stars that should share it.

    Attributes
    ----------
    label : str
        The label compared (e.g. ``"fe_h"``).
    delta : numpy.ndarray
        ``B - A`` per usable pair.
    sigma : numpy.ndarray
        ``sqrt(err_a**2 + err_b**2)`` per usable pair.
    z : numpy.ndarray
        ``delta / sigma``.
    n_dropped : int
        Pairs dropped because a value or an error was not finite.

    The summary statistics are properties (plain floats; ``n`` an int),
    all of them in :meth:`to_dict`.
    """

    label: str
    delta: np.ndarray
    sigma: np.ndarray
    z: np.ndarray
    n_dropped: int = 0

    n = property(lambda self: int(self.delta.size), doc="Number of usable pairs (int).")
    median_delta = property(lambda self: float(np.median(self.delta)), doc="Median of ``delta``.")
    mean_delta = property(lambda self: float(np.mean(self.delta)), doc="Mean of ``delta``.")
    std_delta = property(lambda self: float(np.std(self.delta, ddof=1)), doc="Std of ``delta`` (ddof=1).")
    mad_std_delta = property(lambda self: float(mad_std(self.delta)), doc="1.4826 MAD of ``delta``.")
    median_sigma = property(lambda self: float(np.median(self.sigma)), doc="Median pair error ``sigma``.")
    z_std = property(lambda self: float(np.std(self.z, ddof=1)), doc="Std of ``z`` (ddof=1; 1 if errors are right).")
    z_mad_std = property(lambda self: float(mad_std(self.z)), doc="1.4826 MAD of ``z`` (1 if right).")
    fraction_within_1sigma = property(lambda self: float(np.mean(np.abs(self.z) < 1.0)),
                                      doc="Fraction of pairs with ``|z| < 1`` (0.6827 if the errors are right).")
    fraction_within_2sigma = property(lambda self: float(np.mean(np.abs(self.z) < _Z95)),
                                      doc="Fraction of pairs with ``|z| < 1.959964`` (0.95 if right).")

    @cached_property
    def excess_scatter(self) -> float:
        """Extra per-pair scatter ``s >= 0``: the maximum-likelihood ``s`` of ``delta ~ N(mu, sigma**2 + s**2)``.

        Zero when the errors already explain the scatter.
        """
        return _excess_scatter(self.delta, self.sigma)

    @property
    def excess_scatter_per_star(self) -> float:
        """``excess_scatter / sqrt(2)``: the extra scatter of each star, if both stars share it equally."""
        return self.excess_scatter / np.sqrt(2.0)

    def to_dict(self) -> dict[str, str | int | float]:
        """Every summary number as plain Python numbers (JSON-able), with the label."""
        out: dict[str, str | int | float] = {"label": self.label, "n": self.n, "n_dropped": int(self.n_dropped)}
        return out | {name: float(getattr(self, name)) for name in _SUMMARY}


def _excess_scatter(delta: np.ndarray, sigma: np.ndarray) -> float:
    """Maximum-likelihood extra scatter ``s >= 0`` of ``delta ~ N(mu, sigma**2 + s**2)``, ``mu`` profiled out."""

    def negloglike(s: float) -> float:
        var = sigma**2 + s**2
        mu = np.sum(delta / var) / np.sum(1.0 / var)
        return 0.5 * float(np.sum(np.log(var) + (delta - mu) ** 2 / var))

    var = sigma**2
    mu = np.sum(delta / var) / np.sum(1.0 / var)
    # d(log L)/d(s**2) at s = 0 not positive: the maximum is at s = 0 (the errors explain the scatter).
    if np.sum((delta - mu) ** 2 / var**2 - 1.0 / var) <= 0.0:
        return 0.0
    upper = 2.0 * float(np.std(delta)) + float(np.max(sigma))
    return float(minimize_scalar(negloglike, bounds=(0.0, upper), method="bounded",
                                 options={"xatol": 1e-7 * upper}).x)


def _floats(x) -> np.ndarray:
    """A flat float array with masked entries as NaN."""
    return np.ravel(np.ma.filled(np.ma.asarray(x, dtype=float), np.nan))


def compare_pairs(values_a, values_b, errors_a, errors_b, *, label: str = "fe_h") -> PairComparison:
    """Compare one label within pairs of stars: ``delta = B - A`` and its z-score.

    Parameters
    ----------
    values_a, values_b : array_like
        The label of the first and the second star of each pair.
    errors_a, errors_b : array_like
        Their one-sigma errors (positive).
    label : str
        Name of the label, for reports and plots.

    Returns
    -------
    PairComparison
        Pairs with a non-finite value or error are dropped (``n_dropped``).

    Raises
    ------
    PairError
        Unequal lengths, fewer than 2 usable pairs, or errors that are not positive.
    """
    arrays = [_floats(x) for x in (values_a, values_b, errors_a, errors_b)]
    lengths = [a.size for a in arrays]
    if len(set(lengths)) != 1:
        raise PairError(f"values_a, values_b, errors_a, errors_b have lengths {lengths}; "
                        "pass one entry per pair in each.")
    good = np.all([np.isfinite(a) for a in arrays], axis=0)
    va, vb, ea, eb = (a[good] for a in arrays)
    if good.sum() < 2:
        raise PairError(f"{label}: only {int(good.sum())} of {lengths[0]} pairs have finite values and errors; "
                        "at least 2 are needed (check for NaN values or errors).")
    bad = (ea <= 0) | (eb <= 0)
    if bad.any():
        raise PairError(f"{label}: {int(bad.sum())} pairs have an error <= 0; errors must be positive "
                        "(use the catalog's calibrated *_ERR column).")
    delta, sigma = vb - va, np.hypot(ea, eb)
    return PairComparison(label, delta, sigma, delta / sigma, n_dropped=int(lengths[0] - good.sum()))


def pairs_from_table(table, pairs: Sequence[tuple[str, str]], *, label: str, value_column: str | None = None,
                     error_column: str | None = None, id_column: str = "IDENTIFIER") -> PairComparison:
    """Compare one label within pairs of stars of a bayesslam catalog.

    Parameters
    ----------
    table : astropy.table.Table
        A catalog as bayesslam writes it.
    pairs : sequence of (str, str)
        Identifiers ``(a, b)`` of each pair; ``delta = b - a``.
    label : str
        The label (e.g. ``"fe_h"``); its columns start with ``label.upper()``.
    value_column, error_column : str, optional
        Columns of values (default ``<LABEL>_MEDIAN`` if present, else
        ``<LABEL>_MAP``) and of errors (default ``<LABEL>_ERR``).
    id_column : str
        Column of identifiers.

    Returns
    -------
    PairComparison

    Raises
    ------
    PairError
        A missing column, an unknown or repeated identifier, a star paired
        with itself, or any case of :func:`compare_pairs`.
    """
    prefix = label.upper()
    if value_column is None:
        value_column = f"{prefix}_MEDIAN" if f"{prefix}_MEDIAN" in table.colnames else f"{prefix}_MAP"
    error_column = error_column or f"{prefix}_ERR"
    missing = [c for c in (id_column, value_column, error_column) if c not in table.colnames]
    if missing:
        raise PairError(f"the table has no column {', '.join(missing)}; pass value_column=/error_column=/"
                        f"id_column= naming existing ones.")
    ids = [(x.decode() if isinstance(x, bytes) else str(x)).strip() for x in table[id_column]]
    counts = Counter(ids)
    pairs = [(str(a).strip(), str(b).strip()) for a, b in pairs]
    named = [x for pair in pairs for x in pair]
    for bad, what in (({x for x in named if x not in counts}, f"not in column {id_column}: check the pair list"),
                      ({x for x in named if counts[x] > 1}, "repeated in the table: a pair must name one row each"),
                      ({a for a, b in pairs if a == b}, "paired with themselves: a pair needs two stars")):
        if bad:
            names = ", ".join(sorted(bad)[:10]) + (" ..." if len(bad) > 10 else "")
            raise PairError(f"{len(bad)} identifiers {what} ({names}).")
    row = {x: i for i, x in enumerate(ids)}
    ia, ib = (np.array([row[pair[k]] for pair in pairs], dtype=int) for k in (0, 1))
    values, errors = _floats(table[value_column]), _floats(table[error_column])
    return compare_pairs(values[ia], values[ib], errors[ia], errors[ib], label=label)


def pairs_from_groups(identifiers: Sequence[str], groups: Sequence) -> list[tuple[str, str]]:
    """Pairs from a group label per star (e.g. a wide-binary id): every group of exactly 2 stars.

    Parameters
    ----------
    identifiers : sequence of str
        Star identifiers.
    groups : sequence
        The group of each star, parallel to ``identifiers``.

    Returns
    -------
    list of (str, str)
        One pair per two-member group, members in input order, groups in
        order of first appearance. Groups of other sizes are skipped (logged).
    """
    identifiers, groups = list(identifiers), list(groups)
    if len(identifiers) != len(groups):
        raise PairError(f"identifiers ({len(identifiers)}) and groups ({len(groups)}) differ in length; "
                        "pass one group per star.")
    members: dict[object, list[str]] = {}
    for ident, group in zip(identifiers, groups):
        members.setdefault(group, []).append(str(ident))
    pairs = [(m[0], m[1]) for m in members.values() if len(m) == 2]
    if len(members) > len(pairs):
        logger.info("pairs_from_groups: ignored %d groups without exactly 2 members", len(members) - len(pairs))
    return pairs


def plot_pair_comparison(comparisons: Sequence[PairComparison], path: str | Path) -> Path:
    """Save a PNG: per label, the histogram of ``delta`` (top) and of ``z`` (bottom).

    Top: ``delta``, its median and +-std, and ``N(0, median sigma)`` (what the
    errors predict). Bottom: ``z``, ``N(0, 1)`` and the fraction with ``|z| < 1``.

    Parameters
    ----------
    comparisons : sequence of PairComparison
        One column each.
    path : str or pathlib.Path
        PNG file to write (atomically).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comparisons = list(comparisons)
    if not comparisons:
        raise PairError("plot_pair_comparison needs at least one PairComparison.")
    fig, axes = plt.subplots(2, len(comparisons), figsize=(4.2 * len(comparisons) + 0.4, 6.4), squeeze=False)
    for k, c in enumerate(comparisons):
        top, bottom = axes[:, k]
        for ax, data, scale in ((top, c.delta, c.median_sigma), (bottom, c.z, 1.0)):
            ax.hist(data, bins="auto", density=True, color="0.6")
            lo, hi = ax.get_xlim()
            x = np.linspace(min(lo, -4 * scale), max(hi, 4 * scale), 400)
            ax.plot(x, np.exp(-0.5 * (x / scale) ** 2) / (scale * np.sqrt(2 * np.pi)), color="tab:red", lw=1.2)
            ax.set_ylabel("density" if k == 0 else None)
        for offset, style in ((0.0, "-"), (-c.std_delta, "--"), (c.std_delta, "--")):
            top.axvline(c.median_delta + offset, color="k", lw=1.0, ls=style)
        top.set_title(f"{c.label}: n={c.n}  median {c.median_delta:+.3f}  std {c.std_delta:.3f}\n"
                      f"red: N(0, median sigma={c.median_sigma:.3f})", fontsize=9, loc="left")
        top.set_xlabel(f"Delta {c.label} (B - A)")
        bottom.text(0.02, 0.95, f"|z|<1: {c.fraction_within_1sigma:.3f} (0.683)\nsd(z) {c.z_std:.2f}"
                    f"\nexcess scatter {c.excess_scatter:.3f}", transform=bottom.transAxes, va="top", fontsize=8)
        bottom.set_xlabel(f"z = Delta {c.label} / sigma   (red: N(0, 1))")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda stream: fig.savefig(stream, format="png", dpi=110))
    finally:
        plt.close(fig)

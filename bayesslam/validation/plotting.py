"""Figures of calibration studies: SBC rank histograms and ECDF differences, coverage curves, PIT histograms.

Each function writes one PNG (atomically, matplotlib's Agg backend,
imported only when plotting) with one panel per label, and returns its path.
The ECDF-difference plots and their simultaneous confidence bands are
ArviZ's (:func:`arviz.plot_ecdf`, Säilynoja et al. 2022); the rank and PIT
histograms carry the pointwise binomial band that uniform values give
(Talts et al. 2018), the coverage curves the binomial band of calibrated
intervals (:class:`~bayesslam.calibration.CoverageCurve`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from bayesslam._files import atomic_write
from bayesslam.calibration import BinnedCoverage, CoverageCurve, rank_histogram

__all__ = [
    "plot_binned_coverage",
    "plot_coverage_curves",
    "plot_pit_histograms",
    "plot_rank_ecdf",
    "plot_rank_histograms",
]

#: Probability of the simultaneous band of the ECDF-difference plots.
ECDF_BAND: float = 0.95


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(n_label: int, draw: Callable[[Any, int], None], path: str | Path, title: str,
            panel_size: tuple[float, float] = (3.4, 2.9)) -> Path:
    """One panel per label (up to 4 a row), ``draw(ax, k)`` fills panel ``k``; saved as PNG at ``path``."""
    plt = _pyplot()
    n_col = min(4, n_label)
    n_row = int(np.ceil(n_label / n_col))
    fig, axes = plt.subplots(n_row, n_col, figsize=(panel_size[0] * n_col, panel_size[1] * n_row + 0.4),
                             squeeze=False)
    try:
        for k in range(n_row * n_col):
            ax = axes.flat[k]
            if k < n_label:
                draw(ax, k)
            else:
                ax.set_axis_off()
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        return atomic_write(path, lambda stream: fig.savefig(stream, format="png", dpi=110))
    finally:
        plt.close(fig)


def plot_rank_histograms(ranks: np.ndarray, n_draws: int, path: str | Path, *, label_names: Sequence[str],
                         n_bins: int | None = None, prob: float = 0.99, pvalues: Sequence[float] | None = None,
                         title: str = "") -> Path:
    """SBC rank histograms with the band uniform ranks fall in (pointwise ``prob``), one panel per label.

    Parameters
    ----------
    ranks : numpy.ndarray, ``(n_sim, n_label)``
        From :func:`bayesslam.calibration.sbc_ranks`.
    n_draws : int
        ``L`` (ranks are ``0 .. L``).
    path : str or pathlib.Path
        PNG to write.
    label_names : sequence of str
    n_bins : int, optional
        Default :func:`bayesslam.calibration.default_rank_bins`.
    prob : float
        Probability of the gray band (per bin).
    pvalues : sequence of float, optional
        Per label, printed in the panel's title (e.g. the chi-square p-values).
    title : str
        Figure title.
    """
    hist = rank_histogram(ranks, n_draws, n_bins, prob)

    def draw(ax: Any, k: int) -> None:
        left, width = hist.edges[:-1], np.diff(hist.edges)
        ax.fill_between(hist.edges, np.append(hist.lower[:, k], hist.lower[-1, k]),
                        np.append(hist.upper[:, k], hist.upper[-1, k]), step="post", color="0.85", lw=0,
                        label=f"uniform, {prob:.0%} per bin")
        ax.bar(left, hist.counts[:, k], width=width, align="edge", color="tab:blue", alpha=0.75,
               edgecolor="white", lw=0.5, label="ranks")
        ax.step(hist.edges, np.append(hist.expected[:, k], hist.expected[-1, k]), where="post", color="0.3", lw=0.8)
        ax.set_xlim(0, n_draws + 1)
        ax.set_xlabel(f"rank of the true {label_names[k]} among {n_draws} draws")
        ax.set_ylabel("simulations")
        extra = "" if pvalues is None else f" (chi2 p = {pvalues[k]:.2g})"
        ax.set_title(f"{label_names[k]}{extra}", fontsize=9)
        if k == 0:
            ax.legend(fontsize=7, loc="lower center")

    return _panels(len(label_names), draw, path, title)


def plot_rank_ecdf(pit: np.ndarray, path: str | Path, *, label_names: Sequence[str], prob: float = ECDF_BAND,
                   title: str = "") -> Path:
    """ECDF of the normalized ranks minus the uniform CDF, with ArviZ's simultaneous ``prob`` band.

    Parameters
    ----------
    pit : numpy.ndarray, ``(n_sim, n_label)``
        Normalized ranks (:func:`bayesslam.calibration.rank_pit`) or any PIT values.
    path : str or pathlib.Path
    label_names : sequence of str
    prob : float
        Probability that the whole ECDF of uniform values stays inside the band.
    title : str
    """
    import arviz as az

    pit = np.asarray(pit, dtype=float)
    eval_points = np.arange(1, 100) / 100.0

    def draw(ax: Any, k: int) -> None:
        values = pit[np.isfinite(pit[:, k]), k]
        az.plot_ecdf(values, cdf=stats.uniform(0.0, 1.0).cdf, difference=True, confidence_bands="optimized",
                     eval_points=eval_points, ci_prob=prob, ax=ax, plot_kwargs={"color": "tab:blue"},
                     fill_kwargs={"color": "0.8", "alpha": 0.8})
        ax.axhline(0.0, color="0.3", lw=0.6)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"normalized rank of {label_names[k]}")
        ax.set_ylabel("ECDF - uniform CDF")
        ax.set_title(f"{label_names[k]} ({values.size} simulations, {prob:.0%} simultaneous band)", fontsize=8)

    return _panels(len(label_names), draw, path, title)


def plot_coverage_curves(curves: Mapping[str, CoverageCurve] | CoverageCurve, path: str | Path, *,
                         difference: bool = True, title: str = "") -> Path:
    """Observed against nominal coverage, one panel per label, one line per method.

    Parameters
    ----------
    curves : CoverageCurve or mapping of str to CoverageCurve
        E.g. ``{"Laplace": ..., "posterior": ...}``: the same labels; the
        band drawn is the first curve's (the binomial band of its number of stars).
    path : str or pathlib.Path
    difference : bool
        Plot ``observed - nominal`` (default), or observed against nominal with the diagonal.
    title : str
    """
    if isinstance(curves, CoverageCurve):
        curves = {"observed": curves}
    curves = dict(curves)
    first = next(iter(curves.values()))
    names = first.label_names
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]

    def draw(ax: Any, k: int) -> None:
        levels = first.levels
        base = levels if difference else 0.0
        ax.fill_between(levels, first.lower[:, k] - base, first.upper[:, k] - base, color="0.85", lw=0,
                        label=f"calibrated, {first.band:.0%} (n={int(first.n[k])})")
        ax.plot([0, 1], [0, 0] if difference else [0, 1], color="0.3", lw=0.8)
        for (name, curve), color in zip(curves.items(), colors * 4):
            ax.plot(curve.levels, curve.observed[:, k] - (curve.levels if difference else 0.0), color=color,
                    lw=1.3, label=f"{name} (68%: {curve.at(0.68)[k]:.2f})" if np.any(np.isclose(curve.levels, 0.68))
                    else name)
        ax.set_xlim(0, 1)
        ax.set_xlabel("nominal coverage of the central interval")
        ax.set_ylabel("observed - nominal" if difference else "observed coverage")
        ax.set_title(names[k], fontsize=9)
        ax.legend(fontsize=6, loc="best")

    return _panels(len(names), draw, path, title)


def plot_binned_coverage(binned: BinnedCoverage, path: str | Path, *, difference: bool = True,
                         title: str = "") -> Path:
    """Coverage curves of the stars in each bin of :attr:`BinnedCoverage.name`, one panel per label."""
    names = binned.curves[0].label_names
    colors = np.asarray(_pyplot().get_cmap("viridis")(np.linspace(0.0, 0.9, len(binned.curves))))

    def draw(ax: Any, k: int) -> None:
        ax.plot([0, 1], [0, 0] if difference else [0, 1], color="0.3", lw=0.8)
        for b, (curve, color) in enumerate(zip(binned.curves, colors)):
            base = curve.levels if difference else 0.0
            ax.fill_between(curve.levels, curve.lower[:, k] - base, curve.upper[:, k] - base, color=color,
                            alpha=0.12, lw=0)
            ax.plot(curve.levels, curve.observed[:, k] - base, color=color, lw=1.2,
                    label=f"{binned.name} {binned.bin_label(b, k)} (n={int(curve.n[k])})")
        ax.set_xlim(0, 1)
        ax.set_xlabel("nominal coverage of the central interval")
        ax.set_ylabel("observed - nominal" if difference else "observed coverage")
        ax.set_title(f"{names[k]} by {binned.name}", fontsize=9)
        ax.legend(fontsize=6, loc="best")

    return _panels(len(names), draw, path, title)


def plot_pit_histograms(pits: Mapping[str, np.ndarray] | np.ndarray, path: str | Path, *,
                        label_names: Sequence[str], n_bins: int = 10, prob: float = 0.99, title: str = "") -> Path:
    """Histograms of PIT values with the band uniform values fall in (pointwise ``prob``), one panel per label.

    Parameters
    ----------
    pits : numpy.ndarray or mapping of str to numpy.ndarray
        ``(n_star, n_label)`` PIT values, one array per method (drawn as outlines side by side).
    path : str or pathlib.Path
    label_names : sequence of str
    n_bins : int
    prob : float
    title : str
    """
    if not isinstance(pits, Mapping):
        pits = {"PIT": pits}
    pits = {name: np.asarray(value, dtype=float) for name, value in pits.items()}
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]

    def draw(ax: Any, k: int) -> None:
        first = next(iter(pits.values()))[:, k]
        n = int(np.sum(np.isfinite(first)))
        lower, upper = stats.binom.interval(prob, n, 1.0 / n_bins)
        ax.axhspan(lower, upper, color="0.88", lw=0, label=f"uniform, {prob:.0%} per bin")
        ax.axhline(n / n_bins, color="0.3", lw=0.8)
        for (name, values), color in zip(pits.items(), colors * 4):
            column = values[:, k]
            counts, _ = np.histogram(column[np.isfinite(column)], bins=edges)
            ax.stairs(counts, edges, color=color, lw=1.4, label=name)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"PIT of the true {label_names[k]}")
        ax.set_ylabel("stars")
        ax.set_title(label_names[k], fontsize=9)
        ax.legend(fontsize=6, loc="lower center")

    return _panels(len(label_names), draw, path, title)

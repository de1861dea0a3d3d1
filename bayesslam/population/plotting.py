"""Figure of a population inference: the inferred label density and the per-star shrinkage (matplotlib, imported only when plotting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesslam._files import atomic_write
from bayesslam.population.result import PopulationResult

__all__ = ["plot_population"]


def _format_entry(name: str, entry: dict, digits: int = 2) -> str:
    """``"mean = -0.11 +0.01/-0.01"`` (a vector hyperparameter: one such text per component, in brackets)."""
    median, q16, q84 = (np.atleast_1d(np.asarray(entry[key], dtype=float)) for key in ("median", "q16", "q84"))
    parts = [f"{m:.{digits}f} +{hi - m:.{digits}f}/-{m - lo:.{digits}f}" for m, lo, hi in zip(median, q16, q84)]
    if np.ndim(entry["median"]) == 0:
        return f"{name} = {parts[0]}"
    return f"{name} = [{', '.join(parts)}]"


def _summary_title(result: PopulationResult, max_components: int = 3) -> str:
    """The model's name and its hyperparameters' medians and 68% intervals (long vectors left out)."""
    entries = [_format_entry(name, entry) for name, entry in result.summary().items()
               if np.size(entry["median"]) <= max_components]
    lines, line = [], ""
    for text in entries:
        if line and len(line) + len(text) > 70:
            lines.append(line)
            line = ""
        line = f"{line}, {text}" if line else text
    if line:
        lines.append(line)
    head = f"{result.label}: {result.model.name} population ({result.method}, {len(result.identifiers)} stars)"
    return "\n".join([head, *lines])


def plot_population(result: PopulationResult, path: str | Path, *,
                    point_estimates: np.ndarray | None = None) -> Path:
    """Save a PNG of a population inference: the inferred density (left) and the per-star shrinkage (right).

    Left: the population density's median and its 68% and 95% credible
    bands (from :meth:`PopulationResult.density` on a grid over the label's
    range) over a density-normalized histogram of the per-star point
    estimates; the title gives the model and the medians and 68% intervals
    of its hyperparameters. Right: partial pooling, each star's own
    estimate against its estimate under the population (median with its
    16-84% interval) and the 1:1 line.

    Parameters
    ----------
    result : PopulationResult
        From :func:`bayesslam.population.reweight_population` or
        :func:`~bayesslam.population.sample_population`.
    path : str or pathlib.Path
        PNG file to write (atomically).
    point_estimates : numpy.ndarray, optional
        One value per star for the histogram and the right panel's x axis
        (default: the median of each star's own draws, ``own_median`` of
        :meth:`PopulationResult.star_estimates`, where the result has it,
        else the medians under the population).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = (float(b) for b in result.bounds)
    estimates = result.star_estimates() if result.star_values is not None else None
    if point_estimates is not None:
        own = np.asarray(point_estimates, dtype=float).ravel()
        if own.size != len(result.identifiers):
            raise ValueError(f"point_estimates has {own.size} values for {len(result.identifiers)} stars.")
        own_name = "point estimate"
    elif estimates is not None:
        own = np.asarray(estimates.get("own_median", estimates["median"]), dtype=float)
        own_name = "own median" if "own_median" in estimates else "median under the population"
    else:
        own, own_name = None, ""

    grid = np.linspace(low, high, 400)
    density = result.density(grid)
    q025, q16, q50, q84, q975 = np.quantile(density, [0.025, 0.15865525393145707, 0.5, 0.8413447460685429, 0.975],
                                            axis=0)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.6))
    if own is not None:
        finite = own[np.isfinite(own)]
        bins = np.linspace(low, high, int(np.clip(np.sqrt(max(finite.size, 1)) * 1.5, 8, 40)) + 1)
        left.hist(finite, bins=bins, density=True, color="0.75", label=f"stars' {own_name} (n={finite.size})")
    left.fill_between(grid, q025, q975, color="tab:blue", alpha=0.18, lw=0, label="95%")
    left.fill_between(grid, q16, q84, color="tab:blue", alpha=0.35, lw=0, label="68%")
    left.plot(grid, q50, color="tab:blue", lw=1.5, label="population (median)")
    left.set_xlim(low, high)
    left.set_ylim(bottom=0)
    left.set_xlabel(result.label)
    left.set_ylabel("density")
    left.set_title(_summary_title(result), fontsize=8, loc="left")
    left.legend(fontsize=7, loc="upper right")

    if estimates is not None and own is not None:
        median = np.asarray(estimates["median"], dtype=float)
        errors = np.vstack([median - np.asarray(estimates["q16"]), np.asarray(estimates["q84"]) - median])
        right.errorbar(own, median, yerr=np.clip(errors, 0.0, None), fmt="o", ms=3, color="k", ecolor="0.5",
                       elinewidth=0.8, capsize=0)
        finite = np.concatenate([own[np.isfinite(own)], median[np.isfinite(median)]])
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (low, high)
        pad = 0.05 * (hi - lo or high - low)
        line = np.array([lo - pad, hi + pad])
        right.plot(line, line, color="tab:red", lw=1.0, label="1:1")
        right.set_xlim(*line)
        right.set_ylim(*line)
        right.legend(fontsize=7, loc="upper left")
        right.set_xlabel(f"{result.label}: {own_name}")
        right.set_ylabel(f"{result.label} under the population (16-84%)")
        right.set_title("partial pooling: each star's estimate shrunk by the population", fontsize=8, loc="left")
    else:
        right.text(0.5, 0.5, "no per-star draws in this result", ha="center", va="center", transform=right.transAxes)
        right.set_axis_off()
    fig.tight_layout()
    try:
        return atomic_write(path, lambda stream: fig.savefig(stream, format="png", dpi=110))
    finally:
        plt.close(fig)

"""Coverage of held-out stars with known labels: curves, per-bin curves and PIT histograms, with their figures.

:func:`coverage_report` takes the true labels of stars the model did not
train on and what inference said about them — MAP labels with Laplace
sigmas, posterior draws, or both — and, optionally, a model's error
calibration (:class:`~bayesslam.calibration.ModelCalibration`), and measures
side by side the coverage curves of every kind of interval given
(``laplace``, ``laplace, calibrated``, ``posterior``, ``posterior, calibrated``),
the same split by bins of other quantities (SNR bins, each label's
quartiles), and the PIT histograms. :class:`CoverageReport` holds the numbers
(:meth:`CoverageReport.summary`) and writes the figures.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from bayesslam._files import atomic_write
from bayesslam.calibration import (
    BinnedCoverage,
    CalibrationError,
    CoverageCurve,
    ModelCalibration,
    binned_pit_coverage_curves,
    pit_coverage_curve,
    truth_pit,
)
from bayesslam.validation import plotting

__all__ = ["CoverageReport", "coverage_report"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoverageReport:
    """Coverage of held-out stars per kind of interval.

    Attributes
    ----------
    label_names : tuple of str
    n_star : int
    pits : dict of str to numpy.ndarray
        PIT of the true labels, ``(n_star, n_label)``, per kind of interval.
    curves : dict of str to CoverageCurve
        Coverage curve per kind.
    binned : dict of str to dict of str to BinnedCoverage
        Per kind, per quantity of ``by``: the curves in its bins.
    """

    label_names: tuple[str, ...]
    n_star: int
    pits: Mapping[str, np.ndarray]
    curves: Mapping[str, CoverageCurve]
    binned: Mapping[str, Mapping[str, BinnedCoverage]]

    def summary(self) -> dict[str, Any]:
        """Every number, JSON-ready: per kind, the curve, its 68% and 95% coverage, and the binned curves."""
        kinds = {}
        for kind, curve in self.curves.items():
            kinds[kind] = {
                **{f"coverage_{round(100 * level)}": {name: float(curve.at(level)[k])
                                                       for k, name in enumerate(self.label_names)}
                   for level in (0.68, 0.95) if np.any(np.isclose(curve.levels, level))},
                "curve": curve.to_dict(),
                "binned": {by: binned.to_dict() for by, binned in self.binned.get(kind, {}).items()},
            }
        return {"label_names": list(self.label_names), "n_star": int(self.n_star), "kinds": kinds}

    def to_json(self, path: str | Path | None = None) -> str:
        """:meth:`summary` as JSON text, also written to ``path`` when given."""
        text = json.dumps(self.summary(), indent=1)
        if path is not None:
            atomic_write(path, text.encode())
        return text

    def plot(self, folder: str | Path, prefix: str = "coverage") -> dict[str, Path]:
        """Write the figures as PNGs in ``folder``.

        ``<prefix>_curves.png`` (every kind side by side),
        ``<prefix>_pit.png`` (PIT histograms of every kind) and, per kind and
        binning quantity, ``<prefix>_<kind>_by_<quantity>.png``.
        """
        folder = Path(folder)
        what = f"{self.n_star} held-out stars"
        paths = {
            "curves": plotting.plot_coverage_curves(self.curves, folder / f"{prefix}_curves.png", title=what),
            "pit": plotting.plot_pit_histograms(self.pits, folder / f"{prefix}_pit.png",
                                                label_names=self.label_names, title=what),
        }
        for kind, by_quantity in self.binned.items():
            for by, binned in by_quantity.items():
                key = f"{kind}_by_{by}".replace(", ", "_").replace(" ", "_")
                paths[key] = plotting.plot_binned_coverage(binned, folder / f"{prefix}_{key}.png",
                                                           title=f"{kind}: {what}")
        return paths


def coverage_report(
    truth: np.ndarray,
    *,
    label_names: Sequence[str],
    estimate: np.ndarray | None = None,
    sigma: np.ndarray | None = None,
    draws: np.ndarray | None = None,
    calibration: ModelCalibration | None = None,
    by: Mapping[str, np.ndarray] | None = None,
    bins: int | Sequence[float] = 4,
    levels: Sequence[float] | None = None,
    band: float = 0.95,
    folder: str | Path | None = None,
    prefix: str = "coverage",
    seed: int = 0,
) -> CoverageReport:
    """Coverage curves, per-bin curves and PIT histograms of held-out stars with known labels.

    Parameters
    ----------
    truth : numpy.ndarray, ``(n_star, n_label)``
        The true labels.
    label_names : sequence of str
    estimate, sigma : numpy.ndarray, ``(n_star, n_label)``, optional
        MAP labels and Laplace sigmas (kind ``"laplace"``).
    draws : numpy.ndarray, ``(n_star, n_draw, n_label)``, optional
        Posterior draws (kind ``"posterior"``).
    calibration : ModelCalibration, optional
        Adds ``"laplace, calibrated"`` and ``"posterior, calibrated"`` for
        the kinds it has a calibration of.
    by : mapping of str to numpy.ndarray, optional
        Quantities to split the stars by, e.g. ``{"snr": snr, "truth": truth}``
        (one value per star, or per star and label; see
        :func:`bayesslam.calibration.binned_coverage_curves`).
    bins : int or sequence of float
        Bins of each ``by`` quantity (default quartiles).
    levels, band
        As :func:`bayesslam.calibration.coverage_curve`.
    folder : str or pathlib.Path, optional
        Write the figures (:meth:`CoverageReport.plot`) and ``<prefix>.json`` here.
    prefix : str
        File-name prefix.
    seed : int
        Randomization of the rank PIT of raw draws.

    Returns
    -------
    CoverageReport

    Raises
    ------
    CalibrationError
        With neither Laplace errors nor draws, on shapes that do not match,
        NaN or inf, or a calibration of other labels.
    """
    names = tuple(label_names)
    truth = np.atleast_2d(np.asarray(truth, dtype=float))
    if truth.shape[1] != len(names):
        raise CalibrationError(f"truth has {truth.shape[1]} labels, label_names {len(names)}")
    if (estimate is None) != (sigma is None):
        raise CalibrationError("give both estimate and sigma (MAP labels and their Laplace sigmas), or neither")
    if estimate is None and draws is None:
        raise CalibrationError("give the MAP estimate and sigma, posterior draws, or both")
    if calibration is not None and calibration.label_names and calibration.label_names != names:
        raise CalibrationError(f"the calibration is of labels {calibration.label_names}, not {names}")
    pits: dict[str, np.ndarray] = {}
    if estimate is not None:
        pits["laplace"] = truth_pit(truth, estimate=estimate, sigma=sigma)
        if calibration is not None and calibration.laplace is not None:
            pits["laplace, calibrated"] = truth_pit(truth, estimate=estimate, sigma=sigma,
                                                    scale=calibration.laplace.scale, floor=calibration.laplace.floor)
    if draws is not None:
        pits["posterior"] = truth_pit(truth, draws=draws, rng=seed)
        if calibration is not None and calibration.posterior is not None:
            pits["posterior, calibrated"] = truth_pit(truth, draws=draws, scale=calibration.posterior.scale,
                                                      floor=calibration.posterior.floor)
    curves = {kind: pit_coverage_curve(pit, levels=levels, band=band, label_names=names) for kind, pit in pits.items()}
    binned = {kind: {quantity: binned_pit_coverage_curves(pit, values, bins=bins, name=quantity, levels=levels,
                                                          band=band, label_names=names)
                     for quantity, values in (by or {}).items()}
              for kind, pit in pits.items()}
    report = CoverageReport(names, int(truth.shape[0]), pits, curves, binned)
    for kind, curve in curves.items():
        logger.info("coverage (%s, %d stars): largest |observed - nominal| per label %s", kind, truth.shape[0],
                    np.round(curve.max_abs_deviation, 3).tolist())
    if folder is not None:
        report.plot(folder, prefix)
        report.to_json(Path(folder) / f"{prefix}.json")
    return report

"""A model's calibration report on held-out stars with known labels: what ``bayesslam calibrate`` writes.

:func:`calibration_report` takes stars the model did not train on, with
their true labels — spectra and a label table matched by identifier (or
file name) as training matches them, or ``mock=N`` stars made on the fly by
the mock generator (:func:`bayesslam.mock.make_survey`, log-uniform SNRs,
a fixed seed) — fits their labels (MAP + Laplace, as ``bayesslam fit``; with
``sampler="nuts"`` also NUTS posteriors started there) and writes to one
folder:

* the coverage curves of the raw and the model-calibrated intervals, per
  label, per SNR bin and per label quartile, and the PIT histograms
  (:func:`~bayesslam.validation.coverage.coverage_report`);
* the label scatter against SNR in equal-number SNR bins with power laws
  ``sigma = a SNR**b`` fitted to it (:func:`bayesslam.calibration.fit_snr_law`)
  beside the paper's (:data:`bayesslam.calibration.PAPER_SNR_LAWS`) and the
  model's own;
* an error calibration (scale and floor per label,
  :meth:`bayesslam.calibration.ErrorCalibration.measure`) fitted on these
  stars, with its coverage checked out of sample (fitted on one half of the
  stars, applied to the other, both ways);
* optionally simulation-based calibration (:func:`~bayesslam.validation.sbc.run_sbc`);
* ``report.json`` with every number, ``stars.csv`` with every star's labels,
  and with ``write_model`` a copy of the model file carrying the newly fitted
  calibration (:meth:`bayesslam.emulator.SlamModel.with_calibration`,
  :func:`bayesslam.emulator.save_model`).

The SNR of a star is that of its prepared spectrum on the model grid
(:func:`bayesslam.calibration.spectrum_snr`, the SNR models' own SNR laws
are fitted against and catalogs evaluate them at).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import jax
import numpy as np

from bayesslam._files import atomic_write
from bayesslam._precision import in_float64
from bayesslam.calibration import (
    PAPER_SNR_LAWS,
    CalibrationError,
    CoverageCurve,
    ErrorCalibration,
    ModelCalibration,
    SnrLaw,
    fit_error_calibration,
    fit_snr_law,
    pit_coverage_curve,
    spectrum_snr,
    truth_pit,
)
from bayesslam.emulator import SlamModel, default_model_path, library_versions, save_model, utc_now
from bayesslam.errors import BayesSlamError
from bayesslam.infer import FitStatus, fit_map, sample_nuts
from bayesslam.io import read_label_table
from bayesslam.mock import LABEL_NAMES as MOCK_LABEL_NAMES
from bayesslam.mock import ObservingSetup, make_survey
from bayesslam.pipeline import continuum_settings, load_model, prepare
from bayesslam.preparation import Failure, PreparedSpectra, prepare_spectra
from bayesslam.spectra import Spectrum, SpectrumBatch
from bayesslam.validation import plotting
from bayesslam.validation.coverage import CoverageReport, coverage_report
from bayesslam.validation.errors import ValidationError
from bayesslam.validation.sbc import SAMPLERS, SbcResult, run_sbc

__all__ = ["REPORT_FORMAT", "DEFAULT_SNR_RANGE", "CalibrationReport", "calibration_report"]

logger = logging.getLogger(__name__)

#: ``format`` of ``report.json``.
REPORT_FORMAT: str = "bayesslam.calibration-report"
#: SNR range of mock stars (log-uniform) and of SBC simulations, as the mock generator's default.
DEFAULT_SNR_RANGE: tuple[float, float] = (3.0, 50.0)
#: The nominal levels every coverage number of the report is given at.
REPORT_LEVELS: tuple[float, float] = (0.68, 0.95)
#: Fewest equal-number SNR bins an SNR law is fitted to (fewer leave the errors of ``a`` and ``b`` unknown).
MIN_SNR_BINS: int = 4
#: The kinds of interval of :func:`coverage_report` and their keys in ``report.json``.
_KIND_KEYS = {"laplace": "laplace", "laplace, calibrated": "laplace_calibrated", "posterior": "posterior",
              "posterior, calibrated": "posterior_calibrated"}

ModelInput = Union[SlamModel, str, os.PathLike, None]
SpectraInput = Union[PreparedSpectra, SpectrumBatch, Spectrum, str, os.PathLike, Sequence[Any]]


@dataclass(frozen=True)
class CalibrationReport:
    """What :func:`calibration_report` measured and wrote.

    Attributes
    ----------
    folder : pathlib.Path
        The report folder.
    label_names : tuple of str
    n_star : int
        Stars whose labels were fitted and measured.
    coverage : CoverageReport
        Coverage curves, binned curves and PITs of every kind of interval.
    snr_laws : dict of str to SnrLaw
        The laws fitted to these stars (labels with too few stars have none).
    calibration : ModelCalibration or None
        The calibration fitted on these stars (None: too few stars).
    sbc : SbcResult or None
        The SBC run, when asked for.
    model_path : pathlib.Path or None
        The model file written with the new calibration.
    record : dict
        The contents of ``report.json``.
    """

    folder: Path
    label_names: tuple[str, ...]
    n_star: int
    coverage: CoverageReport
    snr_laws: Mapping[str, SnrLaw]
    calibration: ModelCalibration | None
    sbc: SbcResult | None
    model_path: Path | None
    record: Mapping[str, Any]

    def summary(self) -> dict[str, Any]:
        """Every number of the report, JSON-ready (the contents of ``report.json``)."""
        return dict(self.record)

    def lines(self) -> list[str]:
        """A short human-readable summary: coverage raw and calibrated per label, the SNR laws, the new calibration."""
        record = self.record
        stars = record["stars"]
        how = "MAP + Laplace and NUTS" if record["settings"]["sampler"] == "nuts" else "MAP + Laplace"
        snr = stars["snr"]
        out = [f"{self.n_star} stars ({stars['description']}), SNR {snr['min']:.3g}-{snr['max']:.3g}; labels by {how}"]
        coverage = record["coverage"]
        columns = [(key, title) for key, title in (("laplace", "raw"), ("laplace_calibrated", "model's calibration"),
                                                   ("laplace_refitted", "refitted, out of sample"),
                                                   ("posterior", "posterior"),
                                                   ("posterior_calibrated", "posterior, model's calibration"))
                   if coverage.get(key) is not None]
        widths = [max(len(title), 11) for _, title in columns]
        out.append("coverage of the central 68% / 95% intervals (nominal 0.68 / 0.95):")
        out.append(f"  {'':<8s} " + " | ".join(f"{title:>{w}s}" for (_, title), w in zip(columns, widths)))
        for name in self.label_names:
            cells = [f"{_fmt(coverage[key]['68'][name])} / {_fmt(coverage[key]['95'][name])}" for key, _ in columns]
            out.append(f"  {name:<8s} " + " | ".join(f"{cell:>{w}s}" for cell, w in zip(cells, widths)))
        laws = record["snr_laws"]["labels"]
        out.append(f"SNR laws sigma = a SNR^b ({record['snr_laws']['stars_per_bin']} stars per SNR bin):")
        for name in self.label_names:
            fitted, paper = laws[name]["fitted"], laws[name]["paper"]
            text = "not fitted (too few stars)" if fitted is None else (
                f"a = {fitted['a']:.4g} +- {_fmt(fitted['a_err'], '.2g')}, b = {fitted['b']:.3f} +- "
                f"{_fmt(fitted['b_err'], '.2g')}")
            if paper is not None:
                text += f"   (paper: a = {paper['a']:.4g}, b = {paper['b']:.3f})"
            out.append(f"  {name:<8s} {text}")
        fitted = record["error_calibration"]["fitted"]
        if fitted is not None:
            out.append("refitted Laplace calibration: " + ", ".join(
                f"{name} scale {fitted['scale'][name]:.3g} floor {fitted['floor'][name]:.3g}" for name in self.label_names))
        if record.get("sbc") is not None:
            sbc = record["sbc"]
            out.append(f"SBC ({sbc['n_sim']} simulations, {sbc['simulator']}): chi-square p " + ", ".join(
                f"{name} {sbc['chi2_pvalue'][name]:.2g}" for name in self.label_names))
        return out


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _clean(value: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays as Python values, NaN and inf as None."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _model(model: ModelInput) -> tuple[SlamModel, Path | None]:
    if isinstance(model, SlamModel):
        return model, None
    path = default_model_path() if model is None else Path(model)
    if not path.is_file():
        raise ValidationError(f"model file {path} does not exist; give the path of a .npz model, or None for the "
                              "default model.")
    return load_model(path), path


@dataclass(frozen=True)
class _Stars:
    """Held-out stars on the model grid with their true labels (model order)."""

    identifiers: list[str]
    flux: np.ndarray
    ivar: np.ndarray
    truth: np.ndarray
    catalog_snr: np.ndarray
    description: str
    n_input: int
    failures: tuple[Failure, ...]


def _prepared(spectra: SpectraInput, model: SlamModel, progress: bool) -> PreparedSpectra:
    """Held-out spectra on the model grid, as the pipeline prepares them (:func:`bayesslam.pipeline.prepare`)."""
    if isinstance(spectra, (list, tuple)) and not spectra:
        raise ValidationError("no held-out spectra given.")
    return prepare(spectra, model, progress=progress)


def _held_out(model: SlamModel, spectra: SpectraInput, labels: str | os.PathLike | np.ndarray, id_column: str,
              progress: bool) -> _Stars:
    names = model.label_names
    if isinstance(labels, (str, os.PathLike)):
        read_label_table(labels, [], names, id_column)  # the table's columns, checked before preparing
    prepared = _prepared(spectra, model, progress)
    batch = prepared.spectra
    if isinstance(labels, (str, os.PathLike)):
        aliases = [(Path(m.source).name, Path(m.source).name.split(".")[0]) for m in batch.meta]
        truth = read_label_table(labels, batch.identifiers, names, id_column, aliases=aliases)
        description = f"held-out spectra with the labels of {Path(labels).name}"
    else:
        truth = np.asarray(labels, dtype=float)
        if truth.shape != (len(batch), len(names)):
            raise ValidationError(f"labels has shape {truth.shape}; give one row per prepared spectrum and one column "
                                  f"per label of the model {names}: ({len(batch)}, {len(names)}).")
        description = "held-out spectra with known labels"
    if prepared.failures:
        logger.warning("%d held-out input(s) could not be prepared and are left out.", len(prepared.failures))
    return _Stars(batch.identifiers, np.asarray(batch.flux), np.asarray(batch.ivar), truth,
                  np.array([m.snr for m in batch.meta], dtype=float), description,
                  len(batch) + len(prepared.failures), prepared.failures)


def _mock(model: SlamModel, n: int, seed: int, snr: tuple[float, float], progress: bool) -> _Stars:
    names = model.label_names
    missing = [name for name in names if name not in MOCK_LABEL_NAMES]
    if missing:
        raise ValidationError(f"the mock generator knows the labels {MOCK_LABEL_NAMES}; the model also has {missing}: "
                              "give held-out spectra with a label table instead.")
    if n < 2:
        raise ValidationError(f"mock needs at least 2 stars, got {n}.")
    batch, table = make_survey(n, np.random.default_rng(seed), setup=ObservingSetup(snr_range=snr))
    prepared = prepare_spectra(iter(batch), model.wave, settings=continuum_settings(model), progress=progress,
                               total=len(batch))
    if prepared.failures:
        logger.warning("%d mock spectra could not be prepared and are left out: %s", len(prepared.failures),
                       prepared.failures[:3])
    order = {str(identifier): row for row, identifier in enumerate(table["identifier"])}
    rows = [order[identifier] for identifier in prepared.spectra.identifiers]
    truth = np.column_stack([np.asarray(table[name], dtype=float)[rows] for name in names])
    description = f"{n} mock stars, seed {seed}, SNR {snr[0]:g}-{snr[1]:g} log-uniform"
    return _Stars(prepared.spectra.identifiers, np.asarray(prepared.spectra.flux), np.asarray(prepared.spectra.ivar),
                  truth, np.asarray(table["snr"], dtype=float)[rows], description, n, prepared.failures)


def _snr_range(snr: Sequence[float]) -> tuple[float, float]:
    values = tuple(float(v) for v in snr)
    if len(values) != 2 or not all(math.isfinite(v) for v in values) or not 0 < values[0] <= values[1]:
        raise ValidationError(f"snr must be a range (low, high) with 0 < low <= high, got {snr!r}.")
    return values[0], values[1]


def _check_outputs(folder: Path, write_model: Path | None, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise ValidationError(f"{folder} exists and is not a folder; give a report folder.")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise ValidationError(f"report folder {folder} exists and is not empty; pass --overwrite (overwrite=True) to "
                              "write the report into it.")
    if write_model is not None and write_model.exists() and not overwrite:
        raise ValidationError(f"{write_model} exists; pass --overwrite (overwrite=True) to replace it.")


def _draws(posterior: Any, names: Sequence[str], n_star: int) -> np.ndarray:
    """Posterior draws ``(n_star, n_chain * n_draw, n_label)`` of a :class:`bayesslam.infer.Posterior`."""
    values = np.stack([posterior.idata.posterior[name].values for name in names], axis=-1)  # chain, draw, star, label
    return np.moveaxis(values, 2, 0).reshape(n_star, -1, len(names))


def _coverage_at(curve: CoverageCurve, names: Sequence[str]) -> dict[str, dict[str, float]]:
    return {f"{round(100 * level)}": {name: float(curve.at(level)[k]) for k, name in enumerate(names)}
            for level in REPORT_LEVELS}


def _kind_record(report: CoverageReport, kind: str, names: Sequence[str]) -> dict[str, Any]:
    """Coverage at 68% and 95% of one kind: all stars, per SNR bin and per label quartile."""
    record: dict[str, Any] = _coverage_at(report.curves[kind], names)
    binned = report.binned.get(kind, {})
    if "snr" in binned:
        snr = binned["snr"]
        record["by_snr"] = [{"snr": [float(snr.edges[b]), float(snr.edges[b + 1])], "n": int(curve.n[0]),
                             **_coverage_at(curve, names)} for b, curve in enumerate(snr.curves)]
    if "truth" in binned:
        quartiles = binned["truth"]
        record["by_label_quartile"] = {
            name: [{"range": [float(quartiles.edges[k, b]), float(quartiles.edges[k, b + 1])], "n": int(curve.n[k]),
                    **{f"{round(100 * level)}": float(curve.at(level)[k]) for level in REPORT_LEVELS}}
                   for b, curve in enumerate(quartiles.curves)]
            for k, name in enumerate(names)}
    return record


def _refit(names: Sequence[str], truth: np.ndarray, estimate: np.ndarray, sigma: np.ndarray, draws: np.ndarray | None,
           source: str, n_bootstrap: int, seed: int) -> tuple[ErrorCalibration | None, ErrorCalibration | None, str]:
    """The Laplace (and with draws the posterior) calibration fitted on these stars, and why not where there is none."""
    laplace = posterior = None
    why_not = ""
    try:
        laplace = ErrorCalibration.measure(names, estimate, truth, sigma, source=source, n_bins=4,
                                           n_bootstrap=n_bootstrap, seed=seed)
    except CalibrationError as exc:
        why_not = str(exc)
        logger.warning("no error calibration fitted on these stars: %s", exc)
    if draws is not None:
        try:
            posterior = ErrorCalibration.measure_posterior(names, draws, truth, source=source,
                                                           n_bootstrap=min(n_bootstrap, 100), seed=seed)
        except CalibrationError as exc:
            logger.warning("no posterior calibration fitted on these stars: %s", exc)
    return laplace, posterior, why_not


def _cross_checked(truth: np.ndarray, estimate: np.ndarray, sigma: np.ndarray, names: Sequence[str],
                   seed: int) -> CoverageCurve | None:
    """Coverage of a Laplace calibration fitted on one half of the stars and applied to the other, both ways."""
    half = np.random.default_rng(seed).permutation(truth.shape[0]) < truth.shape[0] // 2
    pit = np.full(truth.shape, np.nan)
    try:
        for fitted in (half, ~half):
            fit = fit_error_calibration(estimate[fitted] - truth[fitted], sigma[fitted])
            pit[~fitted] = truth_pit(truth[~fitted], estimate=estimate[~fitted], sigma=sigma[~fitted],
                                     scale=fit.scale, floor=fit.floor)
    except CalibrationError as exc:
        logger.warning("the refitted calibration is not checked out of sample: %s", exc)
        return None
    return pit_coverage_curve(pit, label_names=names)


def _stars_per_bin(n_star: int, stars_per_bin: int | None) -> int:
    """The paper's 20 stars per SNR bin, fewer (down to 5) so that small samples still get four bins."""
    return int(stars_per_bin) if stars_per_bin is not None else max(5, min(20, n_star // 4))


def _fit_snr_laws(names: Sequence[str], snr: np.ndarray, errors: np.ndarray,
                  per_bin: int) -> dict[str, tuple[SnrLaw, np.ndarray, np.ndarray]]:
    """Per label, :func:`~bayesslam.calibration.fit_snr_law`'s law and bins; none with fewer than four SNR bins."""
    if snr.size // per_bin < MIN_SNR_BINS:
        logger.warning("no SNR laws: %d stars make fewer than %d SNR bins of %d stars (the errors of a and b need "
                       "%d bins).", snr.size, MIN_SNR_BINS, per_bin, MIN_SNR_BINS)
        return {}
    fits = {}
    for k, name in enumerate(names):
        try:
            fits[name] = fit_snr_law(snr, errors[:, k], per_bin)
        except BayesSlamError as exc:
            logger.warning("no SNR law for %s: %s", name, exc)
    return fits


def _plot_snr_laws(path: Path, names: Sequence[str], units: Sequence[str], snr: np.ndarray, errors: np.ndarray,
                   fits: Mapping[str, tuple[SnrLaw, np.ndarray, np.ndarray]], model_laws: Mapping[str, SnrLaw] | None,
                   title: str) -> Path:
    """Per label: |error| of every star, the scatter in SNR bins, the fitted law, the paper's and the model's own."""
    grid = np.geomspace(max(np.min(snr) * 0.9, 1e-3), np.max(snr) * 1.1, 100)

    def draw(ax: Any, k: int) -> None:
        name = names[k]
        ax.scatter(snr, np.abs(errors[:, k]), s=4, color="0.7", lw=0, label="|MAP - true|")
        if name in fits:
            law, bin_snr, bin_sigma = fits[name]
            ax.plot(bin_snr, bin_sigma, "o", color="tab:blue", ms=4, label="scatter in SNR bins")
            ax.plot(grid, law(grid), color="tab:blue", lw=1.4, label=f"fitted: {law.a:.3g} SNR^{law.b:.2f}")
        paper = PAPER_SNR_LAWS.get(name)
        if paper is not None:
            ax.plot(grid, paper(grid), color="tab:red", lw=1.2, ls="--", label=f"paper: {paper.a:.3g} SNR^{paper.b:.2f}")
        own = (model_laws or {}).get(name)
        if own is not None:
            ax.plot(grid, own(grid), color="tab:green", lw=1.2, ls=":", label=f"model's: {own.a:.3g} SNR^{own.b:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [t for t in (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500) if grid[0] <= t <= grid[-1]]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter("")
        ax.set_xlabel("SNR of the prepared spectrum")
        ax.set_ylabel(f"{name} error" + (f" ({units[k]})" if units[k] else ""))
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6, loc="lower left")

    return plotting._panels(len(names), draw, path, title)


def _plot_calibrations(path: Path, coverage: CoverageReport, laplace: ErrorCalibration | None,
                       cross: CoverageCurve | None, truth: np.ndarray, estimate: np.ndarray, sigma: np.ndarray) -> Path:
    """Coverage curves of the Laplace intervals raw, with the model's calibration and with the refitted one."""
    curves = {"raw": coverage.curves["laplace"]}
    if "laplace, calibrated" in coverage.curves:
        curves["model's calibration"] = coverage.curves["laplace, calibrated"]
    if laplace is not None:
        curves["refitted, in sample"] = pit_coverage_curve(
            truth_pit(truth, estimate=estimate, sigma=sigma, scale=laplace.scale, floor=laplace.floor),
            label_names=coverage.label_names)
    if cross is not None:
        curves["refitted, out of sample"] = cross
    return plotting.plot_coverage_curves(curves, path, title=f"MAP + Laplace, {coverage.n_star} held-out stars")


def _stars_csv(path: Path, stars: _Stars, names: Sequence[str], estimate: np.ndarray, sigma: np.ndarray,
               snr: np.ndarray, status: np.ndarray, used: np.ndarray) -> Path:
    from astropy.table import Table

    table = Table()
    table["identifier"] = stars.identifiers
    table["snr"] = snr
    table["catalog_snr"] = stars.catalog_snr
    table["status"] = status
    table["used"] = used
    for k, name in enumerate(names):
        table[f"{name}_true"] = stars.truth[:, k]
        table[f"{name}_map"] = estimate[:, k]
        table[f"{name}_sigma"] = sigma[:, k]
    text = io.StringIO()
    table.write(text, format="ascii.csv")
    return atomic_write(path, text.getvalue().encode())


@in_float64
def calibration_report(
    model: ModelInput,
    *,
    folder: str | os.PathLike,
    spectra: SpectraInput | None = None,
    labels: str | os.PathLike | np.ndarray | None = None,
    id_column: str = "identifier",
    mock: int | None = None,
    snr: Sequence[float] = DEFAULT_SNR_RANGE,
    sbc: int | None = None,
    sbc_simulator: str = "emulator",
    sampler: str = "map",
    num_warmup: int = 500,
    num_samples: int = 500,
    seed: int = 0,
    coverage_bins: int = 4,
    stars_per_bin: int | None = None,
    n_bootstrap: int = 200,
    write_model: str | os.PathLike | None = None,
    overwrite: bool = False,
    figures: bool = True,
    progress: bool = False,
) -> CalibrationReport:
    """Measure a model's uncertainty calibration on held-out stars with known labels and write the report.

    Parameters
    ----------
    model : SlamModel, path or None
        The model (None: the shipped default model).
    folder : str or os.PathLike
        The report folder (created; an existing non-empty one needs ``overwrite``).
    spectra : optional
        Held-out spectra, anything :func:`bayesslam.pipeline.prepare` takes
        (files, folders, glob patterns, prepared files, records); raw
        spectra are prepared on the model's grid with its normalization.
        Give ``labels`` with them.
    labels : path or numpy.ndarray, optional
        A label table (CSV or FITS) with ``id_column`` and a column per label
        of the model, matched by identifier, else by file name (as training
        matches its labels); or the labels, one row per prepared spectrum.
    id_column : str
        The identifier (or file-name) column of the label table.
    mock : int, optional
        Instead of ``spectra``: this many mock stars (labels from the mock's
        population, SNR log-uniform in ``snr``, seeded by ``seed``), prepared
        with the model's settings.
    snr : (float, float)
        SNR range of the mock stars and of the SBC simulations.
    sbc : int, optional
        Also run simulation-based calibration with this many simulations
        (:func:`~bayesslam.validation.sbc.run_sbc`, the same sampler, SNRs
        spread over ``snr``); its figures and ``sbc.json`` join the report.
    sbc_simulator : {"emulator", "mock"}
        The SBC's simulator.
    sampler : {"map", "nuts"}
        ``"map"``: MAP + Laplace only; ``"nuts"``: NUTS posteriors too
        (started at the MAP), their coverage and a posterior calibration.
    num_warmup, num_samples : int
        NUTS settings (also the SBC's).
    seed : int
        Seeds the mock stars, NUTS, SBC, the bootstrap and the split of the out-of-sample check.
    coverage_bins : int
        Equal-number SNR bins (and label bins: 4 gives quartiles) of the coverage curves.
    stars_per_bin : int, optional
        Stars per SNR bin of the SNR-law fits (default 20, as the paper; fewer,
        down to 5, for samples under 80 stars).
    n_bootstrap : int
        Bootstrap resamplings for the errors of the fitted scale and floor.
    write_model : str or os.PathLike, optional
        Write a copy of the model carrying the calibration fitted here (its
        posterior calibration kept, unless ``sampler="nuts"`` fitted a new one).
    overwrite : bool
        Write into an existing report folder and replace an existing ``write_model``.
    figures : bool
        Write the PNG figures (False: the numbers only, several times faster for small samples).
    progress : bool
        Progress bars.

    Returns
    -------
    CalibrationReport

    Raises
    ------
    ValidationError
        For neither or both of ``spectra`` and ``mock``, spectra without
        labels, existing outputs without ``overwrite``, bad settings, fewer
        than two fitted stars, or ``write_model`` when the stars are too few
        to fit a calibration (the report is written first).
    bayesslam.io.LabelTableError
        For a label table without the model's label columns or without a row
        for a spectrum.
    """
    began = time.perf_counter()
    folder = Path(folder)
    write_model = None if write_model is None else Path(write_model)
    if (spectra is None) == (mock is None):
        raise ValidationError("give held-out stars: spectra with their labels (--spectra HELD_OUT --labels TABLE), or "
                              "mock stars (--mock N); one of the two.")
    if spectra is not None and labels is None:
        raise ValidationError("held-out spectra need their true labels: give a label table (--labels TABLE).")
    if mock is not None and labels is not None:
        raise ValidationError("labels go with held-out spectra; mock stars bring their own true labels.")
    if sampler not in SAMPLERS:
        raise ValidationError(f"sampler must be one of {SAMPLERS}, got {sampler!r}.")
    if sbc is not None and sbc < 2:
        raise ValidationError(f"sbc needs at least 2 simulations, got {sbc}.")
    snr_range = _snr_range(snr)
    _check_outputs(folder, write_model, overwrite)
    model, path = _model(model)
    names, units = model.label_names, model.label_units
    stars = (_mock(model, int(mock), seed, snr_range, progress) if mock is not None
             else _held_out(model, spectra, labels, id_column, progress))
    logger.info("%d stars (%s): MAP + Laplace labels", len(stars.identifiers), stars.description)
    fit = fit_map(model.emulator, stars.flux, stars.ivar, progress=progress,
                  laplace_correction=model.laplace_correction)
    snr_all = spectrum_snr(stars.flux, stars.ivar)
    status = np.asarray(fit.status, dtype=int)
    used = ((status == FitStatus.CONVERGED) & np.all(np.isfinite(fit.labels), axis=1)
            & np.all(np.isfinite(fit.sigma) & (fit.sigma > 0), axis=1) & np.isfinite(snr_all) & (snr_all > 0))
    if used.sum() < 2:
        raise ValidationError(f"only {int(used.sum())} of {len(used)} stars could be fitted; a report needs at least 2.")
    if not np.all(used):
        logger.warning("%d star(s) whose MAP fit did not converge are left out.", int(np.sum(~used)))
    truth, estimate, sigma, snr_used = stars.truth[used], fit.labels[used], fit.sigma[used], snr_all[used]
    n_star = int(used.sum())
    folder.mkdir(parents=True, exist_ok=True)
    draws = None
    if sampler == "nuts":
        posterior = sample_nuts(model.emulator, stars.flux[used], stars.ivar[used], rng_key=jax.random.key(seed),
                                num_warmup=num_warmup, num_samples=num_samples, init_labels=estimate,
                                init_sigma=sigma, identifiers=[i for i, u in zip(stars.identifiers, used) if u],
                                progress=progress, log_likelihood=False)
        draws = _draws(posterior, names, n_star)
    previous = model.error_calibration
    coverage = coverage_report(truth, label_names=names, estimate=estimate, sigma=sigma, draws=draws,
                               calibration=previous, by={"snr": snr_used, "truth": truth}, bins=coverage_bins,
                               seed=seed)
    coverage.to_json(folder / "coverage.json")
    plots: dict[str, Path] = {}
    if figures:
        plots.update({f"coverage_{key}": p for key, p in coverage.plot(folder, "coverage").items()})

    # the paper's error product: label scatter against SNR, power laws in equal-number SNR bins
    per_bin = _stars_per_bin(n_star, stars_per_bin)
    errors = estimate - truth
    law_fits = _fit_snr_laws(names, snr_used, errors, per_bin)
    if figures:
        plots["snr_laws"] = _plot_snr_laws(folder / "snr_laws.png", names, units, snr_used, errors, law_fits,
                                           model.snr_laws, f"{n_star} held-out stars ({stars.description})")

    # a new error calibration on these stars, and its coverage out of sample
    source = f"bayesslam calibrate: {stars.description} ({n_star} fitted), SNR {snr_used.min():.3g}-{snr_used.max():.3g}"
    laplace, posterior_calibration, why_not = _refit(names, truth, estimate, sigma, draws, source, n_bootstrap, seed)
    cross = _cross_checked(truth, estimate, sigma, names, seed) if laplace is not None else None
    new_calibration = None
    if laplace is not None:
        kept = None if previous is None else previous.posterior
        new_calibration = ModelCalibration(laplace=laplace, posterior=posterior_calibration or kept)
    if figures:
        plots["calibration_curves"] = _plot_calibrations(folder / "calibration_curves.png", coverage, laplace, cross,
                                                         truth, estimate, sigma)

    sbc_result = None
    if sbc is not None:
        sbc_result = run_sbc(model, int(sbc), np.geomspace(*snr_range, 4), sampler=sampler, seed=seed,
                             simulator=sbc_simulator, num_warmup=num_warmup, num_samples=num_samples,
                             progress=progress)
        if figures:
            plots.update({f"sbc_{key}": p for key, p in sbc_result.plot(folder, "sbc").items()})
        sbc_result.to_json(folder / "sbc.json")

    _stars_csv(folder / "stars.csv", stars, names, fit.labels, fit.sigma, snr_all, status, used)
    model_path = None
    if write_model is not None and new_calibration is not None:
        model_path = save_model(model.with_calibration(new_calibration), write_model, overwrite=overwrite)
        logger.info("model with the calibration fitted here -> %s", model_path)

    coverage_kinds = {_KIND_KEYS[kind]: _kind_record(coverage, kind, names) for kind in coverage.curves}
    record = {
        "format": REPORT_FORMAT,
        "version": 1,
        "created": utc_now(),
        "library_versions": library_versions(),
        "model": {
            "path": None if path is None else str(path),
            "description": str(model.metadata.get("description", "")),
            "label_names": list(names),
            "label_units": list(units),
            "calibration": None if previous is None else previous.to_metadata(),
            "snr_laws": None if model.snr_laws is None else {n: law.to_metadata() for n, law in model.snr_laws.items()},
        },
        "stars": {
            "source": "mock" if mock is not None else "held-out",
            "description": stars.description,
            "n_input": stars.n_input,
            "n_prepared": len(stars.identifiers),
            "n_used": n_star,
            "n_not_converged": int(np.sum(~used)),
            "failed_inputs": [{"source": f.source, "error": f.error, "reason": f.reason} for f in stars.failures],
            "snr": {"min": float(snr_used.min()), "median": float(np.median(snr_used)), "max": float(snr_used.max())},
            "snr_definition": "median flux * sqrt(ivar) of the prepared spectrum on the model grid "
                              "(bayesslam.calibration.spectrum_snr)",
            "catalog_snr": _catalog_snr(stars.catalog_snr[used], snr_used),
        },
        "settings": {"sampler": sampler, "seed": int(seed), "snr_range": list(snr_range) if mock is not None else None,
                     "coverage_bins": int(coverage_bins), "levels": list(REPORT_LEVELS),
                     "n_bootstrap": int(n_bootstrap),
                     "nuts": {"num_warmup": int(num_warmup), "num_samples": int(num_samples)}
                     if sampler == "nuts" else None},
        "coverage": {
            **coverage_kinds,
            "laplace_refitted": None if cross is None else {**_coverage_at(cross, names), "folds": 2,
                                                             "note": "fitted on one half of the stars, applied to the "
                                                                     "other, both ways"},
        },
        "snr_laws": {
            "stars_per_bin": per_bin,
            "labels": {name: {
                "fitted": law_fits[name][0].to_metadata() if name in law_fits else None,
                "bins": {"snr": law_fits[name][1], "sigma": law_fits[name][2]} if name in law_fits else None,
                "paper": PAPER_SNR_LAWS[name].to_metadata() if name in PAPER_SNR_LAWS else None,
                "model": (model.snr_laws or {})[name].to_metadata() if name in (model.snr_laws or {}) else None,
            } for name in names},
        },
        "error_calibration": {
            "fitted": None if laplace is None else laplace.to_metadata(),
            "fitted_posterior": None if posterior_calibration is None else posterior_calibration.to_metadata(),
            "model": None if previous is None or previous.laplace is None else previous.laplace.to_metadata(),
        },
        "sbc": None if sbc_result is None else _sbc_record(sbc_result),
        "figures": {key: Path(p).name for key, p in plots.items()},
        "files": {"coverage": "coverage.json", "stars": "stars.csv", "sbc": None if sbc_result is None else "sbc.json",
                  "model": None if model_path is None else str(model_path)},
        "elapsed_s": round(time.perf_counter() - began, 1),
    }
    record = _clean(record)
    atomic_write(folder / "report.json", (json.dumps(record, indent=1, allow_nan=False) + "\n").encode())
    logger.info("calibration report -> %s (%.0f s)", folder, record["elapsed_s"])
    if write_model is not None and model_path is None:
        raise ValidationError(f"no model written to {write_model}: no error calibration could be fitted on these "
                              f"{n_star} stars ({why_not}; at least 40 converged stars per label are needed); the "
                              f"report is in {folder}.")
    return CalibrationReport(folder, tuple(names), n_star, coverage, {n: f[0] for n, f in law_fits.items()},
                             new_calibration, sbc_result, model_path, record)


def _catalog_snr(catalog: np.ndarray, snr: np.ndarray) -> dict[str, Any] | None:
    """The spectra's own SNR (the catalog's ``SNR``: BOSS ``SN_MEDIAN_ALL``, the mock's target SNR) against the report's."""
    ok = np.isfinite(catalog) & (catalog > 0)
    if not np.any(ok):
        return None
    return {"min": float(np.min(catalog[ok])), "median": float(np.median(catalog[ok])), "max": float(np.max(catalog[ok])),
            "median_ratio": float(np.median(snr[ok] / catalog[ok])),
            "note": "the SNR the spectra came with (the catalog's SNR column; the paper's laws are against it); "
                    "median_ratio is the median of the report's SNR over it"}


def _sbc_record(result: SbcResult) -> dict[str, Any]:
    """The SBC numbers of ``report.json`` (``sbc.json`` has all of them)."""
    uniformity = result.uniformity()
    curve = result.coverage_curve()
    in_band = result.ecdf_in_band()
    names = result.label_names
    return {
        "n_sim": result.n_sim,
        "sampler": result.sampler,
        "simulator": result.simulator,
        "num_draws": int(result.num_draws),
        "snr": sorted({float(v) for v in result.snr}),
        "chi2_pvalue": {name: float(uniformity.chi2_pvalue[k]) for k, name in enumerate(names)},
        "ks_pvalue": {name: float(uniformity.ks_pvalue[k]) for k, name in enumerate(names)},
        "ecdf_in_band": {name: bool(in_band[k]) for k, name in enumerate(names)},
        **_coverage_at(curve, names),
    }

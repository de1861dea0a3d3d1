"""The pipeline: from spectra and a model to labels, posteriors and a catalog, in one call.

Every way in goes through :func:`prepare`: spectrum files, folders of them,
glob patterns, a prepared FITS file, :class:`~bayesslam.spectra.Spectrum` or
:class:`~bayesslam.spectra.SpectrumBatch` records (raw spectra, prepared
here), or :class:`~bayesslam.preparation.PreparedSpectra`. Raw spectra are
prepared on the model's wavelength grid with the model's own normalization
settings; prepared spectra must be on the model's grid
(:class:`GridMismatchError` otherwise). An input that cannot be read or
prepared is recorded in ``failures`` and never stops the others.

:func:`fit_labels` then gives MAP labels with Laplace errors and
:func:`sample_labels` full posteriors, each with the catalog table of
:func:`bayesslam.catalog.build_catalog`: the model's training domain sets the
domain flags and its error calibration the calibrated errors. :func:`train`
trains a model on labelled spectra. The command line (:mod:`bayesslam.cli`)
and the top-level functions :func:`bayesslam.fit`, :func:`bayesslam.sample`,
:func:`bayesslam.prepare` and :func:`bayesslam.load_model` are thin wrappers
of these.

All JAX work runs in 64 bits inside these calls (:mod:`bayesslam._precision`),
whatever the global JAX setting.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np
from astropy.table import Table

from bayesslam._precision import in_float64
from bayesslam.calibration import spectrum_snr
from bayesslam.catalog import FlagThresholds, TrainingDomain, build_catalog
from bayesslam.catalog.misfit import misfit_amplitude
from bayesslam.emulator import ModelFileError, SlamModel, default_model_path
from bayesslam.emulator import load_model as _load_model_file
from bayesslam.errors import BayesSlamError, SpectrumValidationError
from bayesslam.grid import PRODUCTION_WINDOW, model_wavelength
from bayesslam.infer import (
    FitStatus,
    LabelPrior,
    MapResult,
    Posterior,
    fit_map,
    sample_emcee,
    sample_nuts,
)
from bayesslam.io import READER_KEY, STANDARD_LABELS, identify_format, label_table_names, read_label_table
from bayesslam.population.groups import DEFAULT_SHARED, GroupError, GroupPosterior, assign_groups, read_groups
from bayesslam.population.groups import sample_groups as _sample_groups
from bayesslam.preparation import (
    ContinuumSettings,
    Failure,
    NothingPreparedError,
    PreparedSpectra,
    is_prepared_file,
    prepare_files,
    prepare_spectra,
    read_prepared,
)
from bayesslam.spectra import Spectrum, SpectrumBatch, same_grid

__all__ = [
    "SPECTRUM_SUFFIXES",
    "SpectraInput",
    "InputError",
    "GridMismatchError",
    "FitResult",
    "SampleResult",
    "GroupSampleResult",
    "load_model",
    "expand_paths",
    "check_grid",
    "continuum_settings",
    "model_misfit_tolerance",
    "snr_readers",
    "prepare",
    "fit_labels",
    "fit",
    "sample_labels",
    "sample",
    "sample_grouped",
    "train",
]

logger = logging.getLogger(__name__)

#: File name endings taken from a folder given as input (CSV spectra, rarer than CSV label tables
#: beside them, are taken when named or matched by a pattern).
SPECTRUM_SUFFIXES: tuple[str, ...] = (".fits", ".fit", ".fits.gz", ".fit.gz", ".npz")

#: What the pipeline accepts as spectra.
SpectraInput = Union[str, os.PathLike, Spectrum, SpectrumBatch, PreparedSpectra, Iterable[Union[str, os.PathLike, Spectrum]]]

ModelInput = Union[SlamModel, str, os.PathLike, None]


class InputError(BayesSlamError, ValueError):
    """The spectra given cannot be found: an empty folder, a pattern that matches nothing, no input at all."""


class GridMismatchError(SpectrumValidationError):
    """Prepared spectra are on another wavelength grid than the model."""


@dataclass(frozen=True)
class FitResult:
    """MAP labels of many stars: what :func:`fit_labels` returns.

    Attributes
    ----------
    prepared : PreparedSpectra
        The spectra as fitted (normalized, on the model grid) and the inputs
        that failed (``prepared.failures``).
    map : MapResult
        MAP labels, Laplace covariances, chi2, model spectra, status.
    catalog : astropy.table.Table
        One row per star (:func:`bayesslam.catalog.build_catalog`).
    """

    prepared: PreparedSpectra
    map: MapResult
    catalog: Table

    @property
    def failures(self) -> tuple[Failure, ...]:
        """Inputs that could not be read or prepared, with the reason."""
        return self.prepared.failures


@dataclass(frozen=True)
class SampleResult:
    """Posteriors of many stars: what :func:`sample_labels` (and :func:`bayesslam.sample`) returns.

    Attributes
    ----------
    prepared : PreparedSpectra
        The spectra as sampled, and the inputs that failed.
    map : MapResult
        The MAP fits the samplers started from.
    posterior : Posterior
        Draws (ArviZ ``InferenceData``) and per-star summaries.
    catalog : astropy.table.Table
        One row per star, with the posterior columns filled.
    """

    prepared: PreparedSpectra
    map: MapResult
    posterior: Posterior
    catalog: Table

    @property
    def failures(self) -> tuple[Failure, ...]:
        """Inputs that could not be read or prepared, with the reason."""
        return self.prepared.failures

    def to_datatree(self) -> Any:
        """The posterior as an ``xarray.DataTree`` (ArviZ's exchange format)."""
        return self.posterior.to_datatree()

    def to_netcdf(self, path: str | os.PathLike) -> Path:
        """Write the posterior (ArviZ NetCDF) to ``path``."""
        return self.posterior.to_netcdf(path)


def load_model(path: str | os.PathLike | None = None) -> SlamModel:
    """Load a model file, or the default model shipped with bayesslam.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A model file written by :func:`bayesslam.emulator.save_model`;
        ``None`` loads the shipped default model.

    Returns
    -------
    SlamModel

    Raises
    ------
    InputError
        If ``path`` does not exist.
    bayesslam.emulator.ModelFileError
        If the file is damaged, edited or not a bayesslam model.
    """
    path = default_model_path() if path is None else Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist; give the path of a .npz model, or None for the default.")
    logger.info("model: %s", path)
    return _load_model_file(path)


def _model(model: ModelInput) -> SlamModel:
    return model if isinstance(model, SlamModel) else load_model(model)


def expand_paths(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Spectrum files from files, folders and glob patterns, in the order given.

    A folder contributes its files ending in one of :data:`SPECTRUM_SUFFIXES`
    (sorted by name, not recursive); a string with ``*``, ``?`` or ``[`` that
    is not an existing path is a glob pattern (``**`` recurses). Other paths
    are kept as they are: a missing file becomes a recorded failure when it
    is read.

    Raises
    ------
    InputError
        If nothing is given, or a folder or pattern yields no file.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise InputError("no spectra given; pass files, folders or glob patterns.")
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(SPECTRUM_SUFFIXES))
            if not found:
                raise InputError(f"folder {path} holds no spectrum files (names ending in {', '.join(SPECTRUM_SUFFIXES)}).")
            paths.extend(found)
        elif not path.exists() and glob.has_magic(str(item)):
            found = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not found:
                raise InputError(f"no file matches the pattern {str(item)!r}.")
            paths.extend(found)
        else:
            paths.append(path)
    return paths


def check_grid(prepared: PreparedSpectra, model: SlamModel, source: str = "the spectra") -> None:
    """Raise :class:`GridMismatchError` unless ``prepared`` is on the model's wavelength grid."""
    wave, model_wave = prepared.wave, model.wave
    if not same_grid(wave, model_wave):
        raise GridMismatchError(
            f"{source} were prepared on a grid of {wave.size} pixels ({wave[0]:.1f}-{wave[-1]:.1f} A) but the "
            f"model has {model_wave.size} ({model_wave[0]:.1f}-{model_wave[-1]:.1f} A); prepare the raw spectra "
            "again with this model, or pass them directly."
        )


def continuum_settings(model: SlamModel) -> ContinuumSettings:
    """The continuum normalization a model was trained with (defaults for any setting the model does not record)."""
    known = set(ContinuumSettings.__dataclass_fields__)
    return ContinuumSettings(**{k: v for k, v in model.normalization.items() if k in known})


def _prepare_inputs(spectra: SpectraInput, wave: np.ndarray, settings: ContinuumSettings,
                    progress: bool) -> PreparedSpectra:
    """Raw spectra (records or files) prepared on ``wave``; prepared spectra (object or file) as they are."""
    if isinstance(spectra, PreparedSpectra):
        return spectra
    if isinstance(spectra, Spectrum):
        spectra = [spectra]
    items = [spectra] if isinstance(spectra, (str, os.PathLike)) else list(spectra)
    if items and all(isinstance(item, Spectrum) for item in items):
        return prepare_spectra(items, wave, settings=settings, progress=progress, total=len(items))
    if any(isinstance(item, Spectrum) for item in items):
        raise InputError("pass either spectrum records or file paths, not a mixture.")
    paths = expand_paths(items)
    is_prepared = [is_prepared_file(path) for path in paths]
    if len(paths) == 1 and is_prepared[0]:
        return read_prepared(paths[0])
    if not any(is_prepared):
        return prepare_files(paths, wave, settings=settings, progress=progress)
    # raw files and prepared files together: raw ones first, then each prepared file on this grid
    parts: list[PreparedSpectra] = []
    failures: list[Failure] = []
    raw = [path for path, prepared in zip(paths, is_prepared) if not prepared]
    if raw:
        try:
            parts.append(prepare_files(raw, wave, settings=settings, progress=progress))
        except NothingPreparedError as exc:
            failures.extend(exc.failures)
    for path in (path for path, prepared in zip(paths, is_prepared) if prepared):
        part = read_prepared(path)
        if not same_grid(part.wave, wave):
            failures.append(Failure(str(path), GridMismatchError.__name__,
                                    f"prepared on a grid of {part.wave.size} pixels, not the model's {wave.size}; "
                                    "prepare its raw spectra again with this model."))
            continue
        parts.append(part)
    usable = [part for part in parts if len(part)]
    if not usable:
        reasons = "; ".join(f"{f.source}: {f.reason}" for f in failures[:5])
        raise NothingPreparedError(f"no spectrum could be prepared ({len(failures)} failed): {reasons}", tuple(failures))
    combined = PreparedSpectra.concatenate(usable)
    return PreparedSpectra(combined.spectra, combined.continuum, combined.settings,
                           tuple(failures) + tuple(f for part in parts for f in part.failures))


def _unique_identifiers(prepared: PreparedSpectra) -> PreparedSpectra:
    """Stars sharing an identifier get ``#2``, ``#3``, ... appended after the first, with a warning."""
    identifiers = [m.identifier for m in prepared.spectra.meta]
    counts = Counter(identifiers)
    if len(counts) == len(identifiers):
        return prepared
    seen: Counter[str] = Counter()
    meta = []
    for m in prepared.spectra.meta:
        seen[m.identifier] += 1
        n = seen[m.identifier]
        meta.append(m if n == 1 else dataclasses.replace(m, identifier=f"{m.identifier}#{n}"))
    repeated = {name: count for name, count in counts.items() if count > 1}
    logger.warning("%d identifier(s) occur more than once (%s); later occurrences are renamed NAME#2, NAME#3, ... "
                   "(the catalog's SOURCE column says which file each came from).", len(repeated),
                   ", ".join(f"{name} x{count}" for name, count in list(repeated.items())[:5]))
    batch = dataclasses.replace(prepared.spectra, meta=tuple(meta))
    return dataclasses.replace(prepared, spectra=batch)


def prepare(spectra: SpectraInput, model: ModelInput = None, *, progress: bool = False) -> PreparedSpectra:
    """Spectra normalized on the model's grid with the model's normalization settings.

    Parameters
    ----------
    spectra : SpectraInput
        Files, folders, glob patterns, one prepared FITS file, ``Spectrum``
        or ``SpectrumBatch`` records of raw spectra, or ``PreparedSpectra``.
    model : SlamModel, path or None
        The model (None: the shipped default model).
    progress : bool
        Show a progress bar.

    Returns
    -------
    PreparedSpectra
        The usable spectra, and the inputs that failed with their reasons.

    Raises
    ------
    GridMismatchError
        If already prepared spectra are on another grid than the model.
    InputError
        If no input is given or a folder or pattern yields none.
    SpectrumValidationError
        If no input at all could be prepared.
    """
    model = _model(model)
    prepared = _prepare_inputs(spectra, model.wave, continuum_settings(model), progress)
    check_grid(prepared, model)
    return _unique_identifiers(prepared)


#: Source of in-memory mock spectra (:mod:`bayesslam.mock`).
_MOCK_SOURCE = "bayesslam.mock"


def model_misfit_tolerance(model: SlamModel) -> float | None:
    """The model's own ``MISFIT`` tolerance of ``POOR_FIT`` (metadata ``misfit_tolerance``), or None.

    A model that knows how badly it fits its own training stars (e.g. the
    99th percentile of their out-of-fold ``MISFIT``) stores it there; the
    catalog then uses it instead of
    :data:`~bayesslam.catalog.misfit.DEFAULT_MISFIT_TOLERANCE`.

    Raises
    ------
    ModelFileError
        If the value is not a positive finite number.
    """
    value = model.metadata.get("misfit_tolerance")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise ModelFileError(f"the model's misfit_tolerance must be a positive number (normalized flux), "
                             f"not {value!r}.")
    return float(value)


def snr_readers(meta: Sequence[Any]) -> list[str]:
    """Per spectrum, the reader that reported its SNR (a key of :data:`bayesslam.catalog.SNR_DEFINITIONS`).

    The reader that read it (``meta.extra["reader"]``, recorded by
    :func:`bayesslam.io.read_spectrum`), else the format of its source file
    (:func:`bayesslam.io.identify_format`, once per file); ``mock`` for
    in-memory mock spectra, ``given`` for records without a source,
    ``unknown`` when the source file is not at hand or not recognised.
    """
    known: dict[str, str] = {}
    out = []
    for m in meta:
        source = str(m.source)
        if READER_KEY in m.extra:
            out.append(str(m.extra[READER_KEY]))
            continue
        if source not in known:
            if source == _MOCK_SOURCE:
                known[source] = "mock"
            elif not source:
                known[source] = "given"
            elif not Path(source).is_file():
                known[source] = "unknown"
            else:
                try:
                    known[source] = identify_format(source).name
                except (BayesSlamError, OSError):  # e.g. a file no reader recognises any more
                    known[source] = "unknown"
        out.append(known[source])
    return out


def _catalog(model: SlamModel, prepared: PreparedSpectra, result: MapResult,
             posterior: Posterior | None = None, thresholds: FlagThresholds | None = None) -> Table:
    batch = prepared.spectra
    snr = np.array([m.snr for m in batch.meta])
    misfit = misfit_amplitude(batch.flux, batch.ivar, result.model_flux, np.asarray(model.emulator.model_variance),
                              len(model.label_names))
    return build_catalog(batch.identifiers, snr, result, posterior, TrainingDomain(model.training_labels),
                         thresholds=thresholds or FlagThresholds(),
                         calibration=model.error_calibration, snr_laws=model.snr_laws,
                         law_snr=spectrum_snr(batch.flux, batch.ivar), sources=[m.source for m in batch.meta],
                         label_units=model.label_units, v_rad=np.array([m.v_rad for m in batch.meta], dtype=float),
                         rest_frame=np.array([m.rest_frame for m in batch.meta], dtype=bool),
                         n_model_pixels=int(np.sum(np.isfinite(np.asarray(model.emulator_arrays["model_variance"])))),
                         error_model=model.error_model is not None,
                         laplace_correction=model.laplace_correction is not None, misfit=misfit,
                         model_misfit_tolerance=model_misfit_tolerance(model), snr_readers=snr_readers(batch.meta))


@in_float64
def fit_labels(spectra: SpectraInput, model: ModelInput = None, *, prior: LabelPrior | None = None,
               progress: bool = False, thresholds: FlagThresholds | None = None) -> FitResult:
    """MAP labels with Laplace errors, calibrated and SNR-law errors and flags, for many stars.

    Parameters
    ----------
    spectra : SpectraInput
        As for :func:`prepare`.
    model : SlamModel, path or None
        The model (None: the shipped default model).
    prior : LabelPrior, optional
        Default: uniform over the model's training box.
    progress : bool
        Show progress bars.
    thresholds : FlagThresholds, optional
        Flag thresholds (default: :class:`~bayesslam.catalog.FlagThresholds`;
        e.g. ``FlagThresholds(misfit=0.03)`` for a looser ``POOR_FIT``).

    Returns
    -------
    FitResult
    """
    model = _model(model)
    prepared = prepare(spectra, model, progress=progress)
    batch = prepared.spectra
    result = fit_map(model.emulator, batch.flux, batch.ivar, prior=prior, progress=progress,
                     laplace_correction=model.laplace_correction)
    return FitResult(prepared, result, _catalog(model, prepared, result, thresholds=thresholds))


def fit(spectra: SpectraInput, model: ModelInput = None, *, prior: LabelPrior | None = None,
        progress: bool = False, thresholds: FlagThresholds | None = None) -> Table:
    """MAP labels of many stars as a catalog table (the columns of ``bayesslam fit``).

    Parameters are those of :func:`fit_labels`; use it for the MAP results
    and the failed inputs too.

    Returns
    -------
    astropy.table.Table
        One row per star: ``IDENTIFIER``, ``SNR``, per label ``L_MAP``,
        ``L_MAP_ERR``, ``L_ERR`` (calibrated), ``L_SNR_ERR`` and more, and
        ``FLAGS`` (see :mod:`bayesslam.catalog.table`).

    Examples
    --------
    >>> import bayesslam
    >>> table = bayesslam.fit(["spec-1079-52621-0509.fits"])  # doctest: +SKIP
    >>> table["TEFF_MAP", "TEFF_ERR", "FE_H_MAP", "FE_H_ERR"]  # doctest: +SKIP
    """
    return fit_labels(spectra, model, prior=prior, progress=progress, thresholds=thresholds).catalog


@in_float64
def sample_labels(
    spectra: SpectraInput,
    model: ModelInput = None,
    *,
    seed: int = 0,
    sampler: str = "nuts",
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 1,
    prior: LabelPrior | None = None,
    posterior_predictive: int = 0,
    progress: bool = False,
    thresholds: FlagThresholds | None = None,
) -> SampleResult:
    """Full label posteriors (NUTS or emcee) of many stars, started from their MAP.

    Parameters
    ----------
    spectra : SpectraInput
        As for :func:`prepare`.
    model : SlamModel, path or None
        The model (None: the shipped default model).
    seed : int
        Random seed (NUTS: ``jax.random.key(seed)``; emcee: numpy).
    sampler : {"nuts", "emcee"}
        NUTS (:func:`bayesslam.infer.sample_nuts`) or emcee
        (:func:`bayesslam.infer.sample_emcee`, 32 walkers).
    num_warmup, num_samples : int
        Warm-up (emcee: burn-in) steps and kept draws per chain or walker.
    num_chains : int
        NUTS chains per star.
    prior : LabelPrior, optional
        Default: uniform over the model's training box.
    posterior_predictive : int
        Keep replicated spectra of about this many draws per star in the
        posterior's ``posterior_predictive`` group (for ``arviz.plot_ppc``);
        0: none. The observed flux and ivar, each star's log likelihood per
        draw and the catalog's ``PPC_CHI2_P`` are there either way
        (:mod:`bayesslam.infer.predictive`).
    progress : bool
        Show progress bars.
    thresholds : FlagThresholds, optional
        Flag thresholds (default: :class:`~bayesslam.catalog.FlagThresholds`;
        e.g. ``FlagThresholds(misfit=0.03)`` for a looser ``POOR_FIT``).

    Returns
    -------
    SampleResult
        ``.catalog``, ``.posterior``, ``.to_datatree()``, ``.to_netcdf(path)``.

    Raises
    ------
    BayesSlamError
        For an unknown ``sampler`` or a negative ``posterior_predictive``.
    """
    import jax

    if sampler not in ("nuts", "emcee"):
        raise BayesSlamError(f"sampler must be 'nuts' or 'emcee', not {sampler!r}.")
    if posterior_predictive < 0:
        raise BayesSlamError(f"posterior_predictive must be >= 0 (draws per star), not {posterior_predictive}.")
    model = _model(model)
    prepared = prepare(spectra, model, progress=progress)
    batch = prepared.spectra
    emulator = model.emulator
    result = fit_map(emulator, batch.flux, batch.ivar, prior=prior, laplace_correction=model.laplace_correction)
    prepared, result = _sampleable(prepared, result)  # every star left has a MAP fit to start from
    batch = prepared.spectra
    if sampler == "nuts":
        posterior = sample_nuts(emulator, batch.flux, batch.ivar, rng_key=jax.random.key(seed), prior=prior,
                                num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                                init_labels=result.labels, init_sigma=result.sigma, identifiers=batch.identifiers,
                                log_likelihood=True, posterior_predictive=posterior_predictive, progress=progress)
    else:
        posterior = sample_emcee(emulator, batch.flux, batch.ivar, seed=seed, prior=prior,
                                 n_steps=num_warmup + num_samples, n_burn=num_warmup, init_labels=result.labels,
                                 identifiers=batch.identifiers, log_likelihood=True,
                                 posterior_predictive=posterior_predictive, progress=progress)
    return SampleResult(prepared, result, posterior, _catalog(model, prepared, result, posterior, thresholds))


@dataclass(frozen=True)
class GroupSampleResult:
    """Joint posteriors of stars in groups that share labels: what :func:`sample_grouped` returns.

    Attributes
    ----------
    prepared : PreparedSpectra
        The spectra as sampled, and the inputs that failed.
    map : MapResult
        The MAP fits the sampler started from.
    posterior : GroupPosterior
        Per-star and per-group draws and summaries.
    catalog : astropy.table.Table
        One row per star (a shared label's columns are its group's posterior).
    groups_table : astropy.table.Table
        One row per group (:meth:`GroupPosterior.table`).
    """

    prepared: PreparedSpectra
    map: MapResult
    posterior: GroupPosterior
    catalog: Table
    groups_table: Table

    @property
    def failures(self) -> tuple[Failure, ...]:
        """Inputs that could not be read, prepared or grouped, with the reason."""
        return self.prepared.failures

    def to_netcdf(self, path: str | os.PathLike) -> Path:
        """Write the per-star and per-group draws (ArviZ NetCDF) to ``path``."""
        return self.posterior.to_netcdf(path)


def _grouped(prepared: PreparedSpectra, result: MapResult,
             groups: Mapping[str, str]) -> tuple[PreparedSpectra, MapResult, Mapping[str, str]]:
    """The stars of the groups table that can be sampled; a star whose partners all failed becomes a failed input.

    Raises
    ------
    GroupError
        If the table names stars that are neither among the spectra nor
        among the failed inputs, or a spectrum is in no group.
    """
    ids = list(prepared.spectra.identifiers)
    failed = {f.identifier for f in prepared.failures if f.identifier}
    unknown = sorted(set(groups) - set(ids) - failed)
    if unknown and len(unknown) > len([f for f in prepared.failures if not f.identifier]):
        raise GroupError(f"the groups table names {len(unknown)} star(s) that are not among the spectra, e.g. "
                         f"{unknown[:5]}; check the identifiers, or give those stars' spectra too.")
    if unknown:
        logger.warning("%d star(s) of the groups table are not among the usable spectra (e.g. %s); %d input(s) "
                       "failed before naming their star.", len(unknown), unknown[:3],
                       len([f for f in prepared.failures if not f.identifier]))
    present = {i: groups[i] for i in ids if i in groups}
    sizes = Counter(present.values())
    alone = [i for i, g in present.items() if sizes[g] == 1]
    if alone:
        logger.warning("%d star(s) have no usable partner left in their group; they are listed as failed.",
                       len(alone))
    keep = np.array([k for k, i in enumerate(ids) if i not in alone], dtype=np.int64)
    meta = prepared.spectra.meta
    dropped = [Failure(meta[k].source, GroupError.__name__,
                       f"star {ids[k]!r}: no other star of its group {groups.get(ids[k])!r} could be used; sample it "
                       "alone (bayesslam sample without --groups).", ids[k]) for k in range(len(ids)) if ids[k] in alone]
    if len(keep) == len(ids):
        return prepared, result, present
    return prepared.take(keep, dropped), result.take(keep), {i: g for i, g in present.items() if i not in alone}


@in_float64
def sample_grouped(
    spectra: SpectraInput,
    groups: str | os.PathLike | Mapping[str, str],
    model: ModelInput = None,
    *,
    shared: Sequence[str] = DEFAULT_SHARED,
    scatter: bool = False,
    seed: int = 0,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 1,
    prior: LabelPrior | None = None,
    progress: bool = False,
    thresholds: FlagThresholds | None = None,
) -> GroupSampleResult:
    """Joint posteriors of stars in groups that share labels (wide binaries, clusters), from their spectra.

    Parameters
    ----------
    spectra : SpectraInput
        As for :func:`prepare`: every star must be in a group.
    groups : path or mapping
        A groups table (CSV or FITS, columns ``identifier`` and ``group``)
        or ``{identifier: group}``.
    model : SlamModel, path or None
    shared : sequence of str
        The labels the members of a group share (default [Fe/H] and [alpha/M]).
    scatter : bool
        Sample an intrinsic scatter of the shared labels per group (clusters)
        instead of sharing them exactly (binaries).
    seed, num_warmup, num_samples, num_chains, prior, progress, thresholds
        As for :func:`sample_labels` (NUTS).

    Returns
    -------
    GroupSampleResult

    Raises
    ------
    GroupError
        For a groups table naming unknown stars, a spectrum in no group, a
        group of one star, or a shared label the model lacks.
    """
    import jax

    model = _model(model)
    mapping = read_groups(groups) if isinstance(groups, (str, os.PathLike)) else dict(groups)
    unknown = [label for label in shared if label not in model.label_names]
    if unknown or not shared:
        raise GroupError(f"cannot share {unknown or 'no labels'}: the model's labels are {list(model.label_names)}.")
    prepared = prepare(spectra, model, progress=progress)
    emulator = model.emulator
    result = fit_map(emulator, prepared.spectra.flux, prepared.spectra.ivar, prior=prior,
                     laplace_correction=model.laplace_correction)
    prepared, result = _sampleable(prepared, result)
    prepared, result, mapping = _grouped(prepared, result, mapping)
    batch = prepared.spectra
    grouping = assign_groups(batch.identifiers, mapping)
    posterior = _sample_groups(emulator, batch.flux, batch.ivar, grouping, rng_key=jax.random.key(seed),
                               shared=shared, scatter=scatter, prior=prior, num_warmup=num_warmup,
                               num_samples=num_samples, num_chains=num_chains, init_labels=result.labels,
                               init_sigma=result.sigma, progress=progress)
    catalog = _catalog(model, prepared, result, posterior.stars, thresholds)
    catalog["GROUP"] = [grouping.names[g] for g in grouping.group_of]
    catalog["GROUP"].description = "the star's group (its shared labels are the group's)"
    return GroupSampleResult(prepared, result, posterior, catalog, posterior.table())


def _sampleable(prepared: PreparedSpectra, result: MapResult) -> tuple[PreparedSpectra, MapResult]:
    """Stars with a MAP fit; those without (no usable pixel: nothing to sample) become failed inputs."""
    fitted = np.all(np.isfinite(result.labels), axis=1)
    if np.all(fitted):
        return prepared, result
    meta = prepared.spectra.meta
    dropped = [Failure(meta[i].source, SpectrumValidationError.__name__,
                       f"star {meta[i].identifier!r} could not be fitted (status {FitStatus(result.status[i]).name}: "
                       "no usable pixel on the model grid, or non-finite values); there is nothing to sample.",
                       meta[i].identifier) for i in np.flatnonzero(~fitted)]
    logger.warning("%d star(s) without a MAP fit are left out of sampling and listed as failed.", len(dropped))
    if not np.any(fitted):
        raise SpectrumValidationError(f"no star could be fitted: {'; '.join(f.reason for f in dropped[:3])}")
    keep = np.flatnonzero(fitted)
    return prepared.take(keep, dropped), result.take(keep)


def sample(spectra: SpectraInput, model: ModelInput = None, *, seed: int = 0, sampler: str = "nuts",
           num_warmup: int = 1000, num_samples: int = 1000, num_chains: int = 1, prior: LabelPrior | None = None,
           posterior_predictive: int = 0, progress: bool = False,
           thresholds: FlagThresholds | None = None) -> SampleResult:
    """Full label posteriors of many stars: :func:`sample_labels` (the same parameters and result).

    Examples
    --------
    >>> import bayesslam
    >>> result = bayesslam.sample(["spec-1079-52621-0509.fits"], seed=1, num_chains=4)  # doctest: +SKIP
    >>> result.catalog["FE_H_MEDIAN", "FE_H_P16", "FE_H_P84"]  # doctest: +SKIP
    >>> result.to_netcdf("posterior.nc")  # doctest: +SKIP
    """
    return sample_labels(spectra, model, seed=seed, sampler=sampler, num_warmup=num_warmup, num_samples=num_samples,
                         num_chains=num_chains, prior=prior, posterior_predictive=posterior_predictive,
                         progress=progress, thresholds=thresholds)


@in_float64
def train(
    spectra: SpectraInput,
    labels: str | os.PathLike | np.ndarray | Mapping[str, Any],
    *,
    label_names: Sequence[str] | None = None,
    id_column: str = "identifier",
    window: tuple[float, float] | None = PRODUCTION_WINDOW,
    description: str = "",
    label_cv: bool = True,
    progress: bool = False,
    **trainer_options: Any,
) -> SlamModel:
    """Train a SLAM model on labelled spectra and return it (save it with :func:`bayesslam.emulator.save_model`).

    With ``label_cv`` (the default) every training star's labels are then
    inferred by the fold model that did not see it
    (:func:`bayesslam.train.with_label_cv`), and the model carries these
    out-of-fold labels and the Laplace error calibration measured on them, so
    its catalogs' calibrated errors (``L_ERR``) come from its own training
    stars.

    Parameters
    ----------
    spectra : SpectraInput
        Raw spectra (prepared on the BOSS grid over ``window``) or prepared
        spectra (their grid becomes the model's).
    labels : path, array or mapping
        A label table (CSV or FITS, matched to the spectra by ``id_column``:
        by identifier, else by file name), or the labels themselves, one row
        per prepared spectrum in order.
    label_names : sequence of str, optional
        The label columns, in the model's order. Default: those of ``teff``,
        ``logg``, ``fe_h``, ``alpha_m`` the table has (for arrays: all four).
    id_column : str
        The identifier (or file-name) column of a label table.
    window : (float, float) or None
        Wavelength window of the model grid for raw spectra (default: the
        production window; None: the whole BOSS grid).
    description : str
        Free text stored in the model.
    label_cv : bool
        Run the label-level cross-validation and store its calibration.
    progress : bool
        Show progress bars.
    **trainer_options
        Passed to :class:`bayesslam.train.SlamTrainer` (``grid``, ``backend``,
        ``n_folds``, ``n_jobs``, ``checkpoint_dir``, ...).

    Returns
    -------
    SlamModel
    """
    from bayesslam.train import SlamTrainer, with_label_cv

    # raw spectra go on the window's grid; a prepared file keeps its own grid
    prepared = _prepare_inputs(spectra, model_wavelength(window), ContinuumSettings(), progress)
    if prepared.failures:
        logger.warning("%d input(s) could not be prepared and are left out of the training set.",
                       len(prepared.failures))
    if isinstance(labels, (str, os.PathLike)):
        names = tuple(label_names) if label_names is not None else label_table_names(labels)
        logger.info("labels: %s", ", ".join(names))
        sources = [Path(m.source) for m in prepared.spectra.meta]
        aliases = [(path.name, path.name.split(".")[0]) for path in sources]
        labels = read_label_table(labels, prepared.spectra.identifiers, names, id_column, aliases=aliases)
    else:
        names = tuple(label_names) if label_names is not None else STANDARD_LABELS
    trainer = SlamTrainer(progress=progress, **trainer_options)
    trainer.fit_prepared(labels, prepared, label_names=names)
    logger.info("trained on %d stars x %d pixels", len(prepared), prepared.wave.size)
    model = trainer.to_model(description=description)
    if not label_cv:
        return model
    n_jobs = int(trainer_options.get("n_jobs", 1))
    return with_label_cv(model, prepared.spectra.flux, prepared.spectra.ivar, n_jobs=n_jobs, progress=progress)

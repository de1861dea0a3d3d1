"""The ``train``, ``fit`` and ``sample`` commands (argument parsing lives in :mod:`bayesslam.cli`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from bayesslam.continuum import ContinuumSettings
from bayesslam.errors import BayesSlamError, SpectrumValidationError
from bayesslam.prepare import PreparedSpectra, is_prepared_file, prepare_files, read_prepared

__all__ = ["load_spectra_for_model", "read_label_table", "run_train", "run_fit", "run_sample"]

logger = logging.getLogger("bayesslam")


def load_spectra_for_model(paths: Sequence[Path], wave: np.ndarray, normalization: dict, progress: bool) -> PreparedSpectra:
    """A prepared file as it is, or raw spectrum files prepared on the model's grid with its settings.

    Raises
    ------
    SpectrumValidationError
        If a prepared file is on another wavelength grid than the model.
    """
    if len(paths) == 1 and is_prepared_file(paths[0]):
        prepared = read_prepared(paths[0])
        if prepared.wave.shape != wave.shape or not np.allclose(prepared.wave, wave, rtol=1e-10, atol=0):
            raise SpectrumValidationError(
                f"{paths[0]} was prepared on a grid of {prepared.wave.size} pixels "
                f"({prepared.wave[0]:.1f}-{prepared.wave[-1]:.1f} A) but the model has {wave.size} "
                f"({wave[0]:.1f}-{wave[-1]:.1f} A); prepare the raw spectra again, or pass them directly."
            )
        return prepared
    known = set(ContinuumSettings.__dataclass_fields__)
    settings = ContinuumSettings(**{k: v for k, v in normalization.items() if k in known})
    return prepare_files(paths, wave, settings=settings, progress=progress)


def read_label_table(path: Path, identifiers: Sequence[str], label_names: Sequence[str], id_column: str) -> np.ndarray:
    """Labels of the given identifiers from a CSV or FITS table, in that order.

    Raises
    ------
    BayesSlamError
        If a column or an identifier is missing, or a label is not finite.
    """
    from astropy.table import Table

    fmt = "ascii.csv" if path.suffix.lower() in (".csv", ".txt") else None
    try:
        table = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many kinds for unreadable tables
        raise BayesSlamError(f"{path}: cannot read the label table ({exc}).") from exc
    missing_cols = [c for c in (id_column, *label_names) if c not in table.colnames]
    if missing_cols:
        raise BayesSlamError(f"{path}: missing column(s) {missing_cols}; it has {table.colnames}.")
    index = {str(v).strip(): i for i, v in enumerate(table[id_column])}
    absent = [i for i in identifiers if i not in index]
    if absent:
        raise BayesSlamError(
            f"{len(absent)} spectra have no row in {path} (matched on column {id_column!r}), e.g. {absent[:3]}."
        )
    rows = [index[i] for i in identifiers]
    labels = np.column_stack([np.asarray(table[c], dtype=float)[rows] for c in label_names])
    if not np.all(np.isfinite(labels)):
        bad = [identifiers[i] for i in np.where(~np.all(np.isfinite(labels), axis=1))[0][:3]]
        raise BayesSlamError(f"labels must be finite; NaN or inf for e.g. {bad}.")
    return labels


def _model(path: Path | None):
    from bayesslam.default_model import default_model_path
    from bayesslam.modelfile import load_model

    path = path or default_model_path()
    logger.info("model: %s", path)
    return load_model(path)


def run_train(args: argparse.Namespace) -> int:
    """``bayesslam train SPECTRA... --labels TABLE -o MODEL``."""
    from bayesslam.grid import model_wavelength
    from bayesslam.modelfile import save_model
    from bayesslam.train import SlamTrainer

    if args.output.exists() and not args.overwrite:
        raise BayesSlamError(f"{args.output} exists; pass --overwrite to replace it.")
    if len(args.spectra) == 1 and is_prepared_file(args.spectra[0]):
        prepared = read_prepared(args.spectra[0])  # its grid becomes the model's grid
    else:
        prepared = prepare_files(args.spectra, model_wavelength(), progress=args.progress)
    label_names = tuple(args.label_names.split(","))
    labels = read_label_table(args.labels, prepared.spectra.identifiers, label_names, args.id_column)
    checkpoint = args.checkpoint or args.output.with_suffix(".checkpoint")
    trainer = SlamTrainer(grid=args.grid, backend=args.backend, n_folds=args.folds, tol=args.tol,
                          cv_tol=args.cv_tol, cv_race=False if args.no_cv_race else None,
                          n_jobs=args.n_jobs, checkpoint_dir=checkpoint, progress=args.progress)
    if checkpoint.exists() and not args.resume:
        raise BayesSlamError(f"checkpoint {checkpoint} exists; pass --resume to continue that training, or remove it.")
    trainer.fit_prepared(labels, prepared, label_names=label_names)
    save_model(trainer.to_model(description=args.description), args.output, overwrite=args.overwrite)
    logger.info("trained on %d stars x %d pixels -> %s", len(prepared), prepared.wave.size, args.output)
    return 0


def run_fit(args: argparse.Namespace) -> int:
    """``bayesslam fit SPECTRA... [-m MODEL] -o CATALOG``: MAP labels for many stars."""
    from bayesslam.catalog import build_catalog, write_catalog
    from bayesslam.domain import TrainingDomain
    from bayesslam.fit import fit_map

    if args.output.exists() and not args.overwrite:
        raise BayesSlamError(f"{args.output} exists; pass --overwrite to replace it.")
    model = _model(args.model)
    prepared = load_spectra_for_model(args.spectra, model.wave, model.metadata.get("normalization", {}), args.progress)
    batch = prepared.spectra
    result = fit_map(model.emulator, batch.flux, batch.ivar, progress=args.progress)
    snr = np.array([m.snr for m in batch.meta])
    table = build_catalog(batch.identifiers, snr, result, domain=TrainingDomain(model.training_labels),
                          calibration=model.error_calibration)
    write_catalog(table, args.output, overwrite=args.overwrite)
    _log_table(table, model.label_names)
    logger.info("catalog of %d stars -> %s (%d inputs failed)", len(table), args.output, len(prepared.failures))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    """``bayesslam sample SPECTRA... [-m MODEL] -o POSTERIORS.nc``: NUTS or emcee posteriors."""
    import jax

    from bayesslam.catalog import build_catalog, write_catalog
    from bayesslam.domain import TrainingDomain
    from bayesslam.fit import fit_map
    from bayesslam.sample import sample_emcee, sample_nuts

    if args.output.exists() and not args.overwrite:
        raise BayesSlamError(f"{args.output} exists; pass --overwrite to replace it.")
    model = _model(args.model)
    prepared = load_spectra_for_model(args.spectra, model.wave, model.metadata.get("normalization", {}), args.progress)
    batch = prepared.spectra
    emulator = model.emulator
    result = fit_map(emulator, batch.flux, batch.ivar)
    if args.sampler == "nuts":
        posterior = sample_nuts(emulator, batch.flux, batch.ivar, rng_key=jax.random.key(args.seed),
                                num_warmup=args.warmup, num_samples=args.draws, num_chains=args.chains,
                                init_labels=result.labels, init_sigma=result.sigma, identifiers=batch.identifiers,
                                progress=args.progress)
    else:
        posterior = sample_emcee(emulator, batch.flux, batch.ivar, seed=args.seed, n_steps=args.warmup + args.draws,
                                 n_burn=args.warmup, init_labels=result.labels, identifiers=batch.identifiers,
                                 progress=args.progress)
    posterior.to_netcdf(args.output)
    snr = np.array([m.snr for m in batch.meta])
    table = build_catalog(batch.identifiers, snr, result, posterior, TrainingDomain(model.training_labels),
                          calibration=model.error_calibration)
    catalog = args.catalog or args.output.with_suffix(".fits")
    write_catalog(table, catalog, overwrite=True)
    _log_table(table, model.label_names)
    logger.info("posteriors -> %s, catalog -> %s", args.output, catalog)
    return 0


def _log_table(table, label_names: Sequence[str]) -> None:
    """Log one line per star: MAP labels with the catalog's recommended sigma ``L_ERR``."""
    logger.info("errors: %s", {"none": "statistical (the model has no error calibration)",
                               "laplace": "calibrated (Laplace calibration)",
                               "posterior": "calibrated (posterior calibration)"}[table.meta["ERRCALIB"]])
    head = "  ".join(f"{n:>16s}" for n in label_names)
    logger.info("  %-26s %6s  %s  %5s %s", "identifier", "SNR", head, "chi2r", "flags")
    for row in table:
        values = "  ".join(
            f"{row[f'{n.upper()}_MAP']:8.3f}+-{row[f'{n.upper()}_ERR']:<6.3f}" if n != "teff"
            else f"{row['TEFF_MAP']:8.1f}+-{row['TEFF_ERR']:<6.1f}"
            for n in label_names
        )
        logger.info("  %-26s %6.1f  %s  %5.2f %d", row["IDENTIFIER"], row["SNR"], values, row["REDUCED_CHI2"], row["FLAGS"])

"""The ``bayesslam`` command: argument parsing, and one call into the library per command.

``prepare`` calls :func:`bayesslam.preparation.prepare_files`, ``mock``
:func:`bayesslam.mock.generate_survey_files`, ``train``, ``fit`` and
``sample`` the pipeline (:func:`bayesslam.pipeline.train`,
:func:`~bayesslam.pipeline.fit_labels`, :func:`~bayesslam.pipeline.sample_labels`),
``population`` :func:`bayesslam.population.reweight_population` on the
posteriors that ``sample`` wrote, ``select``
:func:`bayesslam.relations.select_mdwarfs`, ``compare``
:func:`bayesslam.relations.compare_catalogs` and ``calibrate``
:func:`bayesslam.calibration_report.calibration_report`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Sequence

from bayesslam import __version__
from bayesslam.errors import BayesSlamError
from bayesslam.grid import PRODUCTION_WINDOW, model_wavelength
from bayesslam.preparation.continuum import ContinuumSettings

__all__ = ["main", "build_parser"]

logger = logging.getLogger("bayesslam")

#: Exit status of ``fit`` and ``sample`` with ``--strict`` when any input failed (2: an error stopped the run).
STRICT_EXIT = 3
STRICT_HELP = (f"exit with status {STRICT_EXIT} if any input failed (the catalog is written either way, with the "
               "failed inputs in its FAILED extension)")


def _add_prepare(subparsers: argparse._SubParsersAction) -> None:
    defaults = ContinuumSettings()
    parser = subparsers.add_parser(
        "prepare",
        help="read, rest-frame shift, resample and continuum-normalize spectra into one FITS file",
        description=(
            "Read spectra (SDSS/BOSS spec, SDSS-V mwmStar, LAMOST, or generic tables), shift them to "
            "the rest frame, resample them onto the BOSS log-lambda model grid and normalize them "
            "with SLAM's double smoothing spline. Files that fail are reported and listed in the "
            "output's FAILED table; the others are all written."
        ),
    )
    parser.add_argument("files", nargs="+", help="spectrum files, folders or glob patterns")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output FITS file")
    parser.add_argument(
        "--window", nargs=2, type=float, default=PRODUCTION_WINDOW, metavar=("LO", "HI"),
        help="model-grid wavelength window in vacuum Angstrom (default: %(default)s)",
    )
    parser.add_argument("--no-rest-frame", action="store_true", help="do not shift to the rest frame")
    parser.add_argument("--p1", type=float, default=defaults.p1, help="first spline's csaps p (%(default)s)")
    parser.add_argument("--p2", type=float, default=defaults.p2, help="second spline's csaps p (%(default)s)")
    parser.add_argument("--dwave", type=float, default=defaults.dwave, help="selection bin width, A (%(default)s)")
    parser.add_argument("--q", type=float, default=defaults.q, help="selection quantile (%(default)s)")
    parser.add_argument("--rsv-frac", type=float, default=defaults.rsv_frac,
                        help="selection half-width in robust sigmas (%(default)s)")
    parser.add_argument("--plot", type=Path, help="also save a PNG of the prepared spectra")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(handler=_run_prepare)


def _check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise BayesSlamError(f"{path} exists; pass --overwrite to replace it.")


def _run_prepare(args: argparse.Namespace) -> int:
    from bayesslam.pipeline import expand_paths
    from bayesslam.preparation import prepare_files, write_prepared

    _check_output(args.output, args.overwrite)
    settings = ContinuumSettings(p1=args.p1, p2=args.p2, dwave=args.dwave, q=args.q, rsv_frac=args.rsv_frac)
    files = expand_paths(args.files)
    prepared = prepare_files(
        files,
        model_wavelength(tuple(args.window)),
        rest_frame=not args.no_rest_frame,
        settings=settings,
        progress=args.progress,
    )
    write_prepared(prepared, args.output, overwrite=args.overwrite)
    logger.info(
        "prepared %d of %d spectra on %d pixels (%.1f-%.1f A) -> %s",
        len(prepared), len(files), prepared.wave.size, prepared.wave[0], prepared.wave[-1], args.output,
    )
    for meta, good in zip(prepared.spectra.meta, (~prepared.spectra.mask).sum(axis=1)):
        logger.info("  %-28s SNR %6.1f  v_rad %8.1f km/s  usable pixels %d", meta.identifier, meta.snr, meta.v_rad, good)
    if prepared.failures:
        logger.warning("%d file(s) failed; see the warnings above and the FAILED table.", len(prepared.failures))
    if args.plot:
        from bayesslam.preparation.plotting import plot_prepared

        plot_prepared(prepared, args.plot)
        logger.info("plot -> %s", args.plot)
    return 0


def _add_mock(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mock",
        help="write a mock BOSS M-dwarf survey (real-format files + true labels)",
        description=(
            "Generate a semi-empirical mock survey from the real Kesseli et al. (2017) BOSS templates: "
            "spectrum files in a real survey layout, labels.csv with the true labels and survey.json."
        ),
    )
    parser.add_argument("--n", type=int, required=True, help="number of field stars")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--binaries", type=int, default=0, help="wide-binary pairs added (sharing [Fe/H])")
    parser.add_argument("--cluster", type=int, default=0, help="cluster members added (sharing [Fe/H])")
    parser.add_argument("--format", choices=("sdss-spec", "sdssv-mwm"), default="sdss-spec", help="file layout")
    parser.add_argument("--snr", nargs=2, type=float, default=(3.0, 50.0), metavar=("LO", "HI"),
                        help="log-uniform SNR range (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(handler=_run_mock)


def _run_mock(args: argparse.Namespace) -> int:
    from bayesslam.mock import generate_survey_files

    summary = generate_survey_files(
        args.output, args.n, args.seed, n_binaries=args.binaries, n_cluster=args.cluster,
        format=args.format, snr_range=tuple(args.snr), overwrite=args.overwrite,
    )
    logger.info("mock survey -> %s: %s", args.output, {k: v for k, v in summary.items() if not isinstance(v, (list, dict))})
    return 0


def _add_inference(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train a SLAM model (per-pixel SVRs) on labelled spectra",
        description="Train one RBF SVR per pixel with per-pixel cross-validated C, epsilon, gamma.",
    )
    train.add_argument("spectra", nargs="+", help="a prepared FITS file, or raw spectrum files, folders or glob patterns")
    train.add_argument("--labels", type=Path, required=True, help="label table (CSV or FITS) matched by identifier")
    train.add_argument("-o", "--output", type=Path, required=True, help="model file to write (.npz)")
    train.add_argument("--label-names",
                       help="label columns, comma-separated (default: those of teff,logg,fe_h,alpha_m the table has)")
    train.add_argument("--id-column", default="identifier", help="identifier column of the label table")
    train.add_argument("--grid", default="fast", help="hyperparameter grid preset: fast or paper (%(default)s)")
    train.add_argument("--folds", type=int, default=10, help="cross-validation folds (%(default)s)")
    train.add_argument("--backend", choices=("libsvm", "batched"), default="libsvm",
                       help="SVR solver: libsvm (scikit-learn, one QP at a time, the reference) or batched "
                            "(all pixels of a gamma and fold in one JAX solve; docs/benchmarks.md) (%(default)s)")
    train.add_argument("--cv-tol", type=float,
                       help="stopping tolerance of the cross-validation fits (default: the backend's; "
                            "final models always use --tol)")
    train.add_argument("--no-cv-race", action="store_true",
                       help="batched backend: score every grid point on every fold (default: drop clear "
                            "losers after the third fold, docs/training.md)")
    train.add_argument("--tol", type=float, default=1e-3,
                       help="stopping tolerance, libsvm's maximal-violating-pair rule (%(default)s; "
                            "the batched backend solves its final fits to 1e-2 of it)")
    train.add_argument("--n-jobs", type=int, default=1, help="parallel workers (%(default)s; -1 = all cores)")
    train.add_argument("--checkpoint", type=Path,
                       help="checkpoint folder (default: OUTPUT.checkpoint; removed when the training finishes)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted training from its checkpoint")
    train.add_argument("--description", default="", help="free text stored in the model")
    train.add_argument("--no-label-cv", action="store_true",
                       help="skip the label-level cross-validation (each training star fitted by the fold model that "
                            "did not see it; it gives the model its error calibration, docs/calibration.md)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    train.set_defaults(handler=_run_train)

    fit = subparsers.add_parser(
        "fit", help="best-fit (MAP) labels with Laplace errors for many stars -> FITS catalog",
        description="Batched Levenberg-Marquardt MAP labels, Laplace sigmas and correlations, SNR-law errors, flags.",
    )
    fit.add_argument("spectra", nargs="+", help="a prepared FITS file, or raw spectrum files, folders or glob patterns")
    fit.add_argument("-m", "--model", type=Path, help="model file (default: the shipped default model)")
    fit.add_argument("-o", "--output", type=Path, required=True, help="catalog FITS file")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing catalog")
    fit.add_argument("--strict", action="store_true", help=STRICT_HELP)
    fit.set_defaults(handler=_run_fit)

    sample = subparsers.add_parser(
        "sample", help="full label posteriors (NUTS or emcee) -> NetCDF + FITS catalog",
        description="Posterior sampling of the labels of each star; ArviZ NetCDF output with R-hat, ESS, divergences.",
    )
    sample.add_argument("spectra", nargs="+", help="a prepared FITS file, or raw spectrum files, folders or glob patterns")
    sample.add_argument("-m", "--model", type=Path, help="model file (default: the shipped default model)")
    sample.add_argument("-o", "--output", type=Path, required=True, help="posterior NetCDF file")
    sample.add_argument("--catalog", type=Path, help="catalog FITS file (default: OUTPUT with .fits)")
    sample.add_argument("--sampler", choices=("nuts", "emcee"), default="nuts")
    sample.add_argument("--warmup", type=int, default=1000, help="warm-up (NUTS) or burn-in (emcee) steps")
    sample.add_argument("--draws", type=int, default=1000, help="kept draws per chain or walker")
    sample.add_argument("--chains", type=int, default=1, help="NUTS chains per star")
    sample.add_argument("--seed", type=int, default=0, help="random seed")
    sample.add_argument("--ppc", type=int, default=0, metavar="N",
                        help="also keep replicated spectra of about N draws per star in the posterior file "
                             "(group posterior_predictive, for arviz.plot_ppc; %(default)s: none)")
    sample.add_argument("--groups", type=Path, metavar="TABLE",
                        help="groups table (CSV or FITS, columns identifier and group): the stars of a group share "
                             "the --shared labels and are sampled jointly with NUTS (wide binaries, clusters); the "
                             "catalog gets a GROUPS extension with one row per group")
    sample.add_argument("--shared", default="fe_h,alpha_m",
                        help="labels the stars of a group share, comma-separated (%(default)s)")
    sample.add_argument("--intrinsic-scatter", action="store_true",
                        help="members scatter around their group's shared labels with a sampled intrinsic standard "
                             "deviation (clusters) instead of sharing them exactly (binaries)")
    sample.add_argument("--overwrite", action="store_true", help="replace an existing output")
    sample.add_argument("--strict", action="store_true", help=STRICT_HELP)
    sample.set_defaults(handler=_run_sample)

def _run_train(args: argparse.Namespace) -> int:
    """``bayesslam train SPECTRA... --labels TABLE -o MODEL``."""
    from bayesslam.emulator import save_model
    from bayesslam.pipeline import train
    from bayesslam.train import remove_checkpoint

    _check_output(args.output, args.overwrite)
    checkpoint = args.checkpoint or args.output.with_suffix(".checkpoint")
    if checkpoint.exists() and not args.resume:
        raise BayesSlamError(f"checkpoint {checkpoint} exists; pass --resume to continue that training, or remove it.")
    label_names = tuple(args.label_names.split(",")) if args.label_names else None
    model = train(args.spectra, args.labels, label_names=label_names,
                  id_column=args.id_column, description=args.description, label_cv=not args.no_label_cv,
                  progress=args.progress,
                  grid=args.grid, backend=args.backend, n_folds=args.folds, tol=args.tol, cv_tol=args.cv_tol,
                  cv_race=False if args.no_cv_race else None, n_jobs=args.n_jobs, checkpoint_dir=checkpoint)
    save_model(model, args.output, overwrite=args.overwrite)
    logger.info("model -> %s", args.output)
    if remove_checkpoint(checkpoint):
        logger.info("checkpoint %s removed (the training finished)", checkpoint)
    return 0


def _run_fit(args: argparse.Namespace) -> int:
    """``bayesslam fit SPECTRA... [-m MODEL] -o CATALOG``: MAP labels for many stars."""
    from bayesslam.catalog import write_catalog
    from bayesslam.pipeline import fit_labels

    _check_output(args.output, args.overwrite)
    result = fit_labels(args.spectra, args.model, progress=args.progress)
    write_catalog(result.catalog, args.output, failures=result.failures, overwrite=args.overwrite)
    _log_table(result.catalog)
    logger.info("catalog of %d stars -> %s", len(result.catalog), args.output)
    return _failures_status(result.failures, args.strict)


def _run_sample(args: argparse.Namespace) -> int:
    """``bayesslam sample SPECTRA... [-m MODEL] -o POSTERIORS.nc [--groups TABLE]``: NUTS or emcee posteriors."""
    from bayesslam.catalog import write_catalog
    from bayesslam.pipeline import sample_labels

    _check_output(args.output, args.overwrite)
    extensions = {}
    if args.groups:
        from bayesslam.pipeline import sample_grouped

        if args.sampler != "nuts":
            raise BayesSlamError("--groups samples with NUTS only; leave out --sampler emcee.")
        if args.ppc:
            raise BayesSlamError("--ppc is not available with --groups; sample the stars alone for replicated spectra.")
        result = sample_grouped(args.spectra, args.groups, args.model, shared=tuple(args.shared.split(",")),
                                scatter=args.intrinsic_scatter, seed=args.seed, num_warmup=args.warmup,
                                num_samples=args.draws, num_chains=args.chains, progress=args.progress)
        extensions["GROUPS"] = result.groups_table
        logger.info("%d group(s) of %d stars, sharing %s%s", len(result.groups_table), len(result.catalog),
                    args.shared, " with an intrinsic scatter" if args.intrinsic_scatter else "")
    else:
        result = sample_labels(args.spectra, args.model, seed=args.seed, sampler=args.sampler,
                               num_warmup=args.warmup, num_samples=args.draws, num_chains=args.chains,
                               posterior_predictive=args.ppc, progress=args.progress)
    result.to_netcdf(args.output)
    catalog = args.catalog or args.output.with_suffix(".fits")
    write_catalog(result.catalog, catalog, failures=result.failures, extensions=extensions, overwrite=True)
    _log_table(result.catalog)
    logger.info("posteriors -> %s, catalog -> %s", args.output, catalog)
    return _failures_status(result.failures, args.strict)


#: Units of the labels in the population command's log (other labels: none given).
LABEL_UNITS = {"teff": "K", "logg": "dex", "fe_h": "dex", "alpha_m": "dex"}


def _add_population(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "population",
        help="population distribution of one label from the per-star posteriors of `sample` -> NetCDF + PNG",
        description=(
            "Infer the distribution of one label over the stars of posterior files written by `bayesslam "
            "sample` (Gaussian, Gaussian mixture or smooth histogram, truncated to the label's range) by "
            "importance reweighting of each star's draws with its sampling prior divided out (Hogg, Myers & "
            "Bovy 2010). Writes the hyperposterior (ArviZ NetCDF, with each star's estimate under the "
            "population and its effective number of draws) and a PNG."
        ),
    )
    parser.add_argument("posteriors", type=Path, nargs="+", metavar="POSTERIORS.nc",
                        help="posterior NetCDF file(s) written by `bayesslam sample` (several: their stars together, "
                             "e.g. the chunks of a survey)")
    parser.add_argument("--label", required=True, help="the label, e.g. fe_h")
    parser.add_argument("--model", required=True, metavar="MODEL",
                        help="population model: gaussian, mixture:K (K Gaussians) or histogram[:N_BINS] (a smooth "
                             "histogram, 12 bins by default)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="HYPER.nc",
                        help="hyperposterior NetCDF file")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="PNG of the population (default: HYPER.nc with .png)")
    parser.add_argument("--draws-per-star", type=int, default=1000, metavar="N",
                        help="posterior draws used per star, a random subset (%(default)s)")
    parser.add_argument("--warmup", type=int, default=500, help="NUTS warm-up steps per chain (%(default)s)")
    parser.add_argument("--samples", type=int, default=1000, help="NUTS draws per chain (%(default)s)")
    parser.add_argument("--chains", type=int, default=2, help="NUTS chains (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (%(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(handler=_run_population)


def _run_population(args: argparse.Namespace) -> int:
    """``bayesslam population POSTERIORS.nc --label L --model M -o HYPER.nc``: a label's population distribution."""
    import numpy as np

    from bayesslam.population import combine_draws, draws_from_posterior, parse_population_model, reweight_population
    from bayesslam.population.plotting import plot_population

    model = parse_population_model(args.model)
    for option, value, least in (("--draws-per-star", args.draws_per_star, 2), ("--warmup", args.warmup, 1),
                                 ("--samples", args.samples, 1), ("--chains", args.chains, 1)):
        if value < least:
            raise BayesSlamError(f"{option} must be at least {least}, got {value}.")
    plot = args.plot or args.output.with_suffix(".png")
    if plot == args.output:
        raise BayesSlamError(f"--plot and -o are the same file {plot}; give the plot a .png name.")
    _check_output(args.output, args.overwrite)
    _check_output(plot, args.overwrite)
    draws = combine_draws([draws_from_posterior(path, args.label) for path in args.posteriors])
    n_star, n_draw = draws.values.shape
    logger.info("%s of %d stars, %d draws each (%d used), range [%g, %g]: %s population", args.label, n_star, n_draw,
                min(n_draw, args.draws_per_star), *draws.bounds, model.name)
    result = reweight_population(draws, model, num_warmup=args.warmup, num_samples=args.samples,
                                 num_chains=args.chains, seed=args.seed, max_draws=args.draws_per_star,
                                 progress=args.progress)
    result.to_netcdf(args.output)
    plot_population(result, plot)
    unit = LABEL_UNITS.get(args.label, "")
    logger.info("hyperparameters (median and 68%% interval%s):", f", {unit}" if unit else "")
    for name, entry in result.summary().items():
        for index, (median, q16, q84) in enumerate(zip(*(np.atleast_1d(entry[k]) for k in ("median", "q16", "q84")))):
            shown = name if np.ndim(entry["median"]) == 0 else f"{name}[{index}]"
            logger.info("  %-14s %10.4f  [%.4f, %.4f]", shown, median, q16, q84)
    if result.effective_draws is not None:
        worst = int(np.argmin(result.effective_draws))
        logger.info("smallest effective number of draws per star: %.1f of %d (%s)",
                    float(result.effective_draws[worst]), result.star_values.shape[1], result.identifiers[worst])
    logger.info("hyperposterior -> %s, plot -> %s", args.output, plot)
    return 0


def _add_relations(subparsers: argparse._SubParsersAction) -> None:
    select = subparsers.add_parser(
        "select",
        help="select M dwarfs from a Gaia table with the cuts of Qiu et al. (2025) -> table (+ CMD plot)",
        description=(
            "Absolute G magnitude from the parallax, dereddened with constants (default 0) or GSP-Phot columns, and "
            "the paper's cuts: M_G0 > 6, M_G0 < 3.75 (BP-RP)_0 + 7.50, M_G0 > 3.28 (BP-RP)_0 + 0.10, RUWE < 1.4, "
            "parallax > 0. Reads the Gaia archive's columns source_id, parallax, phot_g_mean_mag, bp_rp, ruwe "
            "(FITS, CSV, ECSV or VOTable) and writes the selected rows with one boolean column per cut."
        ),
    )
    select.add_argument("table", type=Path, metavar="GAIA_TABLE", help="Gaia table (FITS, CSV, ECSV or VOTable)")
    select.add_argument("-o", "--output", type=Path, required=True, metavar="SELECTED",
                        help="output table; the format follows the ending (.fits, .csv, .ecsv, .vot)")
    select.add_argument("--extinction-columns", action="store_true",
                        help="deredden with ag_gspphot and ebpminrp_gspphot (default: no extinction)")
    select.add_argument("--min-parallax-over-error", type=float, metavar="X",
                        help="also require parallax_over_error >= X (needs parallax_error or parallax_over_error)")
    select.add_argument("--keep-rejected", action="store_true",
                        help="write every row with its cut columns, not only the selected ones")
    select.add_argument("--plot", type=Path, metavar="CMD.png", help="also save the colour-magnitude diagram")
    select.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    select.set_defaults(handler=_run_select)

    compare = subparsers.add_parser(
        "compare",
        help="compare two catalogs' labels (cross-match, offsets, scatter, z-scores) -> report folder",
        description=(
            "Cross-match catalog A and catalog B on the sky (nearest neighbour within --match-radius, when both "
            "have ra/dec) or by an identifier column (--match-on), and report per label the median offset B - A, "
            "its std and robust (MAD) std, and with error columns the z-score statistics. Writes matched.fits, "
            "PNG figures and summary.json to the report folder."
        ),
    )
    compare.add_argument("catalog_a", type=Path, metavar="A", help="catalog A (FITS, CSV, ECSV or VOTable)")
    compare.add_argument("catalog_b", type=Path, metavar="B", help="catalog B; offsets are B - A")
    how = compare.add_mutually_exclusive_group()
    how.add_argument("--match-radius", default="1arcsec", metavar="RADIUS",
                     help="sky-match radius, e.g. 1arcsec or 0.5 (arcsec) (%(default)s)")
    how.add_argument("--match-on", metavar="COLUMN",
                     help="match on this identifier column (A_COL:B_COL if the names differ)")
    compare.add_argument("--radec-a", default="ra,dec", metavar="RA,DEC", help="RA and Dec columns of A, degrees "
                         "(%(default)s)")
    compare.add_argument("--radec-b", default="ra,dec", metavar="RA,DEC", help="RA and Dec columns of B (%(default)s)")
    compare.add_argument("--labels", metavar="A_COL[:B_COL],...",
                         help="label columns to compare (default: those of teff, logg, fe_h, alpha_m both have)")
    compare.add_argument("--bin-by", metavar="COLUMN", help="also give the statistics in bins of this column")
    compare.add_argument("--bins", type=int, default=5, help="equal-number bins of --bin-by (%(default)s)")
    compare.add_argument("--names", default="A,B", metavar="NAME_A,NAME_B", help="the catalogs' names in the report")
    compare.add_argument("--csv", action="store_true", help="write the matched table as CSV instead of FITS")
    compare.add_argument("-o", "--output", type=Path, required=True, metavar="REPORT_DIR", help="report folder")
    compare.add_argument("--overwrite", action="store_true", help="replace an existing report")
    compare.set_defaults(handler=_run_compare)


def _pair(text: str, option: str) -> tuple[str, str]:
    """``"X,Y"`` -> ``("X", "Y")`` for an option that takes two comma-separated names."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise BayesSlamError(f"{option} takes two comma-separated names, got {text!r}.")
    return parts[0], parts[1]


def _run_select(args: argparse.Namespace) -> int:
    """``bayesslam select GAIA_TABLE -o SELECTED``: M dwarfs by the paper's cuts."""
    from bayesslam.relations import plot_cmd, select_mdwarfs

    _check_output(args.output, args.overwrite)
    if args.plot:
        _check_output(args.plot, args.overwrite)
    selection = select_mdwarfs(args.table, extinction_columns=args.extinction_columns,
                               min_parallax_over_error=args.min_parallax_over_error)
    selection.write(args.output, all_rows=args.keep_rejected, overwrite=args.overwrite)
    for name, text in selection.cuts.describe().items():
        logger.info("  %-26s rejects %d", text, int((~selection.table[name]).sum()))
    logger.info("%d of %d stars selected -> %s", selection.n_selected, len(selection.table), args.output)
    if args.plot:
        plot_cmd(selection, args.plot)
        logger.info("colour-magnitude diagram -> %s", args.plot)
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    """``bayesslam compare A B -o REPORT_DIR``: offsets and scatter of two catalogs' labels."""
    from bayesslam.relations import compare_catalogs

    _check_output(args.output / "summary.json", args.overwrite)
    labels = None
    if args.labels:
        labels = {}
        for item in args.labels.split(","):
            a, _, b = item.strip().partition(":")
            labels[a] = b or a
    match_on = None
    if args.match_on:
        a, _, b = args.match_on.partition(":")
        match_on = (a, b or a)
    comparison = compare_catalogs(args.catalog_a, args.catalog_b, labels=labels, match_on=match_on,
                                  match_radius=args.match_radius, ra_dec_a=_pair(args.radec_a, "--radec-a"),
                                  ra_dec_b=_pair(args.radec_b, "--radec-b"), bin_by=args.bin_by, n_bins=args.bins,
                                  names=_pair(args.names, "--names"))
    comparison.log_summary(logger)
    written = comparison.write(args.output, table_format="csv" if args.csv else "fits", overwrite=args.overwrite)
    logger.info("report -> %s (%s)", args.output, ", ".join(p.name for p in written))
    return 0


def _add_calibrate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="a model's uncertainty calibration on held-out or mock stars -> report folder (+ a recalibrated model)",
        description=(
            "Fit the labels (MAP + Laplace) of held-out stars with known labels (--spectra with --labels) or of N "
            "mock stars made on the fly (--mock N), and write to the report folder: coverage curves of the raw and "
            "the model-calibrated intervals per label, SNR bin and label quartile, PIT histograms, the label scatter "
            "against SNR with fitted power laws beside the paper's, an error calibration (scale and floor) fitted on "
            "these stars, optionally SBC (--sbc N), report.json with every number and stars.csv. --write-model "
            "writes a copy of the model carrying the calibration fitted here."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="model file, or 'default' for the shipped default model")
    stars = parser.add_mutually_exclusive_group()
    stars.add_argument("--spectra", nargs="+", metavar="HELD_OUT",
                       help="held-out spectra: a prepared FITS file, or raw spectrum files, folders or glob patterns")
    stars.add_argument("--mock", type=int, metavar="N", help="N mock stars with true labels, made on the fly")
    parser.add_argument("--labels", type=Path, metavar="TABLE",
                        help="label table of the held-out spectra (CSV or FITS), matched by identifier or file name")
    parser.add_argument("--id-column", default="identifier", help="identifier column of the label table")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="REPORT_DIR", help="report folder")
    parser.add_argument("--write-model", type=Path, metavar="NEW_MODEL",
                        help="write a copy of MODEL carrying the error calibration fitted on these stars")
    parser.add_argument("--sbc", type=int, metavar="N", help="also run simulation-based calibration, N simulations")
    parser.add_argument("--sbc-simulator", choices=("emulator", "mock"), default="emulator",
                        help="SBC simulator (%(default)s)")
    parser.add_argument("--sampler", choices=("map", "nuts"), default="map",
                        help="map: MAP + Laplace; nuts: NUTS posteriors too, and a posterior calibration (%(default)s)")
    parser.add_argument("--snr", nargs=2, type=float, default=(3.0, 50.0), metavar=("LO", "HI"),
                        help="SNR range of the mock stars (log-uniform) and of the SBC (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (%(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing report folder and replace "
                        "an existing NEW_MODEL")
    parser.set_defaults(handler=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    """``bayesslam calibrate MODEL (--spectra HELD_OUT --labels TABLE | --mock N) -o REPORT_DIR``."""
    from bayesslam.calibration_report import calibration_report

    report = calibration_report(
        None if args.model == "default" else Path(args.model), folder=args.output,
        spectra=args.spectra, labels=args.labels,
        id_column=args.id_column, mock=args.mock, snr=tuple(args.snr), sbc=args.sbc,
        sbc_simulator=args.sbc_simulator, sampler=args.sampler, seed=args.seed, write_model=args.write_model,
        overwrite=args.overwrite, progress=args.progress)
    for line in report.lines():
        logger.info("%s", line)
    logger.info("report -> %s%s", args.output, f", model -> {report.model_path}" if report.model_path else "")
    return 0


def _failures_status(failures, strict: bool) -> int:
    """Log how many inputs failed (always) and return the exit status: 3 for failures under ``--strict``."""
    if failures:
        logger.warning("%d input(s) failed; they are listed with the reason in the catalog's FAILED extension.",
                       len(failures))
        return STRICT_EXIT if strict else 0
    logger.info("0 inputs failed.")
    return 0


def _log_table(table) -> None:
    """Log one line per star: posterior medians (MAP labels without a posterior) with the recommended sigma ``L_ERR``."""
    label_names = table.meta["LABELS"].split(",")
    kind = "MEDIAN" if f"{label_names[0].upper()}_MEDIAN" in table.colnames else "MAP"
    logger.info("errors: %s", {"none": "statistical (the model has no error calibration)",
                               "laplace": "calibrated (Laplace calibration)",
                               "posterior": "calibrated (posterior calibration)"}[table.meta["ERRCALIB"]])
    head = "  ".join(f"{n:>16s}" for n in label_names)
    logger.info("  %-26s %6s  %s  %5s %s", "identifier", "SNR", head, "chi2r", "flags")
    for row in table:
        values = "  ".join(
            f"{row[f'{n.upper()}_{kind}']:8.3f}+-{row[f'{n.upper()}_ERR']:<6.3f}" if n != "teff"
            else f"{row[f'TEFF_{kind}']:8.1f}+-{row['TEFF_ERR']:<6.1f}"
            for n in label_names
        )
        logger.info("  %-26s %6.1f  %s  %5.2f %s", row["IDENTIFIER"], row["SNR"], values, row["REDUCED_CHI2"],
                    row["FLAG_NAMES"] or "-")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``bayesslam`` command."""
    parser = argparse.ArgumentParser(prog="bayesslam", description="Bayesian SLAM for M-dwarf spectra.")
    parser.add_argument("--version", action="version", version=f"bayesslam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging details")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_prepare(subparsers)
    _add_mock(subparsers)
    _add_inference(subparsers)
    _add_population(subparsers)
    _add_relations(subparsers)
    _add_calibrate(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bayesslam`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.progress = sys.stderr.isatty()
    # bayesslam's own messages at INFO (DEBUG with -v); other libraries' only from WARNING
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s" if args.verbose else "%(message)s")
    logging.getLogger("bayesslam").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        with _stop_on_signals():
            return int(args.handler(args))
    except BayesSlamError as exc:
        logger.error("error: %s", exc)
        return 2
    except KeyboardInterrupt:
        hint = " Finished chunks are kept in the checkpoint: run the same command with --resume." \
            if args.command == "train" else ""
        logger.error("interrupted; nothing was written.%s", hint)
        return INTERRUPTED_EXIT


#: Exit status after SIGINT or SIGTERM (128 + SIGINT, as shells report an interrupted command).
INTERRUPTED_EXIT = 130


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM (what batch schedulers send) and SIGINT stop the command as Ctrl-C does.

    Both raise ``KeyboardInterrupt`` in the main thread, so that parallel
    workers are shut down with it (joblib aborts its pool), no output is
    half-written (writes are atomic) and a training keeps its checkpoint.
    SIGINT is set even where the shell started the command with it ignored
    (a background job), so that ``kill -INT`` stops it too.
    """
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, interrupt)
    except ValueError:  # not the main thread (e.g. main() called from a worker thread): leave signals alone
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())

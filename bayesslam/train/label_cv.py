"""Label-level cross-validation: each training star's labels inferred by the model that never saw it.

Training's k-fold CV scores spectra (out-of-fold predicted flux per pixel);
users need errors on *labels*. With the same folds and each pixel's chosen
hyperparameters (C, epsilon, gamma), :func:`fold_emulators` refits the SVR
bank once per fold on the other folds' stars (standardization as in the full
model), and :func:`out_of_fold_labels` fits the held-out fold's stars with it
(MAP + Laplace, the model's box prior: exactly what ``bayesslam fit`` does).

The out-of-fold labels against the training labels are the model's label
errors measured on its own training stars, at their own SNR: for a model
trained on real labelled spectra, a measurement on real spectra, with no
extra data. :func:`learn_error_model` learns the emulator's error model from
the same fold models (:mod:`bayesslam.train.error_model`: the per-pixel
residuals at the training labels, then the out-of-fold labels);
:func:`label_cv_calibration` fits the post-hoc error calibration
(:class:`bayesslam.calibration.ErrorCalibration`, a scale and floor per label)
to the out-of-fold labels, :func:`label_cv_snr_laws` the paper's error
product, the label scatter as a power law of SNR in equal-number SNR bins,
and :func:`with_label_cv` stores all of them in the model.

Cost: ``n_folds`` final fits of the bank (the CV of training fits
``n_folds`` per grid point, so this is a fraction of training) plus one MAP
fit per training star.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import jax.numpy as jnp
import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from bayesslam._precision import in_float64
from bayesslam.calibration import (
    CalibrationError,
    ErrorCalibration,
    ModelCalibration,
    SnrLaw,
    fit_snr_law,
    spectrum_snr,
)
from bayesslam.emulator import (
    Emulator,
    EmulatorErrorModel,
    OutOfFoldLabels,
    SlamModel,
    build_emulator,
    flux_grouped,
)
from bayesslam.errors import BayesSlamError
from bayesslam.infer import FitStatus, fit_map
from bayesslam.infer.priors import default_prior
from bayesslam.train.batched import KernelCache, final_fits
from bayesslam.train.error_model import (
    ErrorModelFitError,
    deconvolved_pixel_variance,
    fisher_matrices,
    fit_label_covariance,
    laplace_covariance,
)
from bayesslam.train.laplace_correction import learn_laplace_correction
from bayesslam.train.libsvm import libsvm_final_fits
from bayesslam.train.settings import (
    BATCHED_FINAL_TOL_FACTOR,
    BATCHED_MAX_ITER,
    TrainingDataError,
)

__all__ = [
    "fold_emulators",
    "out_of_fold_labels",
    "learn_error_model",
    "label_cv_calibration",
    "label_cv_snr_laws",
    "with_label_cv",
]

logger = logging.getLogger(__name__)


def _check_training_spectra(model: SlamModel, flux: Any, ivar: Any) -> tuple[np.ndarray, np.ndarray]:
    flux = np.asarray(flux, dtype=float)
    ivar = np.asarray(ivar, dtype=float)
    want = (len(model.training.fold), len(model.training.C))
    if flux.shape != want or ivar.shape != want:
        raise TrainingDataError(
            f"label-level CV needs the model's own training spectra, shape {want} (training stars, pixels); "
            f"got flux {flux.shape} and ivar {ivar.shape}."
        )
    if not np.all(np.isfinite(ivar)) or np.any(ivar < 0):
        raise TrainingDataError("training ivar must be finite and >= 0.")
    return np.where(ivar > 0, np.nan_to_num(flux), 0.0), ivar


def _trainer_settings(model: SlamModel) -> dict[str, Any]:
    trainer = model.metadata.get("trainer", {})
    return {
        "backend": str(trainer.get("backend", "libsvm")),
        "tol": float(trainer.get("tol", 1e-3)),
        "cache_size": float(trainer.get("cache_size", 200.0)),
        "shrinking": bool(trainer.get("shrinking", True)),
        "max_iter": int(trainer.get("max_iter", -1)),
    }


def _fold_bank(x: np.ndarray, y: np.ndarray, usable: np.ndarray, hyper: np.ndarray, pixels: np.ndarray,
               fold: np.ndarray, held_out: int, settings: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Dual coefficients and intercepts of every pixel refitted without fold ``held_out``."""
    use = usable & (fold != held_out)[:, None]
    if settings["backend"] == "batched":
        max_iter = settings["max_iter"] if settings["max_iter"] > 0 else BATCHED_MAX_ITER
        dual, intercept, _ = final_fits(y, use, hyper[:, 0], hyper[:, 1], hyper[:, 2], pixels, KernelCache(x, fold),
                                        tol=BATCHED_FINAL_TOL_FACTOR * settings["tol"], max_iter=max_iter)
        return dual, intercept
    options = {key: settings[key] for key in ("tol", "cache_size", "shrinking", "max_iter")}
    return libsvm_final_fits(x, y, use, hyper, pixels, options)


@in_float64
def fold_emulators(model: SlamModel, flux: Any, ivar: Any, *, n_jobs: int = 1,
                   progress: bool = False) -> list[Emulator]:
    """The model's SVR bank refitted once per CV fold without that fold's stars.

    Parameters
    ----------
    model : SlamModel
        A trained model (its folds, per-pixel hyperparameters and
        standardization are reused).
    flux, ivar : array_like, shape (n_train, n_pix)
        The model's own training spectra, in training order.
    n_jobs : int
        Parallel workers over folds (joblib; -1: all cores).
    progress : bool
        Show a progress bar over folds.

    Returns
    -------
    list of Emulator
        One float64 emulator per fold, in fold order.

    Raises
    ------
    TrainingDataError
        If the spectra are not the shape of the model's training set.
    """
    flux, ivar = _check_training_spectra(model, flux, ivar)
    return _fold_emulators(model, flux, ivar, n_jobs, progress)


def _fold_emulators(model: SlamModel, flux: np.ndarray, ivar: np.ndarray, n_jobs: int,
                    progress: bool) -> list[Emulator]:
    """:func:`fold_emulators` of spectra already checked by :func:`_check_training_spectra`."""
    arrays = model.emulator_arrays
    fold = np.asarray(model.training.fold)
    trained = ~np.asarray(arrays["pixel_mask"], dtype=bool)
    pixels = np.flatnonzero(trained)
    usable = (ivar > 0) & trained[None, :]
    scale = np.asarray(arrays["flux_scale"])
    y = (flux - np.asarray(arrays["flux_mean"])) / scale
    hyper = np.column_stack([model.training.C, model.training.epsilon, arrays["gamma"]])
    x = np.asarray(arrays["train_x"])
    settings = _trainer_settings(model)
    folds = np.unique(fold)
    jobs = (delayed(_fold_bank)(x, y, usable, hyper, pixels, fold, int(f), settings) for f in folds)
    results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
    banks = list(tqdm(results, total=len(folds), desc="fold banks", unit="fold", disable=not progress))
    names, units = model.metadata["label_names"], model.metadata["label_units"]
    return [build_emulator(**{**arrays, "dual_coef": dual, "intercept": intercept}, label_names=names,
                           label_units=units, dtype=np.float64) for dual, intercept in banks]


def _out_of_fold_fits(model: SlamModel, emulators: list[Emulator], flux: np.ndarray,
                      ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold MAP labels, Fisher matrices and fit status of every training star."""
    fold = np.asarray(model.training.fold)
    n_star, n_label = len(fold), len(model.label_names)
    labels = np.full((n_star, n_label), np.nan)
    fisher = np.full((n_star, n_label, n_label), np.nan)
    status = np.zeros(n_star, dtype=np.int64)
    prior = default_prior(model.emulator)
    for f, emulator in zip(np.unique(fold), emulators):
        rows = np.flatnonzero(fold == f)
        fit = fit_map(emulator, flux[rows], ivar[rows], prior=prior)
        ok = np.asarray(fit.status) == FitStatus.CONVERGED
        labels[rows[ok]] = fit.labels[ok]
        fisher[rows[ok]] = fisher_matrices(emulator, fit.labels[ok], ivar[rows[ok]])
        status[rows] = np.asarray(fit.status, dtype=np.int64)
    return labels, fisher, status


def _with_pixel_variance(emulators: list[Emulator], pixel_variance: np.ndarray) -> list[Emulator]:
    variance = np.asarray(pixel_variance)
    return [dataclasses.replace(e, model_variance=jnp.asarray(variance, dtype=e.dtype)) for e in emulators]


def _record(model: SlamModel, labels: np.ndarray, fisher: np.ndarray, status: np.ndarray, flux: np.ndarray,
            ivar: np.ndarray, label_covariance: np.ndarray) -> OutOfFoldLabels:
    precision = default_prior(model.emulator).laplace_precision()
    sigma = np.full_like(labels, np.nan)
    ok = np.all(np.isfinite(labels), axis=1)
    if ok.any():
        cov = laplace_covariance(fisher[ok], label_covariance, precision)
        sigma[ok] = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    return OutOfFoldLabels(labels=labels, sigma=sigma, status=status, snr=spectrum_snr(flux, ivar))


@in_float64
def out_of_fold_labels(model: SlamModel, flux: Any, ivar: Any, *, n_jobs: int = 1,
                       progress: bool = False) -> OutOfFoldLabels:
    """MAP labels and Laplace sigmas of every training star from the fold model that did not see it.

    The fold models use the model's likelihood: its error model's pixel
    variance and label-space error when it has one.

    Parameters
    ----------
    model : SlamModel
    flux, ivar : array_like, shape (n_train, n_pix)
        The model's own training spectra, in training order.
    n_jobs : int
        Parallel workers for refitting the fold banks.
    progress : bool
        Show progress bars.

    Returns
    -------
    OutOfFoldLabels
        Failed fits have NaN labels and sigmas and their status code.
    """
    flux, ivar = _check_training_spectra(model, flux, ivar)
    return _out_of_fold_labels(model, flux, ivar, _fold_emulators(model, flux, ivar, n_jobs, progress))


def _out_of_fold_labels(model: SlamModel, flux: np.ndarray, ivar: np.ndarray,
                        emulators: list[Emulator]) -> OutOfFoldLabels:
    """:func:`out_of_fold_labels` with checked spectra and the fold banks already refitted."""
    start = time.perf_counter()
    emulators = _with_pixel_variance(emulators, np.asarray(model.emulator.model_variance))
    labels, fisher, status = _out_of_fold_fits(model, emulators, flux, ivar)
    record = _record(model, labels, fisher, status, flux, ivar, np.asarray(model.emulator.label_error_covariance))
    logger.info("label-level CV of %d training stars (%d folds): %d converged, %.0f s", len(status), len(emulators),
                int(np.sum(status == FitStatus.CONVERGED)), time.perf_counter() - start)
    return record


@in_float64
def learn_error_model(model: SlamModel, flux: Any, ivar: Any, *, n_jobs: int = 1,
                      progress: bool = False) -> tuple[EmulatorErrorModel, OutOfFoldLabels]:
    """The emulator's error model learnt from the fold models, and the out-of-fold labels under it.

    The pixel variance ``D`` is the out-of-fold residual variance at the
    training labels with each training spectrum's noise taken out
    (:func:`~bayesslam.train.error_model.deconvolved_pixel_variance`); the
    fold models fit their held-out stars with ``D``; the label-space
    covariance is fitted to those out-of-fold labels
    (:func:`~bayesslam.train.error_model.fit_label_covariance`).

    Parameters
    ----------
    model : SlamModel
    flux, ivar : array_like, shape (n_train, n_pix)
        The model's own training spectra, in training order.
    n_jobs : int
        Parallel workers for refitting the fold banks.
    progress : bool
        Show progress bars.

    Returns
    -------
    EmulatorErrorModel, OutOfFoldLabels
        The error model, and the out-of-fold labels with Laplace sigmas
        computed under it.

    Raises
    ------
    ErrorModelFitError
        If too few training stars could be fitted.
    """
    flux, ivar = _check_training_spectra(model, flux, ivar)
    return _learn_error_model(model, flux, ivar, _fold_emulators(model, flux, ivar, n_jobs, progress))


def _learn_error_model(model: SlamModel, flux: np.ndarray, ivar: np.ndarray,
                       emulators: list[Emulator]) -> tuple[EmulatorErrorModel, OutOfFoldLabels]:
    """:func:`learn_error_model` with checked spectra and the fold banks already refitted."""
    start = time.perf_counter()
    fold = np.asarray(model.training.fold)
    truth = model.training_labels
    residuals = np.zeros_like(flux)
    for f, emulator in zip(np.unique(fold), emulators):
        rows = np.flatnonzero(fold == f)
        residuals[rows] = flux[rows] - np.asarray(flux_grouped(emulator, jnp.asarray(truth[rows])))
    trained = np.isfinite(model.model_variance)
    pixel_variance = np.where(trained, deconvolved_pixel_variance(residuals, np.where(trained, ivar, 0.0)), np.inf)
    emulators = _with_pixel_variance(emulators, pixel_variance)
    labels, fisher, status = _out_of_fold_fits(model, emulators, flux, ivar)
    precision = default_prior(model.emulator).laplace_precision()
    covariance = fit_label_covariance(labels - truth, fisher, precision, scale=np.std(truth, axis=0))
    n_folds = len(emulators)
    error_model = EmulatorErrorModel(pixel_variance, covariance, {
        "kind": "label-space error (rank n_label) plus independent pixel variance",
        "source": f"out-of-fold fits of the model's {len(truth)} training stars ({n_folds}-fold CV)",
        "n_stars": int(np.sum(np.all(np.isfinite(labels), axis=1))),
        "label_sigma": {name: float(v) for name, v in zip(model.label_names, np.sqrt(np.diag(covariance)))},
    })
    record = _record(model, labels, fisher, status, flux, ivar, covariance)
    logger.info("error model from %d training stars in %.0f s: label-space sigma %s; median pixel variance %.3g "
                "(out-of-fold residual variance %.3g)", error_model.metadata["n_stars"], time.perf_counter() - start,
                ", ".join(f"{k} {v:.3g}" for k, v in error_model.metadata["label_sigma"].items()),
                float(np.median(pixel_variance[trained])), float(np.median(model.model_variance[trained])))
    return error_model, record


def label_cv_calibration(model: SlamModel, label_cv: OutOfFoldLabels) -> ErrorCalibration:
    """The Laplace error calibration (scale and floor per label) measured on the out-of-fold labels."""
    truth = model.training_labels
    n_folds = len(np.unique(model.training.fold))
    return ErrorCalibration.measure(
        model.label_names, label_cv.labels, truth, label_cv.sigma,
        source=f"label-level {n_folds}-fold cross-validation of the model's {len(truth)} training stars "
               f"(SNR {np.nanmin(label_cv.snr):.3g}-{np.nanmax(label_cv.snr):.3g})",
    )


def label_cv_snr_laws(model: SlamModel, label_cv: OutOfFoldLabels, stars_per_bin: int = 20) -> dict[str, SnrLaw]:
    """SNR laws ``sigma = a SNR**b`` of every label, fitted to the out-of-fold label errors as the paper does.

    Labels with fewer than ``2 * stars_per_bin`` usable stars get no law.
    """
    truth = model.training_labels
    laws = {}
    for k, name in enumerate(model.label_names):
        try:
            laws[name], _, _ = fit_snr_law(label_cv.snr, label_cv.labels[:, k] - truth[:, k], stars_per_bin)
        except BayesSlamError as exc:
            logger.warning("no SNR law for %s from the out-of-fold labels: %s", name, exc)
    return laws


def with_label_cv(model: SlamModel, flux: Any, ivar: Any, *, error_model: bool = True, calibrate: bool = True,
                  laplace_correction: bool = True, n_jobs: int = 1, progress: bool = False) -> SlamModel:
    """A copy of ``model`` carrying its label-level CV, its error model, its SNR laws and its calibration.

    With ``error_model`` the emulator's error model is learnt from the fold
    models (:func:`learn_error_model`) and every likelihood of the returned
    model uses it; otherwise the model's own likelihood is kept. The SNR laws
    fitted to the out-of-fold labels (:func:`label_cv_snr_laws`) replace the
    paper's in the model's catalogs (``L_SNR_ERR``). With ``calibrate``, the
    Laplace calibration measured on the out-of-fold labels replaces the
    model's Laplace calibration (with an error model it is close to the
    identity: a diagnostic); a posterior calibration it carries is kept
    unless a new error model changed the likelihood it was measured with. A
    training set too small to measure one (fewer than 40 converged stars)
    keeps the record only, with a warning. With ``laplace_correction`` the
    model learns how much its Laplace intervals must widen to cover its own
    simulated stars (:func:`~bayesslam.train.learn_laplace_correction`),
    before the out-of-fold sigmas, widened by it, are calibrated.

    Parameters
    ----------
    model : SlamModel
    flux, ivar : array_like, shape (n_train, n_pix)
        The model's own training spectra, in training order.
    error_model : bool
        Learn and store the emulator's error model.
    calibrate : bool
        Store the measured Laplace calibration in the model.
    laplace_correction : bool
        Learn and store the model's Laplace correction.
    n_jobs : int
        Parallel workers for refitting the fold banks.
    progress : bool
        Show progress bars.

    Returns
    -------
    SlamModel
    """
    flux, ivar = _check_training_spectra(model, flux, ivar)
    emulators = _fold_emulators(model, flux, ivar, n_jobs, progress)  # refitted once, for both steps below
    label_cv = None
    if error_model:
        try:
            errors, label_cv = _learn_error_model(model, flux, ivar, emulators)
            model = model.with_error_model(errors)
        except ErrorModelFitError as exc:
            logger.warning("no emulator error model (%s); the likelihood stays diagonal.", exc)
    if label_cv is None:
        label_cv = _out_of_fold_labels(model, flux, ivar, emulators)
    if laplace_correction:
        correction = learn_laplace_correction(model)
        model = model.with_laplace_correction(correction)
        label_cv = dataclasses.replace(label_cv, sigma=label_cv.sigma * correction.factors(label_cv.sigma))
    out = model.with_label_cv(label_cv).with_snr_laws(label_cv_snr_laws(model, label_cv))
    if not calibrate:
        return out
    try:
        laplace = label_cv_calibration(model, label_cv)
    except CalibrationError as exc:
        logger.warning("the out-of-fold labels cannot calibrate the model's errors (%s); the model carries them "
                       "without a calibration: calibrate it on held-out labelled stars (docs/calibration.md).", exc)
        return out
    previous = model.error_calibration
    # a posterior calibration measured under another likelihood no longer applies
    posterior = None if previous is None or error_model else previous.posterior
    return out.with_calibration(ModelCalibration(laplace=laplace, posterior=posterior))

"""The shipped default model's recipe: how it is trained, tested and calibrated, on which mock sets.

The default model (``models/bayesslam-default-v1.npz``, model card
``models/README.md``) is trained on a mock survey of the paper's size (870
stars, the paper's label domain, SNR log-uniform 10-100, seed
:data:`TRAIN_SEED`) made by :mod:`bayesslam.mock` from the real Kesseli et al.
(2017) BOSS templates and prepared as users prepare spectra; tested on a
held-out mock set (:data:`N_TEST` stars, :data:`TEST_SEED`, SNR 3-50); its
emulator error model and label-level CV are learnt from its own training
stars (:func:`add_error_model`), and its coverage is measured on independent
sets (:data:`CHECK_SEED`; :data:`CALIBRATION_SEED` for the diagnostic
scale/floor calibration and ``benchmarks/bench_calibration.py``'s NUTS
posteriors). ``scripts/build_default_model.py`` runs the recipe;
benchmarks reuse its mock sets and cached posteriors. Prepared mock sets and
posteriors are cached under :data:`CACHE`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from bayesslam._precision import in_float64
from bayesslam.calibration import ONE_SIGMA, ErrorCalibration, ModelCalibration, coverage
from bayesslam.emulator import load_model, save_model
from bayesslam.infer import FitStatus, fit_map, sample_nuts
from bayesslam.mock import MockSet
from bayesslam.mock import mock_set as _mock_set
from bayesslam.train import label_cv_calibration, learn_laplace_correction, with_label_cv

__all__ = [
    "LABELS",
    "TRAIN_SEED",
    "TEST_SEED",
    "CALIBRATION_SEED",
    "CHECK_SEED",
    "N_TRAIN",
    "N_TEST",
    "N_CALIBRATION",
    "N_POSTERIOR_CALIBRATION",
    "CACHE",
    "PosteriorSet",
    "mock_set",
    "posterior_set",
    "coverage_table",
    "add_error_model",
]

logger = logging.getLogger(__name__)

LABELS = ("teff", "logg", "fe_h", "alpha_m")
TRAIN_SEED = 20251126
TEST_SEED = 20251127
CALIBRATION_SEED = 20251128
CHECK_SEED = 20251129
N_TRAIN = 870
N_TEST = 250
N_CALIBRATION = 1000
N_POSTERIOR_CALIBRATION = 500
#: Where prepared mock sets and posteriors are cached (relative to the working folder).
CACHE = Path("build/mock-cache")



def mock_set(n: int, seed: int, snr_range: tuple[float, float] = (3.0, 50.0), cache: Path | None = CACHE,
             progress: bool = True) -> MockSet:
    """:func:`bayesslam.mock.mock_set` cached under :data:`CACHE` by default."""
    return _mock_set(n, seed, snr_range, cache=cache, progress=progress)


def _model_key(model) -> str:
    """Short hash of a model's emulator arrays (its calibration metadata aside): a cache key."""
    digest = hashlib.sha256()
    for name in ("dual_coef", "intercept", "gamma", "train_x", "model_variance"):
        digest.update(np.ascontiguousarray(model.emulator_arrays[name]).tobytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class PosteriorSet:
    """NUTS posteriors of the first stars of a :class:`MockSet` (draws thinned to at most 250 per star)."""

    draws: np.ndarray
    median: np.ndarray
    sd: np.ndarray
    r_hat: np.ndarray
    ess_bulk: np.ndarray
    n_divergent: np.ndarray


@in_float64
def posterior_set(model, mock: MockSet, n: int, cache: Path | None = CACHE, num_warmup: int = 500,
                  num_samples: int = 500, max_draws: int = 250) -> PosteriorSet:
    """NUTS posteriors (one chain, MAP start) of the first ``n`` stars of ``mock``, cached under ``cache``."""
    n = min(n, len(mock.truth))
    key = f"nuts-{_model_key(model)}-{len(mock.truth)}-{mock.seed}-{n}-{num_warmup}-{num_samples}.npz"
    path = None if cache is None else cache / key
    fields = [f.name for f in dataclasses.fields(PosteriorSet)]
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as data:
            return PosteriorSet(**{name: data[name] for name in fields})
    t0 = time.time()
    fit = fit_map(model.emulator, mock.flux[:n], mock.ivar[:n], laplace_correction=model.laplace_correction)
    post = sample_nuts(model.emulator, mock.flux[:n], mock.ivar[:n], rng_key=jax.random.key(mock.seed),
                       num_warmup=num_warmup, num_samples=num_samples, init_labels=fit.labels, progress=False,
                       log_likelihood=False)
    thin = max(1, num_samples // max_draws)
    draws = np.stack([post.draws(i)[::thin] for i in range(n)])
    out = PosteriorSet(draws, post.summary["median"], post.summary["sd"], post.summary["r_hat"],
                       post.summary["ess_bulk"], np.asarray(post.summary["n_divergent"]))
    logger.info("NUTS %d+%d on %d mock stars (seed %d) in %.0f s", num_warmup, num_samples, n, mock.seed,
                time.time() - t0)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{name: getattr(out, name) for name in fields})
    return out


def _quartiles(values: np.ndarray) -> np.ndarray:
    """Quartile index 0-3 of each value (edges from the values themselves)."""
    return np.searchsorted(np.quantile(values, [0.25, 0.5, 0.75]), values)


def coverage_table(errors: np.ndarray, sigma: np.ndarray, snr: np.ndarray, truth: np.ndarray) -> dict:
    """Central 68.27% and 95% coverage of ``+- z sigma`` per label: all stars, per SNR and per true-label quartile."""
    out = {}
    snr_q = _quartiles(snr)
    for level in (ONE_SIGMA, 0.95):
        key = "68" if level == ONE_SIGMA else "95"
        by_label = {}
        for k in range(errors.shape[1]):
            label_q = _quartiles(truth[:, k])
            cover = lambda rows: round(float(coverage(errors[rows, k:k + 1], sigma[rows, k:k + 1], level)[0]), 3)  # noqa: E731
            by_label[LABELS[k]] = {"all": cover(slice(None)),
                                   "snr_quartiles": [cover(snr_q == q) for q in range(4)],
                                   "label_quartiles": [cover(label_q == q) for q in range(4)]}
        out[key] = by_label
    return out


@in_float64
def _map_check(model, mock: MockSet) -> dict:
    fit = fit_map(model.emulator, mock.flux, mock.ivar, laplace_correction=model.laplace_correction)
    ok = fit.status == FitStatus.CONVERGED
    errors = fit.labels[ok] - mock.truth[ok]
    report = {"n_converged": int(ok.sum()),
              "map_rms": {name: round(float(np.sqrt(np.mean(errors[:, k] ** 2))), 4) for k, name in enumerate(LABELS)},
              "median_sigma": {name: round(float(np.median(fit.sigma[ok, k])), 4) for k, name in enumerate(LABELS)},
              "median_reduced_chi2": round(float(np.median(fit.reduced_chi2[ok])), 3),
              "raw": coverage_table(errors, fit.sigma[ok], mock.snr[ok], mock.truth[ok])}
    calibration = model.error_calibration
    if calibration is not None and calibration.laplace is not None:
        report["calibrated"] = coverage_table(errors, calibration.laplace.apply(fit.sigma[ok]), mock.snr[ok],
                                              mock.truth[ok])
    return report


@in_float64
def add_error_model(path: Path, n_jobs: int = 2) -> dict:
    """Learn the model's error model and label-level CV on its training set, store them, and measure the change.

    Runs :func:`bayesslam.train.with_label_cv` (error model, out-of-fold
    labels, own SNR laws, and the scale/floor calibration measured on the
    out-of-fold labels) on the model at ``path`` and saves it. Returns the
    raw (and calibrated) MAP + Laplace coverage on :data:`N_CALIBRATION`
    independent mock stars (:data:`CHECK_SEED`) before and after, and, as a
    diagnostic, the scale/floor calibration that the mock calibration set
    (:data:`CALIBRATION_SEED`) would ask of the new model.
    """
    model = load_model(path)
    train = mock_set(N_TRAIN, TRAIN_SEED, (10.0, 100.0))
    if not np.allclose(train.truth, model.training_labels):
        raise RuntimeError("the regenerated training set does not match the model's training labels")
    check = mock_set(N_CALIBRATION, CHECK_SEED)
    before = _map_check(model, check)
    t0 = time.time()
    model = with_label_cv(model.with_error_model(None), train.flux, train.ivar, n_jobs=n_jobs, progress=True)
    seconds = time.time() - t0
    save_model(model, path, overwrite=True)
    after = _map_check(model, check)
    calibration_set = mock_set(N_CALIBRATION, CALIBRATION_SEED)
    fit = fit_map(model.emulator, calibration_set.flux, calibration_set.ivar,
                  laplace_correction=model.laplace_correction)
    ok = fit.status == FitStatus.CONVERGED
    mock_calibration = ErrorCalibration.measure(
        model.label_names, np.where(ok[:, None], fit.labels, np.nan), calibration_set.truth, fit.sigma,
        source=f"MAP fits of bayesslam.mock.make_survey({N_CALIBRATION}, seed {CALIBRATION_SEED}, SNR 3-50)")
    median_sigma = np.median(fit.sigma[ok], axis=0)
    return {
        "error_model": {**model.error_model.metadata, "seconds": round(seconds, 1)},
        "own_calibration": model.error_calibration.laplace.to_metadata(),
        "check_set": f"MAP fits of bayesslam.mock.make_survey({N_CALIBRATION}, seed {CHECK_SEED}, SNR 3-50)",
        "before": before,
        "after": after,
        "mock_calibration_diagnostic": {
            "scale": mock_calibration.to_metadata()["scale"],
            "floor_over_median_sigma": {name: round(float(f / m), 3) for name, f, m in zip(
                model.label_names, mock_calibration.to_metadata()["floor"].values(), median_sigma)},
        },
    }


def add_laplace_correction(path: Path) -> dict:
    """Learn the model's Laplace correction, store it (with its calibration refitted on the widened out-of-fold sigmas).

    What :func:`bayesslam.train.with_label_cv` does at the end of training,
    for a model that already carries its error model and label-level CV
    (:func:`bayesslam.train.learn_laplace_correction`; the stored
    out-of-fold sigmas are widened by the correction and the model's own
    Laplace calibration is measured again on them). Returns the correction's
    record and the raw (and calibrated) MAP + Laplace coverage on
    :data:`N_CALIBRATION` independent mock stars (:data:`CHECK_SEED`) before
    and after.
    """
    model = load_model(path)
    if model.label_cv is None:
        raise RuntimeError(f"{path} has no label-level CV: run add_error_model first")
    check = mock_set(N_CALIBRATION, CHECK_SEED)
    before = _map_check(model, check)
    correction = learn_laplace_correction(model)
    if model.laplace_correction is not None:
        raise RuntimeError(f"{path} carries a Laplace correction already; its out-of-fold sigmas are widened by it")
    label_cv = dataclasses.replace(model.label_cv, sigma=model.label_cv.sigma * correction.factors(model.label_cv.sigma))
    model = model.with_laplace_correction(correction).with_label_cv(label_cv)
    previous = model.error_calibration
    model = model.with_calibration(ModelCalibration(laplace=label_cv_calibration(model, label_cv),
                                                    posterior=None if previous is None else previous.posterior))
    save_model(model, path, overwrite=True)
    after = _map_check(model, check)
    return {"laplace_correction": correction.to_metadata(), "own_calibration": model.error_calibration.laplace.to_metadata(),
            "check_set": f"MAP fits of bayesslam.mock.make_survey({N_CALIBRATION}, seed {CHECK_SEED}, SNR 3-50)",
            "before": before, "after": after}

"""The shipped default model's recipe: how it is trained, tested and calibrated, on which mock sets.

The default model (``models/bayesslam-default-v1.npz``, model card
``models/README.md``) is trained on a mock survey of the paper's size (870
stars, the paper's label domain, SNR log-uniform 10-100, seed
:data:`TRAIN_SEED`) made by :mod:`bayesslam.mock` from the real Kesseli et al.
(2017) BOSS templates and prepared as users prepare spectra; tested on a
held-out mock set (:data:`N_TEST` stars, :data:`TEST_SEED`, SNR 3-50); its
error calibration (:mod:`bayesslam.calibration`) is measured on a third set
(:data:`N_CALIBRATION` stars, :data:`CALIBRATION_SEED`: MAP fits of all, NUTS
posteriors of the first :data:`N_POSTERIOR_CALIBRATION`), and
``benchmarks/bench_calibration.py`` checks it on a fourth
(:data:`CHECK_SEED`). ``scripts/build_default_model.py`` runs the recipe;
benchmarks reuse its mock sets and cached posteriors. Prepared mock sets and
posteriors are cached under :data:`CACHE`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
from bayesslam.train import label_cv_calibration, with_label_cv

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
    "calibrate",
    "add_label_cv",
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
    fit = fit_map(model.emulator, mock.flux[:n], mock.ivar[:n])
    post = sample_nuts(model.emulator, mock.flux[:n], mock.ivar[:n], rng_key=jax.random.key(mock.seed),
                       num_warmup=num_warmup, num_samples=num_samples, init_labels=fit.labels, progress=False)
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


@in_float64
def calibrate(path: Path, n: int = N_CALIBRATION, seed: int = CALIBRATION_SEED,
              n_posterior: int = N_POSTERIOR_CALIBRATION) -> ModelCalibration:
    """Measure the model's error calibration on a held-out mock set and store it in the model file.

    The Laplace calibration is fitted on the MAP fits of all ``n`` stars, the
    posterior calibration on NUTS posteriors of the first ``n_posterior``.
    """
    model = load_model(path)
    snr_range = (3.0, 50.0)
    mock = mock_set(n, seed, snr_range)
    fit = fit_map(model.emulator, mock.flux, mock.ivar)
    estimates = np.where((fit.status == FitStatus.CONVERGED)[:, None], fit.labels, np.nan)
    survey = f"bayesslam.mock.make_survey({n}, seed {seed}, SNR {snr_range[0]:g}-{snr_range[1]:g})"
    laplace = ErrorCalibration.measure(model.label_names, estimates, mock.truth, fit.sigma,
                                       source=f"MAP Laplace sigmas of the converged stars of {survey}")
    post = posterior_set(model, mock, n_posterior)
    posterior = ErrorCalibration.measure_posterior(
        model.label_names, post.draws, mock.truth[: len(post.draws)],
        source=f"NUTS posteriors (500 warm-up + 500 draws, one chain) of the first {len(post.draws)} stars of {survey}",
    )
    calibration = ModelCalibration(laplace=laplace, posterior=posterior)
    save_model(model.with_calibration(calibration), path, overwrite=True)
    logger.info("calibration stored in %s: %s", path, json.dumps(calibration.to_metadata()))
    return calibration


@in_float64
def add_label_cv(path: Path, n_check: int = N_CALIBRATION, n_jobs: int = 2) -> dict:
    """Run the label-level CV of the model at ``path`` on its training set and store the record in it.

    The model keeps its calibration (measured on the survey's SNR range
    3-50, which the training set's 10-100 does not cover); the calibration
    measured on the out-of-fold labels alone is reported beside it: both are
    applied to the MAP fits of ``n_check`` independent mock stars
    (:data:`CHECK_SEED`), and the 68% coverage of the raw and the two
    calibrated sigmas is returned, over all stars and per SNR quartile.
    """
    model = load_model(path)
    train = mock_set(N_TRAIN, TRAIN_SEED, (10.0, 100.0))
    if not np.allclose(train.truth, model.training_labels):
        raise RuntimeError("the regenerated training set does not match the model's training labels")
    model = with_label_cv(model, train.flux, train.ivar, calibrate=False, n_jobs=n_jobs, progress=True)
    save_model(model, path, overwrite=True)
    own = label_cv_calibration(model, model.label_cv)
    shipped = model.error_calibration.laplace
    check = mock_set(n_check, CHECK_SEED)
    fit = fit_map(model.emulator, check.flux, check.ivar)
    ok = fit.status == FitStatus.CONVERGED
    errors, raw = fit.labels[ok] - check.truth[ok], fit.sigma[ok]
    edges = np.quantile(check.snr[ok], [0.25, 0.5, 0.75])
    quartile = np.searchsorted(edges, check.snr[ok])

    def covered(sigma: np.ndarray) -> dict:
        per_bin = [coverage(errors[quartile == q], sigma[quartile == q], ONE_SIGMA) for q in range(4)]
        return {name: {"all": round(float(coverage(errors, sigma, ONE_SIGMA)[k]), 3),
                       "snr_quartiles": [round(float(c[k]), 3) for c in per_bin]}
                for k, name in enumerate(model.label_names)}

    return {
        "check_set": f"{int(ok.sum())} converged MAP fits of bayesslam.mock.make_survey({n_check}, seed {CHECK_SEED}, "
                     "SNR 3-50)",
        "snr_quartile_edges": [round(float(v), 2) for v in edges],
        "own_calibration": own.to_metadata(),
        "coverage_68": {"raw": covered(raw), "model_calibration": covered(shipped.apply(raw)),
                        "own_calibration": covered(own.apply(raw))},
    }

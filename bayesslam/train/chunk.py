"""Cross-validation and final fits of one chunk of pixels, for either backend.

The unit of work of :class:`~bayesslam.train.trainer.SlamTrainer`: a chunk of
pixels is standardized, cross-validated over the grid (libsvm or the batched
solver), refitted at each pixel's chosen hyperparameters, and summarized
(CV scores, out-of-fold spectra, emulator variance ``s_j^2``) in a dict of
arrays that checkpoints store as they are.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from sklearn.model_selection import KFold

from bayesslam.train.batched import CVRace, KernelCache, cv_fold_scores, final_fits
from bayesslam.train.libsvm import libsvm_cv_scores, libsvm_final_fits
from bayesslam.train.settings import BATCHED_FINAL_TOL_FACTOR, BATCHED_MAX_ITER

__all__ = ["CHUNK_ARRAYS", "standardize", "assign_folds", "train_chunk", "indexed_chunk"]


def standardize(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardize to mean 0, variance 1 (population standard deviation) along ``axis``.

    Returns
    -------
    standardized, mean, scale : numpy.ndarray
        ``standardized = (values - mean) / scale``.
    """
    mean = values.mean(axis=axis)
    scale = values.std(axis=axis)
    return (values - np.expand_dims(mean, axis)) / np.expand_dims(scale, axis), mean, scale


def assign_folds(n_star: int, n_folds: int, random_state: int | None) -> np.ndarray:
    """Fold index of each star, from ``KFold(n_folds, shuffle=True, random_state)``.

    Returns
    -------
    numpy.ndarray of int, shape (n_star,)
    """
    fold = np.empty(n_star, dtype=np.int64)
    splitter = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    for index, (_, test) in enumerate(splitter.split(np.zeros((n_star, 1)))):
        fold[test] = index
    return fold


def _pixel_standardization(flux: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel mean and scale over usable stars, and the standardized flux (0 where unusable)."""
    count = usable.sum(axis=0)
    safe = np.where(usable, flux, 0.0)
    mean = np.divide(safe.sum(axis=0), count, out=np.ones(flux.shape[1]), where=count > 0)
    centred = np.where(usable, flux - mean, 0.0)
    var = np.divide((centred**2).sum(axis=0), count, out=np.zeros(flux.shape[1]), where=count > 0)
    scale = np.sqrt(var)
    scale = np.where(scale > 0, scale, 1.0)
    return np.where(usable, centred / scale, 0.0), mean, scale


def train_chunk(
    x: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    fold: np.ndarray,
    grid: np.ndarray,
    settings: Mapping[str, Any],
    cache: KernelCache | None = None,
    step_callback: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Cross-validate and refit the SVRs of a chunk of pixels.

    Parameters
    ----------
    x : numpy.ndarray, shape (n_star, n_label)
        Standardized labels.
    flux, ivar : numpy.ndarray, shape (n_star, n_chunk)
        Normalized flux and ivar of the chunk's pixels.
    fold : numpy.ndarray of int, shape (n_star,)
        Fold of each star.
    grid : numpy.ndarray, shape (n_grid, 3)
        C, epsilon, gamma of each grid point.
    settings : Mapping
        ``backend``, ``n_folds``, ``tol``, ``cv_tol``, ``cv_rank_tol``, ``cv_race``, ``cache_size``,
        ``shrinking``, ``max_iter``, ``min_stars``.
    cache : KernelCache, optional
        Kernel eigendecompositions shared by the chunks (batched backend).
    step_callback : callable, optional
        Progress callback of the batched backend (once per fold and gamma).

    Returns
    -------
    dict of numpy.ndarray
        The chunk's results (see :meth:`SlamTrainer.fit`).
    """
    n_star, n_chunk = flux.shape
    n_folds = int(settings["n_folds"])
    usable = ivar > 0
    y, mean, scale = _pixel_standardization(flux, usable)
    n_used = usable.sum(axis=0)
    trained = n_used >= int(settings["min_stars"])
    for f in range(n_folds):
        trained &= usable[fold != f].sum(axis=0) >= 2
    pixels = np.flatnonzero(trained)
    batched = settings["backend"] == "batched"
    if batched:
        batched_max_iter = int(settings["max_iter"]) if settings["max_iter"] > 0 else BATCHED_MAX_ITER
        cache = cache if cache is not None else KernelCache(x, fold, rank_tol=settings["cv_rank_tol"])
        race = None if settings["cv_race"] is None else CVRace(**settings["cv_race"])
        fold_mse, oof, dropped, _ = cv_fold_scores(y, usable, fold, grid, pixels, cache, tol=settings["cv_tol"],
                                                   max_iter=batched_max_iter, race=race,
                                                   step_callback=step_callback)
    else:
        svr_options = {key: settings[key] for key in ("tol", "cache_size", "shrinking", "max_iter")}
        fold_mse, oof = libsvm_cv_scores(x, y, usable, fold, grid, pixels, {**svr_options, "tol": settings["cv_tol"]})
        dropped = np.zeros(fold_mse.shape[:2], dtype=bool)

    scored = np.isfinite(fold_mse)
    n_scored = scored.sum(axis=2)
    cv_grid_mse = np.divide(
        np.where(scored, fold_mse, 0.0).sum(axis=2),
        n_scored,
        out=np.full(n_scored.shape, np.nan),
        where=(n_scored > 0) & ~dropped,
    )
    best = np.full(n_chunk, -1, dtype=np.int64)
    best[pixels] = np.argmin(np.where(np.isfinite(cv_grid_mse[pixels]), cv_grid_mse[pixels], np.inf), axis=1)
    hyper = np.full((n_chunk, 3), np.nan)
    hyper[pixels] = grid[best[pixels]]
    cv_mse = np.full(n_chunk, np.nan)
    cv_mse[pixels] = cv_grid_mse[pixels, best[pixels]]
    if batched:
        dual, intercept, _ = final_fits(y, usable, hyper[:, 0], hyper[:, 1], hyper[:, 2], pixels, cache,
                                        tol=BATCHED_FINAL_TOL_FACTOR * settings["tol"], max_iter=batched_max_iter)
    else:
        dual, intercept = libsvm_final_fits(x, y, usable, hyper, pixels, svr_options)
    oof_flux = np.full((n_star, n_chunk), np.nan)
    model_variance = np.full(n_chunk, np.inf)
    for p in pixels:
        used = usable[:, p]
        chosen = oof[p, best[p]].astype(np.float64)
        model_variance[p] = scale[p] ** 2 * np.mean((chosen[used] - y[used, p]) ** 2)
        oof_flux[:, p] = mean[p] + scale[p] * chosen
    return {
        "trained": trained,
        "n_used": n_used.astype(np.int64),
        "flux_mean": mean,
        "flux_scale": scale,
        "best_index": best,
        "C": hyper[:, 0],
        "epsilon": hyper[:, 1],
        "gamma": hyper[:, 2],
        "cv_mse": cv_mse,
        "cv_grid_mse": cv_grid_mse,
        "dual_coef": dual,
        "intercept": intercept,
        "model_variance": model_variance,
        "oof_flux": oof_flux,
    }


CHUNK_ARRAYS = (
    "trained",
    "n_used",
    "flux_mean",
    "flux_scale",
    "best_index",
    "C",
    "epsilon",
    "gamma",
    "cv_mse",
    "cv_grid_mse",
    "dual_coef",
    "intercept",
    "model_variance",
    "oof_flux",
)


def indexed_chunk(index: int, *args: Any) -> tuple[int, dict[str, np.ndarray]]:
    """:func:`train_chunk` of ``args``, returned with the chunk's ``index`` (for parallel workers)."""
    return index, train_chunk(*args)

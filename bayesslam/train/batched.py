"""SLAM's per-pixel cross-validated grid search and final fits with the batched SVR solver.

This is the ``backend="batched"`` of :class:`bayesslam.train.SlamTrainer`:
the same problems as the scikit-learn/libsvm backend (the same folds, grid,
scores, tie-breaking and final refits), solved for many pixels at once by
:func:`bayesslam.train.batched_svr.solve_svr_batch`.

For one ``gamma`` and one fold every pixel shares the training kernel, so its
eigendecomposition is computed once (:class:`KernelCache`) and reused by
every pixel, every ``C`` and every ``epsilon``: all (pixel, C, epsilon) of one
(gamma, fold) are the columns of one batched solve. Fold scores are the mean
squared error on the fold's usable held-out stars, exactly as the libsvm
backend computes them. The folds are scored one after the other, so that
with :class:`CVRace` the clear losers of each pixel leave the batch early.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bayesslam.train.batched_svr import (
    KernelSpectrum,
    rbf_kernel_matrix,
    solve_svr_batch,
)

__all__ = ["CVRace", "KernelCache", "cv_fold_scores", "final_fits", "race_losers"]

logger = logging.getLogger(__name__)


#: Smallest ``cv_tol`` solved in float32. Below it the CV solves run in float64: with float32
#: iterates the rounding of the gap ``y - K beta`` is ~1e-3 at C = 32 (870 stars), so libsvm's test
#: at ``tol = 1e-3`` cannot be met and ~1.5% of the paper grid's columns ran to the iteration limit.
FLOAT32_MIN_TOL: float = 5e-3

#: Relative eigenvalue threshold of the cross-validation kernels (see :class:`KernelCache`).
CV_RANK_TOL: float = 1e-5


class KernelCache:
    """Training kernels and their eigendecompositions per (gamma, fold), computed once per training.

    The fold kernels are truncated at ``rank_tol`` (eigenvalues below
    ``rank_tol * max`` set to 0, the rank rounded up to a multiple of 64):
    for the paper's gammas at 870 stars the default keeps 25-57% of the
    eigenvectors (192-448 of 783), fewer multiply-adds per iteration than
    at ``1e-6``. Truncation changes the problem most at large
    ``C``: against exact solves at ``tol = 1e-3`` the held-out MSE of 48
    pixels x the paper grid is off by at most 3.1e-3 (relative, at
    ``C = 2^5``; 6e-4 up to ``C = 2^3``) at ``rank_tol = 1e-5``, 4e-2 at
    ``1e-4`` (``docs/training.md``). The kernels of the final fits are exact.

    Parameters
    ----------
    x : numpy.ndarray, shape (n_star, n_label)
        Standardized training labels.
    fold : numpy.ndarray of int, shape (n_star,)
        Fold of each star.
    rank_tol : float
        Truncation of the fold kernels (0: exact).
    """

    def __init__(self, x: np.ndarray, fold: np.ndarray, rank_tol: float = CV_RANK_TOL) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.fold = np.asarray(fold)
        self.rank_tol = float(rank_tol)
        self._folds: dict[tuple[float, int], tuple[KernelSpectrum, np.ndarray]] = {}
        self._full: dict[float, KernelSpectrum] = {}

    def fold_kernels(self, gamma: float, fold: int) -> tuple[KernelSpectrum, np.ndarray]:
        """The training kernel's spectrum of ``fold`` and the held-out x training kernel block."""
        key = (float(gamma), int(fold))
        if key not in self._folds:
            train = self.fold != fold
            spectrum = KernelSpectrum.rbf(self.x[train], gamma).truncated(self.rank_tol)
            held_out = rbf_kernel_matrix(self.x[~train], self.x[train], gamma)
            self._folds[key] = (spectrum, held_out)
        return self._folds[key]

    def full(self, gamma: float) -> KernelSpectrum:
        """The spectrum of the kernel of all training stars."""
        key = float(gamma)
        if key not in self._full:
            self._full[key] = KernelSpectrum.rbf(self.x, gamma)
        return self._full[key]


@dataclass(frozen=True)
class CVRace:
    """Racing of the grid points through the folds: clear losers are not scored on the remaining folds.

    After each fold from the ``min_folds``-th on, a pixel's grid point is
    dropped when its mean held-out MSE over the folds scored so far exceeds
    that of the pixel's current best point by more than ``margin`` (relative
    to the best's) *and* by more than ``z`` standard errors of the paired
    per-fold differences (a racing scheme in the spirit of Maron & Moore's
    Hoeffding races). The best point of a pixel is never dropped, every
    surviving point is scored on every fold, and the choice is made among
    the survivors exactly as without racing; dropped points get a NaN CV MSE.

    Attributes
    ----------
    min_folds : int
        Folds scored before the first drop.
    margin : float
        Smallest relative excess over the best point's partial MSE to drop a point.
    z : float
        Smallest excess in standard errors of the paired differences.
    """

    min_folds: int = 3
    margin: float = 0.02
    z: float = 3.0

    def to_dict(self) -> dict[str, float]:
        """The settings as JSON-ready numbers (checkpoint key, model metadata)."""
        return {"min_folds": int(self.min_folds), "margin": float(self.margin), "z": float(self.z)}


def race_losers(fold_mse: np.ndarray, alive: np.ndarray, race: CVRace) -> np.ndarray:
    """The grid points that ``race`` drops given the folds scored so far.

    Parameters
    ----------
    fold_mse : numpy.ndarray, shape (n_pix, n_grid, n_done)
        Held-out MSE per fold scored so far (NaN: a fold without usable held-out stars).
    alive : numpy.ndarray of bool, shape (n_pix, n_grid)
        Points still in the race.
    race : CVRace

    Returns
    -------
    numpy.ndarray of bool, shape (n_pix, n_grid)
        Points to drop (never a pixel's current best).
    """
    scored = np.isfinite(fold_mse)
    n_scored = scored.sum(axis=2)
    mean = np.where(scored, fold_mse, 0.0).sum(axis=2) / np.maximum(n_scored, 1)
    mean = np.where(alive & (n_scored > 0), mean, np.inf)
    rows = np.arange(fold_mse.shape[0])
    best = np.argmin(mean, axis=1)
    diff = fold_mse - fold_mse[rows, best][:, None, :]
    valid = np.isfinite(diff)
    n_valid = valid.sum(axis=2)
    excess = np.where(valid, diff, 0.0).sum(axis=2) / np.maximum(n_valid, 1)
    spread = np.where(valid, (diff - excess[:, :, None]) ** 2, 0.0).sum(axis=2) / np.maximum(n_valid - 1, 1)
    stderr = np.sqrt(spread / np.maximum(n_valid, 1))
    best_mean = mean[rows, best][:, None]
    return (alive & (n_valid >= 2) & np.isfinite(best_mean) & (excess > race.margin * best_mean)
            & (excess > race.z * stderr))


def cv_fold_scores(
    y: np.ndarray,
    usable: np.ndarray,
    fold: np.ndarray,
    grid: np.ndarray,
    pixels: np.ndarray,
    cache: KernelCache,
    *,
    tol: float,
    max_iter: int,
    dtype: Any = None,
    race: CVRace | None = None,
    step_callback: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Held-out MSE of every grid point and fold, and out-of-fold predictions, for a chunk of pixels.

    Fold by fold, for each gamma, every (C, epsilon) of that gamma and every
    pixel still in the race is one column of a single
    :func:`~bayesslam.train.batched_svr.solve_svr_batch` call on the fold's
    training kernel.

    Parameters
    ----------
    y : numpy.ndarray, shape (n_star, n_chunk)
        Standardized flux (0 where unusable).
    usable : numpy.ndarray of bool, shape (n_star, n_chunk)
    fold : numpy.ndarray of int, shape (n_star,)
    grid : numpy.ndarray, shape (n_grid, 3)
        (C, epsilon, gamma) rows.
    pixels : numpy.ndarray of int
        The chunk's pixels (columns) to score; the others stay NaN.
    cache : KernelCache
    tol, max_iter, dtype
        Solver settings (:func:`~bayesslam.train.batched_svr.solve_svr_batch`); ``dtype``
        default: float32 for ``tol >= FLOAT32_MIN_TOL``, else float64.
    race : CVRace, optional
        Drop clear losers after each fold (:class:`CVRace`); default: score
        every point on every fold.
    step_callback : callable, optional
        Called after each (fold, gamma) is done (progress).

    Returns
    -------
    fold_mse : numpy.ndarray, shape (n_chunk, n_grid, n_folds)
        NaN for a fold without a usable held-out star and for the folds a
        dropped point was not scored on.
    oof : numpy.ndarray of float32, shape (n_chunk, n_grid, n_star)
        Held-out predictions (standardized), for every star (NaN where not scored).
    dropped : numpy.ndarray of bool, shape (n_chunk, n_grid)
        Points the race dropped.
    n_unconverged : int
        Solves that stopped at ``max_iter`` before reaching ``tol``.
    """
    n_star, n_chunk = y.shape
    n_grid = grid.shape[0]
    n_folds = int(fold.max()) + 1
    if dtype is None:
        dtype = np.float32 if tol >= FLOAT32_MIN_TOL else np.float64
    fold_mse = np.full((n_chunk, n_grid, n_folds), np.nan)
    oof = np.full((n_chunk, n_grid, n_star), np.nan, dtype=np.float32)
    alive = np.zeros((n_chunk, n_grid), dtype=bool)
    alive[pixels] = True
    n_unconverged = 0
    for f in range(n_folds):
        train = np.flatnonzero(fold != f)
        test = np.flatnonzero(fold == f)
        for gamma in np.unique(grid[:, 2]):
            points = np.flatnonzero(grid[:, 2] == gamma)
            local, pix = np.nonzero(alive[:, points].T)  # columns: point-major, pixels within
            if pix.size:
                point = points[local]
                spectrum, held_out = cache.fold_kernels(gamma, f)
                solution = solve_svr_batch(spectrum, y[np.ix_(train, pix)], grid[point, 0], grid[point, 1],
                                           mask=usable[np.ix_(train, pix)], tol=tol, max_iter=max_iter, dtype=dtype)
                n_unconverged += int((~solution.converged).sum())
                pred = solution.predict(held_out)
                use_test = usable[np.ix_(test, pix)]
                squared = np.where(use_test, (pred - y[np.ix_(test, pix)]) ** 2, 0.0).sum(axis=0)
                n_test = use_test.sum(axis=0)
                fold_mse[pix, point, f] = np.divide(squared, n_test, out=np.full(pix.size, np.nan), where=n_test > 0)
                oof[pix[:, None], point[:, None], test[None, :]] = pred.T.astype(np.float32)
            if step_callback is not None:
                step_callback()
        if race is not None and race.min_folds <= f + 1 < n_folds:
            alive &= ~race_losers(fold_mse[:, :, : f + 1], alive, race)
    dropped = np.zeros((n_chunk, n_grid), dtype=bool)
    dropped[pixels] = ~alive[pixels]
    return fold_mse, oof, dropped, n_unconverged


def final_fits(
    y: np.ndarray,
    usable: np.ndarray,
    C: np.ndarray,
    epsilon: np.ndarray,
    gamma: np.ndarray,
    pixels: np.ndarray,
    cache: KernelCache,
    *,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Final SVRs of a chunk's pixels at their own hyperparameters, on all their usable stars (float64).

    Parameters
    ----------
    y : numpy.ndarray, shape (n_star, n_chunk)
    usable : numpy.ndarray of bool, shape (n_star, n_chunk)
    C, epsilon, gamma : numpy.ndarray, shape (n_chunk,)
        Chosen hyperparameters (used at ``pixels``).
    pixels : numpy.ndarray of int
    cache : KernelCache
    tol, max_iter
        Solver settings.

    Returns
    -------
    dual : numpy.ndarray, shape (n_chunk, n_star)
        Dense dual coefficients (0 for unused stars and untouched pixels).
    intercept : numpy.ndarray, shape (n_chunk,)
    n_unconverged : int
    """
    n_star, n_chunk = y.shape
    dual = np.zeros((n_chunk, n_star))
    intercept = np.zeros(n_chunk)
    n_unconverged = 0
    for g in np.unique(gamma[pixels]):
        group = pixels[gamma[pixels] == g]
        solution = solve_svr_batch(cache.full(g), y[:, group], C[group], epsilon[group], mask=usable[:, group],
                                   tol=tol, max_iter=max_iter, dtype=np.float64)
        n_unconverged += int((~solution.converged).sum())
        dual[group] = solution.beta.T
        intercept[group] = solution.intercept
    return dual, intercept, n_unconverged

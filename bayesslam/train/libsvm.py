"""The libsvm backend: scikit-learn's ``SVR``, one quadratic program at a time (the reference).

Cross-validation fits use a precomputed RBF kernel shared by all pixels of a
chunk (the same libsvm problem as ``kernel="rbf"``, computed once per gamma
and fold); the final fits use ``SVR(kernel="rbf")``, which the emulator
reproduces exactly.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from sklearn.svm import SVR

__all__ = ["rbf_kernel", "libsvm_cv_scores", "libsvm_final_fits"]


def rbf_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """RBF kernel matrix ``exp(-gamma ||a_i - b_k||^2)``, shape (len(a), len(b))."""
    diff = a[:, None, :] - b[None, :, :]
    return np.exp(-gamma * np.einsum("ikl,ikl->ik", diff, diff))


def libsvm_cv_scores(
    x: np.ndarray,
    y: np.ndarray,
    usable: np.ndarray,
    fold: np.ndarray,
    grid: np.ndarray,
    pixels: np.ndarray,
    svr_options: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out MSE per (pixel, grid point, fold) and out-of-fold predictions with libsvm."""
    n_star, n_chunk = y.shape
    n_grid = grid.shape[0]
    n_folds = int(fold.max()) + 1
    fold_mse = np.full((n_chunk, n_grid, n_folds), np.nan)
    oof = np.full((n_chunk, n_grid, n_star), np.nan)
    for gamma in np.unique(grid[:, 2]):
        points = np.flatnonzero(grid[:, 2] == gamma)
        for f in range(n_folds):
            train_idx = np.flatnonzero(fold != f)
            test_idx = np.flatnonzero(fold == f)
            kernel_train = rbf_kernel(x[train_idx], x[train_idx], gamma)
            kernel_test = rbf_kernel(x[test_idx], x[train_idx], gamma)
            for p in pixels:
                use_train = usable[train_idx, p]
                use_test = usable[test_idx, p]
                if use_train.all():
                    k_train, k_test, y_train = kernel_train, kernel_test, y[train_idx, p]
                else:
                    k_train = kernel_train[np.ix_(use_train, use_train)]
                    k_test = kernel_test[:, use_train]
                    y_train = y[train_idx[use_train], p]
                y_test = y[test_idx[use_test], p]
                for k in points:
                    svr = SVR(kernel="precomputed", C=grid[k, 0], epsilon=grid[k, 1], **svr_options)
                    svr.fit(k_train, y_train)
                    pred = k_test[:, svr.support_] @ svr.dual_coef_[0] + svr.intercept_[0]
                    oof[p, k, test_idx] = pred
                    if use_test.any():
                        fold_mse[p, k, f] = np.mean((pred[use_test] - y_test) ** 2)
    return fold_mse, oof


def libsvm_final_fits(
    x: np.ndarray,
    y: np.ndarray,
    usable: np.ndarray,
    hyper: np.ndarray,
    pixels: np.ndarray,
    svr_options: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Final ``SVR(kernel="rbf")`` fits of each pixel at its (C, epsilon, gamma) on all its usable stars."""
    n_star, n_chunk = y.shape
    dual = np.zeros((n_chunk, n_star))
    intercept = np.zeros(n_chunk)
    for p in pixels:
        used = np.flatnonzero(usable[:, p])
        svr = SVR(kernel="rbf", C=hyper[p, 0], epsilon=hyper[p, 1], gamma=hyper[p, 2], **svr_options)
        svr.fit(x[used], y[used, p])
        dual[p, used[svr.support_]] = svr.dual_coef_[0]
        intercept[p] = svr.intercept_[0]
    return dual, intercept

"""The emulator's own error: what the likelihood adds to the noise because the emulator is not the sky.

Measured on the out-of-fold fits of training (:mod:`bayesslam.train.error_model`),
the SVR bank is wrong in two ways. Per pixel, at the true labels, it misses
the noise-free spectrum by a small independent amount, variance
:attr:`EmulatorErrorModel.pixel_variance` ``D_j`` (the out-of-fold residual
variance with the training spectra's own noise taken out). And as a function
of the labels it is coherently wrong: a star's spectrum looks like the
emulator's at labels ``theta + eta`` rather than at its own ``theta``, with a
label-space error ``eta ~ N(0, Sigma_eta)``
(:attr:`EmulatorErrorModel.label_covariance`). Marginalizing ``eta`` to first
order gives the flux of a star the covariance

    Cov(flux) = diag(1 / ivar) + diag(D) + J Sigma_eta J^T,

with ``J`` the emulator's Jacobian: a diagonal plus a rank-``n_label`` term
``W W^T``, ``W = J L``, ``L L^T = Sigma_eta`` (:func:`error_factor`). In
label space the same model says that a spectrum of Fisher information ``F``
constrains the labels with precision

    A = (F^-1 + Sigma_eta)^-1 = F (I + Sigma_eta F)^-1

(:func:`marginal_precision`; written without ``F^-1``, so labels the spectrum
does not constrain stay finite). The MAP labels are unchanged by the
low-rank term (generalized least squares with a covariance ``N + J S J^T``
gives the estimate of ``N`` alone); their Laplace covariance, and NUTS and
emcee posteriors, widen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from bayesslam.errors import BayesSlamError

__all__ = ["ErrorModelError", "EmulatorErrorModel", "marginal_precision", "error_factor"]


class ErrorModelError(BayesSlamError, ValueError):
    """An emulator error model is malformed (wrong shapes, non-finite values, not positive semi-definite)."""


@dataclass(frozen=True, eq=False)
class EmulatorErrorModel:
    """The emulator's error: independent per pixel plus a label-space error.

    Attributes
    ----------
    pixel_variance : numpy.ndarray, shape (n_pix,)
        ``D_j``, normalized-flux units; ``inf`` on pixels the model could not
        train (they never enter a likelihood).
    label_covariance : numpy.ndarray, shape (n_label, n_label)
        ``Sigma_eta``, physical label units (symmetric, positive semi-definite).
    metadata : Mapping
        How it was learnt (``source``, ``n_stars``, ...): JSON, stored in the
        model file.
    """

    pixel_variance: np.ndarray
    label_covariance: np.ndarray
    metadata: Mapping[str, Any]

    def __post_init__(self) -> None:
        d = np.asarray(self.pixel_variance, dtype=float)
        s = np.asarray(self.label_covariance, dtype=float)
        if d.ndim != 1 or d.size == 0:
            raise ErrorModelError(f"pixel_variance must be a 1-d array over pixels, got shape {d.shape}.")
        if np.any(np.isnan(d)) or np.any(d < 0):
            raise ErrorModelError("pixel_variance must be >= 0 (inf on untrained pixels), without NaN.")
        if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
            raise ErrorModelError(f"label_covariance must be square (n_label, n_label), got shape {s.shape}.")
        if not np.all(np.isfinite(s)):
            raise ErrorModelError("label_covariance has non-finite values.")
        if not np.allclose(s, s.T, rtol=1e-10, atol=1e-12 * max(1.0, float(np.max(np.abs(s))))):
            raise ErrorModelError("label_covariance is not symmetric.")
        if np.min(np.linalg.eigvalsh(s)) < -1e-10 * max(float(np.max(np.abs(np.diag(s)))), 1e-300):
            raise ErrorModelError("label_covariance is not positive semi-definite.")
        object.__setattr__(self, "pixel_variance", d)
        object.__setattr__(self, "label_covariance", 0.5 * (s + s.T))
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def label_sigma(self) -> np.ndarray:
        """Standard deviation of the label-space error per label."""
        return np.sqrt(np.diag(self.label_covariance))

    def check_shape(self, n_pix: int, label_names: tuple[str, ...]) -> None:
        """Raise :class:`ErrorModelError` unless the model covers ``n_pix`` pixels and these labels."""
        if self.pixel_variance.shape != (n_pix,):
            raise ErrorModelError(f"pixel_variance covers {self.pixel_variance.shape[0]} pixels, the emulator {n_pix}.")
        n_label = len(label_names)
        if self.label_covariance.shape != (n_label, n_label):
            raise ErrorModelError(
                f"label_covariance has shape {self.label_covariance.shape}, the model has {n_label} labels."
            )


def marginal_precision(fisher: ArrayLike, label_covariance: ArrayLike) -> Array:
    """Label precision of a spectrum once the label-space error is marginalized: ``F (I + S F)^-1``.

    Equal to ``(F^-1 + S)^-1`` when ``F`` is invertible, finite when it is
    not; ``S = 0`` returns ``F``. Both arguments broadcast over leading axes
    and must share label units (physical or standardized).

    Parameters
    ----------
    fisher : array_like, (..., n_label, n_label)
        The likelihood's Fisher (Gauss-Newton) matrix ``J^T W J``.
    label_covariance : array_like, (n_label, n_label)
        ``Sigma_eta`` in the same units.

    Returns
    -------
    jax.Array
        Symmetric, same shape as ``fisher``.
    """
    f = jnp.asarray(fisher)
    s = jnp.asarray(label_covariance, dtype=f.dtype)
    eye = jnp.eye(f.shape[-1], dtype=f.dtype)
    m = eye + jnp.matmul(s, f)
    # A = F M^-1  <=>  M^T A^T = F^T
    a = jnp.swapaxes(jnp.linalg.solve(jnp.swapaxes(m, -1, -2), jnp.swapaxes(f, -1, -2)), -1, -2)
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def error_factor(jacobian: ArrayLike, label_covariance: ArrayLike) -> Array:
    """The low-rank factor ``W = J L`` of the flux covariance, ``L L^T = Sigma_eta``.

    Parameters
    ----------
    jacobian : array_like, (..., n_pix, n_label)
        ``d flux / d label`` in physical units.
    label_covariance : array_like, (n_label, n_label)

    Returns
    -------
    jax.Array, (..., n_pix, n_label)
    """
    j = jnp.asarray(jacobian)
    s = jnp.asarray(label_covariance, dtype=j.dtype)
    # eigen-decomposition: a square root that exists for semi-definite S too
    e, v = jnp.linalg.eigh(s)
    root = v * jnp.sqrt(jnp.clip(e, 0.0, None))[None, :]
    return jnp.matmul(j, root)

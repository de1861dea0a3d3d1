"""Exact RBF epsilon-SVRs for many pixels at once: one kernel matrix, one eigendecomposition, many targets.

SLAM trains one RBF epsilon-SVR per spectral pixel, all on the same
standardized labels ``X``. For one kernel width ``gamma`` and one training
set every pixel therefore shares the kernel matrix ``K``; only the targets
``y_j`` (and the box ``C``, the tube ``epsilon``, the stars a pixel may use)
differ. This module solves libsvm's epsilon-SVR dual of all those pixels
together::

    minimize    0.5 beta' K beta - y' beta + epsilon ||beta||_1
    subject to  -C <= beta_i <= C,   sum_i beta_i = 0,

with ``beta = alpha - alpha*`` and predictions ``f(x) = sum_i beta_i k(x_i, x) + b``.

Algorithm: ADMM in the kernel's eigenbasis
------------------------------------------
The problem is split as ``f(beta) + g(z)`` subject to ``beta = z``, with the
smooth part ``f(beta) = 0.5 beta' K beta - y' beta`` restricted to
``sum beta = 0`` and the separable part ``g(z) = epsilon ||z||_1`` restricted
to the box. Each ADMM iteration (over-relaxed, ``alpha = 1.8``) is

* ``beta = (K + rho I)^-1 (y + rho (z - u) - nu 1)``, ``nu`` such that
  ``sum beta = 0``. With ``K = V diag(s) V'`` computed once, this is
  ``V diag(1 / (s + rho)) V' q``: **two matrix-matrix products with V for all
  pixels at once** (``rho`` may differ per pixel, it only changes the diagonal);
* ``z = clip(soft_threshold(alpha beta + (1 - alpha) z + u, epsilon / rho), -C, C)``
  (elementwise; a star excluded from a pixel has the box ``[0, 0]``, which is
  the same as dropping its row);
* ``u = u + alpha beta + (1 - alpha) z_old - z``.

The returned solution is ``z`` (inside the box exactly), with its sum
rebalanced on the free coefficients. Every ``check_every`` iterations the
pixels are tested with **libsvm's own stopping rule**: the maximal violating
pair gap ``m(beta) - M(beta)`` (libsvm's ``Gmax + Gmax2``) below ``tol``
(scikit-learn's default ``1e-3``). Solved pixels leave the batch, so the
remaining work shrinks; the intercept is computed as libsvm's
``calculate_rho`` does. ``rho`` defaults to ``rho_scale * C**-0.85``, tuned on
M-dwarf spectra over the paper's ``C = 2^-5..2^5`` (``docs/training.md``).

Everything runs in JAX (the same code runs on a GPU), in the dtype asked for;
float32 is accurate enough for the cross-validation scores and cheaper,
float64 (under ``jax.enable_x64``) is used for final models.
The returned point, its float64 gap and its intercept are one compiled step
too; only columns whose sum the free coefficients cannot rebalance (rare)
are finished on the host. Arrays reach the device with ``jax.device_put``
(``jnp.asarray`` of a host array compiles a copy program per shape, and
compiling is slow on a GPU) and the products run at ``Precision.HIGHEST`` (no
tensor-float-32 rounding on GPUs). Measured costs: ``docs/benchmarks.md``.
This module imports no scikit-learn; its tests compare it with
``sklearn.svm.SVR`` (libsvm).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from threadpoolctl import threadpool_limits

from bayesslam.errors import BayesSlamError

__all__ = [
    "BatchedSVRError",
    "KernelSpectrum",
    "BatchSolution",
    "rbf_kernel_matrix",
    "kkt_violation",
    "libsvm_intercept",
    "default_rho",
    "solve_svr_batch",
]

logger = logging.getLogger(__name__)

#: Truncated kernels keep a multiple of this many eigenpairs (few compiled shapes).
RANK_MULTIPLE: int = 64
#: Relative distance to a bound below which a returned coefficient is put on it.
SNAP_RTOL: float = 1e-10
#: ADMM over-relaxation factor.
RELAXATION: float = 1.8
#: ``rho = rho_scale * C ** RHO_POWER`` by default.
RHO_POWER: float = -0.85
#: Default ``rho_scale`` for standardized targets and unit-diagonal kernels.
DEFAULT_RHO_SCALE: float = 0.25
#: A pixel that may use fewer than this fraction of the stars is solved on its own stars'
#: kernel (ADMM on the shared kernel slows down when most coefficients are pinned at 0).
SHARED_MIN_FRACTION: float = 0.25
#: Restricted kernels kept per :class:`KernelSpectrum`.
RESTRICTED_CACHE_SIZE: int = 64

#: Matrix products of the iterations in full float32/float64: on GPUs XLA's default float32
#: product rounds its operands to tensor-float-32 (~1e-3 relative), the size of the gaps tested.
_matmul = partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)


class BatchedSVRError(BayesSlamError, ValueError):
    """Inputs of the batched SVR solver are inconsistent (shapes, non-finite values, bad settings)."""


def rbf_kernel_matrix(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """RBF kernel matrix ``exp(-gamma ||a_i - b_k||^2)`` in float64.

    Parameters
    ----------
    a : numpy.ndarray, shape (m, d)
    b : numpy.ndarray, shape (n, d)
    gamma : float

    Returns
    -------
    numpy.ndarray, shape (m, n)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    sq = np.zeros((a.shape[0], b.shape[0]))
    for k in range(a.shape[1]):
        diff = a[:, k, None] - b[None, :, k]
        sq += diff * diff
    return np.exp(-float(gamma) * sq)


@dataclass(frozen=True)
class KernelSpectrum:
    """A training kernel and its eigendecomposition ``K = V diag(s) V'``, shared by all pixels.

    Attributes
    ----------
    kernel : numpy.ndarray, shape (n, n)
        The kernel matrix (float64).
    vectors : numpy.ndarray, shape (n, r)
        Orthonormal eigenvectors ``V`` (columns); ``r = n`` unless truncated
        (:meth:`truncated`), in which case the missing eigenvalues are 0.
    values : numpy.ndarray, shape (r,)
        Eigenvalues ``s``, clipped at 0 (a kernel matrix is positive semidefinite;
        rounding can make the smallest ones slightly negative).
    """

    kernel: np.ndarray
    vectors: np.ndarray
    values: np.ndarray
    _restricted: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_kernel(cls, kernel: np.ndarray) -> "KernelSpectrum":
        """Eigendecompose a symmetric positive semidefinite kernel matrix (float64, LAPACK ``eigh``).

        Raises
        ------
        BatchedSVRError
            If the matrix is not square and finite.
        """
        kernel = np.asarray(kernel, dtype=np.float64)
        if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
            raise BatchedSVRError(f"the kernel must be a square matrix, got shape {kernel.shape}")
        if not np.all(np.isfinite(kernel)):
            raise BatchedSVRError("the kernel matrix holds non-finite values")
        kernel = 0.5 * (kernel + kernel.T)
        # one BLAS thread: LAPACK's divide and conquer on a few hundred rows is fastest
        # single-threaded, and threads fighting JAX's thread pool make it many times slower
        with threadpool_limits(limits=1, user_api="blas"):
            values, vectors = np.linalg.eigh(kernel)
        return cls(kernel=kernel, vectors=vectors, values=np.clip(values, 0.0, None))

    @classmethod
    def rbf(cls, x: np.ndarray, gamma: float) -> "KernelSpectrum":
        """The RBF kernel of the rows of ``x`` and its eigendecomposition."""
        return cls.from_kernel(rbf_kernel_matrix(x, x, gamma))

    @property
    def n(self) -> int:
        """Number of training stars."""
        return int(self.vectors.shape[0])

    @property
    def rank(self) -> int:
        """Number of eigenpairs kept (``n`` unless :meth:`truncated`)."""
        return int(self.values.shape[0])

    def truncated(self, rel_tol: float, multiple: int = RANK_MULTIPLE) -> "KernelSpectrum":
        """The kernel with its eigenvalues below ``rel_tol * max`` set to 0, and only the others kept.

        The number of eigenpairs kept is rounded up to a multiple of
        ``multiple`` (the next largest eigenvalues are kept too), so that the
        kernels of different folds share a shape and the solver compiles once
        for all of them. The result is an exact spectrum of a slightly
        different kernel (``kernel`` is ``V_r diag(s_r) V_r'``, off by at most
        ``rel_tol * max(s)`` in the matrix 2-norm); ADMM iterations on it cost
        ``rank / n`` of the full ones. ``rel_tol = 0`` returns this spectrum.
        """
        if rel_tol <= 0:
            return self
        n_keep = int(np.sum(self.values > rel_tol * self.values.max()))
        n_keep = -(-n_keep // multiple) * multiple
        if n_keep >= self.n:
            return self
        order = np.argsort(self.values)[::-1][:n_keep]
        vectors, values = self.vectors[:, order], self.values[order]
        return KernelSpectrum(kernel=(vectors * values) @ vectors.T, vectors=vectors, values=values)

    def restricted(self, rows: np.ndarray) -> "KernelSpectrum":
        """The spectrum of the kernel of a subset of the stars (cached for the few most recent subsets)."""
        rows = np.asarray(rows, dtype=np.int64)
        key = rows.tobytes()
        if key not in self._restricted:
            if len(self._restricted) >= RESTRICTED_CACHE_SIZE:
                self._restricted.pop(next(iter(self._restricted)))
            self._restricted[key] = KernelSpectrum.from_kernel(self.kernel[np.ix_(rows, rows)])
        return self._restricted[key]


@dataclass(frozen=True)
class BatchSolution:
    """Dual solutions of a batch of epsilon-SVRs sharing one kernel matrix.

    Attributes
    ----------
    beta : numpy.ndarray, shape (n, P)
        Dual coefficients ``alpha - alpha*`` (0 for excluded stars), float64.
    intercept : numpy.ndarray, shape (P,)
        Intercepts ``b``, computed as libsvm does.
    violation : numpy.ndarray, shape (P,)
        libsvm's maximal-violating-pair gap ``m(beta) - M(beta)`` at ``beta``
        (``-inf`` for a pixel with fewer than two usable stars).
    n_iter : numpy.ndarray of int, shape (P,)
        ADMM iterations used per pixel.
    converged : numpy.ndarray of bool, shape (P,)
        ``violation < tol``.
    """

    beta: np.ndarray
    intercept: np.ndarray
    violation: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray

    def predict(self, kernel_eval: np.ndarray) -> np.ndarray:
        """Predictions ``kernel_eval @ beta + intercept``, shape (m, P), for a kernel block (m, n)."""
        return np.asarray(kernel_eval, dtype=np.float64) @ self.beta + self.intercept


def _violation_terms(beta, h, upper, eps, usable, xp=np):
    """libsvm's ``m(beta)`` (max) and ``M(beta)`` (min) per pixel, from ``h = y - K beta``.

    A star with ``beta_i < C`` offers ``h_i - eps`` (``h_i + eps`` if
    ``beta_i < 0``) to ``m``; one with ``beta_i > -C`` offers ``h_i + eps``
    (``h_i - eps`` if ``beta_i > 0``) to ``M``.
    """
    up = xp.where(beta < 0, h + eps, xp.where(beta < upper, h - eps, -xp.inf))
    low = xp.where(beta > 0, h - eps, xp.where(beta > -upper, h + eps, xp.inf))
    up = xp.where(usable, up, -xp.inf)
    low = xp.where(usable, low, xp.inf)
    return up.max(axis=0), low.min(axis=0)


def kkt_violation(
    K: np.ndarray,
    Y: np.ndarray,
    beta: np.ndarray,
    C: float | np.ndarray,
    epsilon: float | np.ndarray,
    *,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """libsvm's optimality gap ``m(beta) - M(beta)`` of each pixel's dual solution (float64).

    libsvm (and so ``sklearn.svm.SVR``) stops when this maximal violating
    pair's gap falls below ``tol``. It is 0 at an exact solution.

    Parameters
    ----------
    K : numpy.ndarray, shape (n, n)
    Y : numpy.ndarray, shape (n, P)
    beta : numpy.ndarray, shape (n, P)
    C, epsilon : float or numpy.ndarray of shape (P,)
    mask : numpy.ndarray of bool, shape (n, P), optional
        Usable stars (others ignored). Default: all.

    Returns
    -------
    numpy.ndarray, shape (P,)
        ``-inf`` for a pixel with no usable star.
    """
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64).T).T
    beta = np.atleast_2d(np.asarray(beta, dtype=np.float64).T).T
    usable = np.ones(Y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(Y.shape)
    n_pix = Y.shape[1]
    C = np.broadcast_to(np.asarray(C, dtype=np.float64), (n_pix,))
    epsilon = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), (n_pix,))
    h = np.where(usable, Y, 0.0) - np.asarray(K, dtype=np.float64) @ np.where(usable, beta, 0.0)
    m, M = _violation_terms(beta, h, C, epsilon, usable)
    with np.errstate(invalid="ignore"):
        return m - M


def libsvm_intercept(beta: np.ndarray, h: np.ndarray, C: np.ndarray, epsilon: np.ndarray,
                     usable: np.ndarray) -> np.ndarray:
    """Intercept ``b`` exactly as libsvm's ``calculate_rho`` (``b = -rho``) computes it.

    Parameters
    ----------
    beta : numpy.ndarray, shape (n, P)
        Dual coefficients.
    h : numpy.ndarray, shape (n, P)
        ``y - K beta``.
    C, epsilon : numpy.ndarray, shape (P,)
    usable : numpy.ndarray of bool, shape (n, P)

    Returns
    -------
    numpy.ndarray, shape (P,)
        The mean over free variables (``0 < alpha < C`` or ``0 < alpha* < C``)
        of ``h - eps sign(beta)``; without free variables, the midpoint of
        libsvm's feasible interval ``[lb, ub]``; 0 for a pixel without usable stars.
    """
    with np.errstate(invalid="ignore"):
        return _intercept(beta, h, C, epsilon, usable)


def _intercept(beta, h, C, epsilon, usable, xp=np):
    """:func:`libsvm_intercept` for NumPy or JAX arrays (``xp``)."""
    alpha = xp.maximum(beta, 0.0)
    alpha_s = xp.maximum(-beta, 0.0)
    # y*G of libsvm's 2n variables: alpha (y = +1): eps - h; alpha* (y = -1): -(h + eps)
    yg_a = epsilon - h
    yg_s = -(h + epsilon)
    upper_a, lower_a = alpha >= C, alpha <= 0
    upper_s, lower_s = alpha_s >= C, alpha_s <= 0
    free_a = usable & ~upper_a & ~lower_a
    free_s = usable & ~upper_s & ~lower_s
    n_free = free_a.sum(axis=0) + free_s.sum(axis=0)
    sum_free = xp.where(free_a, yg_a, 0.0).sum(axis=0) + xp.where(free_s, yg_s, 0.0).sum(axis=0)
    ub = xp.minimum(xp.where(usable & lower_a, yg_a, xp.inf).min(axis=0),
                    xp.where(usable & upper_s, yg_s, xp.inf).min(axis=0))
    lb = xp.maximum(xp.where(usable & upper_a, yg_a, -xp.inf).max(axis=0),
                    xp.where(usable & lower_s, yg_s, -xp.inf).max(axis=0))
    both = xp.isfinite(ub) & xp.isfinite(lb)
    rho = xp.where(n_free > 0, sum_free / xp.maximum(n_free, 1), xp.where(both, 0.5 * (ub + lb), 0.0))
    return -rho


def default_rho(C: np.ndarray, rho_scale: float = DEFAULT_RHO_SCALE) -> np.ndarray:
    """The default ADMM penalty ``rho_scale * C**-0.85`` (per pixel)."""
    return rho_scale * np.asarray(C, dtype=np.float64) ** RHO_POWER


def _soft_box(v, tau, upper, xp=np):
    """``z = clip(soft_threshold(v, tau), -upper, upper)``: the proximal step of ``epsilon ||z||_1`` on the box."""
    return xp.clip(xp.sign(v) * xp.maximum(xp.abs(v) - tau, 0.0), -upper, upper)


@partial(jax.jit, static_argnames=("n_steps",))
def _admm_block(vectors, vectors_t, values, ones_v, Y, upper, eps, rho, usable, v, done, tol, n_steps: int):
    """``n_steps`` over-relaxed ADMM iterations (see the module docstring), then libsvm's gap test.

    The ADMM state ``(z, u)`` is carried as ``v = z + u`` (``z = prox(v)``,
    ``u = v - z``), one array per column instead of two. With a truncated
    spectrum (fewer eigenvectors than stars) the solve is
    ``(K + rho I)^-1 q = q / rho + V diag(1 / (s + rho) - 1 / rho) V' q``,
    the missing eigenvalues being 0; the projection onto ``sum beta = 0`` is
    done in the eigenbasis (``1' (K + rho I)^-1 q`` from ``V' q``), so each
    iteration costs two products with the eigenvectors and a few
    elementwise passes. ``vectors_t`` is ``vectors.T`` stored contiguously
    (XLA's CPU product with a transposed operand is slower). Columns
    already ``done`` keep their state. Returns ``(v, gap, done)``.
    """
    full = vectors.shape[1] == vectors.shape[0]
    inv = 1.0 / (values[:, None] + rho[None, :])
    if not full:
        inv = inv - 1.0 / rho[None, :]
    ones_inv = ones_v[:, None] * inv  # V' (K + rho I)^-1 1, without its 1 / rho part
    den = jnp.sum(ones_v[:, None] * ones_inv, axis=0)  # 1' (K + rho I)^-1 1
    if not full:
        den = den + vectors.shape[0] / rho
    tau = eps / rho

    def step(_, v):
        z = _soft_box(v, tau, upper, xp=jnp)
        q = Y + rho * (2.0 * z - v)
        coef = inv * _matmul(vectors_t, q)
        total = jnp.sum(ones_v[:, None] * coef, axis=0)  # 1' (K + rho I)^-1 q
        if not full:
            total = total + jnp.sum(q, axis=0) / rho
        shift = total / den  # the multiplier of sum beta = 0
        projected = _matmul(vectors, coef - shift * ones_inv)
        beta = projected if full else (q - shift) / rho + projected
        return jnp.where(done, v, v + RELAXATION * (beta - z))

    v = jax.lax.fori_loop(0, n_steps, step, v)
    z = _soft_box(v, tau, upper, xp=jnp)
    kernel_z = _matmul(vectors, values[:, None] * _matmul(vectors_t, z))
    m, M = _violation_terms(z, Y - kernel_z, upper, eps, usable, xp=jnp)
    gap = m - M
    return v, gap, done | (gap < tol)


def _shift_free(beta, upper, usable, xp=np):
    """Move ``sum beta`` towards 0 by shifting the free coefficients (each keeps its sign and box)."""
    for _ in range(4):
        total = beta.sum(axis=0)
        free = usable & (beta != 0) & (xp.abs(beta) < upper)
        n_free = free.sum(axis=0)
        shifted = beta - xp.where(n_free > 0, total / xp.maximum(n_free, 1), 0.0)
        beta = xp.where(free, xp.where(beta > 0, xp.clip(shifted, 0.0, upper), xp.clip(shifted, -upper, 0.0)), beta)
    return beta


def _unbalanced(beta, upper, xp=np):
    """Columns whose ``sum beta`` is not 0 to rounding."""
    scale = xp.maximum(upper.max(axis=0), 1e-300) * beta.shape[0]
    return xp.abs(beta.sum(axis=0)) > 1e-12 * scale


def _snap_to_bounds(beta, upper, xp=np):
    """Coefficients within ``SNAP_RTOL * C`` of 0 or of ``+-C`` set exactly there.

    libsvm's coefficients sit exactly on their bounds; rounding in the
    rebalancing can leave one a few ulps away, which would make it "free" and
    change the intercept (the mean over free coefficients instead of the
    midpoint of the feasible interval).
    """
    margin = SNAP_RTOL * upper
    beta = xp.where(xp.abs(beta) <= margin, 0.0, beta)
    return xp.where(xp.abs(beta) >= upper - margin, xp.sign(beta) * upper, beta)


def _gap_and_intercept(kernel, Y, beta, upper, C, eps, usable, xp=np):
    """libsvm's gap ``m - M`` and intercept at ``beta`` (``h = y - K beta``), for NumPy or JAX arrays."""
    h = Y - (_matmul if xp is jnp else np.matmul)(kernel, beta)
    m, M = _violation_terms(beta, h, upper, eps, usable, xp=xp)
    return m - M, _intercept(beta, h, C, eps, usable, xp=xp)


@jax.jit
def _finish_block(kernel, Y, v, tau, upper, C, eps, usable):
    """The returned point of ADMM states ``v`` and its libsvm gap and intercept (float64, compiled).

    ``beta = prox(v)`` (inside the box, 0 at unusable stars), its sum
    rebalanced on the free coefficients (:func:`_shift_free`), snapped to
    the bounds; then ``h = y - K beta``, libsvm's gap ``m - M`` and
    intercept. Returns ``(beta, gap, intercept, unbalanced)``, the last
    marking columns whose sum the free coefficients could not bring to 0
    (:func:`_rebalance_bounded` finishes those on the host).
    """
    beta = jnp.where(usable, _soft_box(v, tau, upper, xp=jnp), 0.0)
    beta = _shift_free(beta, upper, usable, xp=jnp)
    unbalanced = _unbalanced(beta, upper, xp=jnp)
    beta = _snap_to_bounds(beta, upper, xp=jnp)
    return (beta, *_gap_and_intercept(kernel, Y, beta, upper, C, eps, usable, xp=jnp), unbalanced)


def _rebalance_bounded(beta: np.ndarray, Y: np.ndarray, kernel: np.ndarray, upper: np.ndarray, eps: np.ndarray,
                       usable: np.ndarray) -> np.ndarray:
    """Bring ``sum beta`` to 0 where shifting the free coefficients could not (e.g. all at 0 or +-C).

    The coefficients whose residual ``h = y - K beta`` lies closest to the
    tube edge they would move onto are moved, one at a time, until the sum
    is 0: the smallest change to the KKT state.
    """
    beta = beta.copy()
    total = beta.sum(axis=0)
    h = Y - kernel @ beta
    for j in range(beta.shape[1]):
        down = total[j] > 0  # the sum must decrease: move coefficients down
        b, hj, up, e, use = beta[:, j], h[:, j], upper[:, j], eps[j], usable[:, j]
        # distance of each star to the edge it would move onto, and how far it can move
        if down:
            edge = np.where(b > 0, np.abs(hj - e), np.abs(hj + e))
            room = b + up
        else:
            edge = np.where(b < 0, np.abs(hj + e), np.abs(hj - e))
            room = up - b
        order = np.argsort(np.where(use & (room > 0), edge, np.inf))
        need = abs(total[j])
        for i in order:
            if need <= 0 or not (use[i] and room[i] > 0):
                break
            step = min(room[i], need)
            b[i] += -step if down else step
            need -= step
    return beta


def _finish(spectrum: KernelSpectrum, Yu: np.ndarray, v: np.ndarray, upper: np.ndarray, C: np.ndarray, eps: np.ndarray,
            rho: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_finish_block` on padded column buckets, then the host-side fix of unbalanced columns.

    Returns ``(beta, gap, intercept)`` in float64.
    """
    n_col = Yu.shape[1]
    size = _bucket(n_col)
    cols = np.resize(np.arange(n_col), size)
    keep = (np.arange(size) < n_col)[None, :]
    with jax.enable_x64(True):
        out = _finish_block(spectrum.kernel, Yu[:, cols], v[:, cols], (eps / rho)[cols],
                            np.where(keep, upper[:, cols], 0.0), C[cols], eps[cols], usable[:, cols] & keep)
        beta, gap, intercept, unbalanced = (np.array(a)[..., :n_col] for a in out)
    left = np.flatnonzero(unbalanced)
    if left.size:
        fixed = _snap_to_bounds(_rebalance_bounded(beta[:, left], Yu[:, left], spectrum.kernel, upper[:, left],
                                                   eps[left], usable[:, left]), upper[:, left])
        with np.errstate(invalid="ignore"):
            gap[left], intercept[left] = _gap_and_intercept(spectrum.kernel, Yu[:, left], fixed, upper[:, left],
                                                            C[left], eps[left], usable[:, left])
        beta[:, left] = fixed
    return beta, gap, intercept


def _bucket(size: int) -> int:
    """Padded number of columns: the next of 8, 12, 16, 24, 32, 48, ... (few compiled shapes, <= 33% padding)."""
    size = max(int(size), 1)
    power = 1 << max(int(np.ceil(np.log2(size))), 3)
    return power * 3 // 4 if power >= 16 and size <= power * 3 // 4 else power


def _as_pixel_vector(value: Any, n_pix: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_pix, float(arr))
    if arr.shape != (n_pix,):
        raise BatchedSVRError(f"{name} must be a scalar or an array of shape ({n_pix},), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise BatchedSVRError(f"{name} must be finite and positive, got {arr[~(np.isfinite(arr) & (arr > 0))][:3]}")
    return arr


def _iterate(spectrum, Yu, upper, usable, eps, rho, v, n_iter, columns, tol, max_iter, check_every, dtype):
    """ADMM on a set of columns until each one's gap is below ``tol`` or it used ``max_iter`` iterations.

    The columns live on the device in a batch padded to a bucket size (padding
    columns are marked done); solved columns are frozen in place and the batch
    is compacted when it fits a smaller bucket. ``n_iter[columns]`` and the
    states ``v = z + u`` (float64) are updated in place; returns ``v``.
    """
    with jax.enable_x64(dtype == np.float64):
        # cast on the host and device_put: jnp.asarray and eager casts compile a copy per shape
        # (slow to compile on a GPU)
        def to(array):
            return jax.device_put(np.asarray(array, dtype=dtype))

        vectors, values = to(spectrum.vectors), to(spectrum.values)
        vectors_t = to(np.ascontiguousarray(spectrum.vectors.T))
        ones_v = to(spectrum.vectors.sum(axis=0))  # V' 1
        tol_d = to(tol)
        active = np.flatnonzero(n_iter[columns] < max_iter)
        while active.size:
            size = _bucket(active.size)
            cols = np.resize(active, size)
            pad = np.arange(size) >= active.size
            args = [to(Yu[:, cols]), to(upper[:, cols]), to(eps[cols]), to(rho[cols]), jax.device_put(usable[:, cols])]
            v_a, done = to(v[:, cols]), jax.device_put(pad)
            done_host = pad
            while True:
                v_a, _, done = _admm_block(vectors, vectors_t, values, ones_v, *args, v_a, done, tol_d,
                                           n_steps=check_every)
                n_iter[columns[active[~done_host[: active.size]]]] += check_every
                done_host = np.asarray(done) | pad
                over = n_iter[columns[active]] >= max_iter
                left = int(np.sum(~done_host[: active.size] & ~over))
                if left == 0 or _bucket(left) < size:
                    break
            v[:, active] = np.asarray(v_a, dtype=np.float64)[:, : active.size]
            active = active[~done_host[: active.size] & (n_iter[columns[active]] < max_iter)]
    return v


def solve_svr_batch(
    kernel: KernelSpectrum | np.ndarray,
    Y: np.ndarray,
    C: float | np.ndarray,
    epsilon: float | np.ndarray,
    *,
    mask: np.ndarray | None = None,
    tol: float = 1e-3,
    max_iter: int = 5000,
    rho: float | np.ndarray | None = None,
    rho_scale: float = DEFAULT_RHO_SCALE,
    warm_start: tuple[np.ndarray, np.ndarray] | None = None,
    check_every: int = 10,
    dtype: Any = np.float32,
    return_state: bool = False,
) -> BatchSolution | tuple[BatchSolution, tuple[np.ndarray, np.ndarray]]:
    """Solve the epsilon-SVR duals of many pixels that share one kernel matrix.

    Parameters
    ----------
    kernel : KernelSpectrum or numpy.ndarray, shape (n, n)
        The training kernel (eigendecomposed here if a plain matrix is given;
        pass a :class:`KernelSpectrum` to reuse one for many calls).
    Y : numpy.ndarray, shape (n, P) or (n,)
        Targets, one column per pixel (values at excluded stars are ignored).
    C, epsilon : float or numpy.ndarray of shape (P,)
        Box bound and tube half-width, shared or per pixel.
    mask : numpy.ndarray of bool, shape (n, P), optional
        ``True`` where star ``i`` is usable for pixel ``j``. Excluded stars get
        ``beta = 0`` and do not constrain the pixel (as if their row were
        dropped). Default: all usable.
    tol : float
        libsvm's stopping tolerance on the maximal-violating-pair gap
        (scikit-learn's ``SVR`` default ``1e-3``).
    max_iter : int
        Most ADMM iterations per pixel (pixels that reach it are returned with
        ``converged = False`` and a warning is logged).
    rho : float or numpy.ndarray of shape (P,), optional
        ADMM penalty per pixel; default :func:`default_rho` of ``C``.
    rho_scale : float
        Scale of the default ``rho``.
    warm_start : (z, u), optional
        ADMM state to start from (e.g. the solution at a neighbouring ``C``,
        from ``return_state=True``); default zeros.
    check_every : int
        Iterations between stopping tests (each costs one product with ``K``).
    dtype : numpy dtype
        Precision of the iterations (``float32`` or ``float64``; float64 runs
        under ``jax.enable_x64`` without touching JAX's global setting). The
        final gap and intercept are always computed in float64. float32 cannot
        certify ``tol`` much below ~5e-3 for large ``C`` (the rounding of
        ``y - K beta`` is of that size): use float64 there.
    return_state : bool
        Also return the final ADMM state ``(z, u)`` for warm starts.

    Returns
    -------
    BatchSolution
        (and the state ``(z, u)`` if ``return_state``).

    Raises
    ------
    BatchedSVRError
        On inconsistent shapes, non-finite inputs or bad settings.
    """
    spectrum = kernel if isinstance(kernel, KernelSpectrum) else KernelSpectrum.from_kernel(kernel)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    n, n_pix = Y.shape
    if spectrum.n != n:
        raise BatchedSVRError(f"the kernel is for {spectrum.n} stars but Y has {n} rows")
    usable = np.ones((n, n_pix), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if usable.shape != (n, n_pix):
        raise BatchedSVRError(f"mask must have shape {(n, n_pix)}, got {usable.shape}")
    if not np.all(np.isfinite(Y[usable])):
        raise BatchedSVRError("Y holds non-finite values at usable stars; mask them out")
    if not (np.isfinite(tol) and tol > 0):
        raise BatchedSVRError(f"tol must be positive, got {tol!r}")
    if max_iter < 1 or check_every < 1:
        raise BatchedSVRError("max_iter and check_every must be >= 1")
    Cv = _as_pixel_vector(C, n_pix, "C")
    Ev = _as_pixel_vector(epsilon, n_pix, "epsilon")
    rhov = default_rho(Cv, rho_scale) if rho is None else _as_pixel_vector(rho, n_pix, "rho")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise BatchedSVRError(f"dtype must be float32 or float64, got {dtype}")
    Yu = np.where(usable, Y, 0.0)
    upper = np.where(usable, Cv, 0.0)
    if warm_start is None:
        v = np.zeros((n, n_pix))  # the ADMM state as z + u
    else:
        z, u = (np.asarray(a, dtype=np.float64) for a in warm_start)
        if z.shape != (n, n_pix) or u.shape != (n, n_pix):
            raise BatchedSVRError(f"warm_start arrays must have shape {(n, n_pix)}")
        v = np.clip(np.nan_to_num(z), -upper, upper) + np.nan_to_num(u)

    n_iter = np.zeros(n_pix, dtype=np.int64)
    n_used = usable.sum(axis=0)
    trivial = n_used < 2
    beta = np.zeros((n, n_pix))
    violation = np.full(n_pix, -np.inf)
    intercept = np.zeros(n_pix)
    if trivial.any():  # beta = 0; libsvm's intercept is then y of the one usable star, if any
        intercept[trivial] = libsvm_intercept(beta[:, trivial], Yu[:, trivial], Cv[trivial], Ev[trivial],
                                              usable[:, trivial])
    sparse = ~trivial & (n_used < SHARED_MIN_FRACTION * n)
    if sparse.any():
        # heavily masked pixels: solve on the kernel of their own stars, grouped by mask
        patterns, group_of = np.unique(usable[:, sparse].T, axis=0, return_inverse=True)
        columns = np.flatnonzero(sparse)
        for g, pattern in enumerate(patterns):
            cols = columns[np.ravel(group_of) == g]
            rows = np.flatnonzero(pattern)
            block = np.ix_(rows, cols)
            part, (sub_z, sub_u) = solve_svr_batch(
                spectrum.restricted(rows), Yu[block], Cv[cols], Ev[cols], tol=tol, max_iter=max_iter,
                rho=rhov[cols], warm_start=(np.zeros(v[block].shape), v[block]),
                check_every=check_every, dtype=dtype, return_state=True)
            beta[block], v[block] = part.beta, sub_z + sub_u
            violation[cols], intercept[cols], n_iter[cols] = part.violation, part.intercept, part.n_iter
        trivial = trivial | sparse  # done: keep them out of the shared iterations below
    # float32 gaps and the final rebalancing move the gap a little: stop with a margin,
    # then check in float64 and go on with the pixels that still miss tol
    inner_tol = 0.5 * tol
    active = np.flatnonzero(~trivial)
    while active.size:
        v[:, active] = _iterate(spectrum, Yu[:, active], upper[:, active], usable[:, active], Ev[active],
                                rhov[active], v[:, active], n_iter, active, inner_tol, max_iter, check_every, dtype)
        beta[:, active], violation[active], intercept[active] = _finish(
            spectrum, Yu[:, active], v[:, active], upper[:, active], Cv[active], Ev[active], rhov[active],
            usable[:, active])
        active = active[(violation[active] >= tol) & (n_iter[active] < max_iter)]
        inner_tol *= 0.5
    trivial = n_used < 2
    converged = trivial | (violation < tol)
    if not converged.all():
        logger.warning("solve_svr_batch: %d of %d pixels did not reach tol=%g in %d iterations (worst gap %.3g)",
                       int((~converged).sum()), n_pix, tol, max_iter, float(np.max(violation[~converged])))
    solution = BatchSolution(beta=beta, intercept=intercept, violation=violation, n_iter=n_iter, converged=converged)
    if return_state:
        z = _soft_box(v, (Ev / rhov)[None, :], upper)
        return solution, (z, v - z)
    return solution

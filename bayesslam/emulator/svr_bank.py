"""The trained SLAM SVR bank as a frozen, differentiable JAX function of the labels.

A scikit-learn ``SVR`` with an RBF kernel predicts, for pixel ``j``,

.. math::

    y_j(z) = b_j + \\sum_i \\alpha_{ji} \\exp(-\\gamma_j \\lVert x_i - z \\rVert^2),

where ``z`` are the standardized labels, ``x_i`` the standardized training
labels (shared by every pixel), ``alpha`` the dual coefficients (zero where
star ``i`` is not a support vector of pixel ``j``) and ``b`` the intercept.
The normalized flux is ``flux_mean_j + flux_scale_j * y_j``. :class:`Emulator`
holds exactly these arrays, so it reproduces ``SVR.predict`` to rounding
error, and JAX differentiates it to any order.

The squared distances ``d2_i = ||x_i - z||^2`` are shared by all pixels; only
``exp(-gamma_j d2)`` differs. Training picks gamma from a short grid, so
pixels fall into a few groups of equal gamma: :func:`flux_grouped` (the
default ``__call__``) computes one kernel vector per distinct gamma and one
matrix-vector product per group; :func:`flux_plain` computes
``exp(-gamma_j d2_i)`` for every pixel and star (kept as a reference and for
the benchmark). The dual matrix is stored with its rows sorted by gamma group
so that each group is a contiguous block.

The label derivatives are as cheap to write down:
``dy_j/dz_k = 2 gamma_j sum_i alpha_ji K_ji (x_ik - z_k)``.
:func:`flux_and_jacobian` (:meth:`Emulator.value_and_jacobian`) stacks the
kernel vector and its ``n_label`` weighted copies ``K * (x_k - z_k)`` of all
stars of a batch into one matrix and multiplies it by each gamma group's dual
block once: flux and Jacobian in one matrix product per group, which is what
the batched optimizer of :mod:`bayesslam.infer.map` needs.
:func:`weighted_flux_derivatives` gives the gradient and Hessian of a
weighted sum of the flux over pixels with a single product per group (the
weights projected back onto the training stars), which makes exact Newton
gradients of the chi-square cheaper than a Jacobian.
:func:`least_squares_terms` combines both for a weighted least-squares fit:
objective, gradient, Gauss-Newton matrix ``J^T W J`` and the second-order
term of the exact Hessian, reduced per group without forming the Jacobian in
pixel order (or, without the Jacobian, the gradient and second-order term
from two flux-sized products).

Precision: the emulator computes in the dtype of its arrays. It never changes
JAX's global configuration. Float64 arrays exist only where 64-bit JAX is on:
inside :func:`bayesslam.float64` (a scoped switch, which bayesslam's own
entry points use) or with ``jax_enable_x64`` set by the user; outside, JAX
computes a float64 emulator in float32. Use :meth:`Emulator.astype` to change
precision.

This module imports no scikit-learn.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bayesslam.errors import BayesSlamError

__all__ = [
    "EMULATOR_ARRAYS",
    "EmulatorError",
    "Emulator",
    "build_emulator",
    "flux_and_jacobian",
    "flux_grouped",
    "flux_plain",
    "label_jacobian",
    "least_squares_terms",
    "LeastSquaresTerms",
    "weighted_flux_derivatives",
    "squared_distances",
    "gamma_groups",
]

logger = logging.getLogger(__name__)

Array = Any  # a jax.Array or numpy.ndarray


class EmulatorError(BayesSlamError, ValueError):
    """The arrays of an emulator are inconsistent, or it was called with labels of the wrong shape."""


#: The numpy arrays that define an emulator (the array arguments of :func:`build_emulator`).
EMULATOR_ARRAYS: tuple[str, ...] = (
    "dual_coef",
    "intercept",
    "gamma",
    "train_x",
    "label_mean",
    "label_scale",
    "flux_mean",
    "flux_scale",
    "model_variance",
    "wave",
    "training_labels",
    "pixel_mask",
)


_FLOAT_FIELDS = (
    "intercept",
    "gamma",
    "group_gamma",
    "train_x",
    "label_mean",
    "label_scale",
    "flux_mean",
    "flux_scale",
    "model_variance",
    "wave",
    "training_labels",
    "label_bounds",
    "label_error_covariance",
)
_BLOCK_FIELDS = ("dual_blocks",)
_INT_FIELDS = ("group_pixels", "pixel_rows")
_BOOL_FIELDS = ("pixel_mask",)
_META_FIELDS = ("label_names", "label_units", "group_sizes")


@dataclass(frozen=True, eq=False)
class Emulator:
    """Frozen JAX pytree: physical labels -> normalized flux of every model pixel.

    Build it with :func:`build_emulator` (or from a trainer / model file);
    the fields below are its pytree leaves (arrays) and static metadata.

    Attributes
    ----------
    dual_blocks : tuple of Array, shapes (group_sizes[g], n_train)
        SVR dual coefficients in standardized-flux units, one block of rows
        per gamma group (stacked, row ``r`` belongs to pixel
        ``group_pixels[r]``). Zero where a training star is not a support
        vector of that pixel or was excluded from its fit. Kept as separate
        arrays so that compiled code taking the emulator as an argument
        multiplies each block without copying a slice first.
        :attr:`dual_coef` gives them in pixel order.
    intercept : Array, shape (n_pix,)
        SVR intercepts (standardized-flux units), pixel order.
    gamma : Array, shape (n_pix,)
        RBF kernel width of each pixel (standardized-label units), pixel order.
    group_gamma : Array, shape (n_groups,)
        The distinct gamma values, one per group.
    group_pixels : Array of int, shape (n_pix,)
        Pixel index of each row of the stacked ``dual_blocks``.
    pixel_rows : Array of int, shape (n_pix,)
        Row of the stacked ``dual_blocks`` of each pixel (inverse of ``group_pixels``).
    train_x : Array, shape (n_train, n_label)
        Standardized training labels, exactly as the SVRs saw them.
    label_mean, label_scale : Array, shape (n_label,)
        Label standardization: ``z = (labels - label_mean) / label_scale``.
    flux_mean, flux_scale : Array, shape (n_pix,)
        Flux standardization: ``flux = flux_mean + flux_scale * y``.
    model_variance : Array, shape (n_pix,)
        Emulator variance ``s_j^2`` in normalized-flux units (out-of-fold CV
        residual variance), to be added to ``1 / ivar`` in the likelihood;
        ``inf`` on masked pixels.
    wave : Array, shape (n_pix,)
        Pixel wavelengths (vacuum Angstrom).
    training_labels : Array, shape (n_train, n_label)
        Training labels in physical units.
    label_bounds : Array, shape (n_label, 2)
        Per-label minimum and maximum of the training labels.
    label_error_covariance : Array, shape (n_label, n_label)
        Covariance ``Sigma_eta`` of the emulator's label-space error (physical
        units; :mod:`bayesslam.emulator.error_model`), zero for a model
        without one: the likelihood then is diagonal.
    pixel_mask : Array of bool, shape (n_pix,)
        ``True`` where a pixel could not be trained (too few usable stars):
        the emulator returns ``flux_mean`` there and ``model_variance`` is
        ``inf``; a likelihood must drop these pixels.
    label_names, label_units : tuple of str
        Names and units of the labels, in order (static).
    group_sizes : tuple of int
        Number of pixels of each gamma group, in ``dual_blocks`` order
        (static).
    """

    dual_blocks: tuple[Array, ...]
    intercept: Array
    gamma: Array
    group_gamma: Array
    group_pixels: Array
    pixel_rows: Array
    train_x: Array
    label_mean: Array
    label_scale: Array
    flux_mean: Array
    flux_scale: Array
    model_variance: Array
    wave: Array
    training_labels: Array
    label_bounds: Array
    label_error_covariance: Array
    pixel_mask: Array
    label_names: tuple[str, ...]
    label_units: tuple[str, ...]
    group_sizes: tuple[int, ...]

    def __call__(self, labels: Array) -> jax.Array:
        """Normalized flux at ``labels`` (physical units).

        Parameters
        ----------
        labels : Array, shape (n_label,) or (..., n_label)
            Labels in the order and units of :attr:`label_names` /
            :attr:`label_units`. Leading batch dimensions are allowed; the
            function also works under ``jax.vmap``, ``jax.jit``, ``jax.grad``
            and ``jax.jacfwd``.

        Returns
        -------
        jax.Array, shape (n_pix,) or (..., n_pix)
            Normalized flux, in the emulator's dtype.
        """
        return flux_grouped(self, labels)

    def value_and_jacobian(self, labels: Array) -> tuple[jax.Array, jax.Array]:
        """Normalized flux and its derivatives with respect to the labels, in one pass.

        Same values as ``self(labels)`` and ``jax.jacfwd(self)(labels)`` (to
        rounding), computed as one matrix product per gamma group for a whole
        batch; see :func:`flux_and_jacobian`.

        Parameters
        ----------
        labels : Array, shape (n_label,) or (..., n_label)
            Physical labels.

        Returns
        -------
        flux : jax.Array, shape (..., n_pix)
        jacobian : jax.Array, shape (..., n_pix, n_label)
            ``d flux_j / d label_k`` in physical label units.
        """
        return flux_and_jacobian(self, labels)

    def jacobian(self, labels: Array) -> jax.Array:
        """``d flux / d labels``, shape ``(..., n_pix, n_label)``; see :func:`label_jacobian`."""
        return label_jacobian(self, labels)

    def weighted_derivatives(self, labels: Array, weights: Array) -> tuple[jax.Array, jax.Array]:
        """Gradient and Hessian of ``sum_j weights_j flux_j``; see :func:`weighted_flux_derivatives`."""
        return weighted_flux_derivatives(self, labels, weights)

    @property
    def n_labels(self) -> int:
        """Number of labels."""
        return len(self.label_names)

    @property
    def n_pixels(self) -> int:
        """Number of model pixels."""
        return int(self.intercept.shape[0])

    @property
    def n_train(self) -> int:
        """Number of training stars."""
        return int(self.train_x.shape[0])

    @property
    def dtype(self) -> np.dtype:
        """The floating dtype the emulator computes in."""
        return np.dtype(self.dual_blocks[0].dtype)

    @property
    def dual_coef(self) -> jax.Array:
        """Dual coefficients in pixel order, shape (n_pix, n_train)."""
        return jnp.take(jnp.concatenate(self.dual_blocks, axis=0), self.pixel_rows, axis=0)

    def astype(self, dtype: Any) -> "Emulator":
        """Return a copy whose floating arrays have ``dtype`` (e.g. ``jnp.float32``).

        Float64 is only available with 64-bit JAX on (inside :func:`bayesslam.float64`).
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise EmulatorError(f"astype needs a floating dtype, got {dtype}")
        changes = {name: jnp.asarray(getattr(self, name), dtype=dtype) for name in _FLOAT_FIELDS}
        changes["dual_blocks"] = tuple(jnp.asarray(block, dtype=dtype) for block in self.dual_blocks)
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    Emulator,
    data_fields=list(_BLOCK_FIELDS + _FLOAT_FIELDS + _INT_FIELDS + _BOOL_FIELDS),
    meta_fields=list(_META_FIELDS),
)


def gamma_groups(gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Group pixels by equal gamma.

    Parameters
    ----------
    gamma : numpy.ndarray, shape (n_pix,)
        Concrete per-pixel gamma values.

    Returns
    -------
    group_gamma : numpy.ndarray, shape (n_groups,)
        Distinct gamma values, ascending.
    group_pixels : numpy.ndarray of int, shape (n_pix,)
        Pixel indices sorted by group (stable: pixel order within a group).
    group_sizes : tuple of int
        Number of pixels in each group.
    """
    gamma = np.asarray(gamma)
    group_gamma, inverse, counts = np.unique(gamma, return_inverse=True, return_counts=True)
    group_pixels = np.argsort(inverse, kind="stable")
    return group_gamma, group_pixels, tuple(int(c) for c in counts)


def build_emulator(
    *,
    dual_coef: np.ndarray,
    intercept: np.ndarray,
    gamma: np.ndarray,
    train_x: np.ndarray,
    label_mean: np.ndarray,
    label_scale: np.ndarray,
    flux_mean: np.ndarray,
    flux_scale: np.ndarray,
    model_variance: np.ndarray,
    wave: np.ndarray,
    training_labels: np.ndarray,
    label_names: Sequence[str],
    label_units: Sequence[str] | None = None,
    pixel_mask: np.ndarray | None = None,
    label_error_covariance: np.ndarray | None = None,
    dtype: Any = None,
) -> Emulator:
    """Assemble an :class:`Emulator` from the arrays of a trained SVR bank.

    Parameters
    ----------
    dual_coef : numpy.ndarray, shape (n_pix, n_train)
        Dense dual coefficients in pixel order (standardized-flux units).
    intercept, gamma : numpy.ndarray, shape (n_pix,)
        SVR intercepts and RBF gammas.
    train_x : numpy.ndarray, shape (n_train, n_label)
        Standardized training labels as the SVRs saw them.
    label_mean, label_scale : numpy.ndarray, shape (n_label,)
        Label standardization.
    flux_mean, flux_scale : numpy.ndarray, shape (n_pix,)
        Per-pixel flux standardization.
    model_variance : numpy.ndarray, shape (n_pix,)
        Out-of-fold emulator variance in normalized-flux units.
    wave : numpy.ndarray, shape (n_pix,)
        Pixel wavelengths.
    training_labels : numpy.ndarray, shape (n_train, n_label)
        Training labels in physical units.
    label_names : sequence of str
        Label names, in order.
    label_units : sequence of str, optional
        Label units (default: empty strings).
    pixel_mask : numpy.ndarray of bool, optional
        ``True`` for untrained pixels (default: none).
    label_error_covariance : numpy.ndarray, shape (n_label, n_label), optional
        The emulator's label-space error covariance (default: zero, a
        diagonal likelihood).
    dtype : dtype, optional
        Floating dtype of the arrays (default: JAX's default float, i.e.
        float64 with 64-bit JAX on, else float32).

    Returns
    -------
    Emulator

    Raises
    ------
    EmulatorError
        If the arrays' shapes disagree or values are not finite.
    """
    dual_coef = np.asarray(dual_coef, dtype=np.float64)
    if dual_coef.ndim != 2:
        raise EmulatorError(f"dual_coef must be 2-D (n_pix, n_train), got shape {dual_coef.shape}")
    n_pix, n_train = dual_coef.shape
    train_x = np.asarray(train_x, dtype=np.float64)
    training_labels = np.asarray(training_labels, dtype=np.float64)
    if train_x.ndim != 2 or train_x.shape[0] != n_train:
        raise EmulatorError(f"train_x must have shape ({n_train}, n_label), got {train_x.shape}")
    n_label = train_x.shape[1]
    label_names = tuple(str(name) for name in label_names)
    label_units = tuple("" for _ in label_names) if label_units is None else tuple(str(u) for u in label_units)
    if len(label_names) != n_label or len(label_units) != n_label:
        raise EmulatorError(
            f"{n_label} labels in train_x but {len(label_names)} names and {len(label_units)} units"
        )
    if training_labels.shape != train_x.shape:
        raise EmulatorError(f"training_labels has shape {training_labels.shape}, expected {train_x.shape}")
    per_pixel = {
        "intercept": intercept,
        "gamma": gamma,
        "flux_mean": flux_mean,
        "flux_scale": flux_scale,
        "model_variance": model_variance,
        "wave": wave,
    }
    per_pixel = {name: np.asarray(value, dtype=np.float64) for name, value in per_pixel.items()}
    for name, value in per_pixel.items():
        if value.shape != (n_pix,):
            raise EmulatorError(f"{name} must have shape ({n_pix},), got {value.shape}")
    per_label = {"label_mean": label_mean, "label_scale": label_scale}
    per_label = {name: np.asarray(value, dtype=np.float64) for name, value in per_label.items()}
    for name, value in per_label.items():
        if value.shape != (n_label,):
            raise EmulatorError(f"{name} must have shape ({n_label},), got {value.shape}")
    mask = np.zeros(n_pix, dtype=bool) if pixel_mask is None else np.asarray(pixel_mask, dtype=bool)
    if mask.shape != (n_pix,):
        raise EmulatorError(f"pixel_mask must have shape ({n_pix},), got {mask.shape}")
    finite = {
        "dual_coef": dual_coef,
        "train_x": train_x,
        "training_labels": training_labels,
        **{k: v for k, v in per_pixel.items() if k != "model_variance"},
        **per_label,
    }
    for name, value in finite.items():
        if not np.all(np.isfinite(value)):
            raise EmulatorError(f"{name} has non-finite values; the model is damaged, retrain it")
    if np.any(per_label["label_scale"] <= 0) or np.any(per_pixel["flux_scale"] <= 0):
        raise EmulatorError("label_scale and flux_scale must be positive")
    if np.any(per_pixel["gamma"] <= 0):
        raise EmulatorError("gamma must be positive")
    if np.any(np.isnan(per_pixel["model_variance"])) or np.any(per_pixel["model_variance"] < 0):
        raise EmulatorError("model_variance must be non-negative (inf for masked pixels)")

    label_error = np.zeros((n_label, n_label)) if label_error_covariance is None else np.asarray(
        label_error_covariance, dtype=np.float64)
    if label_error.shape != (n_label, n_label) or not np.all(np.isfinite(label_error)):
        raise EmulatorError(f"label_error_covariance must be a finite ({n_label}, {n_label}) array, got shape "
                            f"{label_error.shape}")

    group_gamma, group_pixels, group_sizes = gamma_groups(per_pixel["gamma"])
    pixel_rows = np.empty_like(group_pixels)
    pixel_rows[group_pixels] = np.arange(n_pix)
    bounds = np.column_stack([training_labels.min(axis=0), training_labels.max(axis=0)])

    def as_float(value: np.ndarray) -> jax.Array:
        return jnp.asarray(value) if dtype is None else jnp.asarray(value, dtype=dtype)

    return Emulator(
        dual_blocks=tuple(as_float(block) for block in np.split(dual_coef[group_pixels], np.cumsum(group_sizes)[:-1])),
        intercept=as_float(per_pixel["intercept"]),
        gamma=as_float(per_pixel["gamma"]),
        group_gamma=as_float(group_gamma),
        group_pixels=jnp.asarray(group_pixels.astype(np.int32)),
        pixel_rows=jnp.asarray(pixel_rows.astype(np.int32)),
        train_x=as_float(train_x),
        label_mean=as_float(per_label["label_mean"]),
        label_scale=as_float(per_label["label_scale"]),
        flux_mean=as_float(per_pixel["flux_mean"]),
        flux_scale=as_float(per_pixel["flux_scale"]),
        model_variance=as_float(per_pixel["model_variance"]),
        wave=as_float(per_pixel["wave"]),
        training_labels=as_float(training_labels),
        label_bounds=as_float(bounds),
        label_error_covariance=as_float(label_error),
        pixel_mask=jnp.asarray(mask),
        label_names=label_names,
        label_units=label_units,
        group_sizes=group_sizes,
    )


def _standardize(emulator: Emulator, labels: Array) -> jax.Array:
    labels = jnp.asarray(labels, dtype=emulator.dtype)
    if labels.ndim < 1 or labels.shape[-1] != emulator.n_labels:
        raise EmulatorError(
            f"labels must have shape (..., {emulator.n_labels}) for {emulator.label_names}, got {labels.shape}"
        )
    return (labels - emulator.label_mean) / emulator.label_scale


def squared_distances(train_x: Array, z: Array) -> jax.Array:
    """Squared Euclidean distances ``||train_x[i] - z||^2``.

    Parameters
    ----------
    train_x : Array, shape (n_train, n_label)
    z : Array, shape (..., n_label)

    Returns
    -------
    jax.Array, shape (..., n_train)
    """
    total = jnp.zeros(z.shape[:-1] + train_x.shape[:1], jnp.result_type(train_x, z))
    for k in range(train_x.shape[-1]):  # one label at a time: every array is contiguous along the training stars
        diff = z[..., k, None] - train_x[:, k]
        total = total + diff * diff
    return total


def flux_grouped(emulator: Emulator, labels: Array) -> jax.Array:
    """Normalized flux, one kernel vector per distinct gamma (the default evaluation).

    Parameters
    ----------
    emulator : Emulator
    labels : Array, shape (..., n_label)
        Physical labels.

    Returns
    -------
    jax.Array, shape (..., n_pix)
    """
    z = _standardize(emulator, labels)
    d2 = squared_distances(emulator.train_x, z)
    blocks = []
    for group, dual in enumerate(emulator.dual_blocks):
        kernel = jnp.exp(-emulator.group_gamma[group] * d2)
        blocks.append(kernel @ dual.T)
    y_grouped = jnp.concatenate(blocks, axis=-1)
    y = jnp.take(y_grouped, emulator.pixel_rows, axis=-1)
    return emulator.flux_mean + emulator.flux_scale * (emulator.intercept + y)


def _kernel_products(emulator: Emulator, z: jax.Array, with_value: bool) -> tuple[jax.Array | None, jax.Array]:
    """``y`` (if asked) and ``dy/dz``, shape ``(..., n_label, n_pix)``, one matrix product per gamma group."""
    offsets_t = jnp.swapaxes(emulator.train_x - z[..., None, :], -1, -2)  # (..., n_label, n_train)
    d2 = jnp.sum(offsets_t * offsets_t, axis=-2)
    values, slopes = [], []
    for group, dual in enumerate(emulator.dual_blocks):
        gamma = emulator.group_gamma[group]
        kernel = jnp.exp(-gamma * d2)[..., None, :]
        rows = [kernel, kernel * offsets_t] if with_value else [kernel * offsets_t]
        product = jnp.concatenate(rows, axis=-2) @ dual.T
        if with_value:
            values.append(product[..., 0, :])
            product = product[..., 1:, :]
        slopes.append(2.0 * gamma * product)
    dy_dz = jnp.take(jnp.concatenate(slopes, axis=-1), emulator.pixel_rows, axis=-1)
    y = jnp.take(jnp.concatenate(values, axis=-1), emulator.pixel_rows, axis=-1) if with_value else None
    return y, dy_dz


def _to_flux_jacobian(emulator: Emulator, dy_dz: jax.Array) -> jax.Array:
    return emulator.flux_scale[:, None] * jnp.swapaxes(dy_dz, -1, -2) / emulator.label_scale


def flux_and_jacobian(emulator: Emulator, labels: Array) -> tuple[jax.Array, jax.Array]:
    """Normalized flux and its label Jacobian with one matrix product per gamma group.

    For each group the kernel rows ``K_i = exp(-gamma d2_i)`` and the
    ``n_label`` rows ``K_i (x_ik - z_k)`` of every star in the batch are
    stacked into one ``(batch * (n_label + 1), n_train)`` matrix and multiplied
    by the group's dual block: the first row gives ``y``, the others give
    ``dy/dz_k = 2 gamma sum_i alpha_i K_i (x_ik - z_k)``.

    Parameters
    ----------
    emulator : Emulator
    labels : Array, shape (..., n_label)
        Physical labels.

    Returns
    -------
    flux : jax.Array, shape (..., n_pix)
        As :func:`flux_grouped`.
    jacobian : jax.Array, shape (..., n_pix, n_label)
        ``d flux_j / d label_k`` in physical label units, as ``jax.jacfwd``
        of :func:`flux_grouped` gives it.
    """
    y, dy_dz = _kernel_products(emulator, _standardize(emulator, labels), with_value=True)
    flux = emulator.flux_mean + emulator.flux_scale * (emulator.intercept + y)
    return flux, _to_flux_jacobian(emulator, dy_dz)


def label_jacobian(emulator: Emulator, labels: Array) -> jax.Array:
    """The label Jacobian of :func:`flux_and_jacobian` without the flux (``n_label`` rows per star).

    Parameters
    ----------
    emulator : Emulator
    labels : Array, shape (..., n_label)
        Physical labels.

    Returns
    -------
    jax.Array, shape (..., n_pix, n_label)
        ``d flux_j / d label_k`` in physical label units.
    """
    _, dy_dz = _kernel_products(emulator, _standardize(emulator, labels), with_value=False)
    return _to_flux_jacobian(emulator, dy_dz)


def _projected_derivatives(
    gamma: jax.Array, u_kernel: jax.Array, offsets_t: jax.Array, second: bool
) -> tuple[jax.Array, jax.Array | None]:
    """``sum_i u_i d K_i / dz`` and ``sum_i u_i d2 K_i / dz2`` (standardized units).

    ``u_kernel`` is ``u_i K_i``, shape (..., n_train); ``offsets_t`` is
    ``(x_i - z)^T``, shape (..., n_label, n_train).
    """
    weighted = u_kernel[..., None, :] * offsets_t
    gradient = 2.0 * gamma * jnp.sum(weighted, axis=-1)
    if not second:
        return gradient, None
    eye = jnp.eye(offsets_t.shape[-2], dtype=offsets_t.dtype)
    hessian = 4.0 * gamma**2 * jnp.einsum("...kn,...ln->...kl", weighted, offsets_t)
    return gradient, hessian - 2.0 * gamma * jnp.sum(u_kernel, axis=-1)[..., None, None] * eye


def weighted_flux_derivatives(emulator: Emulator, labels: Array, weights: Array) -> tuple[jax.Array, jax.Array]:
    r"""Gradient and Hessian, with respect to the labels, of ``sum_j weights_j flux_j(labels)``.

    With ``u_i = sum_j weights_j flux_scale_j alpha_ji`` (one matrix product
    per gamma group: the weights projected back onto the training stars) the
    derivatives are sums over training stars,

    .. math::

        \nabla = \sum_i u_i K_i \, 2 \gamma (x_i - z), \qquad
        \nabla^2 = \sum_i u_i K_i \left[4 \gamma^2 (x_i - z)(x_i - z)^T - 2 \gamma I\right],

    so the exact gradient and Hessian of a chi-square-like objective cost
    one matrix product per star instead of the ``n_label`` of a Jacobian.

    Parameters
    ----------
    emulator : Emulator
    labels : Array, shape (..., n_label)
        Physical labels.
    weights : Array, shape (..., n_pix)
        Per-pixel weights (e.g. inverse-variance-weighted residuals), pixel order.

    Returns
    -------
    gradient : jax.Array, shape (..., n_label)
    hessian : jax.Array, shape (..., n_label, n_label)
        Physical label units.
    """
    z = _standardize(emulator, labels)
    offsets_t = jnp.swapaxes(emulator.train_x - z[..., None, :], -1, -2)
    d2 = jnp.sum(offsets_t * offsets_t, axis=-2)
    grouped = jnp.take(jnp.asarray(weights, dtype=z.dtype) * emulator.flux_scale, emulator.group_pixels, axis=-1)
    gradient, hessian = 0.0, 0.0
    start = 0
    for group, size in enumerate(emulator.group_sizes):
        gamma = emulator.group_gamma[group]
        projected = grouped[..., start : start + size] @ emulator.dual_blocks[group]
        g, h = _projected_derivatives(gamma, projected * jnp.exp(-gamma * d2), offsets_t, second=True)
        gradient, hessian = gradient + g, hessian + h
        start += size
    scale = emulator.label_scale
    return gradient / scale, hessian / (scale[:, None] * scale)


class LeastSquaresTerms(NamedTuple):
    """What a (quasi-)Newton step on a weighted least-squares objective needs, for a batch of stars.

    All derivatives are with respect to the physical labels; batch axes lead.

    Attributes
    ----------
    model_flux : jax.Array, shape (..., n_pix)
        Emulated normalized flux.
    objective : jax.Array, shape (...)
        ``0.5 * sum_j weights_j (flux_j - model_j)**2``, in the dtype of the
        data (float64 data give a float64 sum even for a float32 emulator).
    gradient : jax.Array, shape (..., n_label)
        Gradient of the objective.
    gauss_newton : jax.Array, shape (..., n_label, n_label)
        ``J^T W J`` (zeros when computed without the Jacobian).
    curvature : jax.Array, shape (..., n_label, n_label)
        ``sum_j weights_j (model_j - flux_j) d2 model_j``, the second-order
        term: the exact Hessian is ``gauss_newton + curvature`` (zeros when not
        asked for).
    """

    model_flux: jax.Array
    objective: jax.Array
    gradient: jax.Array
    gauss_newton: jax.Array
    curvature: jax.Array


def least_squares_terms(
    emulator: Emulator,
    labels: Array,
    flux: Array,
    weights: Array,
    *,
    jacobian: bool = True,
    curvature: bool = True,
) -> LeastSquaresTerms:
    """Objective, gradient, Gauss-Newton matrix and exact Hessian of a weighted least-squares fit.

    The objective is ``0.5 * sum_j weights_j (flux_j - model_j(labels))**2``.
    Per gamma group, one matrix product of the stacked kernel rows (as in
    :func:`flux_and_jacobian`) gives the model and its Jacobian, reduced at
    once to the gradient and ``J^T W J`` without forming the Jacobian in
    pixel order; the second-order term ``sum_j w_j r_j d2 model_j`` costs one
    more product (the weighted residuals projected onto the training stars,
    as in :func:`weighted_flux_derivatives`). With ``jacobian=False`` the
    gradient comes from that projection instead: two products of the size of
    one flux evaluation, instead of ``n_label + 2``.

    The matrix products run in the emulator's dtype; residuals and the
    objective are formed in the dtype of ``flux`` and ``weights`` (pass
    float64 data to a float32 emulator for a float64 objective).

    Parameters
    ----------
    emulator : Emulator
    labels : Array, shape (..., n_label)
        Physical labels.
    flux, weights : Array, shape (..., n_pix)
        Data and per-pixel weights (inverse variances, 0 for excluded
        pixels; excluded pixels must have finite flux), pixel order.
    jacobian : bool
        Compute ``gauss_newton`` (and the gradient from the Jacobian).
    curvature : bool
        Compute ``curvature``.

    Returns
    -------
    LeastSquaresTerms
    """
    z = _standardize(emulator, labels)
    dtype = z.dtype
    n_label = z.shape[-1]
    flux = jnp.asarray(flux)
    weights = jnp.asarray(weights)
    offsets_t = jnp.swapaxes(emulator.train_x - z[..., None, :], -1, -2)  # (..., n_label, n_train)
    d2 = jnp.sum(offsets_t * offsets_t, axis=-2)
    need_projection = curvature or not jacobian
    grouped_flux = jnp.take(flux, emulator.group_pixels, axis=-1)
    grouped_weights = jnp.take(weights, emulator.group_pixels, axis=-1)
    offset = jnp.take(emulator.flux_mean + emulator.flux_scale * emulator.intercept, emulator.group_pixels)
    flux_scale = jnp.take(emulator.flux_scale, emulator.group_pixels)
    objective = 0.0
    gradient = jnp.zeros(z.shape, dtype)
    gauss_newton = jnp.zeros(z.shape + (n_label,), dtype)
    second = jnp.zeros(z.shape + (n_label,), dtype)
    models = []
    start = 0
    for group, size in enumerate(emulator.group_sizes):
        rows = slice(start, start + size)
        gamma = emulator.group_gamma[group]
        kernel = jnp.exp(-gamma * d2)
        dual = emulator.dual_blocks[group]
        if jacobian:
            stacked = jnp.concatenate([kernel[..., None, :], kernel[..., None, :] * offsets_t], axis=-2)
            product = stacked @ dual.T  # (..., 1 + n_label, size)
            y = product[..., 0, :]
        else:
            y = kernel @ dual.T
        model = offset[rows] + flux_scale[rows] * y
        w = grouped_weights[..., rows]
        residual = grouped_flux[..., rows] - model
        objective = objective + 0.5 * jnp.sum(w * residual**2, axis=-1)
        w_residual = (w * residual).astype(dtype)
        if jacobian:
            slope = (2.0 * gamma) * flux_scale[rows] * product[..., 1:, :]  # d model / dz, (..., n_label, size)
            gradient = gradient - jnp.einsum("...kp,...p->...k", slope, w_residual)
            gauss_newton = gauss_newton + jnp.einsum("...kp,...lp->...kl", slope * w.astype(dtype)[..., None, :], slope)
        if need_projection:
            u_kernel = ((-w_residual * flux_scale[rows]) @ dual) * kernel
            g, h = _projected_derivatives(gamma, u_kernel, offsets_t, curvature)
            if not jacobian:
                gradient = gradient + g
            if curvature:
                second = second + h
        models.append(model)
        start += size
    model_flux = jnp.take(jnp.concatenate(models, axis=-1), emulator.pixel_rows, axis=-1)
    scale = emulator.label_scale
    scale2 = scale[:, None] * scale
    return LeastSquaresTerms(model_flux, objective, gradient / scale, gauss_newton / scale2, second / scale2)


def flux_plain(emulator: Emulator, labels: Array) -> jax.Array:
    """Normalized flux with one ``exp(-gamma_j d2_i)`` per pixel and star (reference evaluation).

    Same result as :func:`flux_grouped` (to rounding); slower whenever
    pixels share few distinct gammas, and memory-hungry for batches.

    Parameters
    ----------
    emulator : Emulator
    labels : Array, shape (..., n_label)
        Physical labels.

    Returns
    -------
    jax.Array, shape (..., n_pix)
    """
    z = _standardize(emulator, labels)
    d2 = squared_distances(emulator.train_x, z)
    kernel = jnp.exp(-emulator.gamma[:, None] * d2[..., None, :])
    y = jnp.sum(emulator.dual_coef * kernel, axis=-1)
    return emulator.flux_mean + emulator.flux_scale * (emulator.intercept + y)

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

Precision: the emulator computes in the dtype of its arrays. It never changes
JAX's global configuration; arrays built while ``jax_enable_x64`` is off are
float32. Use :meth:`Emulator.astype` to change precision (float64 needs
``jax.config.update("jax_enable_x64", True)`` first).

This module imports no scikit-learn.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bayesslam.errors import BayesSlamError

__all__ = [
    "EMULATOR_ARRAYS",
    "EmulatorError",
    "Emulator",
    "build_emulator",
    "flux_grouped",
    "flux_plain",
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
    "dual_grouped",
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
)
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
    dual_grouped : Array, shape (n_pix, n_train)
        SVR dual coefficients in standardized-flux units, rows sorted by gamma
        group (row ``r`` belongs to pixel ``group_pixels[r]``). Zero where a
        training star is not a support vector of that pixel or was excluded
        from its fit. :attr:`dual_coef` gives them in pixel order.
    intercept : Array, shape (n_pix,)
        SVR intercepts (standardized-flux units), pixel order.
    gamma : Array, shape (n_pix,)
        RBF kernel width of each pixel (standardized-label units), pixel order.
    group_gamma : Array, shape (n_groups,)
        The distinct gamma values, one per group.
    group_pixels : Array of int, shape (n_pix,)
        Pixel index of each row of ``dual_grouped``.
    pixel_rows : Array of int, shape (n_pix,)
        Row of ``dual_grouped`` of each pixel (inverse of ``group_pixels``).
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
    pixel_mask : Array of bool, shape (n_pix,)
        ``True`` where a pixel could not be trained (too few usable stars):
        the emulator returns ``flux_mean`` there and ``model_variance`` is
        ``inf``; a likelihood must drop these pixels.
    label_names, label_units : tuple of str
        Names and units of the labels, in order (static).
    group_sizes : tuple of int
        Number of pixels of each gamma group, in ``dual_grouped`` row order
        (static).
    """

    dual_grouped: Array
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
        return np.dtype(self.dual_grouped.dtype)

    @property
    def dual_coef(self) -> jax.Array:
        """Dual coefficients in pixel order, shape (n_pix, n_train)."""
        return jnp.take(self.dual_grouped, self.pixel_rows, axis=0)

    def astype(self, dtype: Any) -> "Emulator":
        """Return a copy whose floating arrays have ``dtype`` (e.g. ``jnp.float32``).

        Float64 is only available after ``jax.config.update("jax_enable_x64", True)``.
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise EmulatorError(f"astype needs a floating dtype, got {dtype}")
        changes = {name: jnp.asarray(getattr(self, name), dtype=dtype) for name in _FLOAT_FIELDS}
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    Emulator,
    data_fields=list(_FLOAT_FIELDS + _INT_FIELDS + _BOOL_FIELDS),
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
    dtype : dtype, optional
        Floating dtype of the arrays (default: JAX's default float, i.e.
        float64 if ``jax_enable_x64`` is on, else float32).

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

    group_gamma, group_pixels, group_sizes = gamma_groups(per_pixel["gamma"])
    pixel_rows = np.empty_like(group_pixels)
    pixel_rows[group_pixels] = np.arange(n_pix)
    bounds = np.column_stack([training_labels.min(axis=0), training_labels.max(axis=0)])

    def as_float(value: np.ndarray) -> jax.Array:
        return jnp.asarray(value) if dtype is None else jnp.asarray(value, dtype=dtype)

    return Emulator(
        dual_grouped=as_float(dual_coef[group_pixels]),
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
        pixel_mask=jnp.asarray(mask),
        label_names=label_names,
        label_units=label_units,
        group_sizes=group_sizes,
    )


def _standardize(emulator: Emulator, labels: Array) -> jax.Array:
    labels = jnp.asarray(labels, dtype=emulator.dual_grouped.dtype)
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
    diff = z[..., None, :] - train_x
    return jnp.sum(diff * diff, axis=-1)


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
    start = 0
    for group, size in enumerate(emulator.group_sizes):
        kernel = jnp.exp(-emulator.group_gamma[group] * d2)
        blocks.append(kernel @ emulator.dual_grouped[start : start + size].T)
        start += size
    y_grouped = jnp.concatenate(blocks, axis=-1)
    y = jnp.take(y_grouped, emulator.pixel_rows, axis=-1)
    return emulator.flux_mean + emulator.flux_scale * (emulator.intercept + y)


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

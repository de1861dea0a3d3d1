"""Spectra drawn from the likelihood's own generative model.

The likelihood (:mod:`bayesslam.infer.likelihood`, :mod:`bayesslam.infer.model`)
says a star of labels ``theta`` at signal-to-noise ``SNR`` has the normalized
spectrum of the emulator at ``theta + eta`` (``eta ~ N(0, Sigma_eta)``, the
model's label-space error), plus its per-pixel error ``N(0, D_j)``, plus
Gaussian noise of standard deviation ``1 / SNR`` that ``ivar`` reports.
:func:`simulate_spectra` draws such spectra: exact inference on them is
calibrated by construction, which is what simulation-based calibration
(:mod:`bayesslam.validation`) and the Laplace correction
(:func:`bayesslam.train.learn_laplace_correction`) rely on.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bayesslam._precision import float64

__all__ = ["simulate_spectra"]


def simulate_spectra(model: Any, labels: np.ndarray, snr: np.ndarray, rng: np.random.Generator, *,
                     noise_scale: float = 1.0, model_error: bool = True,
                     label_error_covariance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalized spectra of stars with ``labels`` at ``snr`` from the likelihood's generative model.

    Parameters
    ----------
    model : ForwardModel
        The emulator (``model(labels) -> normalized flux`` with
        ``model_variance``, optionally ``label_error_covariance``).
    labels : numpy.ndarray, shape (n_star, n_label)
        True labels (physical units, the model's order).
    snr : numpy.ndarray, shape (n_star,)
        Positive finite signal-to-noise per star.
    rng : numpy.random.Generator
    noise_scale : float
        The noise drawn is ``noise_scale / SNR`` while ``ivar`` reports
        ``SNR**2`` (1: the likelihood's noise).
    model_error : bool
        Add the emulator's own error (label-space and per pixel).
    label_error_covariance : numpy.ndarray, optional
        The label-space error's covariance to draw from instead of the
        model's ``label_error_covariance``.

    Returns
    -------
    flux, ivar : numpy.ndarray, shape (n_star, n_pix)
        ``ivar`` is 0 (and the flux the emulator's) on pixels the model did
        not train.
    """
    labels = np.atleast_2d(np.asarray(labels, dtype=float))
    snr = np.broadcast_to(np.asarray(snr, dtype=float), (labels.shape[0],))
    emulated = labels
    covariance = getattr(model, "label_error_covariance", None) if label_error_covariance is None else \
        label_error_covariance
    if model_error and covariance is not None and np.any(np.diag(np.asarray(covariance)) > 0):
        values, vectors = np.linalg.eigh(np.asarray(covariance, dtype=float))
        root = vectors * np.sqrt(np.clip(values, 0.0, None))
        emulated = labels + rng.standard_normal(labels.shape) @ root.T
    with float64():
        clean = np.asarray(jax.vmap(model)(jnp.asarray(emulated)), dtype=float)
    variance = np.asarray(model.model_variance, dtype=float)
    trained = np.isfinite(variance)
    pixel_sd = np.sqrt(np.where(trained & model_error, variance, 0.0))
    noise = noise_scale / snr[:, None]
    flux = clean + rng.standard_normal(clean.shape) * np.sqrt(pixel_sd**2 + noise**2)
    ivar = np.where(trained, snr[:, None] ** 2, 0.0) * np.ones_like(clean)
    return np.where(trained, flux, clean), ivar

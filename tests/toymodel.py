"""A small analytic forward model with the emulator's interface, for inference tests.

Normalized flux of 4 labels (teff, logg, fe_h, alpha_m): a smooth nonlinear
function of standardized teff, logg and fe_h; it does not depend on alpha_m,
like bayesslam's mock spectra.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

LABELS = ("teff", "logg", "fe_h", "alpha_m")
BOUNDS = np.array([[3100.0, 3900.0], [4.45, 4.95], [-0.6, 0.5], [-0.2, 0.4]])


@dataclass(frozen=True)
class ToyModel:
    """``flux_j = 1 + sum_k B_jk z_k + 0.1 sum_k C_jk z_k**2`` with z the standardized labels."""

    b: np.ndarray
    c: np.ndarray
    model_variance: np.ndarray
    training_labels: np.ndarray
    label_bounds: np.ndarray = field(default_factory=BOUNDS.copy)
    label_names: tuple[str, ...] = LABELS

    def __call__(self, labels):
        mean = self.training_labels.mean(axis=0)
        scale = self.training_labels.std(axis=0)
        z = (jnp.asarray(labels) - mean) / scale
        return 1.0 + self.b @ z + 0.1 * (self.c @ z**2)


def make_toy_model(n_pix: int = 300, seed: int = 0, s2: float = 1e-4) -> ToyModel:
    rng = np.random.default_rng(seed)
    b = rng.normal(0.0, 0.02, size=(n_pix, 4)) * np.array([3.0, 0.5, 1.5, 0.0])
    c = rng.normal(0.0, 0.02, size=(n_pix, 4)) * np.array([1.0, 0.2, 0.5, 0.0])
    training = rng.uniform(BOUNDS[:, 0], BOUNDS[:, 1], size=(400, 4))
    return ToyModel(b, c, np.full(n_pix, s2), training)


def simulate(model: ToyModel, n_star: int, snr: float, seed: int = 1):
    """Labels drawn uniformly inside the box (10% margin), spectra with Gaussian noise at ``snr``."""
    rng = np.random.default_rng(seed)
    lo, hi = model.label_bounds[:, 0], model.label_bounds[:, 1]
    margin = 0.1 * (hi - lo)
    truth = rng.uniform(lo + margin, hi - margin, size=(n_star, 4))
    clean = np.asarray(jax.vmap(model)(jnp.asarray(truth)))
    sigma = np.sqrt(1.0 / snr**2 + model.model_variance)
    flux = clean + rng.normal(size=clean.shape) * sigma
    ivar = np.full(clean.shape, float(snr) ** 2)
    return truth, flux, ivar

"""The NumPyro model of bayesslam: labels from a prior, flux observed through the emulator.

A plain function, as NumPyro models are. Many stars share one call through a
``star`` plate; a single star is a plate of one. ``flux=None`` draws from the
prior predictive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import Array

from bayesslam.errors import BayesSlamError
from bayesslam.infer.likelihood import flux_distribution
from bayesslam.infer.priors import LabelPrior

__all__ = ["NoiseModel", "StaticModel", "split_model", "label_error_labels", "emulated_site", "slam_model"]

#: Relative jitter added to the diagonal of the label-error covariance before its Cholesky factor.
_CHOLESKY_JITTER = 1e-10


class StaticModel:
    """A forward model that is not a JAX pytree, held as static data of compiled code: equal only to itself.

    Compiled inference code takes the forward model as an argument when it is
    a pytree (an :class:`~bayesslam.emulator.Emulator` is), so one program
    serves every model of the same shapes. Any other callable is static
    data instead, and the code is compiled once per model object.
    """

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StaticModel) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def split_model(model: Any) -> tuple[Any, StaticModel | None]:
    """``(model, None)`` for a pytree forward model, ``(None, StaticModel(model))`` for any other."""
    if jax.tree_util.all_leaves([model]):
        return None, StaticModel(model)
    return model, None


@dataclass(frozen=True)
class NoiseModel:
    """Optional per-star noise inflation, sampled with the labels.

    Parameters
    ----------
    fit_scale : bool
        Sample ``noise_scale`` (multiplies the reported sigma), prior
        LogNormal(0, ``scale_prior_width``).
    fit_jitter : bool
        Sample ``jitter`` (sigma added in quadrature, normalized-flux units),
        prior HalfNormal(``jitter_prior_scale``).
    """

    fit_scale: bool = False
    fit_jitter: bool = False
    scale_prior_width: float = 0.5
    jitter_prior_scale: float = 0.02


def label_error_labels(model: Any) -> tuple[int, ...]:
    """Indices of the labels with a label-space emulator error (``Sigma_eta[k, k] > 0``); empty: none.

    Raises
    ------
    BayesSlamError
        If the model's covariance is a traced value (inside ``jit``): then
        pass ``label_error`` to :func:`slam_model` explicitly.
    """
    covariance = getattr(model, "label_error_covariance", None)
    if covariance is None:
        return ()
    try:
        diagonal = np.diag(np.asarray(covariance))
    except jax.errors.TracerArrayConversionError as exc:
        raise BayesSlamError("slam_model cannot tell which labels have an emulator error from a traced model; "
                             "pass label_error=label_error_labels(model) from outside the compiled code.") from exc
    return tuple(int(k) for k in np.flatnonzero(diagonal > 0))


def emulated_site(name: str) -> str:
    """Name of the sample site of the labels at which the emulator matches a star: ``emulated_<label>``."""
    return f"emulated_{name}"


def _emulated_labels(emulator: Any, theta: Array, names: tuple[str, ...], label_error: tuple[int, ...]) -> Array:
    """``phi = theta + eta``, ``eta ~ N(0, Sigma_eta)`` over the labels in ``label_error``, one site per label.

    Centred: ``phi_k`` given the earlier ones is Normal around ``theta_k``
    plus the Cholesky regression on the earlier standardized errors. The
    spectrum pins ``phi`` and the prior bounds ``theta``, so the two are
    nearly independent where the label error dominates (high SNR).
    """
    idx = np.asarray(label_error)
    covariance = jnp.asarray(emulator.label_error_covariance)[np.ix_(idx, idx)]
    covariance = covariance + _CHOLESKY_JITTER * jnp.diag(jnp.diagonal(covariance))
    lower = jnp.linalg.cholesky(covariance)
    phi = theta
    standardized = []
    for a, k in enumerate(idx):
        loc = theta[..., k] + sum((lower[a, b] * standardized[b] for b in range(a)), jnp.zeros_like(theta[..., k]))
        value = numpyro.sample(emulated_site(names[k]), dist.Normal(loc, lower[a, a]))
        standardized.append((value - loc) / lower[a, a])
        phi = phi.at[..., k].set(value)
    return phi


def slam_model(
    emulator,
    ivar: Array,
    flux: Array | None = None,
    *,
    prior: LabelPrior,
    noise: NoiseModel = NoiseModel(),
    label_error: tuple[int, ...] | None = None,
) -> None:
    """NumPyro model of normalized spectra given labels.

    A star's spectrum is the emulator's at labels ``phi = theta + eta``,
    where ``theta`` are its labels (sites named as the labels, from the
    prior) and ``eta ~ N(0, Sigma_eta)`` is the emulator's label-space error
    (:mod:`bayesslam.emulator.error_model`): sites ``emulated_<label>`` for
    the labels that have one. Integrating ``phi`` out is the model's exact
    likelihood of ``theta``; :func:`bayesslam.infer.fit_map` uses its
    first-order (Laplace) form. For a model without a label-space error
    ``phi = theta``.

    Parameters
    ----------
    emulator : callable
        ``emulator(labels) -> normalized flux`` with a ``model_variance``
        attribute (and optionally ``label_error_covariance``).
    ivar : array, ``(n_star, n_pix)``
        Inverse variance of the normalized flux; 0 marks masked pixels.
    flux : array, ``(n_star, n_pix)``, optional
        Observed normalized flux; ``None`` samples it (prior predictive).
    prior : LabelPrior
        One site per label (names as in the model).
    noise : NoiseModel
        Which noise-inflation parameters to sample.
    label_error : tuple of int, optional
        Indices of the labels with a label-space error; default
        :func:`label_error_labels` of ``emulator`` (pass it when the
        emulator is a traced argument of compiled code); ``()``: none.
    """
    label_error = label_error_labels(emulator) if label_error is None else tuple(label_error)
    n_star = ivar.shape[0]
    with numpyro.plate("star", n_star):
        theta = prior.sample()
        scale = numpyro.sample("noise_scale", dist.LogNormal(0.0, noise.scale_prior_width)) if noise.fit_scale else 1.0
        jitter = numpyro.sample("jitter", dist.HalfNormal(noise.jitter_prior_scale)) if noise.fit_jitter else 0.0
        phi = _emulated_labels(emulator, theta, tuple(prior.names), label_error) if label_error else theta
        model_flux = jax.vmap(emulator)(phi)
        likelihood = flux_distribution(
            model_flux, ivar, emulator.model_variance, jnp.reshape(scale, (-1, 1)), jnp.reshape(jitter, (-1, 1))
        )
        numpyro.sample("flux", likelihood.to_event(1), obs=flux)

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
import numpyro
import numpyro.distributions as dist
from jax import Array

from bayesslam.infer.likelihood import flux_distribution
from bayesslam.infer.priors import LabelPrior

__all__ = ["NoiseModel", "StaticModel", "split_model", "slam_model"]


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


def slam_model(
    emulator,
    ivar: Array,
    flux: Array | None = None,
    *,
    prior: LabelPrior,
    noise: NoiseModel = NoiseModel(),
) -> None:
    """NumPyro model of normalized spectra given labels.

    Parameters
    ----------
    emulator : callable
        ``emulator(labels) -> normalized flux`` with a ``model_variance`` attribute.
    ivar : array, ``(n_star, n_pix)``
        Inverse variance of the normalized flux; 0 marks masked pixels.
    flux : array, ``(n_star, n_pix)``, optional
        Observed normalized flux; ``None`` samples it (prior predictive).
    prior : LabelPrior
        One site per label (names as in the model).
    noise : NoiseModel
        Which noise-inflation parameters to sample.
    """
    n_star = ivar.shape[0]
    with numpyro.plate("star", n_star):
        theta = prior.sample()
        scale = numpyro.sample("noise_scale", dist.LogNormal(0.0, noise.scale_prior_width)) if noise.fit_scale else 1.0
        jitter = numpyro.sample("jitter", dist.HalfNormal(noise.jitter_prior_scale)) if noise.fit_jitter else 0.0
        model_flux = jax.vmap(emulator)(theta)
        likelihood = flux_distribution(
            model_flux, ivar, emulator.model_variance, jnp.reshape(scale, (-1, 1)), jnp.reshape(jitter, (-1, 1))
        )
        numpyro.sample("flux", likelihood.to_event(1), obs=flux)

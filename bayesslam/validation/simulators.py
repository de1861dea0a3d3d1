"""Simulated data for validation: labels from a prior, spectra from the emulator or the mock generator.

A simulator is any callable ``simulator(truth, snr, rng) -> (flux, ivar)``
that gives normalized spectra on the model's grid of stars with labels
``truth`` (``(n_star, n_label)``, the model's order) at per-star ``snr``:

* :class:`EmulatorSimulator`: the likelihood's own generative model, so
  that exact inference passes simulation-based calibration: the emulator at
  ``theta + eta`` (``eta ~ N(0, Sigma_eta)``, its label-space error), plus
  its per-pixel error ``N(0, s_j**2)``, plus Gaussian noise ``1 / SNR``
  (normalized-flux units) that ``ivar`` reports. ``noise_scale`` and
  ``model_error`` break it on purpose (negative controls).
* :class:`MockSimulator`: the realistic case, mock BOSS spectra
  (:mod:`bayesslam.mock`: templates from real spectra, calibration
  distortions, sky lines, bad pixels) prepared like users' spectra on the
  model's grid with its normalization.

:func:`draw_from_prior` draws the labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import numpy as np

from bayesslam._precision import float64
from bayesslam.infer import LabelPrior, simulate_spectra
from bayesslam.mock import LABEL_NAMES, ObservingSetup, make_labels, observe_labels
from bayesslam.preparation import ContinuumSettings, prepare_spectra
from bayesslam.validation.errors import ValidationError

__all__ = ["Simulator", "EmulatorSimulator", "MockSimulator", "draw_from_prior"]

logger = logging.getLogger(__name__)


class Simulator(Protocol):
    """``simulator(truth, snr, rng) -> (flux, ivar)``: normalized spectra on the model grid."""

    def __call__(self, truth: np.ndarray, snr: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - protocol
        ...


def draw_from_prior(prior: LabelPrior, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` label vectors from ``prior``'s marginals, ``(n, n_label)`` (64-bit).

    Raises
    ------
    ValidationError
        For a prior with a joint term (e.g. the training density): its draws
        are not its marginals' draws.
    """
    if prior.joint_log_density is not None:
        raise ValidationError(f"cannot draw from the prior {prior.description!r}: it has a joint density term; "
                              "use a box or custom prior (one distribution per label) for SBC")
    keys = jax.random.split(jax.random.key(int(rng.integers(2**31))), len(prior.marginals))
    with float64():
        columns = [np.asarray(d.sample(key, (int(n),)), dtype=float) for key, d in zip(keys, prior.marginals)]
    return np.column_stack(columns)


def _snr_column(snr: np.ndarray, n: int) -> np.ndarray:
    snr = np.broadcast_to(np.asarray(snr, dtype=float), (n,))
    if not np.all(np.isfinite(snr) & (snr > 0)):
        raise ValidationError("SNR must be finite and > 0 for every star")
    return snr


@dataclass(frozen=True, eq=False)
class EmulatorSimulator:
    """Spectra from the likelihood's own generative model (see the module docstring).

    Parameters
    ----------
    model : ForwardModel
        The emulator (``model(labels) -> normalized flux`` with
        ``model_variance``, optionally ``label_error_covariance``).
    noise_scale : float
        The noise drawn is ``noise_scale / SNR`` while ``ivar`` reports
        ``SNR**2``: 1 is the likelihood's noise; 2 a negative control whose
        posteriors are too narrow.
    model_error : bool
        Add the emulator's own error (per-pixel and label-space); ``False`` is
        a negative control whose posteriors are too wide where that error matters.
    """

    model: Any
    noise_scale: float = 1.0
    model_error: bool = True

    def __post_init__(self) -> None:
        if not (np.isfinite(self.noise_scale) and self.noise_scale > 0):
            raise ValidationError(f"noise_scale must be finite and > 0, got {self.noise_scale}")

    def __call__(self, truth: np.ndarray, snr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        truth = np.atleast_2d(np.asarray(truth, dtype=float))
        snr = _snr_column(snr, truth.shape[0])
        return simulate_spectra(self.model, truth, snr, rng, noise_scale=self.noise_scale,
                                model_error=self.model_error)

    def describe(self) -> str:
        """One line for records."""
        parts = ["emulator"]
        if self.noise_scale != 1.0:
            parts.append(f"noise x{self.noise_scale:g}")
        if not self.model_error:
            parts.append("without the emulator's error")
        return ", ".join(parts)


@dataclass(frozen=True, eq=False)
class MockSimulator:
    """Mock BOSS spectra of given labels prepared on a model's grid (:mod:`bayesslam.mock`).

    The mock's spectra depend on Teff and [Fe/H] only (log g and [alpha/M]
    are recorded, without a spectral effect), so a model trained on mock
    spectra meets its own generator here, with the mock's observational
    effects; the SNR is the mock's (median flux over sigma per pixel).

    Parameters
    ----------
    wave : numpy.ndarray
        The model's wavelength grid.
    label_names : tuple of str
        The model's labels: the mock's (:data:`bayesslam.mock.LABEL_NAMES`), any order.
    settings : ContinuumSettings, optional
        The model's continuum normalization (default the package's).
    setup : ObservingSetup, optional
        The mock's observational effects (default its defaults; the SNR is set per star).
    """

    wave: np.ndarray
    label_names: tuple[str, ...]
    settings: ContinuumSettings | None = None
    setup: ObservingSetup | None = None

    def __post_init__(self) -> None:
        if sorted(self.label_names) != sorted(LABEL_NAMES):
            raise ValidationError(f"the mock generator makes stars with labels {LABEL_NAMES}; the model has "
                                  f"{tuple(self.label_names)}")

    def __call__(self, truth: np.ndarray, snr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        truth = np.atleast_2d(np.asarray(truth, dtype=float))
        snr = _snr_column(snr, truth.shape[0])
        column = {name: truth[:, k] for k, name in enumerate(self.label_names)}
        labels = make_labels(*(column[name] for name in LABEL_NAMES))
        batch, table = observe_labels(labels, rng, snr=snr, setup=self.setup)
        prepared = prepare_spectra(iter(batch), np.asarray(self.wave, dtype=float), settings=self.settings,
                                   progress=False, total=len(batch))
        if prepared.failures:
            raise ValidationError(f"{len(prepared.failures)} mock spectra failed to prepare: {prepared.failures[:3]}")
        order = {identifier: i for i, identifier in enumerate(prepared.spectra.identifiers)}
        rows = [order[str(identifier)] for identifier in table["identifier"]]
        return np.asarray(prepared.spectra.flux)[rows], np.asarray(prepared.spectra.ivar)[rows]

    def describe(self) -> str:
        """One line for records."""
        return "mock BOSS spectra (bayesslam.mock), prepared on the model grid"

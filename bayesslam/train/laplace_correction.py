"""Learn a model's Laplace correction from its own generative model (:class:`~bayesslam.emulator.LaplaceCorrection`).

The recipe, all from the model itself:

1. Labels: the model's training labels, each moved by a small Gaussian step
   (``jitter`` times the training set's standard deviation) and kept in the
   training box, so that the simulated stars lie where real ones do.
2. Spectra: :func:`bayesslam.infer.simulate_spectra`, the likelihood's own
   generative model (label-space error, per-pixel error, noise), at SNRs
   drawn log-uniformly over ``snr_range``. The label-space error is drawn
   with the covariance the Laplace approximation assumes at infinite SNR,
   ``(Sigma_eta^-1 + P)^-1`` (``P`` the box prior's Gaussian stand-in):
   ``Sigma_eta`` was fitted so that this covers the out-of-fold training
   stars, so the correction tends to 1 at high information and measures
   what fails at low information alone. (Drawn from ``Sigma_eta`` itself,
   the factors stay 1.15-1.2 at high SNR and the out-of-fold training stars
   over-cover: 0.81 for [Fe/H] on the default model.)
3. MAP + plain Laplace (:func:`bayesslam.infer.fit_map`) of every spectrum
   with the model's default prior.
4. Per label, the stars are cut into ``n_bins`` equal-count bins of their
   Laplace sigma; in each, the factor is the 68.27% quantile of
   ``|MAP - truth| / sigma`` (so that the widened central 68.27% interval
   holds the truth for 68.27% of the bin's stars), at the bin's median
   ``log sigma``. Factors are clipped to :data:`~bayesslam.emulator.laplace_correction.FACTOR_RANGE`.

Half the simulations (every other one) learn the factors; the other half
measure the coverage of the 68.27% and 95% intervals before and after,
stored in the correction's metadata.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from bayesslam.calibration import LEVELS
from bayesslam.emulator import LaplaceCorrection, SlamModel
from bayesslam.emulator.laplace_correction import FACTOR_RANGE
from bayesslam.infer import FitStatus, ForwardModel, default_prior, fit_map, simulate_spectra

__all__ = ["learn_laplace_correction"]

logger = logging.getLogger(__name__)

_Z68 = 1.0
_Z95 = 1.959963984540054


def _coverage(error: np.ndarray, sigma: np.ndarray) -> dict[str, list[float]]:
    """Per label, the fraction of stars with ``|error| < z sigma`` at the 68.27% and 95% levels."""
    ratio = np.abs(error) / sigma
    return {"68": [round(float(v), 4) for v in np.mean(ratio < _Z68, axis=0)],
            "95": [round(float(v), 4) for v in np.mean(ratio < _Z95, axis=0)]}


def _laplace_label_error(emulator: Any, box_precision: np.ndarray) -> np.ndarray | None:
    """The label-space error the Laplace covariance assumes: ``(Sigma_eta^-1 + box precision)^-1``.

    At infinite SNR the Laplace covariance of a model with label-space error
    ``Sigma_eta`` is ``(Sigma_eta^-1 + P)^-1`` (``P`` the box prior's
    Gaussian stand-in), and ``Sigma_eta`` was fitted so that this covers the
    out-of-fold training stars (:func:`bayesslam.train.fit_label_covariance`).
    Drawn from it, the simulated stars are as wrong as the Laplace covariance
    says in that limit, so the correction tends to 1 there and measures what
    fails at low information alone. None for a model without a label-space error.
    """
    sigma = np.asarray(getattr(emulator, "label_error_covariance", None), dtype=float)
    if sigma.ndim != 2 or not np.any(np.diag(sigma) > 0):
        return None
    root = np.linalg.cholesky(sigma + 1e-12 * np.trace(sigma) * np.eye(len(sigma)))
    # (S^-1 + P)^-1 = S - S (S + P^-1)^-1 S = L (I + L^T P L)^-1 L^T, finite for a singular S too
    inner = np.linalg.inv(np.eye(len(sigma)) + root.T @ box_precision @ root)
    return root @ inner @ root.T


def _binned_factors(log_sigma: np.ndarray, ratio: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Knots (median ``log sigma``) and factors (68.27% quantile of ``ratio``) of equal-count bins of ``log_sigma``.

    Bins whose median sigma is the same (a sigma pinned by the prior, e.g. a
    label the spectra do not constrain) are one bin.
    """
    order = np.argsort(log_sigma, kind="stable")
    members = np.array_split(order, n_bins)
    centres = np.array([np.median(log_sigma[m]) for m in members])
    knots, factors = [], []
    for value in np.unique(centres):
        rows = np.concatenate([m for m, c in zip(members, centres) if c == value])
        knots.append(value)
        factors.append(np.quantile(ratio[rows], LEVELS[0]))
    return np.asarray(knots), np.asarray(factors)


def learn_laplace_correction(model: SlamModel | ForwardModel, *, n_sim: int = 4000, snr_range: tuple[float, float] = (2.0, 100.0),
                             n_bins: int = 10, jitter: float = 0.05, seed: int = 0) -> LaplaceCorrection:
    """Learn how much the model's Laplace intervals must widen to cover its own simulated stars.

    Parameters
    ----------
    model : SlamModel or ForwardModel
        A trained model (its error model, if any, is part of the simulation)
        or a forward model with ``training_labels``, ``label_bounds`` and
        ``label_names`` (and optionally ``label_error_covariance``).
    n_sim : int
        Simulated stars (half learn the factors, half check them).
    snr_range : (float, float)
        SNRs are drawn log-uniformly between these.
    n_bins : int
        Bins of Laplace sigma per label (knots of the correction).
    jitter : float
        Step added to the training labels, in units of their standard deviation.
    seed : int
        Seeds the labels, SNRs and spectra.

    Returns
    -------
    LaplaceCorrection

    Raises
    ------
    ValueError
        For too few simulations for the bins, or a bad SNR range.
    """
    n_sim, n_bins = int(n_sim), int(n_bins)
    low, high = (float(v) for v in snr_range)
    if not (0 < low < high and np.isfinite(high)):
        raise ValueError(f"snr_range must be two increasing positive numbers, got {snr_range!r}")
    if n_bins < 2 or n_sim < 40 * n_bins:
        raise ValueError(f"need n_bins >= 2 and at least 40 simulations per bin, got n_sim={n_sim}, n_bins={n_bins}")
    t0 = time.time()
    rng = np.random.default_rng(seed)
    emulator = model.emulator if isinstance(model, SlamModel) else model
    training = np.asarray(emulator.training_labels, dtype=float)
    bounds = np.asarray(emulator.label_bounds, dtype=float)
    truth = training[rng.integers(0, len(training), n_sim)] + jitter * training.std(axis=0) * rng.standard_normal(
        (n_sim, training.shape[1]))
    truth = np.clip(truth, bounds[:, 0], bounds[:, 1])
    snr = np.exp(rng.uniform(np.log(low), np.log(high), n_sim))
    label_error = _laplace_label_error(emulator, default_prior(emulator).laplace_precision())
    flux, ivar = simulate_spectra(emulator, truth, snr, rng, label_error_covariance=label_error)
    fit = fit_map(emulator, flux, ivar)
    good = (fit.status == FitStatus.CONVERGED) & np.all(np.isfinite(fit.sigma) & (fit.sigma > 0), axis=1)
    learn = good & (np.arange(n_sim) % 2 == 0)
    check = good & (np.arange(n_sim) % 2 == 1)
    error = fit.labels - truth
    knots, factors = [], []
    for k in range(len(emulator.label_names)):
        log_sigma = np.log(fit.sigma[learn, k])
        ratio = np.abs(error[learn, k]) / fit.sigma[learn, k]
        centre, factor = _binned_factors(log_sigma, ratio, n_bins)
        knots.append(centre)
        factors.append(np.clip(factor, *FACTOR_RANGE))
    draft = LaplaceCorrection(tuple(emulator.label_names), tuple(knots), tuple(factors))
    corrected = fit.sigma[check] * draft.factors(fit.sigma[check])
    metadata: dict[str, Any] = {
        "source": "MAP + Laplace fits of spectra from the model's own generative model (bayesslam.infer."
                  "simulate_spectra) at jittered training labels",
        "n_sim": n_sim, "n_converged": int(good.sum()), "snr_range": [low, high], "jitter": jitter,
        "seed": int(seed), "n_bins": n_bins,
        "held_out_coverage_before": _coverage(error[check], fit.sigma[check]),
        "held_out_coverage_after": _coverage(error[check], corrected),
        "seconds": round(time.time() - t0, 1),
    }
    correction = LaplaceCorrection(draft.label_names, draft.log_sigma, draft.factor, metadata)
    logger.info("Laplace correction from %d simulated stars in %.0f s: %s", n_sim, metadata["seconds"],
                correction.describe())
    return correction

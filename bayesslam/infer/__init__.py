"""The infer stage: labels from normalized spectra with the emulator, one log density for every method.

:mod:`~bayesslam.infer.likelihood` (the density), :mod:`~bayesslam.infer.priors`
(training-domain priors), :mod:`~bayesslam.infer.model` (the NumPyro model, a
plain function), :mod:`~bayesslam.infer.map` (batched MAP with Laplace errors),
:mod:`~bayesslam.infer.sample` with :mod:`~bayesslam.infer.nuts` (lane-scheduled
NUTS), :mod:`~bayesslam.infer.emcee_sampler` (emcee), and
:mod:`~bayesslam.infer.results` (what they return),
:mod:`~bayesslam.infer.predictive` (posterior-predictive checks: per-star log
likelihood, chi2 p-values, replicated spectra), and :mod:`~bayesslam.infer.simulate`
(spectra from the likelihood's own generative model).
"""

from bayesslam.infer.emcee_sampler import log_posterior_fn, sample_emcee
from bayesslam.infer.likelihood import (
    chi_square,
    flux_distribution,
    log_likelihood,
    pixel_variance,
    usable,
)
from bayesslam.infer.map import (
    ForwardModel,
    check_spectra,
    coarse_scan,
    fit_map,
    fit_map_batch,
    misfit_scale,
)
from bayesslam.infer.model import NoiseModel, slam_model
from bayesslam.infer.predictive import PredictiveChecks, PredictiveError, add_predictive_groups, predictive_checks
from bayesslam.infer.priors import (
    LabelPrior,
    PriorError,
    TrainingDensity,
    box_prior,
    custom_prior,
    default_prior,
    prior_from_record,
    prior_record,
    training_density_prior,
)
from bayesslam.infer.results import FitStatus, MapResult, Posterior, SamplingError
from bayesslam.infer.sample import map_start, sample_nuts
from bayesslam.infer.simulate import simulate_spectra

__all__ = [
    "FitStatus",
    "ForwardModel",
    "LabelPrior",
    "MapResult",
    "NoiseModel",
    "Posterior",
    "PredictiveChecks",
    "PredictiveError",
    "PriorError",
    "SamplingError",
    "TrainingDensity",
    "add_predictive_groups",
    "box_prior",
    "check_spectra",
    "chi_square",
    "coarse_scan",
    "custom_prior",
    "default_prior",
    "fit_map",
    "fit_map_batch",
    "misfit_scale",
    "flux_distribution",
    "log_likelihood",
    "log_posterior_fn",
    "pixel_variance",
    "predictive_checks",
    "sample_emcee",
    "map_start",
    "sample_nuts",
    "simulate_spectra",
    "slam_model",
    "training_density_prior",
    "prior_record",
    "prior_from_record",
    "usable",
]

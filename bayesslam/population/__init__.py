"""Population inference: stars that share labels, and label distributions of whole samples.

* :mod:`~bayesslam.population.distributions`: population models of one
  label (Gaussian, Gaussian mixture, smooth histogram), truncated to the
  label's box;
* :mod:`~bayesslam.population.joint`: their hyperposterior jointly with
  every star's labels, from the spectra (NumPyro NUTS);
* :mod:`~bayesslam.population.reweighting`: their hyperposterior from
  per-star posterior draws with the sampling prior divided out;
* :mod:`~bayesslam.population.result`: what both routes return.
* :mod:`~bayesslam.population.pairs`: the paper's binary test (Delta label
  and its z-score for pairs that share a label).
"""

from bayesslam.population.distributions import (
    GaussianPopulation,
    HistogramPopulation,
    MixturePopulation,
    PopulationError,
    PopulationModel,
    parse_population_model,
    truncated_normal_log_density,
)
from bayesslam.population.joint import PopulationPrior, label_index, population_slam_model, sample_population
from bayesslam.population.result import PopulationResult
from bayesslam.population.reweighting import (
    StarDraws,
    draws_from_posterior,
    effective_draws,
    reweight_population,
    reweight_populations,
)

__all__ = [
    "GaussianPopulation",
    "HistogramPopulation",
    "MixturePopulation",
    "PopulationError",
    "PopulationModel",
    "PopulationPrior",
    "PopulationResult",
    "StarDraws",
    "draws_from_posterior",
    "effective_draws",
    "label_index",
    "parse_population_model",
    "population_slam_model",
    "sample_population",
    "reweight_population",
    "reweight_populations",
    "truncated_normal_log_density",
]

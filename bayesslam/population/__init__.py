"""Population inference: stars that share labels, and label distributions of whole samples.

* :mod:`~bayesslam.population.distributions`: population models of one
  label (Gaussian, Gaussian mixture, smooth histogram), truncated to the
  label's box;
* :mod:`~bayesslam.population.joint`: their hyperposterior jointly with
  every star's labels, from the spectra (NumPyro NUTS);
* :mod:`~bayesslam.population.reweighting`: their hyperposterior from
  per-star posterior draws with the sampling prior divided out;
* :mod:`~bayesslam.population.result`: what both routes return;
* :mod:`~bayesslam.population.groups`: stars that share labels (wide
  binaries exactly, clusters with an intrinsic scatter), sampled jointly;
* :mod:`~bayesslam.population.pairs`: the paper's binary test (Delta label
  and its z-score for pairs that share a label);
* :mod:`~bayesslam.population.plotting`: the population figure.
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
from bayesslam.population.groups import (
    DEFAULT_SHARED,
    GroupError,
    GroupPosterior,
    Groups,
    assign_groups,
    grouped_slam_model,
    read_groups,
    sample_groups,
)
from bayesslam.population.joint import PopulationPrior, label_index, population_slam_model, sample_population
from bayesslam.population.pairs import (
    PairComparison,
    PairError,
    compare_pairs,
    pairs_from_groups,
    pairs_from_table,
    plot_pair_comparison,
)
from bayesslam.population.result import PopulationResult
from bayesslam.population.reweighting import (
    StarDraws,
    combine_draws,
    draws_from_posterior,
    effective_draws,
    reweight_population,
    reweight_populations,
)

__all__ = [
    "DEFAULT_SHARED",
    "GroupError",
    "GroupPosterior",
    "Groups",
    "PairComparison",
    "PairError",
    "assign_groups",
    "compare_pairs",
    "grouped_slam_model",
    "pairs_from_groups",
    "pairs_from_table",
    "plot_pair_comparison",
    "read_groups",
    "sample_groups",
    "GaussianPopulation",
    "HistogramPopulation",
    "MixturePopulation",
    "PopulationError",
    "PopulationModel",
    "PopulationPrior",
    "PopulationResult",
    "StarDraws",
    "combine_draws",
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

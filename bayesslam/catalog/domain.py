"""How far a star's labels lie from the model's training domain.

Two measures, both computed in standardized label units:

* the fraction of posterior draws outside the convex hull of the training
  labels (:func:`fraction_outside_hull`);
* the training-label density at the MAP, as its percentile among the
  leave-one-out densities of the training stars themselves
  (:func:`density_percentile`): a star whose labels are rarer than
  ``threshold`` of the training stars is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import Delaunay

from bayesslam.infer.priors import TrainingDensity

__all__ = ["TrainingDomain"]


@dataclass(frozen=True)
class TrainingDomain:
    """The training labels of a model, with hull and density tests.

    Parameters
    ----------
    training_labels : numpy.ndarray
        ``(n_train, n_label)`` physical units.
    constrained : numpy.ndarray of bool, optional
        Which labels take part (e.g. leave out labels the spectra do not
        inform); default all.
    """

    training_labels: np.ndarray
    constrained: np.ndarray | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.training_labels, dtype=float)
        keep = np.ones(labels.shape[1], bool) if self.constrained is None else np.asarray(self.constrained, bool)
        object.__setattr__(self, "training_labels", labels)
        object.__setattr__(self, "constrained", keep)
        object.__setattr__(self, "_mean", labels[:, keep].mean(axis=0))
        object.__setattr__(self, "_scale", labels[:, keep].std(axis=0))
        object.__setattr__(self, "_hull", Delaunay(self._standardize(labels)))
        kde = TrainingDensity(labels[:, keep])
        object.__setattr__(self, "_kde", kde)
        object.__setattr__(self, "_loo", np.sort(kde.leave_one_out_log_density()))

    def _standardize(self, labels: np.ndarray) -> np.ndarray:
        return (np.asarray(labels, dtype=float)[..., self.constrained] - self._mean) / self._scale

    def inside_hull(self, labels: np.ndarray) -> np.ndarray:
        """Whether label vectors (``(..., n_label)``) lie inside the training labels' convex hull."""
        z = self._standardize(labels)
        return self._hull.find_simplex(z.reshape(-1, z.shape[-1])).reshape(z.shape[:-1]) >= 0

    def fraction_outside_hull(self, draws: np.ndarray) -> float:
        """Fraction of posterior draws (``(n_draw, n_label)``) outside the hull."""
        return float(1.0 - np.mean(self.inside_hull(draws)))

    def density_percentile(self, labels: np.ndarray) -> np.ndarray:
        """Percentile (0-100) of the training density at ``labels`` among the training stars' own."""
        logp = np.asarray(self._kde.log_density(np.asarray(labels, dtype=float)[..., self.constrained]))
        return 100.0 * np.searchsorted(self._loo, logp) / self._loo.size

"""Priors over labels that respect a model's training domain.

A :class:`LabelPrior` is one distribution per label (its NumPyro sample
site) plus an optional joint log-density term. Three kinds are provided:

* :func:`box_prior` (the default): uniform over the model's training box;
* :func:`training_density_prior`: the box times a Gaussian kernel density
  estimate of the training labels, so that label combinations the training
  set never covered are disfavoured;
* :func:`custom_prior`: any NumPyro distribution per label (the other labels
  keep their box).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import Array

from bayesslam.errors import BayesSlamError

__all__ = [
    "PriorError",
    "LabelPrior",
    "TrainingDensity",
    "box_prior",
    "default_prior",
    "training_density_prior",
    "custom_prior",
    "prior_record",
    "prior_from_record",
]


class PriorError(BayesSlamError, ValueError):
    """A prior is malformed (NaN parameters, unknown label, non-scalar distribution)."""


def _array_key(value: Any) -> tuple:
    """A hashable fingerprint of an array's dtype, shape and bytes."""
    array = np.asarray(value)
    return (array.dtype.str, array.shape, array.tobytes())


@dataclass(frozen=True, eq=False)
class TrainingDensity:
    """Gaussian kernel density estimate of training labels (standardized space).

    Two densities of the same points and bandwidth compare (and hash) equal,
    so that compiled code that uses one is reused for the other.

    Parameters
    ----------
    points : numpy.ndarray
        Training labels, physical units, shape ``(n_train, n_label)``.
    bandwidth : float, optional
        Kernel width in standardized units; default Scott's rule
        ``n**(-1 / (d + 4))``.
    """

    points: np.ndarray
    bandwidth: float | None = None

    def __post_init__(self) -> None:
        points = np.asarray(self.points, dtype=float)
        if points.ndim != 2 or points.shape[0] < 2 or not np.all(np.isfinite(points)):
            raise PriorError("training labels must be a finite (n_train >= 2, n_label) array.")
        object.__setattr__(self, "points", points)
        if self.bandwidth is None:
            n, d = points.shape
            object.__setattr__(self, "bandwidth", float(n ** (-1.0 / (d + 4))))

    def _key(self) -> tuple:
        return (_array_key(self.points), float(self.bandwidth))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrainingDensity) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def scale(self) -> np.ndarray:
        """Per-label standard deviation of the training labels."""
        return np.std(self.points, axis=0)

    def log_density(self, theta: Array) -> Array:
        """Log density at ``theta`` (physical units, shape ``(..., n_label)``)."""
        mean = self.points.mean(axis=0)
        scale = self.scale
        z_train = jnp.asarray((self.points - mean) / scale)
        z = (jnp.asarray(theta) - mean) / scale
        h = self.bandwidth
        d2 = jnp.sum((z[..., None, :] - z_train) ** 2, axis=-1)
        n, d = self.points.shape
        log_norm = math.log(n) + d * math.log(h) + 0.5 * d * math.log(2 * math.pi) + float(np.sum(np.log(scale)))
        return jax.scipy.special.logsumexp(-0.5 * d2 / h**2, axis=-1) - log_norm

    def __call__(self, theta: Array) -> Array:
        """The log density (:meth:`log_density`): a density is a prior's joint term."""
        return self.log_density(theta)

    def leave_one_out_log_density(self) -> np.ndarray:
        """Log density of each training point with itself left out (for domain thresholds)."""
        mean, scale = self.points.mean(axis=0), self.scale
        z = (self.points - mean) / scale
        h = self.bandwidth
        d2 = np.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1)
        np.fill_diagonal(d2, np.inf)
        n, d = self.points.shape
        log_norm = math.log(n - 1) + d * math.log(h) + 0.5 * d * math.log(2 * math.pi) + float(np.sum(np.log(scale)))
        logk = -0.5 * d2 / h**2
        top = logk.max(axis=1, keepdims=True)
        return (top[:, 0] + np.log(np.exp(logk - top).sum(axis=1))) - log_norm


@dataclass(frozen=True, eq=False)
class LabelPrior:
    """A prior over labels: one scalar distribution per label and an optional joint term.

    Priors compare (and hash) by value: the same names, distributions of the
    same kinds and parameters, and the same joint term. Compiled inference
    code is keyed on the prior, so an equal prior built again reuses it.

    Parameters
    ----------
    names : tuple of str
        Label names, in the model's order.
    marginals : tuple of numpyro Distribution
        One scalar distribution per label (its support is the label's support).
    joint_log_density : callable, optional
        ``f(theta) -> log density`` added to the sum of the marginals.
    description : str
        For logs and metadata.
    """

    names: tuple[str, ...]
    marginals: tuple[dist.Distribution, ...]
    joint_log_density: Callable[[Array], Array] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        marginals = []
        for d in self.marginals:
            leaves, treedef = jax.tree_util.tree_flatten(d)
            marginals.append((treedef, tuple(_array_key(leaf) for leaf in leaves)))
        key = (tuple(self.names), tuple(marginals), self.joint_log_density, self.description)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_hash", hash(key))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelPrior) and self._key == other._key

    def __hash__(self) -> int:
        return self._hash

    @property
    def is_box(self) -> bool:
        """Whether the prior is flat: uniform marginals and no joint term."""
        return self.joint_log_density is None and all(isinstance(d, dist.Uniform) for d in self.marginals)

    @property
    def bounds(self) -> np.ndarray:
        """Per-label support ``(lower, upper)``, shape ``(n_label, 2)`` (infinite where unbounded)."""
        lows = [float(getattr(d.support, "lower_bound", -np.inf)) for d in self.marginals]
        highs = [float(getattr(d.support, "upper_bound", np.inf)) for d in self.marginals]
        return np.column_stack([lows, highs])

    def laplace_precision(self) -> np.ndarray:
        """The precision this prior adds to a Laplace covariance, physical units, ``(n_label, n_label)``.

        A uniform label enters as a Gaussian of the same variance, precision
        ``12 / width**2``: negligible for labels the spectrum constrains, and
        it keeps sigma at the prior's for labels the spectrum does not
        constrain. Other marginals add nothing here (their curvature is
        the log density's Hessian).
        """
        bounds = self.bounds
        uniform = np.array([isinstance(d, dist.Uniform) for d in self.marginals])
        width = np.where(uniform, bounds[:, 1] - bounds[:, 0], np.inf)
        return np.diag(np.where(uniform, 12.0 / width**2, 0.0))

    def sample(self) -> Array:
        """Draw the labels inside a NumPyro model; returns the label vector(s).

        Inside a ``numpyro.plate`` over stars each site gets the plate's shape.
        """
        values = [numpyro.sample(name, d) for name, d in zip(self.names, self.marginals)]
        theta = jnp.stack(values, axis=-1)
        if self.joint_log_density is not None:
            numpyro.factor("label_density", self.joint_log_density(theta))
        return theta

    def log_prob(self, theta: Array) -> Array:
        """Log prior density of label vector(s) ``theta`` (shape ``(..., n_label)``)."""
        theta = jnp.asarray(theta)
        total = sum(d.log_prob(theta[..., k]) for k, d in enumerate(self.marginals))
        if self.joint_log_density is not None:
            total = total + self.joint_log_density(theta)
        return total

    def in_support(self, theta: Array) -> Array:
        """Whether ``theta`` lies in the support of every marginal."""
        theta = jnp.asarray(theta)
        checks = [d.support(theta[..., k]) for k, d in enumerate(self.marginals)]
        return jnp.all(jnp.stack(checks, axis=-1), axis=-1)


def _bounds(names: Sequence[str], bounds: np.ndarray) -> np.ndarray:
    bounds = np.asarray(bounds, dtype=float)
    if bounds.shape != (len(names), 2) or not np.all(np.isfinite(bounds)) or np.any(bounds[:, 1] <= bounds[:, 0]):
        raise PriorError(f"label bounds must be a finite ({len(names)}, 2) array with lower < upper, got {bounds!r}.")
    return bounds


def default_prior(model) -> LabelPrior:
    """The uniform box prior of a model (its ``label_names`` and ``label_bounds``)."""
    return box_prior(model.label_names, np.asarray(model.label_bounds))


def box_prior(names: Sequence[str], bounds: np.ndarray) -> LabelPrior:
    """Uniform prior over the box ``bounds[k] = (lower, upper)`` of each label."""
    bounds = _bounds(names, bounds)
    marginals = tuple(dist.Uniform(float(lo), float(hi)) for lo, hi in bounds)
    return LabelPrior(tuple(names), marginals, None, "uniform over the training box")


def training_density_prior(
    names: Sequence[str], bounds: np.ndarray, training_labels: np.ndarray, bandwidth: float | None = None
) -> LabelPrior:
    """Uniform box times a kernel density estimate of the training labels."""
    box = box_prior(names, bounds)
    kde = TrainingDensity(np.asarray(training_labels, dtype=float), bandwidth)
    if kde.points.shape[1] != len(names):
        raise PriorError(f"training labels have {kde.points.shape[1]} columns for {len(names)} labels.")
    return LabelPrior(box.names, box.marginals, kde,
                      f"training box x Gaussian KDE of {kde.points.shape[0]} training labels (h = {kde.bandwidth:.3f})")


def custom_prior(
    names: Sequence[str], bounds: np.ndarray, distributions: Mapping[str, dist.Distribution]
) -> LabelPrior:
    """Any NumPyro distribution per label; labels not given keep the uniform box.

    Raises
    ------
    PriorError
        For an unknown label name, a non-scalar distribution, or one whose
        log density is not finite inside the training box (e.g. NaN parameters).
    """
    box = box_prior(names, bounds)
    unknown = set(distributions) - set(names)
    if unknown:
        raise PriorError(f"prior given for unknown label(s) {sorted(unknown)}; the model's labels are {list(names)}.")
    marginals = list(box.marginals)
    bounds = np.asarray(bounds, dtype=float)
    for k, name in enumerate(names):
        if name not in distributions:
            continue
        d = distributions[name]
        if not isinstance(d, dist.Distribution) or d.batch_shape != () or d.event_shape != ():
            raise PriorError(f"the prior of {name!r} must be a scalar numpyro distribution, got {d!r}.")
        probe = jnp.linspace(bounds[k, 0], bounds[k, 1], 5)
        with jax.ensure_compile_time_eval():
            values = np.asarray(d.log_prob(probe))
        if not np.any(np.isfinite(values)) or np.any(np.isnan(values)):
            raise PriorError(
                f"the prior of {name!r} ({type(d).__name__}) has no finite density over the training range "
                f"{bounds[k].tolist()} (NaN parameters?); check its parameters."
            )
        marginals[k] = d
    described = ", ".join(f"{n}: {type(distributions[n]).__name__}" for n in names if n in distributions)
    return LabelPrior(tuple(names), tuple(marginals), None, f"user prior ({described}), others uniform over the box")


#: Marginal distributions a prior record can hold (numpyro.distributions classes with scalar parameters).
RECORDABLE = ("Uniform", "Normal", "TruncatedNormal", "LogNormal", "HalfNormal", "Beta", "Gamma", "StudentT",
              "Cauchy", "Laplace", "Exponential")


def prior_record(prior: LabelPrior) -> str:
    """The prior as JSON text, kept with posterior draws so that it can be divided out later.

    Each label's marginal is recorded as its NumPyro class and parameters
    (for the classes in :data:`RECORDABLE`). A joint term (e.g. the training
    density of :func:`training_density_prior`) or another marginal is
    recorded by its description only, with ``"divisible": false``: such a
    prior cannot be rebuilt, and population inference
    (:mod:`bayesslam.population`) refuses draws sampled under it.
    """
    marginals, divisible = {}, prior.joint_log_density is None
    for name, d in zip(prior.names, prior.marginals):
        kind = type(d).__name__
        params = {key: np.asarray(getattr(d, key, np.nan)).tolist() for key in d.arg_constraints}
        if isinstance(d, dist.truncated.TwoSidedTruncatedDistribution) and isinstance(d.base_dist, dist.Normal):
            kind = "TruncatedNormal"
            params = {"loc": np.asarray(d.base_dist.loc).tolist(), "scale": np.asarray(d.base_dist.scale).tolist(),
                      "low": np.asarray(d.low).tolist(), "high": np.asarray(d.high).tolist()}
        recordable = kind in RECORDABLE and all(np.ndim(v) == 0 for v in params.values())
        divisible &= recordable
        marginals[name] = {"distribution": kind, "parameters": params if recordable else {}}
    return json.dumps({"labels": list(prior.names), "marginals": marginals, "description": prior.description,
                       "joint_term": prior.joint_log_density is not None, "divisible": bool(divisible)})


def prior_from_record(record: str) -> LabelPrior:
    """Rebuild the prior that :func:`prior_record` recorded.

    Raises
    ------
    PriorError
        If the record is not valid JSON of a prior record, or the prior had
        a joint term or a marginal that cannot be rebuilt (``"divisible":
        false``).
    """
    try:
        data = json.loads(record)
        names, marginals = tuple(data["labels"]), data["marginals"]
        divisible = bool(data["divisible"])
    except (TypeError, ValueError, KeyError) as exc:
        raise PriorError(f"not a bayesslam prior record ({exc}); the draws must come from bayesslam's samplers.") from exc
    if not divisible:
        raise PriorError(f"the draws were sampled under a prior that cannot be rebuilt ({data.get('description')!r}: "
                         "a joint term or an unrecorded marginal); sample them again with a box or custom prior.")
    built = []
    for name in names:
        entry = marginals[name]
        if entry["distribution"] not in RECORDABLE:
            raise PriorError(f"the prior of {name!r} is a {entry['distribution']}, which a record cannot rebuild.")
        built.append(getattr(dist, entry["distribution"])(**{k: float(v) for k, v in entry["parameters"].items()}))
    return LabelPrior(names, tuple(built), None, str(data.get("description", "")))

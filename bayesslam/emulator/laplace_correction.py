"""How much wider a model's Laplace intervals must be to hold its own posteriors' truths.

MAP + Laplace (``bayesslam fit``) approximates each star's posterior by a
Gaussian at the MAP with the curvature there. Where a spectrum constrains a
label weakly (low SNR, or a label the spectrum barely depends on) the
emulator is far from linear over the posterior's width, the posterior is not
Gaussian, and the MAP scatters around the truth more than the curvature
says. NUTS, which needs no such approximation, covers the truth there; the
Laplace intervals do not (on the default model's own generative model, 68%
intervals of [Fe/H] held the truth for 55% of stars).

A :class:`LaplaceCorrection` is what the model itself says about that: learnt
by :func:`bayesslam.train.learn_laplace_correction` from spectra simulated
with the model's own generative model (the emulator, its error model and
noise, at labels of its training stars and SNRs over a wide range; no mock
and no external labels), it is, per label, a factor ``f_k(sigma_k)`` by which
the Laplace sigma ``sigma_k`` must be multiplied for the central 68.27%
interval to cover at its nominal rate among simulated stars of that sigma.
It is a piecewise-linear function of ``log sigma_k`` through one knot per
bin of the simulations, constant beyond the outer knots.
:func:`bayesslam.infer.fit_map` applies it to the Laplace covariance
(``C -> S C S``, ``S = diag(f(sigma))``, correlations unchanged) when it is
given one; :mod:`bayesslam.pipeline` gives it the model's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from bayesslam.emulator.error_model import ErrorModelError

__all__ = ["FACTOR_RANGE", "LaplaceCorrection"]

#: Smallest and largest factor a correction may hold (a learnt factor outside is clipped, a stored one refused).
#: It never narrows an interval: where the Laplace sigma is larger than needed at 68% the posterior is
#: the flat top of the prior box, and a narrower Gaussian interval would lose the 95% coverage.
FACTOR_RANGE: tuple[float, float] = (1.0, 4.0)


@dataclass(frozen=True, eq=False)
class LaplaceCorrection:
    """Per-label factors of the Laplace sigma, as functions of that sigma.

    Attributes
    ----------
    label_names : tuple of str
    log_sigma : tuple of numpy.ndarray
        Per label, the increasing knots: natural logarithms of Laplace
        sigmas in the label's physical units.
    factor : tuple of numpy.ndarray
        Per label, the factor at each knot (within :data:`FACTOR_RANGE`).
    metadata : Mapping
        How it was learnt (``source``, ``n_sim``, ``snr_range``, ``seed``,
        coverage of held-out simulations before and after): JSON.
    """

    label_names: tuple[str, ...]
    log_sigma: tuple[np.ndarray, ...]
    factor: tuple[np.ndarray, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = tuple(self.label_names)
        if len(names) == 0 or len(self.log_sigma) != len(names) or len(self.factor) != len(names):
            raise ErrorModelError(f"a Laplace correction needs knots and factors for each of its labels {names}; got "
                                  f"{len(self.log_sigma)} and {len(self.factor)} sets")
        lo, hi = FACTOR_RANGE
        for name, knots, factors in zip(names, self.log_sigma, self.factor):
            knots, factors = np.asarray(knots, dtype=float), np.asarray(factors, dtype=float)
            if knots.ndim != 1 or knots.size == 0 or knots.shape != factors.shape:
                raise ErrorModelError(f"Laplace correction of {name}: knots {knots.shape} and factors {factors.shape} "
                                      "must be 1-d arrays of one non-zero length")
            if not (np.all(np.isfinite(knots)) and np.all(np.diff(knots) > 0)):
                raise ErrorModelError(f"Laplace correction of {name}: the knots must be finite and increasing")
            if not (np.all(np.isfinite(factors)) and np.all((factors >= lo) & (factors <= hi))):
                raise ErrorModelError(f"Laplace correction of {name}: factors must lie in [{lo}, {hi}], got "
                                      f"{factors.min():.3g}-{factors.max():.3g}")
        object.__setattr__(self, "label_names", names)
        object.__setattr__(self, "log_sigma", tuple(np.asarray(k, dtype=float) for k in self.log_sigma))
        object.__setattr__(self, "factor", tuple(np.asarray(f, dtype=float) for f in self.factor))

    def factors(self, sigma: np.ndarray) -> np.ndarray:
        """The factor of each Laplace sigma, ``(..., n_label)``; NaN where sigma is not positive and finite."""
        sigma = np.asarray(sigma, dtype=float)
        if sigma.shape[-1] != len(self.label_names):
            raise ErrorModelError(f"sigma has {sigma.shape[-1]} labels, the correction {len(self.label_names)}")
        good = np.isfinite(sigma) & (sigma > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_sigma = np.log(np.where(good, sigma, 1.0))
        out = np.stack([np.interp(log_sigma[..., k], self.log_sigma[k], self.factor[k])
                        for k in range(len(self.label_names))], axis=-1)
        return np.where(good, out, np.nan)

    def apply(self, covariance: np.ndarray) -> np.ndarray:
        """The corrected Laplace covariance ``S C S`` of covariances ``C`` ``(..., n_label, n_label)``."""
        covariance = np.asarray(covariance, dtype=float)
        sigma = np.sqrt(np.clip(np.diagonal(covariance, axis1=-2, axis2=-1), 0.0, None))
        scale = self.factors(sigma)
        return covariance * scale[..., :, None] * scale[..., None, :]

    def to_metadata(self) -> dict[str, Any]:
        """A JSON record (round-trips through :meth:`from_metadata`)."""
        return {
            "label_names": list(self.label_names),
            "log_sigma": {n: [float(v) for v in k] for n, k in zip(self.label_names, self.log_sigma)},
            "factor": {n: [float(v) for v in f] for n, f in zip(self.label_names, self.factor)},
            **{key: value for key, value in self.metadata.items() if key not in ("label_names", "log_sigma", "factor")},
        }

    @classmethod
    def from_metadata(cls, record: Any, label_names: Sequence[str]) -> "LaplaceCorrection":
        """Read and check a record of :meth:`to_metadata` against a model's ``label_names``.

        Raises
        ------
        ErrorModelError
            If the record is not an object, names other labels, or holds
            unusable knots or factors.
        """
        if not isinstance(record, Mapping):
            raise ErrorModelError(f"a Laplace correction record must be a JSON object, got {type(record).__name__}")
        names = tuple(record.get("label_names", ()))
        if names != tuple(label_names):
            raise ErrorModelError(f"the Laplace correction is for labels {names}, the model has {tuple(label_names)}")
        try:
            knots = tuple(np.asarray(record["log_sigma"][n], dtype=float) for n in names)
            factors = tuple(np.asarray(record["factor"][n], dtype=float) for n in names)
        except (KeyError, TypeError, ValueError) as exc:
            raise ErrorModelError(f"the Laplace correction record lacks or garbles its knots or factors ({exc})") from None
        extra = {key: value for key, value in record.items() if key not in ("label_names", "log_sigma", "factor")}
        return cls(names, knots, factors, extra)

    def describe(self) -> str:
        """One line: the range of factors per label."""
        return ", ".join(f"{n} x{f.min():.2f}-{f.max():.2f} (sigma {math.exp(k[0]):.3g}-{math.exp(k[-1]):.3g})"
                         for n, k, f in zip(self.label_names, self.log_sigma, self.factor))

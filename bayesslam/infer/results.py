"""What inference returns: MAP results with Laplace errors, and posterior draws with their summary.

:class:`MapResult` (from :func:`bayesslam.infer.map.fit_map`) and
:class:`Posterior` (from :func:`bayesslam.infer.sample.sample_nuts` and
:func:`bayesslam.infer.emcee_sampler.sample_emcee`) hold numpy arrays with the
stars on the first axis; a :class:`Posterior` keeps its draws as ArviZ
``InferenceData`` (``xarray.DataTree`` with :meth:`Posterior.to_datatree`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Sequence

import arviz as az
import numpy as np

from bayesslam.errors import BayesSlamError

__all__ = ["FitStatus", "MapResult", "PRIOR_ATTRIBUTE", "SamplingError", "Posterior", "summarize", "to_inference_data"]


class FitStatus(IntEnum):
    """Outcome of one star's optimization."""

    CONVERGED = 0
    MAX_ITER = 1
    NOT_FINITE = 2
    NO_DATA = 3


@dataclass(frozen=True)
class MapResult:
    """Best-fit labels of many stars with their Laplace uncertainties.

    All arrays have the stars on the first axis.

    Attributes
    ----------
    label_names : tuple of str
    labels : numpy.ndarray
        MAP labels, ``(n_star, n_label)``, physical units; NaN (with their
        sigmas, covariances and correlations) for stars that could not be
        fitted (status ``NO_DATA`` or ``NOT_FINITE``).
    covariance : numpy.ndarray
        Laplace covariance, ``(n_star, n_label, n_label)``.
    sigma : numpy.ndarray
        ``sqrt(diag(covariance))``.
    correlation : numpy.ndarray
        ``C_ij / (sigma_i sigma_j)``.
    chi2, reduced_chi2 : numpy.ndarray
        Chi-square at the optimum over unmasked pixels, and divided by
        ``n_good - n_label``.
    n_good : numpy.ndarray
        Unmasked pixels per star.
    model_flux : numpy.ndarray
        Emulated spectrum at the MAP labels, ``(n_star, n_pix)``.
    start : numpy.ndarray
        Labels the optimizer started from (best training label of the scan).
    status : numpy.ndarray
        :class:`FitStatus` codes.
    n_iter : numpy.ndarray
        Iterations used.
    at_bound : numpy.ndarray
        Boolean ``(n_star, n_label)``: the label sits at its prior's box edge.
    log_posterior : numpy.ndarray
        ``-0.5 chi2 + log prior`` at the optimum (up to a constant).
    """

    label_names: tuple[str, ...]
    labels: np.ndarray
    covariance: np.ndarray
    sigma: np.ndarray
    correlation: np.ndarray
    chi2: np.ndarray
    reduced_chi2: np.ndarray
    n_good: np.ndarray
    model_flux: np.ndarray
    start: np.ndarray
    status: np.ndarray
    n_iter: np.ndarray
    at_bound: np.ndarray
    log_posterior: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, stars: np.ndarray) -> "MapResult":
        """The results of the stars at the indices (or boolean mask) ``stars``, in that order."""
        fields = {name: np.asarray(getattr(self, name))[stars] for name in self.__dataclass_fields__
                  if name != "label_names"}
        return MapResult(label_names=self.label_names, **fields)

    @staticmethod
    def concatenate(results: list["MapResult"]) -> "MapResult":
        """Join results of consecutive chunks of stars."""
        first = results[0]
        fields = {
            name: np.concatenate([getattr(r, name) for r in results])
            for name in first.__dataclass_fields__
            if name != "label_names"
        }
        return MapResult(label_names=first.label_names, **fields)


class SamplingError(BayesSlamError, RuntimeError):
    """A sampler could not start or run (e.g. no finite density at the initial labels)."""


@dataclass(frozen=True)
class Posterior:
    """Posterior draws of many stars' labels and their summary.

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior`` group: one variable per label with dims
        ``(chain, draw, star)``; ``sample_stats``: ``diverging`` (NUTS).
        By default also the material of posterior-predictive checks
        (:func:`bayesslam.infer.predictive.add_predictive_groups`):
        ``observed_data.flux`` and ``constant_data.ivar`` /
        ``constant_data.model_variance`` (dims ``star``, ``pixel``),
        ``log_likelihood.flux`` (each star's total, ``(chain, draw, star)``)
        and, on request, ``posterior_predictive.flux`` (replicated spectra
        of a thinned subset of the draws).
    label_names : tuple of str
    identifiers : tuple of str
    method : str
        ``"nuts"`` or ``"emcee"``.
    summary : dict of numpy.ndarray
        ``median``, ``q16``, ``q84``, ``mean``, ``sd``, ``r_hat``,
        ``ess_bulk`` with shape ``(n_star, n_label)``; ``n_divergent``
        ``(n_star,)``; ``ppc_chi2_p`` ``(n_star,)``, the posterior-predictive
        p-value of chi2 (:mod:`bayesslam.infer.predictive`), when the
        checks were computed.
    """

    idata: az.InferenceData
    label_names: tuple[str, ...]
    identifiers: tuple[str, ...]
    method: str
    summary: dict[str, np.ndarray] = field(default_factory=dict)

    def draws(self, star: int) -> np.ndarray:
        """All draws of one star, ``(n_chain * n_draw, n_label)``."""
        post = self.idata.posterior
        return np.stack([post[name].values[..., star].reshape(-1) for name in self.label_names], axis=-1)

    def star(self, which: int | str) -> Any:
        """One star's draws as an ``xarray.Dataset`` (dims ``chain``, ``draw``), by index or identifier.

        Ready for ArviZ's plots, e.g. ``az.plot_pair(posterior.star("spec-1079-52621-0509"))``.
        """
        identifier = self.identifiers[which] if isinstance(which, (int, np.integer)) else which
        if identifier not in self.identifiers:
            raise BayesSlamError(f"no star {identifier!r} in this posterior; it has {list(self.identifiers)[:5]}...")
        return self.idata.posterior.sel(star=identifier)

    def to_datatree(self) -> Any:
        """The posterior as an ``xarray.DataTree`` (the exchange format of ArviZ >= 1)."""
        return self.idata.to_datatree()

    def to_netcdf(self, path: str | Path) -> Path:
        """Save the InferenceData to NetCDF.

        Every group: draws, sample statistics and, when present, the groups of
        posterior-predictive checks; the sampler's name is an attribute.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.idata.to_netcdf(str(path))
        return path


def summarize(idata: az.InferenceData, names: Sequence[str], diverging: np.ndarray) -> dict[str, np.ndarray]:
    """Per-star summary of the draws: median, 16/84 quantiles, mean, sd, split-R-hat and bulk ESS per label.

    Returns
    -------
    dict of numpy.ndarray
        Arrays ``(n_star, n_label)``, and ``n_divergent`` ``(n_star,)`` (``diverging``). With one
        chain, R-hat compares its two halves.
    """
    post = idata.posterior
    stacked = np.stack([post[n].values for n in names], axis=-1)  # chain, draw, star, label
    flat = stacked.reshape(-1, stacked.shape[2], stacked.shape[3])
    q16, median, q84 = np.quantile(flat, [0.15865525393145707, 0.5, 0.8413447460685429], axis=0)
    n_chain, n_draw = stacked.shape[:2]
    if n_chain == 1:  # split-R-hat of one chain: compare its two halves
        half = n_draw // 2
        stacked = stacked[:, : 2 * half].reshape(2, half, *stacked.shape[2:])
    rhat = np.empty(flat.shape[1:])
    ess = np.empty(flat.shape[1:])
    for star in range(flat.shape[1]):
        for k in range(flat.shape[2]):
            rhat[star, k] = az.rhat(stacked[:, :, star, k])
            ess[star, k] = az.ess(stacked[:, :, star, k], method="bulk")
    return dict(
        median=median,
        q16=q16,
        q84=q84,
        mean=flat.mean(axis=0),
        sd=flat.std(axis=0, ddof=1),
        r_hat=rhat,
        ess_bulk=ess,
        n_divergent=diverging,
    )


#: Attribute of the posterior group that holds the sampling prior (:func:`bayesslam.infer.priors.prior_record`).
PRIOR_ATTRIBUTE = "sampling_prior"


def to_inference_data(samples: dict[str, np.ndarray], diverging: np.ndarray | None, ids: Sequence[str],
                      method: str, prior: str | None = None) -> az.InferenceData:
    """ArviZ InferenceData of draws ``(chain, draw, star)`` per label, with a ``star`` coordinate.

    ``diverging`` (NUTS) goes to ``sample_stats``; the sampler's name to the
    posterior's attributes, and the sampling prior's record (JSON,
    :func:`bayesslam.infer.priors.prior_record`) to its attribute
    ``sampling_prior``, so that population inference can divide it out.
    """
    dims = {name: ["star"] for name in samples}
    stats = {} if diverging is None else {"diverging": diverging}
    idata = az.from_dict(
        posterior=samples, sample_stats=stats or None, coords={"star": list(ids)}, dims={**dims, "diverging": ["star"]}
    )
    idata.posterior.attrs["sampler"] = method
    if prior is not None:
        idata.posterior.attrs[PRIOR_ATTRIBUTE] = prior
    return idata

"""What population inference returns: the hyperposterior, per-star diagnostics and shrunk estimates."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayesslam.population.distributions import PopulationModel

__all__ = ["PopulationResult", "HYPER_EXCLUDE"]

#: Sites of the models that are reparametrizations, not hyperparameters a user reads.
HYPER_EXCLUDE = ("mean_spacing", "step")

_Q16, _Q84 = 0.15865525393145707, 0.8413447460685429


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Quantiles of each row of ``values`` under ``weights`` (rows normalized), ``(n_row, len(q))``."""
    order = np.argsort(values, axis=1)
    v = np.take_along_axis(values, order, axis=1)
    w = np.take_along_axis(weights, order, axis=1)
    cdf = np.cumsum(w, axis=1)
    cdf = (cdf - 0.5 * w) / cdf[:, -1:]
    return np.stack([[np.interp(level, c, x) for level in q] for c, x in zip(cdf, v)])


@dataclass(frozen=True)
class PopulationResult:
    """The hyperposterior of a population model of one label, with what it says about each star.

    Attributes
    ----------
    label : str
    model : PopulationModel
    bounds : (float, float)
        The label range the population is truncated to.
    idata : arviz.InferenceData
        ``posterior``: the hyperparameters (e.g. ``mean`` and ``sd`` in the
        label's units), and for the joint model the stars' labels too.
    identifiers : tuple of str
    method : str
        ``"reweighting"`` or ``"joint"``.
    effective_draws : numpy.ndarray, optional
        Reweighting: per star, the smallest effective number of draws over
        the checked hyperposterior draws.
    log_likelihood_variance : numpy.ndarray, optional
        Reweighting: Monte Carlo variance of the log hyper-likelihood at
        each checked hyperposterior draw.
    star_values, star_log_prior : numpy.ndarray, optional
        The per-star draws (and their log sampling prior) the result was
        computed from (reweighting), or the stars' draws of the label under
        the population (joint, with ``star_log_prior`` None).
    """

    label: str
    model: PopulationModel
    bounds: tuple[float, float]
    idata: az.InferenceData
    identifiers: tuple[str, ...]
    method: str
    effective_draws: np.ndarray | None = None
    log_likelihood_variance: np.ndarray | None = None
    star_values: np.ndarray | None = None
    star_log_prior: np.ndarray | None = None

    @property
    def hyper_names(self) -> tuple[str, ...]:
        """The hyperparameters in the posterior (reparametrizations and per-star labels left out)."""
        post = self.idata.posterior
        return tuple(name for name in post.data_vars
                     if name not in HYPER_EXCLUDE and "star" not in post[name].dims and not name.startswith("star_"))

    def hyper_draws(self) -> dict[str, np.ndarray]:
        """Every hyperparameter's draws, chains stacked: ``(n_draw,)`` or ``(n_draw, K)``."""
        post = self.idata.posterior
        out = {}
        for name in self.hyper_names:
            values = np.asarray(post[name].values)
            out[name] = values.reshape(-1, *values.shape[2:])
        return out

    def summary(self) -> dict[str, dict[str, list[float] | float]]:
        """Median and central 68% interval of each hyperparameter (JSON-able)."""
        out: dict[str, dict[str, Any]] = {}
        for name, values in self.hyper_draws().items():
            q16, median, q84 = np.quantile(values, [_Q16, 0.5, _Q84], axis=0)
            out[name] = {"median": np.asarray(median).tolist(), "q16": np.asarray(q16).tolist(),
                         "q84": np.asarray(q84).tolist(), "sd": np.asarray(np.std(values, axis=0)).tolist()}
        return out

    def _hyper_subset(self, n_draws: int) -> dict[str, jax.Array]:
        post = self.idata.posterior
        full = {name: np.asarray(post[name].values) for name in post.data_vars if "star" not in post[name].dims}
        full = {k: v.reshape(-1, *v.shape[2:]) for k, v in full.items()}
        n = next(iter(full.values())).shape[0]
        pick = np.unique(np.linspace(0, n - 1, min(n_draws, n)).astype(int))
        return {k: jnp.asarray(v[pick]) for k, v in full.items()}

    def density(self, grid: np.ndarray, n_draws: int = 400) -> np.ndarray:
        """The population density on ``grid`` at ``n_draws`` hyperposterior draws, ``(n_draws, n_grid)``."""
        hyper = self._hyper_subset(n_draws)
        grid = jnp.asarray(grid, dtype=float)
        log_p = jax.vmap(lambda h: self.model.log_density(grid, h, self.bounds))(hyper)
        return np.exp(np.asarray(log_p))

    def star_estimates(self, n_draws: int = 200) -> dict[str, np.ndarray]:
        """Each star's label under the population (partial pooling): ``median``, ``q16``, ``q84`` per star.

        Reweighting: the star's own draws weighted by ``p(x | Lambda) / pi(x)``
        averaged over the hyperposterior; joint: the quantiles of its draws.
        Also ``own_median``: the median of the star's draws under its sampling
        prior alone (reweighting only).
        """
        values = self.star_values
        if values is None:
            raise ValueError("this result keeps no per-star draws.")
        if self.star_log_prior is None:
            q16, median, q84 = np.quantile(values, [_Q16, 0.5, _Q84], axis=1)
            return {"median": median, "q16": q16, "q84": q84}
        hyper = self._hyper_subset(n_draws)
        x, lp = jnp.asarray(values), jnp.asarray(self.star_log_prior)

        def normalized(h):
            log_w = self.model.log_density(x, h, self.bounds) - lp
            return jnp.exp(log_w - jax.scipy.special.logsumexp(log_w, axis=1, keepdims=True))

        weights = np.asarray(jax.lax.map(normalized, hyper).mean(axis=0))
        q16, median, q84 = _weighted_quantiles(values, weights, [_Q16, 0.5, _Q84]).T
        return {"median": median, "q16": q16, "q84": q84, "own_median": np.median(values, axis=1)}

    def to_netcdf(self, path: str | Path) -> Path:
        """Write the hyperposterior (ArviZ NetCDF) with the per-star diagnostics and estimates in ``constant_data``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        idata = self.idata.copy()
        idata.posterior.attrs.update(
            population_label=self.label, population_model=self.model.name, population_method=self.method,
            population_settings=json.dumps(dataclasses.asdict(self.model)), label_bounds=list(self.bounds))
        per_star: dict[str, Any] = {}
        if self.star_values is not None:
            for key, value in self.star_estimates().items():
                per_star[f"star_{key}"] = ("star", np.asarray(value))
        if self.effective_draws is not None:
            per_star["effective_draws"] = ("star", np.asarray(self.effective_draws))
        data = xr.Dataset(per_star, coords={"star": list(self.identifiers)})
        if self.log_likelihood_variance is not None:
            data["log_likelihood_variance"] = ("check", np.asarray(self.log_likelihood_variance))
        groups = {"constant_data": data}
        if "constant_data" in idata.groups():
            idata.constant_data.update(data)
        else:
            idata.add_groups(groups)
        tmp = path.with_name(path.name + ".part")
        idata.to_netcdf(str(tmp))
        tmp.replace(path)
        return path

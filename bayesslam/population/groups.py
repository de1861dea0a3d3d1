"""Stars that share labels: wide binaries (exactly the same [Fe/H] and [alpha/M]) and clusters (with a scatter).

A groups table (CSV or FITS, columns ``identifier`` and ``group``) says which
stars belong together. In :func:`grouped_slam_model` the chosen labels
(default [Fe/H] and [alpha/M]) are drawn once per group, from the same prior
as a single star's (the training box), and every member takes them:
exactly (``scatter=False``; sites ``group_<label>``), or each member from a
Gaussian around them whose standard deviation is sampled too
(``scatter=True``: sites ``group_<label>``, ``scatter_<label>`` with a
HalfNormal prior, and per member ``offset_<label> ~ Normal(0, 1)``, the
label being ``group + scatter * offset``: non-centred, so that NUTS meets no
funnel when the scatter is small against the stars' errors; the members'
values are not truncated to the box, which the emulator's label-space error
makes harmless). Teff and log g stay per star. The
rest is :func:`bayesslam.infer.slam_model`, the one likelihood (with the
emulator's error model), so a variant is a few lines of NumPyro.

:func:`sample_groups` runs every group as one run of the package's batched
NUTS (:mod:`bayesslam.infer.nuts`), groups of equal size together, started
from the members' MAP labels.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import potential_energy
from tqdm.auto import tqdm

from bayesslam._precision import in_float64
from bayesslam.errors import BayesSlamError
from bayesslam.infer.map import check_spectra, fit_map
from bayesslam.infer.model import emulated_site, label_error_labels, slam_model, split_model
from bayesslam.infer.nuts import build_nuts_runner
from bayesslam.infer.priors import LabelPrior, default_prior, prior_record
from bayesslam.infer.results import Posterior, summarize, to_inference_data

__all__ = ["GroupError", "Groups", "GroupPosterior", "read_groups", "assign_groups", "grouped_slam_model",
           "sample_groups", "DEFAULT_SHARED"]

logger = logging.getLogger(__name__)

#: Labels shared by default: wide binaries and clusters are born with one composition.
DEFAULT_SHARED = ("fe_h", "alpha_m")

#: Largest run (group) dimension with a dense mass matrix: beyond it (large clusters) the per-star blocks of the
#: labels and their emulated values are too many for one dense matrix to adapt in a warm-up; diagonal instead.
DENSE_MASS_MAX_DIM = 64

#: Prior scale of a group's intrinsic scatter, as a fraction of the label's box width.
SCATTER_PRIOR_FRACTION = 0.1


class GroupError(BayesSlamError, ValueError):
    """A groups table or a grouping cannot be used (unknown stars, a group of one, an unknown label, ...)."""


@dataclass(frozen=True)
class Groups:
    """Which group each star belongs to.

    Attributes
    ----------
    identifiers : tuple of str
        The stars, in the order of the spectra.
    names : tuple of str
        Group names, in order of first appearance.
    group_of : numpy.ndarray of int
        Index into ``names`` of each star's group.
    """

    identifiers: tuple[str, ...]
    names: tuple[str, ...]
    group_of: np.ndarray

    def members(self, group: int) -> np.ndarray:
        """Indices of the stars of group ``group``, in the order of the spectra."""
        return np.flatnonzero(self.group_of == group)

    @property
    def sizes(self) -> np.ndarray:
        """Number of stars of each group."""
        return np.bincount(self.group_of, minlength=len(self.names))


def read_groups(path: str | Path, *, id_column: str = "identifier", group_column: str = "group") -> dict[str, str]:
    """Read a groups table (CSV or FITS): ``{identifier: group name}``.

    Raises
    ------
    GroupError
        If the table cannot be read, lacks a column, or lists a star twice.
    """
    from astropy.table import Table

    path = Path(path)
    try:
        table = Table.read(path, format="ascii.csv") if path.suffix.lower() in (".csv", ".txt") else Table.read(path)
    except Exception as exc:  # astropy raises many kinds for unreadable tables
        raise GroupError(f"{path}: cannot read the groups table ({exc}).") from exc
    missing = [c for c in (id_column, group_column) if c not in table.colnames]
    if missing:
        raise GroupError(f"{path}: the groups table has no column {missing}; it has {table.colnames}. "
                         "Give columns 'identifier' and 'group' (or name yours with the column options).")
    ids = [str(v).strip() for v in table[id_column]]
    repeated = [name for name, n in Counter(ids).items() if n > 1]
    if repeated:
        raise GroupError(f"{path}: {len(repeated)} star(s) are listed more than once, e.g. {repeated[:5]}; "
                         "a star belongs to one group.")
    return dict(zip(ids, (str(v).strip() for v in table[group_column])))


def assign_groups(identifiers: Sequence[str], groups: Mapping[str, str]) -> Groups:
    """Groups of the given stars from ``{identifier: group}``.

    Raises
    ------
    GroupError
        If the table names stars that are not among ``identifiers``, a star
        is in no group, or a group has a single star.
    """
    identifiers = tuple(str(i) for i in identifiers)
    unknown = sorted(set(groups) - set(identifiers))
    if unknown:
        raise GroupError(f"the groups table names {len(unknown)} star(s) that are not among the spectra, e.g. "
                         f"{unknown[:5]}; check the identifiers, or give those stars' spectra too.")
    ungrouped = [i for i in identifiers if i not in groups]
    if ungrouped:
        raise GroupError(f"{len(ungrouped)} spectra are in no group, e.g. {ungrouped[:5]}; give only the grouped "
                         "stars, or sample the others alone (bayesslam sample without --groups).")
    names = tuple(dict.fromkeys(groups[i] for i in identifiers))
    index = {name: k for k, name in enumerate(names)}
    group_of = np.array([index[groups[i]] for i in identifiers], dtype=int)
    result = Groups(identifiers, names, group_of)
    single = [names[k] for k in np.flatnonzero(result.sizes == 1)]
    if single:
        raise GroupError(f"{len(single)} group(s) have a single star, e.g. {single[:5]}; a group shares labels "
                         "between stars: remove them from the table (they are sampled alone) or add their partners.")
    return result


def _shared_indices(prior: LabelPrior, shared: Sequence[str]) -> tuple[int, ...]:
    unknown = [s for s in shared if s not in prior.names]
    if unknown or not shared:
        raise GroupError(f"cannot share {unknown or 'no labels'}: the model's labels are {list(prior.names)}.")
    return tuple(list(prior.names).index(s) for s in shared)


def offset_site(name: str) -> str:
    """Name of a member's standardized offset from its group's value of a label: ``offset_<label>``."""
    return f"offset_{name}"


class _GroupPrior:
    """Per-star prior of a star plate whose shared labels come from its group (see :func:`grouped_slam_model`)."""

    def __init__(self, prior: LabelPrior, shared: Mapping[int, jax.Array], scatter: Mapping[int, jax.Array]):
        self.prior, self.shared, self.scatter = prior, shared, scatter
        self.names = prior.names

    def sample(self) -> jax.Array:
        values = []
        for k, (name, marginal) in enumerate(zip(self.prior.names, self.prior.marginals)):
            if k in self.shared and k not in self.scatter:
                values.append(numpyro.deterministic(name, self.shared[k]))
                continue
            if k in self.scatter:  # non-centred: no funnel when the scatter is small against the stars' errors
                offset = numpyro.sample(offset_site(name), dist.Normal(0.0, 1.0))
                values.append(numpyro.deterministic(name, self.shared[k] + self.scatter[k] * offset))
                continue
            values.append(numpyro.sample(name, marginal))
        theta = jnp.stack(values, axis=-1)
        if self.prior.joint_log_density is not None:
            numpyro.factor("label_density", self.prior.joint_log_density(theta))
        return theta


def grouped_slam_model(emulator: Any, ivar: jax.Array, flux: jax.Array | None = None, *, prior: LabelPrior,
                       group_of: jax.Array, n_group: int, shared: Sequence[str] = DEFAULT_SHARED,
                       scatter: bool = False, label_error: tuple[int, ...] | None = None) -> None:
    """NumPyro model of stars in groups that share labels.

    Parameters
    ----------
    emulator, ivar, flux, label_error
        As for :func:`bayesslam.infer.slam_model` (``ivar``/``flux``: one row per star).
    prior : LabelPrior
        Each label's prior; a shared label's group value has the same prior.
    group_of : array of int, ``(n_star,)``
        Each star's group, ``0 .. n_group - 1``.
    n_group : int
    shared : sequence of str
        The labels the members share.
    scatter : bool
        Members scatter around the group's value with a sampled intrinsic
        standard deviation (clusters) instead of sharing it exactly (binaries).
    """
    indices = _shared_indices(prior, shared)
    group_values, scatters = {}, {}
    with numpyro.plate("group", n_group):
        for k in indices:
            name = prior.names[k]
            group_values[k] = numpyro.sample(f"group_{name}", prior.marginals[k])
            if scatter:
                width = float(prior.bounds[k, 1] - prior.bounds[k, 0])
                scatters[k] = numpyro.sample(f"scatter_{name}", dist.HalfNormal(SCATTER_PRIOR_FRACTION * width))
    member = {k: v[group_of] for k, v in group_values.items()}
    member_scatter = {k: v[group_of] for k, v in scatters.items()}
    slam_model(emulator, ivar, flux, prior=_GroupPrior(prior, member, member_scatter), label_error=label_error)


@dataclass(frozen=True)
class GroupPosterior:
    """Posteriors of grouped stars: per star (a :class:`~bayesslam.infer.Posterior`) and per group.

    Attributes
    ----------
    stars : Posterior
        Every star's labels (a shared label's draws are its group's), with
        the per-star summary.
    groups : Groups
    shared : tuple of str
    scatter : bool
    group_draws : dict of numpy.ndarray
        ``group_<label>`` (and ``scatter_<label>``) draws, ``(chain, draw, group)``.
    group_summary : dict of numpy.ndarray
        Per group and variable: ``median``, ``q16``, ``q84``, ``sd``,
        ``r_hat``, ``ess_bulk``, ``(n_group, n_variable)``, variables in the
        order of ``group_draws``.
    """

    stars: Posterior
    groups: Groups
    shared: tuple[str, ...]
    scatter: bool
    group_draws: dict[str, np.ndarray]
    group_summary: dict[str, np.ndarray]

    def to_inference_data(self) -> az.InferenceData:
        """One InferenceData: per-star labels (dim ``star``) and group variables (dim ``group``)."""
        idata = self.stars.idata.copy()
        for name, values in self.group_draws.items():
            idata.posterior[name] = (("chain", "draw", "group"), values)
        idata.posterior = idata.posterior.assign_coords(group=list(self.groups.names))
        idata.posterior["star_group"] = ("star", [self.groups.names[g] for g in self.groups.group_of])
        idata.posterior.attrs.update(shared_labels=",".join(self.shared), intrinsic_scatter=int(self.scatter))
        return idata

    def table(self) -> Any:
        """One row per group (astropy Table): ``GROUP``, ``N_STARS``, ``MEMBERS`` and per group variable
        ``V_MEDIAN``, ``V_P16``, ``V_P84``, ``V_SD``, ``V_RHAT``, ``V_ESS`` (e.g. ``GROUP_FE_H_MEDIAN``).
        """
        from astropy.table import Table

        table = Table()
        table["GROUP"] = list(self.groups.names)
        table["GROUP"].description = "group name (from the groups table)"
        table["N_STARS"] = self.groups.sizes
        table["N_STARS"].description = "stars in the group"
        table["MEMBERS"] = [",".join(self.groups.identifiers[i] for i in self.groups.members(g))
                            for g in range(len(self.groups.names))]
        table["MEMBERS"].description = "identifiers of the members, comma-separated"
        columns = (("median", "MEDIAN", "posterior median"), ("q16", "P16", "posterior 15.87th percentile"),
                   ("q84", "P84", "posterior 84.13th percentile"), ("sd", "SD", "posterior standard deviation"),
                   ("r_hat", "RHAT", "split R-hat"), ("ess_bulk", "ESS", "bulk effective sample size"))
        for v, name in enumerate(self.group_draws):
            for key, suffix, text in columns:
                column = f"{name.upper()}_{suffix}"
                table[column] = self.group_summary[key][:, v]
                table[column].description = f"{text} of {name} (the group's shared value, or its intrinsic scatter)"
        return table

    def to_netcdf(self, path: str | Path) -> Path:
        """Write :meth:`to_inference_data` as ArviZ NetCDF."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_inference_data().to_netcdf(str(path))
        return path


def _site_layout(prior: LabelPrior, indices: tuple[int, ...], scatter: bool, label_error: tuple[int, ...],
                 size: int) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Every sampled site of one group of ``size`` stars: shape and support."""
    layout: dict[str, tuple[tuple[int, ...], Any]] = {}
    for k in indices:
        layout[f"group_{prior.names[k]}"] = ((1,), prior.marginals[k].support)
        if scatter:
            layout[f"scatter_{prior.names[k]}"] = ((1,), constraints.positive)
    for k, (name, marginal) in enumerate(zip(prior.names, prior.marginals)):
        if k not in indices:
            layout[name] = ((size,), marginal.support)
        elif scatter:
            layout[offset_site(name)] = ((size,), constraints.real)
    for k in label_error:
        layout[emulated_site(prior.names[k])] = ((size,), constraints.real)
    return layout


@functools.lru_cache(maxsize=16)
def _group_runner(prior: LabelPrior, indices: tuple[int, ...], scatter: bool, label_error: tuple[int, ...],
                  size: int, num_warmup: int, num_samples: int, n_lanes: int, static_model: Any):
    """Batched NUTS over groups of ``size`` stars (one compiled runner per size and settings)."""
    layout = _site_layout(prior, indices, scatter, label_error, size)
    example = {name: jnp.zeros(shape) for name, (shape, _) in layout.items()}
    _, unravel = ravel_pytree(example)
    shared_names = tuple(prior.names[k] for k in indices)

    def potential(z: jax.Array, data: tuple[jax.Array, jax.Array], shared: Any) -> jax.Array:
        flux, ivar = data
        model = static_model.value if static_model is not None else shared
        bound = functools.partial(grouped_slam_model, model, prior=prior, group_of=jnp.zeros(size, int), n_group=1,
                                  shared=shared_names, scatter=scatter, label_error=label_error)
        return potential_energy(bound, (ivar, flux), {}, unravel(z))

    dim = sum(int(np.prod(shape)) for shape, _ in layout.values())
    runner = build_nuts_runner(potential, num_warmup=num_warmup, num_samples=num_samples, n_lanes=n_lanes,
                               dense_mass=bool(label_error) and dim <= DENSE_MASS_MAX_DIM)
    return runner, layout, unravel


def _start(layout: Mapping[str, tuple[tuple[int, ...], Any]], prior: LabelPrior, indices: tuple[int, ...],
           labels: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unconstrained start and initial inverse mass (diagonal) of one group from its members' MAP labels."""
    position, mass = {}, {}
    names = list(prior.names)
    for name, (shape, support) in layout.items():
        to_free = biject_to(support).inv
        if name.startswith("group_"):
            k = names.index(name[len("group_"):])
            weights = 1.0 / np.maximum(sigma[:, k], 1e-12) ** 2
            value, scale = np.array([np.sum(weights * labels[:, k]) / np.sum(weights)]), np.array([sigma[:, k].min()])
        elif name.startswith("scatter_"):
            k = names.index(name[len("scatter_"):])
            width = float(prior.bounds[k, 1] - prior.bounds[k, 0])
            value, scale = np.array([0.5 * SCATTER_PRIOR_FRACTION * width]), None
        elif name.startswith("emulated_"):
            k = names.index(name[len("emulated_"):])
            value, scale = labels[:, k], sigma[:, k]
        elif name.startswith("offset_"):
            k = names.index(name[len("offset_"):])
            weights = 1.0 / np.maximum(sigma[:, k], 1e-12) ** 2
            centre = np.sum(weights * labels[:, k]) / np.sum(weights)
            width = float(prior.bounds[k, 1] - prior.bounds[k, 0])
            value, scale = np.clip((labels[:, k] - centre) / (0.5 * SCATTER_PRIOR_FRACTION * width), -2, 2), None
        else:
            k = names.index(name)
            value, scale = labels[:, k], sigma[:, k]
        u = to_free(jnp.asarray(value, dtype=float))
        position[name] = np.asarray(u)
        if scale is None or name.startswith("emulated_"):
            mass[name] = np.ones(shape) if scale is None else np.clip(scale**2, 1e-12, None)
        else:
            dudx = np.exp(np.asarray(to_free.log_abs_det_jacobian(jnp.asarray(value, dtype=float), u)))
            mass[name] = np.clip(np.nan_to_num((scale * dudx) ** 2, nan=1.0, posinf=1.0), 1e-8, 1.0)
    return np.asarray(ravel_pytree(position)[0]), np.asarray(ravel_pytree(mass)[0])


@in_float64
def sample_groups(
    model: Any,
    flux: np.ndarray,
    ivar: np.ndarray,
    groups: Groups,
    *,
    rng_key: jax.Array,
    shared: Sequence[str] = DEFAULT_SHARED,
    scatter: bool = False,
    prior: LabelPrior | None = None,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 1,
    batch_size: int = 64,
    init_labels: np.ndarray | None = None,
    init_sigma: np.ndarray | None = None,
    emulator_dtype: str | None = "float32",
    progress: bool = True,
) -> GroupPosterior:
    """Joint posteriors of stars in groups that share labels (binaries, clusters), many groups at once.

    Parameters
    ----------
    model : ForwardModel
        The emulator.
    flux, ivar : numpy.ndarray
        Normalized spectra on the model grid, ``(n_star, n_pix)``, in the order of ``groups.identifiers``.
    groups : Groups
        From :func:`assign_groups`.
    rng_key : jax.Array
    shared : sequence of str
        Labels the members share (default [Fe/H] and [alpha/M]).
    scatter : bool
        Sample an intrinsic scatter of the shared labels per group (clusters).
    prior : LabelPrior, optional
        Default: the training box.
    num_warmup, num_samples, num_chains : int
        Per group.
    batch_size : int
        Runs (group-chains) advanced together.
    init_labels, init_sigma : numpy.ndarray, optional
        Starting labels and scales ``(n_star, n_label)``; default the MAP and its Laplace sigmas.
    emulator_dtype : {"float32", "float64", None}
        As for :func:`bayesslam.infer.sample_nuts`.
    progress : bool

    Returns
    -------
    GroupPosterior
    """
    flux, ivar = check_spectra(model, flux, ivar)
    if flux.shape[0] != len(groups.identifiers):
        raise GroupError(f"{flux.shape[0]} spectra for {len(groups.identifiers)} grouped stars.")
    prior = prior or default_prior(model)
    indices = _shared_indices(prior, tuple(shared))
    if init_labels is None:
        fit = fit_map(model, flux, ivar, prior=prior)
        init_labels, init_sigma = np.where(np.isfinite(fit.labels), fit.labels, fit.start), fit.sigma
    bounds = prior.bounds
    span = bounds[:, 1] - bounds[:, 0]
    labels = np.clip(np.asarray(init_labels, dtype=float), bounds[:, 0] + 1e-3 * span, bounds[:, 1] - 1e-3 * span)
    sigma = np.nan_to_num(np.asarray(init_sigma if init_sigma is not None else np.broadcast_to(span / 10, labels.shape),
                                     dtype=float), nan=1.0)
    label_error = label_error_labels(model)
    emulator = model.astype(emulator_dtype) if emulator_dtype and hasattr(model, "astype") else model
    shared_model, static_model = split_model(emulator)
    n_star, n_group = flux.shape[0], len(groups.names)
    keys = jax.random.split(rng_key, n_group * num_chains)
    star_draws = np.full((num_chains, num_samples, n_star, len(prior.names)), np.nan)
    group_draws = {f"{kind}_{prior.names[k]}": np.full((num_chains, num_samples, n_group), np.nan)
                   for kind in (("group", "scatter") if scatter else ("group",)) for k in indices}
    diverging = np.zeros((num_chains, num_samples, n_star), bool)
    with tqdm(total=n_group * num_chains, disable=not progress, desc="group NUTS", unit="run") as bar:
        for size in sorted(set(groups.sizes.tolist())):
            members = [groups.members(g) for g in range(n_group) if groups.sizes[g] == size]
            group_ids = [g for g in range(n_group) if groups.sizes[g] == size]
            n_run = len(members) * num_chains
            runner, layout, unravel = _group_runner(prior, indices, scatter, label_error, size, num_warmup,
                                                    num_samples, max(1, min(batch_size, n_run)), static_model)
            starts = [_start(layout, prior, indices, labels[m], sigma[m]) for m in members]
            run_group = np.repeat(np.arange(len(members)), num_chains)
            stars = np.stack([members[g] for g in run_group])
            z0 = np.stack([starts[g][0] for g in run_group])
            mass0 = np.stack([starts[g][1] for g in run_group])
            run_keys = keys[np.array([group_ids[g] * num_chains + c for g in range(len(members))
                                      for c in range(num_chains)])]
            out = runner(run_keys, jnp.asarray(z0), jnp.asarray(mass0), (jnp.asarray(flux[stars]),
                         jnp.asarray(ivar[stars])), n_run, bar.update, shared=shared_model)
            values = jax.vmap(jax.vmap(unravel))(jnp.asarray(out.z))
            for r, g in enumerate(run_group):
                chain, member_idx = r % num_chains, stars[r]
                run = {site: np.asarray(biject_to(support)(values[site][r])) for site, (_, support) in layout.items()}
                for k, name in enumerate(prior.names):
                    if k not in indices:
                        star_draws[chain][:, member_idx, k] = run[name]
                    elif scatter:
                        star_draws[chain][:, member_idx, k] = (run[f"group_{name}"] + run[f"scatter_{name}"]
                                                               * run[offset_site(name)])
                    else:
                        star_draws[chain][:, member_idx, k] = np.repeat(run[f"group_{name}"], size, axis=-1)
                for site in group_draws:
                    group_draws[site][chain, :, group_ids[g]] = run[site][:, 0]
                diverging[chain][:, member_idx] = out.diverging[r][:, None]
    samples = {name: star_draws[..., k] for k, name in enumerate(prior.names)}
    idata = to_inference_data(samples, diverging, groups.identifiers, "nuts", prior_record(prior))
    summary = summarize(idata, prior.names, diverging.sum(axis=(0, 1)))
    posterior = Posterior(idata, tuple(prior.names), groups.identifiers, "nuts", summary)
    group_summary = _group_summary(group_draws)
    return GroupPosterior(posterior, groups, tuple(shared), scatter, group_draws, group_summary)


def _group_summary(group_draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Median, 16/84 quantiles, sd, R-hat and bulk ESS of each group variable, ``(n_group, n_variable)``."""
    names = list(group_draws)
    n_group = next(iter(group_draws.values())).shape[2]
    summary = summarize(az.from_dict(posterior=dict(group_draws)), names, np.zeros(n_group, int))
    return {key: summary[key] for key in ("median", "q16", "q84", "sd", "r_hat", "ess_bulk")}

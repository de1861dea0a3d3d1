"""Fast best-fit labels for whole surveys: batched Levenberg-Marquardt MAP in JAX.

For each star, minimize ``0.5 * chi2(theta) - log prior(theta)`` where chi2
uses the variance of :mod:`bayesslam.likelihood` (``1/ivar + s_j**2``). The
start is the best of a coarse chi2 scan over the training labels (as the
production SLAM pipeline does). Steps are Levenberg-Marquardt in
standardized label units with the Gauss-Newton Hessian (plus the prior's
Hessian), projected onto the training box; the model and its Jacobian come
from one forward-mode pass per iteration, and each star stops when it has
converged (``jax.lax.while_loop`` under ``vmap``).

At the optimum the Laplace covariance ``(J^T J - H_prior)^-1`` gives sigma
per label and the correlation coefficients ``rho_ij = C_ij / (sigma_i
sigma_j)``. A uniform prior has no curvature; it enters the precision as a
Gaussian of the same variance (``width**2 / 12``), which is negligible for
labels the spectrum constrains and keeps the Laplace sigma of a label the
spectrum does not constrain at its prior's (instead of infinite).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax import Array
from tqdm.auto import tqdm

from bayesslam.errors import SpectrumValidationError
from bayesslam.likelihood import pixel_variance, usable
from bayesslam.priors import LabelPrior, default_prior

__all__ = [
    "ForwardModel",
    "FitStatus",
    "MapResult",
    "check_spectra",
    "coarse_scan",
    "fit_map",
    "fit_map_batch",
]

logger = logging.getLogger(__name__)


class ForwardModel(Protocol):
    """What the optimizer and samplers need of an emulator."""

    label_names: tuple[str, ...]
    model_variance: Array
    training_labels: np.ndarray
    label_bounds: np.ndarray

    def __call__(self, labels: Array) -> Array:  # pragma: no cover - protocol
        ...


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
        MAP labels, ``(n_star, n_label)``, physical units.
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


def _weights(ivar: Array, model_variance: Array) -> Array:
    return jnp.where(usable(ivar, model_variance), 1.0 / pixel_variance(ivar, model_variance), 0.0)


def coarse_scan(model_grid: Array, flux: Array, ivar: Array, model_variance: Array) -> Array:
    """Index of the grid spectrum with the lowest chi2, for each star.

    Parameters
    ----------
    model_grid : array, ``(n_grid, n_pix)``
        Emulated spectra at the scan's labels (e.g. the training labels).
    flux, ivar : array, ``(n_star, n_pix)``
        Normalized spectra.
    model_variance : array, ``(n_pix,)``
        Emulator variance.
    """
    w = _weights(ivar, model_variance)
    flux = jnp.where(w > 0, flux, 0.0)
    chi2 = (
        jnp.sum(w * flux**2, axis=1)[:, None]
        - 2.0 * (w * flux) @ model_grid.T
        + w @ (model_grid**2).T
    )
    return jnp.argmin(chi2, axis=1)


_SOLVERS: dict[tuple, tuple[Any, Any, Any]] = {}


def _make_solver(model: ForwardModel, prior: LabelPrior, max_iter: int, xtol: float, ftol: float, dtol: float):
    """Cached :func:`_build_solver`: compiled solvers are reused for the same model and prior."""
    key = (id(model), id(prior), max_iter, xtol, ftol, dtol)
    if key not in _SOLVERS:
        if len(_SOLVERS) >= 4:
            _SOLVERS.pop(next(iter(_SOLVERS)))
        _SOLVERS[key] = (model, prior, _build_solver(model, prior, max_iter, xtol, ftol, dtol))
    return _SOLVERS[key][2]


def _build_solver(model: ForwardModel, prior: LabelPrior, max_iter: int, xtol: float, ftol: float, dtol: float):
    """Build the jitted, vmapped solver ``(flux, ivar, z0) -> state`` for one model and prior."""
    mean = jnp.asarray(np.mean(model.training_labels, axis=0))
    scale = jnp.asarray(np.std(model.training_labels, axis=0))
    bounds = prior.bounds
    z_lo = (jnp.asarray(bounds[:, 0]) - mean) / scale
    z_hi = (jnp.asarray(bounds[:, 1]) - mean) / scale
    n_label = mean.shape[0]
    # A uniform label's prior enters the Laplace precision as a Gaussian of the same
    # variance (width**2 / 12): negligible for labels the spectrum constrains, and it
    # keeps sigma at the prior's for labels the spectrum does not constrain.
    uniform = np.array([isinstance(d, dist.Uniform) for d in prior.marginals])
    width_z = np.where(uniform, np.asarray(z_hi - z_lo), np.inf)
    box_precision = jnp.diag(jnp.asarray(np.where(uniform, 12.0 / width_z**2, 0.0)))

    def to_theta(z: Array) -> Array:
        return mean + scale * z

    def log_prior(z: Array) -> Array:
        if prior.is_box:
            return jnp.asarray(0.0)
        return prior.log_prob(to_theta(z))

    def model_and_jac(z: Array) -> tuple[Array, Array]:
        def f(zz: Array) -> tuple[Array, Array]:
            m = model(to_theta(zz))
            return m, m

        jac, value = jax.jacfwd(f, has_aux=True)(z)
        return value, jac

    def solve_one(flux: Array, ivar: Array, z0: Array) -> dict[str, Array]:
        sqrt_w = jnp.sqrt(_weights(ivar, model.model_variance))
        flux = jnp.where(sqrt_w > 0, flux, 0.0)

        def evaluate(z: Array) -> tuple[Array, Array, Array, Array, Array]:
            m, dm = model_and_jac(z)
            r = (flux - m) * sqrt_w
            jac = -dm * sqrt_w[:, None]
            lp = log_prior(z)
            phi = 0.5 * jnp.sum(r**2) - lp
            return phi, r, jac, m, lp

        def prior_terms(z: Array) -> tuple[Array, Array]:
            if prior.is_box:
                return jnp.zeros(n_label), jnp.zeros((n_label, n_label))
            return jax.grad(log_prior)(z), jax.hessian(log_prior)(z)

        z0 = jnp.clip(z0, z_lo, z_hi)
        phi0, r0, j0, m0, _ = evaluate(z0)
        state = dict(z=z0, phi=phi0, r=r0, jac=j0, model=m0, lam=jnp.asarray(1e-3), it=jnp.asarray(0),
                     done=jnp.asarray(False), status=jnp.asarray(int(FitStatus.MAX_ITER)))

        def cond(s: dict[str, Array]) -> Array:
            return jnp.logical_and(~s["done"], s["it"] < max_iter)

        def body(s: dict[str, Array]) -> dict[str, Array]:
            g_p, h_p = prior_terms(s["z"])
            a = s["jac"].T @ s["jac"] - h_p
            g = s["jac"].T @ s["r"] - g_p
            # labels at a box edge whose gradient points outwards are held fixed (active set)
            eps = 1e-12
            active = ((s["z"] <= z_lo + eps) & (g > 0)) | ((s["z"] >= z_hi - eps) & (g < 0))
            free = (~active).astype(a.dtype)
            a = a * free[:, None] * free[None, :] + jnp.diag(1.0 - free)
            g = g * free
            # expected gain of a full Gauss-Newton step: stop when it is negligible
            ridge = 1e-12 * (1.0 + jnp.trace(a)) * jnp.eye(n_label)
            newton_decrement = g @ jnp.linalg.solve(a + ridge, g)
            optimal = newton_decrement < 2.0 * dtol
            damp = s["lam"] * jnp.diag(jnp.maximum(jnp.diag(a), 1e-12))
            step = -jnp.linalg.solve(a + damp, g)
            z_new = jnp.clip(s["z"] + step, z_lo, z_hi)
            phi_new, r_new, j_new, m_new, _ = evaluate(z_new)
            finite = jnp.isfinite(phi_new)
            accept = finite & (phi_new <= s["phi"])
            sigma_z = jnp.sqrt(jnp.diag(jnp.linalg.inv(a + box_precision + ridge)))
            moved = jnp.max(jnp.abs(z_new - s["z"]) / sigma_z)
            small_step = moved < xtol
            small_gain = (s["phi"] - phi_new) <= ftol * (1.0 + jnp.abs(s["phi"]))
            converged = optimal | (accept & (small_gain | small_step)) | (s["lam"] > 1e10)
            accept = accept & ~optimal
            keep = lambda new, old: jnp.where(accept, new, old)  # noqa: E731
            return dict(
                z=keep(z_new, s["z"]),
                phi=keep(phi_new, s["phi"]),
                r=keep(r_new, s["r"]),
                jac=keep(j_new, s["jac"]),
                model=keep(m_new, s["model"]),
                lam=jnp.where(accept, s["lam"] * 0.3, s["lam"] * 10.0),
                it=s["it"] + 1,
                done=converged | ~jnp.isfinite(s["phi"]),
                status=jnp.where(converged, int(FitStatus.CONVERGED), s["status"]),
            )

        final = jax.lax.while_loop(cond, body, state)
        _, h_p = prior_terms(final["z"])
        precision_z = final["jac"].T @ final["jac"] - h_p + box_precision
        cov_z = jnp.linalg.inv(precision_z)
        cov = cov_z * scale[:, None] * scale[None, :]
        theta = to_theta(final["z"])
        ok = jnp.isfinite(final["phi"]) & jnp.all(jnp.isfinite(cov))
        status = jnp.where(ok, final["status"], int(FitStatus.NOT_FINITE))
        tol = 1e-9 * (z_hi - z_lo)
        at_bound = (final["z"] <= z_lo + tol) | (final["z"] >= z_hi - tol)
        return dict(
            labels=theta,
            covariance=cov,
            chi2=jnp.sum(final["r"] ** 2),
            model_flux=final["model"],
            status=status,
            n_iter=final["it"],
            at_bound=at_bound,
            log_posterior=-final["phi"],
        )

    return jax.jit(jax.vmap(solve_one)), mean, scale


def check_spectra(model: ForwardModel, flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate normalized spectra against a model's grid; non-finite flux becomes a masked pixel.

    Raises
    ------
    SpectrumValidationError
        For spectra on another grid, or negative / non-finite ivar.
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=float))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=float))
    n_pix = int(np.shape(model.model_variance)[0])
    if flux.shape != ivar.shape or flux.shape[1] != n_pix:
        raise SpectrumValidationError(
            f"spectra of shape {flux.shape} (ivar {ivar.shape}) do not match the model's {n_pix} pixels; "
            "prepare them on the model's wavelength grid (bayesslam prepare) first."
        )
    if not np.all(np.isfinite(ivar)) or np.any(ivar < 0):
        raise SpectrumValidationError("ivar must be finite and >= 0 (0 for masked pixels).")
    ivar = np.where(np.isfinite(flux), ivar, 0.0)
    flux = np.where(np.isfinite(flux), flux, 0.0)
    return flux, ivar


FIRST_PASS_ITERATIONS = 30
SECOND_PASS_CHUNK = 32


def _in_chunks(fn, flux: np.ndarray, ivar: np.ndarray, extra: np.ndarray | None, chunk_size: int,
               progress: bool) -> Any:
    """Apply a compiled batch function chunk by chunk (last chunk padded, one compilation).

    Returns the concatenated output (an array, or a dict of arrays).
    """
    n_star = flux.shape[0]
    chunk = max(1, min(chunk_size, n_star))
    parts = []
    for lo in tqdm(range(0, n_star, chunk), disable=not progress, desc="MAP", unit="chunk"):
        idx = np.arange(lo, lo + chunk)
        idx = np.where(idx < n_star, idx, lo)  # pad with a repeat of the chunk's first star
        args = (flux[idx], ivar[idx]) if extra is None else (flux[idx], ivar[idx], extra[idx])
        keep = min(chunk, n_star - lo)
        parts.append(jax.tree.map(lambda x: np.asarray(x)[:keep], jax.device_get(fn(*args))))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def fit_map(
    model: ForwardModel,
    flux: np.ndarray,
    ivar: np.ndarray,
    *,
    prior: LabelPrior | None = None,
    max_iter: int = 100,
    xtol: float = 1e-3,
    ftol: float = 1e-10,
    dtol: float = 1e-6,
    chunk_size: int = 512,
    progress: bool = False,
) -> MapResult:
    """MAP labels and Laplace uncertainties for many stars.

    Parameters
    ----------
    model : ForwardModel
        The emulator (labels -> normalized flux) with ``model_variance``,
        ``training_labels``, ``label_bounds`` and ``label_names``.
    flux, ivar : numpy.ndarray
        Normalized spectra on the model grid, ``(n_star, n_pix)`` or ``(n_pix,)``;
        ivar 0 marks masked pixels.
    prior : LabelPrior, optional
        Default: uniform over the model's training box.
    max_iter : int
        Most Levenberg-Marquardt iterations per star.
    xtol, ftol : float
        Convergence: an accepted step that moves every label by less than
        ``xtol`` of its Laplace sigma, or gains less than ``ftol`` (relative)
        in the objective.
    dtol : float
        Convergence: the gain a full Gauss-Newton step would still bring
        (half the Newton decrement, in log-posterior units) is below ``dtol``.
    chunk_size : int
        Stars per compiled batch (the last chunk is padded; one compilation).
    progress : bool
        Show a progress bar over chunks.

    Returns
    -------
    MapResult
    """
    flux, ivar = check_spectra(model, flux, ivar)
    prior = prior or default_prior(model)
    n_star, n_label = flux.shape[0], len(model.label_names)
    first_iter = min(max_iter, FIRST_PASS_ITERATIONS)
    solver, mean, scale = _make_solver(model, prior, first_iter, xtol, ftol, dtol)
    grid_labels = jnp.asarray(model.training_labels)
    model_grid = jax.jit(jax.vmap(model))(grid_labels)
    scan = jax.jit(coarse_scan)

    def scan_start(f: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.asarray(grid_labels[scan(model_grid, f, w, model.model_variance)])

    start = _in_chunks(scan_start, flux, ivar, None, chunk_size, progress=False)
    out = _in_chunks(lambda f, w, t: solver(jnp.asarray(f), jnp.asarray(w), (jnp.asarray(t) - mean) / scale),
                     flux, ivar, start, chunk_size, progress)
    # second pass, for the few stars (curved valleys, low SNR) that need more iterations
    slow = np.where(out["status"] == FitStatus.MAX_ITER)[0]
    if slow.size and max_iter > first_iter:
        solver2, _, _ = _make_solver(model, prior, max_iter - first_iter, xtol, ftol, dtol)
        more = _in_chunks(lambda f, w, t: solver2(jnp.asarray(f), jnp.asarray(w), (jnp.asarray(t) - mean) / scale),
                          flux[slow], ivar[slow], out["labels"][slow], SECOND_PASS_CHUNK, False)
        more["n_iter"] = more["n_iter"] + first_iter
        for key, value in more.items():
            out[key][slow] = value
    cov = out["covariance"]
    sigma = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / (sigma[:, :, None] * sigma[:, None, :])
    n_good = np.sum((ivar > 0) & np.isfinite(np.asarray(model.model_variance)), axis=1)
    result = MapResult(
        label_names=tuple(model.label_names),
        labels=out["labels"],
        covariance=cov,
        sigma=sigma,
        correlation=corr,
        chi2=out["chi2"],
        reduced_chi2=out["chi2"] / np.maximum(n_good - n_label, 1),
        n_good=n_good,
        model_flux=out["model_flux"],
        start=start,
        status=out["status"],
        n_iter=out["n_iter"],
        at_bound=out["at_bound"],
        log_posterior=out["log_posterior"],
    )
    no_data = result.n_good <= n_label
    if np.any(no_data):
        logger.warning("%d star(s) have too few unmasked pixels to fit (status NO_DATA).", int(no_data.sum()))
        result.status[no_data] = FitStatus.NO_DATA
    n_bad = int(np.sum(result.status != FitStatus.CONVERGED))
    if n_bad:
        logger.warning("%d of %d stars did not converge (see MapResult.status).", n_bad, n_star)
    return result


def fit_map_batch(model: ForwardModel, spectra: Any, **options: Any) -> MapResult:
    """:func:`fit_map` on a :class:`~bayesslam.spectra.SpectrumBatch` (normalized, on the model grid)."""
    return fit_map(model, spectra.flux, spectra.ivar, **options)

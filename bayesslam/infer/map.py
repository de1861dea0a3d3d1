"""Fast best-fit labels for whole surveys: batched Newton / Levenberg-Marquardt MAP in JAX.

For each star, minimize ``phi = 0.5 * chi2(theta) - log prior(theta)``, where
chi2 uses the variance of :mod:`bayesslam.infer.likelihood` (``1/ivar + s_j**2``).
The start is the best of a coarse chi2 scan over the training labels (as the
production SLAM pipeline does). Steps are Levenberg-Marquardt steps in
standardized label units on the *exact* Hessian (Gauss-Newton part ``J^T W J``
plus the residual curvature ``sum_j w_j r_j d2 model_j``, minus the prior's
Hessian; eigenvalues taken in absolute value so that saddles are left
downhill), at most ``MAX_STEP`` training standard deviations long, projected
onto the training box with labels at an edge held when the gradient points
outwards. Newton's quadratic convergence takes about 4 iterations per star
where Gauss-Newton needs 15-20 (the curvature term is large along the labels
the spectra barely constrain).

With a float64 :class:`~bayesslam.emulator.Emulator` the work is split by
precision: the coarse scan (re-ranked exactly) and the Newton iterations run
on a float32 copy of the emulator (residuals and objective summed in float64)
until half the Newton decrement is below ``FLOAT32_DTOL``; then float64
iterations with the float64 gradient (two flux-sized matrix products per
step, :func:`bayesslam.emulator.least_squares_terms` without the Jacobian)
and the float32 Gauss-Newton matrix of the same point converge to the float64
optimum with the tolerances of :func:`fit_map`. Labels, chi2, model spectra
and log posterior are those of the float64 emulator. Any other forward model
(anything callable with the :class:`ForwardModel` attributes) is fitted in its
own precision with ``jax.jacfwd`` derivatives.

Stars are processed in batches with a host-side loop over short compiled
blocks of iterations: after each block the stars that have converged drop out
and the still-active ones are packed into batches padded to a power of two
(a bounded number of compilations), so a batch never waits for its slowest
star.

At the optimum the Laplace covariance ``(J^T W J - H_prior)^-1`` gives sigma
per label (with the model's label-space error marginalized,
:mod:`bayesslam.emulator.error_model`, and the noise of a star that fails the
goodness-of-fit test scaled by its reduced chi2, :func:`misfit_scale`) and the correlation coefficients ``rho_ij = C_ij / (sigma_i
sigma_j)``. A uniform prior has no curvature; it enters the precision as a
Gaussian of the same variance (``width**2 / 12``), which is negligible for
labels the spectrum constrains and keeps the Laplace sigma of a label the
spectrum does not constrain at its prior's (instead of infinite). Where the
posterior is far from Gaussian (weakly constrained labels) that covariance is
too narrow; given a model's :class:`~bayesslam.emulator.LaplaceCorrection`,
:func:`fit_map` widens it by the factors the model's own generative model
asks for.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from tqdm.auto import tqdm

from bayesslam._precision import in_float64
from bayesslam.emulator import (
    Emulator,
    LaplaceCorrection,
    LeastSquaresTerms,
    flux_grouped,
    label_jacobian,
    least_squares_terms,
    marginal_precision,
    weighted_flux_derivatives,
)
from bayesslam.infer.likelihood import pixel_variance, usable
from bayesslam.infer.model import split_model
from bayesslam.infer.priors import LabelPrior, default_prior
from bayesslam.infer.results import FitStatus, MapResult
from bayesslam.spectra import check_arrays

__all__ = [
    "ForwardModel",
    "check_spectra",
    "coarse_scan",
    "fit_map",
    "fit_map_batch",
    "misfit_scale",
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


@jax.jit
def _weights(ivar: Array, model_variance: Array) -> Array:
    """Likelihood weights ``1 / (1/ivar + s_j^2)``, 0 where a pixel does not enter (one compiled kernel)."""
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


def _scan_candidates(grid_offsets: Array, reference: Array, flux: Array, weights: Array, n_candidates: int) -> Array:
    """The ``n_candidates`` grid spectra of lowest chi2, computed in the grid's (low) precision.

    ``grid_offsets`` is the grid minus ``reference``: the terms of the expanded
    chi2 stay small, so float32 ranks the candidates reliably.
    """
    dtype = grid_offsets.dtype
    delta = (flux - reference).astype(dtype)
    w = weights.astype(dtype)
    partial = -2.0 * (w * delta) @ grid_offsets.T + w @ (grid_offsets**2).T
    return jax.lax.top_k(-partial, n_candidates)[1]


def _best_candidate(grid: Array, candidates: Array, flux: Array, weights: Array) -> Array:
    """The candidate of lowest exact chi2 (ties: the lowest grid index, as :func:`coarse_scan`)."""
    candidates = jnp.sort(candidates, axis=1)
    chi2 = jnp.sum(weights[:, None, :] * (flux[:, None, :] - grid[candidates]) ** 2, axis=-1)
    return jnp.take_along_axis(candidates, jnp.argmin(chi2, axis=1)[:, None], axis=1)[:, 0]


#: Candidates of the float32 coarse scan that are re-ranked with the exact chi2.
SCAN_CANDIDATES = 4
#: The float32 stage ends when half the Newton decrement is below this (log-posterior units).
FLOAT32_DTOL = 1e-4
#: Levenberg-Marquardt damping of the first step from the coarse scan's training label.
INITIAL_DAMPING = 1e-3
#: Longest step, in units of the training labels' standard deviation.
MAX_STEP = 0.5
#: Damping factor after a step whose gain matches the quadratic model.
DAMPING_DOWN = 0.1
#: An eigenvalue of the Hessian below -NEGATIVE_CURVATURE times the largest marks a saddle, which
#: is left along its eigenvector (the decrement alone would call it converged).
NEGATIVE_CURVATURE = 1e-5
#: The Gauss-Newton matrix for the covariance is recomputed when the float64 stage moved a
#: label by more than this many sigma from where it was computed.
JACOBIAN_REFRESH = 1e-3
#: Smallest compiled batch (batches are padded to ``MIN_BUCKET * 4**k`` stars, at most ``chunk_size``).
MIN_BUCKET = 16


#: A star's noise is inflated when its reduced chi2 exceeds 1 by more than this many of its standard deviations.
MISFIT_SIGMAS = 3.0


def misfit_scale(chi2: Array, dof: Array) -> Array:
    """Per-star factor on the noise variance of the Laplace covariance: the reduced chi2 where it fails the fit.

    A spectrum the model does not describe (another instrument, a binary, a
    bad continuum) leaves residuals larger than the noise and the emulator's
    error predict. When its reduced chi2 exceeds 1 by more than
    :data:`MISFIT_SIGMAS` standard deviations (``sqrt(2 / dof)``), the noise
    is scaled by the reduced chi2 (the profile-likelihood noise scale: the
    Birge ratio), which widens the Laplace sigma by its square root;
    otherwise 1.
    """
    reduced = chi2 / dof
    return jnp.where(reduced > 1.0 + MISFIT_SIGMAS * jnp.sqrt(2.0 / dof), reduced, 1.0)


def _update_damping(lam: Array, phi: Array, phi_new: Array, predicted: Array, slope: Array, accept: Array) -> Array:
    """Levenberg-Marquardt damping after a trial step.

    Accepted: scaled by ``max(DAMPING_DOWN, 1 - (2 rho - 1)**3)``, ``rho`` the
    actual over the predicted gain (Nielsen's rule, faster towards Newton).
    Rejected: the step should shrink by ``alpha`` in [0.1, 0.5], the minimizer
    of the parabola through ``phi``, the slope along the step and the trial's
    ``phi``; with Marquardt's scaling a step shrinks about as ``1 / (1 + lam)``,
    hence ``lam -> (1 + lam) / alpha - 1``.
    """
    rho = (phi - phi_new) / jnp.maximum(predicted, 1e-300)
    down = lam * jnp.maximum(DAMPING_DOWN, 1.0 - (2.0 * rho - 1.0) ** 3)
    bend = phi_new - phi - slope
    convex = jnp.isfinite(phi_new) & (bend > 0)
    alpha = jnp.clip(jnp.where(convex, -slope / (2.0 * jnp.where(convex, bend, 1.0)), 0.1), 0.1, 0.5)
    up = jnp.maximum((1.0 + lam) / alpha - 1.0, 2.0 * lam)
    return jnp.clip(jnp.where(accept, down, up), 1e-12, 1e16)


def _descent_metric(h: Array) -> tuple[Array, Array, Array]:
    """``h`` with its eigenvalues replaced by their (floored) absolute values, and its lowest eigenpair.

    The metric equals ``h`` where it is positive definite, so steps near an
    optimum are Newton steps; along directions of negative curvature (saddles
    and ridges away from the optimum) the step goes downhill instead of towards
    the stationary point.
    """
    e, v = jnp.linalg.eigh(h)
    floor = 1e-10 * jnp.max(jnp.abs(e), axis=-1, keepdims=True) + 1e-300
    metric = jnp.einsum("...ik,...k,...jk->...ij", v, jnp.maximum(jnp.abs(e), floor), v)
    return metric, e[..., 0], v[..., :, 0]


def _saddle(lowest: Array, metric: Array) -> Array:
    """Whether the lowest eigenvalue is clearly negative (relative to the largest)."""
    largest = jnp.max(jnp.diagonal(metric, axis1=-2, axis2=-1), axis=-1)
    return lowest < -NEGATIVE_CURVATURE * largest


def _generic_terms(model: ForwardModel, theta: Array, flux: Array, w: Array, jacobian: bool,
                   curvature: bool) -> LeastSquaresTerms:
    """:class:`~bayesslam.emulator.LeastSquaresTerms` of one star for any differentiable forward model."""

    def f(t: Array) -> tuple[Array, Array]:
        m = model(t)
        return m, m

    jac, m = jax.jacfwd(f, has_aux=True)(theta)
    residual = flux - m
    objective = 0.5 * jnp.sum(w * residual**2)
    gradient = -jac.T @ (w * residual)
    gauss_newton = (jac.T * w) @ jac if jacobian else jnp.zeros((theta.size, theta.size), m.dtype)
    if curvature:
        c = jax.lax.stop_gradient(-w * residual)
        second = jax.hessian(lambda t: jnp.dot(c, model(t)))(theta)
    else:
        second = jnp.zeros((theta.size, theta.size), m.dtype)
    return LeastSquaresTerms(m, objective, gradient, gauss_newton, second)


class _Stage(NamedTuple):
    """One precision stage of the optimizer.

    ``advance(state, flux, w, settings)`` runs one iteration on a batch
    (``settings = [dtol, xtol, ftol, first]``; with ``first`` it only
    evaluates the start point of the stage); ``start``, if given, replaces
    the ``first`` call.
    """

    advance: Callable[..., dict[str, Array]]
    start: Callable[..., dict[str, Array]] | None
    dtol_floor: float


class _HostArrays(NamedTuple):
    """Numpy copies of a solver's label arrays, for the host side of :func:`fit_map`."""

    grid_labels: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    z_lo: np.ndarray
    z_hi: np.ndarray


class _Solver:
    """The batched MAP for one forward model and prior: its arrays, and its steps as methods.

    A solver is a JAX pytree: its arrays (the forward model when that is a
    pytree, such as an :class:`~bayesslam.emulator.Emulator`, the emulated
    spectra at the training labels and the label standardization) are leaves,
    the prior and the kind of forward model are static. The compiled steps
    (:func:`_advance`, :func:`_grid_start`, :func:`_scan`, :func:`_covariance`)
    take the solver as an argument, so their programs are reused for every
    model of the same shapes and every equal prior.

    The state of a batch is a dict of arrays with the stars on the first
    axis: ``z`` (standardized labels), ``phi`` (objective), ``chi2``, ``g``
    (gradient of ``phi``), ``gauss_newton`` (``J^T W J``, computed at
    ``z_jac``), ``curvature`` (residual curvature at ``z``), ``model``,
    ``lam`` (damping), ``it``, ``limit`` (most iterations), ``done``,
    ``converged`` and ``skip`` (no data).
    """

    _LEAVES = ("model", "low", "grid", "reference", "grid_offsets", "grid_jacobian", "mean", "scale", "z_lo", "z_hi",
               "box_precision", "label_error_z")

    def __init__(self, model: ForwardModel, prior: LabelPrior) -> None:
        training = np.asarray(model.training_labels, dtype=float)
        mean = training.mean(axis=0)
        scale = training.std(axis=0)
        bounds = prior.bounds
        z_lo = (bounds[:, 0] - mean) / scale
        z_hi = (bounds[:, 1] - mean) / scale
        self.host = _HostArrays(training, mean, scale, z_lo, z_hi)
        self.prior = prior
        self.fast = isinstance(model, Emulator)
        self.mixed = self.fast and model.dtype == np.float64
        self.model, self.static_model = split_model(model)  # a model that is not a pytree is static
        self.mean, self.scale, self.z_lo, self.z_hi = (jnp.asarray(a) for a in (mean, scale, z_lo, z_hi))
        self.box_precision = jnp.asarray(prior.laplace_precision() * np.outer(scale, scale))  # standardized units
        label_error = np.asarray(getattr(model, "label_error_covariance", np.zeros((len(mean), len(mean)))))
        self.label_error_z = jnp.asarray(label_error / np.outer(scale, scale))
        self.low = model.astype(jnp.float32) if self.mixed else None
        labels = jnp.asarray(training)
        self.grid = _emulate(model, labels) if self.fast else jax.jit(jax.vmap(model))(labels)
        self.reference = self.grid_offsets = self.grid_jacobian = None
        if self.mixed:
            self.reference = jnp.mean(self.grid, axis=0)
            self.grid_offsets = (self.grid - self.reference).astype(jnp.float32)
            # float32 Newton with exact Hessians, then float64 steps from the float64 gradient
            # (two flux-sized products) with the float32 Gauss-Newton matrix of the same point
            self.grid_jacobian = _jacobian(self.low, labels)
            self.stages = [_Stage(functools.partial(_advance, self, low=True, jacobian=True),
                                  functools.partial(_grid_start, self), FLOAT32_DTOL),
                           _Stage(functools.partial(_advance, self, low=False, jacobian=False), None, 0.0)]
        else:
            self.stages = [_Stage(functools.partial(_advance, self, low=False, jacobian=True), None, 0.0)]
        self.scan = functools.partial(_scan, self)
        self.covariance = functools.partial(_covariance, self)

    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return tuple(getattr(self, name) for name in self._LEAVES), (self.prior, self.fast, self.mixed, self.static_model)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], leaves: tuple[Any, ...]) -> "_Solver":
        solver = object.__new__(cls)
        for name, value in zip(cls._LEAVES, leaves):
            setattr(solver, name, value)
        solver.prior, solver.fast, solver.mixed, solver.static_model = aux
        solver.host = None  # host copies are for the host code only
        return solver

    @property
    def forward(self) -> Any:
        """The forward model in its own precision."""
        return self.model if self.static_model is None else self.static_model.value

    @property
    def n_label(self) -> int:
        return int(self.mean.shape[0])

    # -- the objective in standardized units --------------------------------------------

    def _log_prior_terms(self, z: Array) -> tuple[Array, Array, Array]:
        """Log prior, its gradient and Hessian, for a batch."""
        n = z.shape[0]
        if self.prior.is_box:
            return jnp.zeros(n), jnp.zeros((n, self.n_label)), jnp.zeros((n, self.n_label, self.n_label))

        def log_prior(zz: Array) -> Array:
            return self.prior.log_prob(self.mean + self.scale * zz)

        return jax.vmap(log_prior)(z), jax.vmap(jax.grad(log_prior))(z), jax.vmap(jax.hessian(log_prior))(z)

    def _evaluate(self, model: Any, z: Array, flux: Array, w: Array, jacobian: bool) -> dict[str, Array]:
        """Objective, gradient and Hessian pieces at ``z`` (a batch), float64, standardized units."""
        theta = self.mean + self.scale * z
        if self.fast:
            t = least_squares_terms(model, theta, flux, w, jacobian=jacobian, curvature=True)
        else:
            one = functools.partial(_generic_terms, model, jacobian=jacobian, curvature=True)
            t = jax.vmap(one)(theta, flux, w)
        precision = flux.dtype
        s = jnp.asarray(self.scale, dtype=precision)
        s2 = s[:, None] * s[None, :]
        lp, glp, _ = self._log_prior_terms(z)
        objective = t.objective.astype(precision)
        return dict(
            phi=objective - lp,
            chi2=2.0 * objective,
            g=t.gradient.astype(precision) * s - glp,
            gauss_newton=t.gauss_newton.astype(precision) * s2,
            curvature=t.curvature.astype(precision) * s2,
            model=t.model_flux.astype(precision),
        )

    def _free(self, z: Array, g: Array) -> Array:
        """1 for labels that may move, 0 for labels at a box edge whose gradient points outwards."""
        eps = 1e-12
        held = ((z <= self.z_lo + eps) & (g > 0)) | ((z >= self.z_hi - eps) & (g < 0))
        return (~held).astype(z.dtype)

    def _newton_system(self, state: dict[str, Array]) -> tuple[Array, ...]:
        """Exact Hessian, descent metric, gradient (free labels; held ones decoupled) and lowest eigenpair."""
        _, _, hp = self._log_prior_terms(state["z"])
        h = state["gauss_newton"] + state["curvature"] - hp
        free = self._free(state["z"], state["g"])
        h = h * free[:, :, None] * free[:, None, :] + (1.0 - free)[:, :, None] * jnp.eye(self.n_label)
        metric, lowest, direction = _descent_metric(h)
        return h, metric, state["g"] * free, lowest, direction

    def _optimal(self, state: dict[str, Array], dtol: Array) -> Array:
        """Negligible Newton decrement (``g^T M^-1 g < 2 dtol``) at a point that is not a saddle."""
        _, metric, g, lowest, _ = self._newton_system(state)
        decrement = jnp.einsum("bk,bk->b", g, jnp.linalg.solve(metric, g[..., None])[..., 0])
        return (decrement < 2.0 * dtol) & ~_saddle(lowest, metric)

    def _sigma_z(self, gauss_newton: Array, z: Array) -> Array:
        _, _, hp = self._log_prior_terms(z)
        precision = gauss_newton - hp + jnp.asarray(self.box_precision)
        return jnp.sqrt(jnp.diagonal(jnp.linalg.inv(precision), axis1=-2, axis2=-1))

    # -- iterations ----------------------------------------------------------------------

    def _trial_step(self, state: dict[str, Array], stepping: Array) -> tuple[Array, Array]:
        """Exact Hessian and the damped, capped, box-projected step (zero where not ``stepping``)."""
        z = state["z"]
        h, metric, free_g, lowest, direction = self._newton_system(state)
        damp = state["lam"][:, None, None] * (jnp.eye(self.n_label) * jnp.maximum(
            jnp.diagonal(metric, axis1=-2, axis2=-1), 1e-12)[:, None, :])
        step = -jnp.linalg.solve(metric + damp, free_g[..., None])[..., 0]
        # at a saddle, also go downhill along the negative curvature (a gain of ~1 predicted)
        downhill = jnp.where(jnp.einsum("bk,bk->b", free_g, direction) > 0, -1.0, 1.0)
        length = jnp.sqrt(2.0 / jnp.maximum(-lowest, 1e-300)) / (1.0 + state["lam"])
        step = step + jnp.where(_saddle(lowest, metric), downhill * length, 0.0)[:, None] * direction
        longest = jnp.maximum(jnp.max(jnp.abs(step), axis=-1), 1e-300)
        step = step * jnp.minimum(1.0, MAX_STEP / longest)[:, None]
        return h, jnp.where(stepping[:, None], jnp.clip(z + step, self.z_lo, self.z_hi) - z, 0.0)

    def _update(self, state: dict[str, Array], t: dict[str, Array], h: Array, d: Array, active: Array,
                settings: Array, jacobian: bool) -> dict[str, Array]:
        """Accept or reject the trial ``z + d`` evaluated as ``t``; damping and convergence tests."""
        dtol, xtol, ftol, first = settings[0], settings[1], settings[2], settings[3] > 0
        stepping = active & ~first
        z, g = state["z"], state["g"]
        slope = jnp.einsum("bk,bk->b", g, d)
        predicted = -(slope + 0.5 * jnp.einsum("bk,bkl,bl->b", d, h, d))
        finite = jnp.isfinite(t["phi"])
        accept = active & finite & (first | (t["phi"] <= state["phi"]))
        new = dict(state)
        for key in ("phi", "chi2", "g", "model", "curvature") + (("gauss_newton",) if jacobian else ()):
            new[key] = jnp.where(accept.reshape((-1,) + (1,) * (t[key].ndim - 1)), t[key], state[key])
        new["z"] = jnp.where(accept[:, None], z + d, z)
        if jacobian:
            new["z_jac"] = jnp.where(accept[:, None], z + d, state["z_jac"])
        lam = _update_damping(state["lam"], state["phi"], t["phi"], predicted, slope, accept)
        start_lam = INITIAL_DAMPING if jacobian else 1e-6
        new["lam"] = jnp.where(first, start_lam, jnp.where(stepping, lam, state["lam"]))
        # converged: negligible gain left, a tiny accepted step or gain, or no step that helps
        sigma = self._sigma_z(new["gauss_newton"], new["z"])
        small_step = stepping & accept & (jnp.max(jnp.abs(d) / sigma, axis=-1) < xtol)
        small_gain = stepping & accept & ((state["phi"] - t["phi"]) <= ftol * (1.0 + jnp.abs(state["phi"])))
        stuck = stepping & (new["lam"] > 1e10)
        optimal = self._optimal(new, dtol)
        converged = active & (optimal | small_step | small_gain | stuck) & ~(first & ~finite)
        new["converged"] = state["converged"] | converged
        new["done"] = state["done"] | converged | (active & ~jnp.isfinite(new["phi"]))
        new["it"] = state["it"] + stepping.astype(state["it"].dtype)
        return new

    def _advance(self, model: Any, jacobian: bool, state: dict[str, Array], flux: Array, w: Array,
                 settings: Array) -> dict[str, Array]:
        """One iteration of a batch with ``model`` (``jacobian``: with new Gauss-Newton matrices)."""
        first = settings[3] > 0
        active = ~state["done"] & (first | (state["it"] < state["limit"]))
        h, d = self._trial_step(state, active & ~first)
        t = self._evaluate(model, state["z"] + d, flux, w, jacobian)
        return self._update(state, t, h, d, active, settings, jacobian)

    def _grid_start(self, state: dict[str, Array], flux: Array, w: Array, settings: Array) -> dict[str, Array]:
        """The first stage's start at the scan's training labels, from the precomputed grid.

        The model (float64) and its Jacobian (float32) at every training label are kept;
        the residual curvature and the gradient cost one flux-sized product
        (:func:`~bayesslam.emulator.weighted_flux_derivatives`) instead of a full evaluation.
        """
        z, index = state["z"], state["index"]
        model = self.grid[index]
        jac = self.grid_jacobian[index]  # physical units, float32
        residual = flux - model
        objective = 0.5 * jnp.sum(w * residual**2, axis=-1)
        low = jac.dtype
        s = jnp.asarray(self.scale)
        s2 = s[:, None] * s[None, :]
        gauss_newton = jnp.einsum("bpk,bp,bpl->bkl", jac, w.astype(low), jac).astype(flux.dtype) * s2
        gradient, curvature = weighted_flux_derivatives(self.low, self.mean + self.scale * z, w * (model - flux))
        lp, glp, _ = self._log_prior_terms(z)
        t = dict(phi=objective - lp, chi2=2.0 * objective, g=gradient.astype(flux.dtype) * s - glp,
                 gauss_newton=gauss_newton, curvature=curvature.astype(flux.dtype) * s2, model=model)
        zero = jnp.zeros_like(z)
        return self._update(state, t, jnp.zeros_like(gauss_newton), zero, ~state["done"], settings, True)

    # -- scan and results ----------------------------------------------------------------

    def _scan(self, state: dict[str, Array], flux: Array, w: Array) -> dict[str, Array]:
        """Index of the training label of lowest chi2 (a float32 scan re-ranked exactly, or exact)."""
        if self.mixed:
            candidates = _scan_candidates(self.grid_offsets, self.reference, flux, w, SCAN_CANDIDATES)
            return dict(index=_best_candidate(self.grid, candidates, flux, w))
        chi2 = jnp.sum(w * flux**2, axis=1)[:, None] - 2.0 * (w * flux) @ self.grid.T + w @ (self.grid**2).T
        return dict(index=jnp.argmin(chi2, axis=1))

    def _covariance(self, state: dict[str, Array], flux: Array, w: Array) -> dict[str, Array]:
        """Laplace covariance ``(A - H_prior + box precision)^-1`` in physical units.

        ``A`` is the Gauss-Newton matrix ``J^T W J``, divided by the star's
        misfit scale (:func:`misfit_scale`), with the model's label-space
        error marginalized (:func:`bayesslam.emulator.marginal_precision`;
        no change for a model without one).
        """
        _, _, hp = self._log_prior_terms(state["z"])
        dof = jnp.maximum(jnp.sum(w > 0, axis=-1) - self.n_label, 1)
        fisher = marginal_precision(state["gauss_newton"] / misfit_scale(state["chi2"], dof)[:, None, None],
                                    self.label_error_z)
        cov_z = jnp.linalg.inv(fisher - hp + jnp.asarray(self.box_precision))
        return dict(covariance=cov_z * (self.scale[:, None] * self.scale[None, :]))


jax.tree_util.register_pytree_node(_Solver, _Solver.tree_flatten, _Solver.tree_unflatten)


_emulate = jax.jit(flux_grouped)
_jacobian = jax.jit(label_jacobian)


@functools.partial(jax.jit, static_argnames=("low", "jacobian"))
def _advance(solver: _Solver, state: dict[str, Array], flux: Array, w: Array, settings: Array, *, low: bool,
             jacobian: bool) -> dict[str, Array]:
    """One iteration of a batch, compiled (``low``: with the float32 copy of the emulator)."""
    return solver._advance(solver.low if low else solver.forward, jacobian, state, flux, w, settings)


@jax.jit
def _grid_start(solver: _Solver, state: dict[str, Array], flux: Array, w: Array, settings: Array) -> dict[str, Array]:
    """The first stage's start at the scan's training labels, compiled."""
    return solver._grid_start(state, flux, w, settings)


@jax.jit
def _scan(solver: _Solver, state: dict[str, Array], flux: Array, w: Array) -> dict[str, Array]:
    """The coarse scan over the training labels, compiled."""
    return solver._scan(state, flux, w)


@jax.jit
def _covariance(solver: _Solver, state: dict[str, Array], flux: Array, w: Array) -> dict[str, Array]:
    """The Laplace covariance, compiled."""
    return solver._covariance(state, flux, w)


def check_spectra(model: ForwardModel, flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate normalized spectra against a model's grid; non-finite flux becomes a masked pixel.

    The checks are :func:`bayesslam.spectra.check_arrays` on the model's
    wavelength grid (its pixel count for a forward model without ``wave``).

    Returns
    -------
    (flux, ivar) : numpy.ndarray
        ``(n_star, n_pix)`` float64 copies; masked pixels have ivar 0.

    Raises
    ------
    SpectrumValidationError
        For spectra on another grid, or negative / non-finite ivar.
    """
    n_pix = int(np.shape(model.model_variance)[0])
    wave = np.asarray(getattr(model, "wave", np.arange(1.0, n_pix + 1.0)), dtype=float)
    _, flux, ivar, _ = check_arrays(wave, np.atleast_2d(flux), np.atleast_2d(ivar), what="spectra",
                                    hint="Prepare them on the model's wavelength grid first (bayesslam.prepare).")
    return flux, ivar


def _bucket(n: int, chunk: int) -> int:
    """Compiled batch size for ``n <= chunk`` stars: ``MIN_BUCKET * 4**k`` or ``chunk`` (few compilations)."""
    size = MIN_BUCKET
    while size < n:
        size *= 4
    return max(1, min(size, chunk))


def _apply(fn: Callable[..., dict[str, Array]], state: dict[str, np.ndarray], stars: np.ndarray, flux: np.ndarray,
           w: np.ndarray, chunk: int, *args: Any, whole: bool = False) -> None:
    """Run ``fn(state, flux, w, *args)`` on ``stars`` in padded batches; write its outputs into ``state``.

    With ``whole`` (passes over all stars) every batch has the size of the first, so the
    compiled sizes do not depend on the number of stars.
    """
    for lo in range(0, stars.size, chunk):
        sel = stars[lo : lo + chunk]
        size = _bucket(min(stars.size, chunk) if whole else sel.size, chunk)
        pad = np.concatenate([sel, np.full(size - sel.size, sel[0])])  # repeats of one star, discarded
        out = jax.device_get(fn({key: value[pad] for key, value in state.items()}, flux[pad], w[pad], *args))
        for key, value in out.items():
            state[key][sel] = np.asarray(value)[: sel.size]


def _initial_state(solver: _Solver, index: np.ndarray, n_pix: int, skip: np.ndarray, max_iter: int) -> dict[str, np.ndarray]:
    """State of all stars at the scan's training labels ``solver.host.grid_labels[index]``."""
    start = solver.host.grid_labels[index]
    n_star, n_label = start.shape
    return dict(
        index=index,
        z=np.clip((start - solver.host.mean) / solver.host.scale, solver.host.z_lo, solver.host.z_hi),
        z_jac=np.zeros((n_star, n_label)),
        phi=np.zeros(n_star),
        chi2=np.zeros(n_star),
        g=np.zeros((n_star, n_label)),
        gauss_newton=np.zeros((n_star, n_label, n_label)),
        curvature=np.zeros((n_star, n_label, n_label)),
        model=np.zeros((n_star, n_pix)),
        lam=np.zeros(n_star),
        it=np.zeros(n_star, dtype=np.int32),
        limit=np.full(n_star, max_iter, dtype=np.int32),
        done=skip.copy(),
        converged=np.zeros(n_star, dtype=bool),
        skip=skip,
    )


@in_float64
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
    chunk_size: int = 64,
    progress: bool = False,
    laplace_correction: LaplaceCorrection | None = None,
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
        Most iterations per star (both precision stages together).
    xtol, ftol : float
        Convergence: an accepted step that moves every label by less than
        ``xtol`` of its Laplace sigma, or gains less than ``ftol`` (relative)
        in the objective.
    dtol : float
        Convergence: the gain a full Newton step would still bring (half the
        Newton decrement, in log-posterior units) is below ``dtol``. The last
        (float64) stage ends on these tests computed with the float64 gradient.
    chunk_size : int
        Most stars per compiled batch (a batch's working set should stay in
        the CPU caches; docs/benchmarks.md); batches of the still-active stars
        are padded to a power of four times 16, so there are few compilations.
    progress : bool
        Show a progress bar (stars done, per stage).
    laplace_correction : LaplaceCorrection, optional
        Widen each Laplace covariance by the model's own factors
        (:mod:`bayesslam.emulator.laplace_correction`; a model file's is
        ``SlamModel.laplace_correction``, which :mod:`bayesslam.pipeline`
        passes). Default: the plain Laplace covariance.

    Returns
    -------
    MapResult
    """
    flux, ivar = check_spectra(model, flux, ivar)
    prior = prior or default_prior(model)
    n_star, n_label = flux.shape[0], len(model.label_names)
    chunk = max(1, int(chunk_size))
    solver = _Solver(model, prior)
    w = np.asarray(_weights(jnp.asarray(ivar), jnp.asarray(model.model_variance)), dtype=float)
    n_good = np.sum(w > 0, axis=1)
    flux = np.where(w > 0, flux, 0.0)
    skip = n_good <= n_label
    everyone = np.arange(n_star)

    scan = {"index": np.zeros(n_star, dtype=np.int64)}
    _apply(solver.scan, scan, everyone, flux, w, chunk, whole=True)
    state = _initial_state(solver, scan["index"], flux.shape[1], skip, max_iter)
    start = solver.host.grid_labels[scan["index"]]
    with tqdm(total=n_star * len(solver.stages), disable=not progress, desc="MAP", unit="star") as bar:
        for number, stage in enumerate(solver.stages):
            stage_dtol = max(dtol, stage.dtol_floor)
            state["done"], state["converged"] = skip.copy(), np.zeros(n_star, dtype=bool)
            _apply(stage.start or stage.advance, state, everyone, flux, w, chunk, np.array([stage_dtol, xtol, ftol, 1.0]),
                   whole=True)
            settings = np.array([stage_dtol, xtol, ftol, 0.0])
            while True:
                finished = state["done"] | (state["it"] >= state["limit"])
                bar.update(number * n_star + int(finished.sum()) - bar.n)
                active = np.where(~finished)[0]
                if active.size == 0:
                    break
                _apply(stage.advance, state, active, flux, w, chunk, settings)
    # the Laplace covariance needs the Gauss-Newton matrix at the final labels: recompute it
    # where the float64 stage moved them by more than JACOBIAN_REFRESH sigma
    state["covariance"] = np.zeros((n_star, n_label, n_label))
    _apply(solver.covariance, state, everyone, flux, w, chunk, whole=True)
    sigma_z = np.sqrt(np.clip(np.diagonal(state["covariance"], axis1=1, axis2=2), 1e-300, None)) / solver.host.scale
    stale = np.where((np.max(np.abs(state["z"] - state["z_jac"]) / sigma_z, axis=1) > JACOBIAN_REFRESH) & ~skip)[0]
    if stale.size:
        # the first stage's start evaluation computes it (and the rest, in that stage's precision)
        again = {key: value[stale] for key, value in state.items()}
        again["done"][:] = False
        _apply(solver.stages[0].advance, again, np.arange(stale.size), flux[stale], w[stale], chunk,
               np.array([dtol, xtol, ftol, 1.0]))
        state["gauss_newton"][stale], state["z_jac"][stale] = again["gauss_newton"], again["z_jac"]
        _apply(solver.covariance, state, stale, flux, w, chunk)
    if laplace_correction is not None:
        state["covariance"] = laplace_correction.apply(state["covariance"])
    return _result(solver, model, state, start, n_good, skip)


def _result(solver: _Solver, model: ForwardModel, state: dict[str, np.ndarray], start: np.ndarray,
            n_good: np.ndarray, skip: np.ndarray) -> MapResult:
    n_star, n_label = start.shape
    cov = state["covariance"]
    sigma = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / (sigma[:, :, None] * sigma[:, None, :])
    z = state["z"]
    status = np.where(state["converged"], int(FitStatus.CONVERGED), int(FitStatus.MAX_ITER))
    finite = np.isfinite(state["phi"]) & np.all(np.isfinite(cov), axis=(1, 2))
    status = np.where(finite, status, int(FitStatus.NOT_FINITE))
    with np.errstate(invalid="ignore"):
        tol = 1e-9 * (solver.host.z_hi - solver.host.z_lo)
        at_bound = (z <= solver.host.z_lo + tol) | (z >= solver.host.z_hi - tol)
    result = MapResult(
        label_names=tuple(model.label_names),
        labels=np.array(solver.host.mean + solver.host.scale * z),
        covariance=cov,
        sigma=sigma,
        correlation=corr,
        chi2=np.array(state["chi2"], dtype=float),
        reduced_chi2=np.asarray(state["chi2"] / np.maximum(n_good - n_label, 1), dtype=float),
        n_good=n_good,
        model_flux=state["model"],
        start=start,
        status=status,
        n_iter=state["it"].astype(np.int64),
        at_bound=at_bound,
        log_posterior=-state["phi"],
    )
    if np.any(skip):
        logger.warning("%d star(s) have too few unmasked pixels to fit (status NO_DATA).", int(skip.sum()))
        result.status[skip] = FitStatus.NO_DATA
    # a star that could not be fitted gets no numbers that look like a measurement
    unfitted = (result.status == FitStatus.NO_DATA) | (result.status == FitStatus.NOT_FINITE)
    for values in (result.labels, result.sigma, result.covariance, result.correlation, result.chi2,
                   result.reduced_chi2):
        values[unfitted] = np.nan
    n_bad = int(np.sum(result.status != FitStatus.CONVERGED))
    if n_bad:
        logger.warning("%d of %d stars did not converge (see MapResult.status).", n_bad, n_star)
    return result


def fit_map_batch(model: ForwardModel, spectra: Any, **options: Any) -> MapResult:
    """:func:`fit_map` on a :class:`~bayesslam.spectra.SpectrumBatch` (normalized, on the model grid)."""
    return fit_map(model, spectra.flux, spectra.ivar, **options)

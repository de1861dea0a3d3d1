"""NUTS for many independent runs at once, scheduled one leapfrog step at a time.

Why this module exists: ``vmap`` over NumPyro's NUTS kernel runs a batch of
chains in lock-step. Each NUTS iteration builds a trajectory of a random
length (1 to 2**max_tree_depth leapfrog steps), and a vmapped ``while_loop``
runs until the longest lane is done, so every iteration costs the batch
maximum: on the default model most of the batched gradients are thrown
away (docs/sampling.md has the count).

Here every lane is a small state machine that advances by exactly **one
leapfrog step** per loop iteration: a lane whose trajectory ends makes its
transition (multinomial proposal, step-size and mass-matrix adaptation,
recording the draw) and starts its next trajectory at the next step, without
waiting for the others. A lane that finishes its run takes the next run
from a queue. The batched gradient is therefore (nearly) never wasted, and
it is still one matrix product over all lanes, which is what makes the
emulator cheap per star. When the queue is empty and lanes go idle, the
gradient runs on the smallest of a few batch sizes (halvings of the number
of lanes) that holds the lanes still busy, so the tail of a call costs less.

The algorithm is NumPyro's iterative NUTS (multinomial sampling, generalized
no-U-turn criterion with the sub-tree checks of the iterative builder,
biased progressive sampling between doublings), built from NumPyro's own
tree primitives (``numpyro.infer.hmc_util``; several are private, so a
NumPyro release that changes them fails ``tests/test_nuts.py``, written
against numpyro 0.22), and NumPyro's windowed
adaptation (dual averaging of the step size, diagonal Welford mass matrix (dense with ``dense_mass``),
Stan's windows). One difference: NumPyro re-runs its step-size search at the
end of each mass-matrix window; here the dual averaging restarts from the
current step size instead (the search would cost extra gradients for every
lane). Adaptation only affects warm-up, so the draws target the same
posterior. ``tests/test_nuts.py`` checks the draws against known Gaussian
moments and against NumPyro's NUTS.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import momentum_generator
from numpyro.infer.hmc_util import (
    IntegratorState,
    TreeInfo,
    _build_basetree,
    _combine_tree,
    _get_leaf,
    _is_iterative_turning,
    _leaf_idx_to_ckpt_idxs,
    euclidean_kinetic_energy,
    find_reasonable_step_size,
    warmup_adapter,
)

__all__ = ["MAX_DELTA_ENERGY", "NutsDraws", "bucket_sizes", "build_nuts_runner", "model_nuts_runner"]

#: Energy error beyond which a trajectory counts as divergent (NumPyro's default).
MAX_DELTA_ENERGY = 1000.0

#: Potential of one run: ``potential(z, data, shared) -> scalar`` with ``data`` that run's pytree of arrays
#: and ``shared`` the pytree shared by all runs (e.g. the emulator).
Potential = Callable[[jax.Array, Any], jax.Array]


class NutsDraws(NamedTuple):
    """Output of a runner from :func:`build_nuts_runner` (unconstrained coordinates).

    Attributes
    ----------
    z : numpy.ndarray, ``(n_run, num_samples, dim)``
    diverging : numpy.ndarray of bool, ``(n_run, num_samples)``
    num_steps : numpy.ndarray of int, ``(n_run, num_warmup + num_samples)``
        Leapfrog steps of every trajectory.
    step_size : numpy.ndarray, ``(n_run,)``
        Adapted step size.
    inverse_mass_matrix : numpy.ndarray, ``(n_run, dim)`` or ``(n_run, dim, dim)``
        Adapted inverse mass matrix (diagonal, or dense with ``dense_mass``).
    n_lockstep : int
        Loop iterations of the batch (each one batched leapfrog step); the
        efficiency is ``num_steps.sum() / (n_lockstep * n_lanes)``.
    gradient_batches : dict of int to int
        Loop iterations per size of the batched gradient (it shrinks as
        lanes go idle in the tail of a call).
    """

    z: np.ndarray
    diverging: np.ndarray
    num_steps: np.ndarray
    step_size: np.ndarray
    inverse_mass_matrix: np.ndarray
    n_lockstep: int
    gradient_batches: dict[int, int]


class _Lane(NamedTuple):
    run: jax.Array  # index of the run this lane works on
    active: jax.Array  # False once the queue is empty and the run is done
    it: jax.Array  # iteration of the run (warm-up + sampling)
    z: jax.Array
    pe: jax.Array
    grad: jax.Array
    adapt: Any  # numpyro HMCAdaptState
    tree: TreeInfo  # the trajectory being built
    sub: TreeInfo  # the sub-tree of the current doubling
    energy0: jax.Array
    going_right: jax.Array
    r_ckpts: jax.Array
    r_sum_ckpts: jax.Array
    fresh: jax.Array  # start a new trajectory at the next step
    key: jax.Array


class _Drift(NamedTuple):
    """What the first half of a leapfrog step hands to the second (around the batched gradient)."""

    r0: jax.Array  # momentum drawn for a new trajectory
    z_new: jax.Array  # position after the drift
    r_half: jax.Array  # momentum after the first half kick
    step: jax.Array  # signed step size
    k_sub: jax.Array
    k_tree: jax.Array
    k_dir2: jax.Array


def bucket_sizes(n_lanes: int, n_buckets: int = 5) -> tuple[int, ...]:
    """Batch sizes the gradient may shrink to as lanes go idle: ``n_lanes``, then halvings (at least 1)."""
    sizes = [n_lanes]
    while len(sizes) < n_buckets and sizes[-1] > 1:
        sizes.append(max(1, sizes[-1] // 2))
    return tuple(sizes)


def _where(mask: jax.Array, new: Any, old: Any) -> Any:
    """``where`` over two pytrees; ``mask`` indexes the leading axes of every leaf (a scalar: all of it)."""
    def pick(a, b):
        return jnp.where(jnp.reshape(mask, mask.shape + (1,) * (jnp.ndim(a) - mask.ndim)), a, b)

    return jax.tree.map(pick, new, old)


def _fresh_tree(z, r, grad, pe, energy):
    return TreeInfo(
        z, r, grad, z, r, grad, z, pe, grad, energy,
        depth=jnp.zeros((), jnp.result_type(int)), weight=jnp.zeros(()), r_sum=r,
        turning=jnp.array(False), diverging=jnp.array(False), sum_accept_probs=jnp.zeros(()),
        num_proposals=jnp.zeros((), jnp.result_type(int)),
    )


def build_nuts_runner(
    potential: Potential,
    *,
    num_warmup: int,
    num_samples: int,
    n_lanes: int,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
) -> Callable[..., NutsDraws]:
    """Compile NUTS for ``n_lanes`` lanes over a queue of independent runs.

    Parameters
    ----------
    potential : callable
        ``potential(z, data, shared)``: negative log density of one run at
        the unconstrained point ``z`` (``(dim,)``); ``data`` is that run's
        slice of the ``data`` pytree given to the runner and ``shared`` the
        runner's ``shared`` pytree (the same for all runs: pass the model
        here, so that one compiled runner serves every model of the same
        shapes). Must be differentiable in ``z``.
    num_warmup, num_samples : int
        Iterations per run.
    n_lanes : int
        Runs advanced together (one batched gradient per step).
    target_accept_prob, max_tree_depth
        NUTS settings (NumPyro's meaning).
    dense_mass : bool
        Adapt a dense mass matrix (NumPyro's windowed Welford covariance)
        instead of a diagonal one: for posteriors with strong linear
        correlations between the coordinates. The initial inverse mass
        matrix is still given as its diagonal.

    Returns
    -------
    callable
        ``runner(keys, z0, inverse_mass_matrix, data, n_valid, on_done=None, shared=None) -> NutsDraws``
        with ``keys (n_run,)``, ``z0 (n_run, dim)``,
        ``inverse_mass_matrix (n_run, dim)`` (initial diagonal), ``data``
        a pytree with leading axis ``n_run``, ``n_valid`` the number of runs
        to do (runs beyond it are padding and never started) and
        ``on_done(n)`` an optional host callback told how many runs just
        finished (for a progress bar).
    """
    total = num_warmup + num_samples
    kinetic = euclidean_kinetic_energy
    _, wa_update = warmup_adapter(num_warmup, find_reasonable_step_size=None, target_accept_prob=target_accept_prob,
                                  dense_mass=dense_mass)
    value_and_grad = jax.value_and_grad(potential)

    def init_run(key, z0, inverse_mass, data, shared):
        """Potential, gradient, step-size search and adaptation state of one run."""
        pe, grad = value_and_grad(z0, data, shared)
        pe_fn = lambda z: potential(z, data, shared)  # noqa: E731
        search = lambda step, imm, z_info, k: find_reasonable_step_size(  # noqa: E731
            pe_fn, kinetic, momentum_generator, step, imm, z_info, k
        )
        init, _ = warmup_adapter(num_warmup, find_reasonable_step_size=search, target_accept_prob=target_accept_prob,
                                 dense_mass=dense_mass)
        key, k_adapt = jax.random.split(key)
        imm0 = jnp.diag(inverse_mass) if dense_mass else inverse_mass
        adapt = init(IntegratorState(z0, None, pe, grad), k_adapt, inverse_mass_matrix=imm0)
        return pe, grad, adapt, key

    def new_lane(run, active, z0, pe, grad, adapt, key):
        zeros = jnp.zeros((max_tree_depth, z0.shape[0]))
        tree = _fresh_tree(z0, jnp.zeros_like(z0), grad, pe, pe)
        return _Lane(run, active, jnp.zeros((), jnp.result_type(int)), z0, pe, grad, adapt, tree, tree,
                     pe, jnp.array(True), zeros, zeros, jnp.array(True), key)

    def begin_step(lane: _Lane):
        """First half of one lane's leapfrog step: a new trajectory if due, and the drift to the new position."""
        key, k_mom, k_dir, k_sub, k_tree, k_dir2 = jax.random.split(lane.key, 6)
        adapt = lane.adapt
        imm = adapt.inverse_mass_matrix
        # a new trajectory: momentum, initial tree, direction of the first doubling
        r0 = momentum_generator(lane.z, adapt.mass_matrix_sqrt, k_mom)
        energy_new = lane.pe + kinetic(imm, r0)
        start = _fresh_tree(lane.z, r0, lane.grad, lane.pe, energy_new)
        tree = _where(lane.fresh, start, lane.tree)
        sub = _where(lane.fresh, start, lane.sub)
        energy0 = jnp.where(lane.fresh, energy_new, lane.energy0)
        going_right = jnp.where(lane.fresh, jax.random.bernoulli(k_dir), lane.going_right)
        zeros = jnp.zeros_like(lane.r_ckpts)
        r_ckpts = jnp.where(lane.fresh, zeros, lane.r_ckpts)
        r_sum_ckpts = jnp.where(lane.fresh, zeros, lane.r_sum_ckpts)
        lane = lane._replace(tree=tree, sub=sub, energy0=energy0, going_right=going_right, r_ckpts=r_ckpts,
                             r_sum_ckpts=r_sum_ckpts, key=key)
        # velocity Verlet up to the gradient at the new position (NumPyro's velocity_verlet)
        z, r, z_grad = _get_leaf(sub, going_right)
        step = jnp.where(going_right, adapt.step_size, -adapt.step_size)
        r_half = r - 0.5 * step * z_grad
        z_new = z + step * jax.grad(kinetic, argnums=1)(imm, r_half)
        return lane, _Drift(r0, z_new, r_half, step, k_sub, k_tree, k_dir2)

    def end_step(lane: _Lane, drift: _Drift, pe: jax.Array, z_grad: jax.Array):
        """Second half: the kick with the new gradient, the tree bookkeeping and whatever transition completes."""
        adapt = lane.adapt
        imm = adapt.inverse_mass_matrix
        tree, sub, going_right = lane.tree, lane.sub, lane.going_right
        r_ckpts, r_sum_ckpts = lane.r_ckpts, lane.r_sum_ckpts
        zeros = jnp.zeros_like(r_ckpts)
        landed = IntegratorState(drift.z_new, drift.r_half - 0.5 * drift.step * z_grad, pe, z_grad)

        # one leaf of the current sub-tree (NumPyro's _iterative_build_subtree body)
        z, r, leaf_grad = _get_leaf(sub, going_right)
        leaf = _build_basetree(lambda *_: landed, kinetic, z, r, leaf_grad, imm, adapt.step_size, going_right,
                               lane.energy0, MAX_DELTA_ENERGY)
        combined = _combine_tree(sub, leaf, imm, going_right, drift.k_sub, False)
        first = sub.num_proposals == 0
        new_sub = _where(first, leaf, combined)
        leaf_idx = sub.num_proposals
        idx_min, idx_max = _leaf_idx_to_ckpt_idxs(leaf_idx)
        even = leaf_idx % 2 == 0
        r_ckpts = jnp.where(even, r_ckpts.at[idx_max].set(leaf.r_right), r_ckpts)
        r_sum_ckpts = jnp.where(even, r_sum_ckpts.at[idx_max].set(new_sub.r_sum), r_sum_ckpts)
        sub_turning = _is_iterative_turning(imm, leaf.r_right, new_sub.r_sum, r_ckpts, r_sum_ckpts, idx_min, idx_max)
        sub_done = (new_sub.num_proposals >= 2**tree.depth) | sub_turning | new_sub.diverging

        # a finished sub-tree doubles the trajectory (biased progressive sampling)
        finished_sub = new_sub._replace(depth=tree.depth, turning=sub_turning)
        doubled = _combine_tree(tree, finished_sub, imm, going_right, drift.k_tree, True)
        tree = _where(sub_done, doubled, tree)
        done = sub_done & ((tree.depth >= max_tree_depth) | tree.turning | tree.diverging)
        sub = _where(sub_done, tree._replace(num_proposals=jnp.zeros_like(tree.num_proposals)), new_sub)
        going_right = jnp.where(sub_done, jax.random.bernoulli(drift.k_dir2), going_right)
        r_ckpts = jnp.where(sub_done, zeros, r_ckpts)
        r_sum_ckpts = jnp.where(sub_done, zeros, r_sum_ckpts)

        # a finished trajectory is one NUTS transition
        accept_prob = tree.sum_accept_probs / jnp.maximum(tree.num_proposals, 1)
        z_new = jnp.where(done, tree.z_proposal, lane.z)
        pe_new = jnp.where(done, tree.z_proposal_pe, lane.pe)
        grad_new = jnp.where(done, tree.z_proposal_grad, lane.grad)
        adapted = wa_update(lane.it, accept_prob, IntegratorState(z_new, drift.r0, pe_new, grad_new), adapt)
        adapt = _where(done & (lane.it < num_warmup), adapted, adapt)
        record = (done & lane.active, lane.it, z_new, tree.diverging, tree.num_proposals)
        it = lane.it + done.astype(lane.it.dtype)
        lane = _Lane(lane.run, lane.active, it, z_new, pe_new, grad_new, adapt, tree, sub, lane.energy0,
                     going_right, r_ckpts, r_sum_ckpts, done, lane.key)
        return lane, record

    sizes = bucket_sizes(n_lanes)

    def gradients(z, active, lane_data, shared):
        """Potential and gradient of the active lanes, computed on the smallest bucket of lanes that holds them.

        Lanes go idle only when the queue is empty (the tail of a call);
        there the batched gradient shrinks with them instead of costing a
        full batch. Idle lanes get zeros in a smaller bucket (they record
        nothing); the full batch takes every lane as it is, without gathers.
        """
        def on_bucket(size):
            def evaluate(z, active):
                if size == n_lanes:
                    return jax.vmap(value_and_grad, in_axes=(0, 0, None))(z, lane_data, shared)
                lanes_in = jnp.argsort(~active, stable=True)[:size]  # active lanes first
                pe, grad = jax.vmap(value_and_grad, in_axes=(0, 0, None))(
                    z[lanes_in], jax.tree.map(lambda a: a[lanes_in], lane_data), shared)
                return (jnp.zeros((n_lanes,), pe.dtype).at[lanes_in].set(pe),
                        jnp.zeros(z.shape, grad.dtype).at[lanes_in].set(grad))
            return evaluate

        branch = jnp.sum(jnp.asarray(sizes) >= jnp.sum(active)) - 1  # the smallest bucket that holds them
        return jax.lax.switch(branch, [on_bucket(size) for size in sizes], z, active), branch

    def runner(keys, z0, inverse_mass, data, shared, n_valid, on_done):
        n_run, dim = z0.shape
        pe0, grad0, adapt0, keys = jax.vmap(init_run, in_axes=(0, 0, 0, 0, None))(keys, z0, inverse_mass, data, shared)

        def start_lanes(runs, active):
            """Lanes at the first iteration of ``runs``."""
            return jax.vmap(new_lane)(runs, active, z0[runs], pe0[runs], grad0[runs],
                                      jax.tree.map(lambda a: a[runs], adapt0), keys[runs])

        lanes = start_lanes(jnp.arange(n_lanes) % n_run, jnp.arange(n_lanes) < n_valid)
        out = (
            jnp.zeros((n_run, num_samples, dim)),
            jnp.zeros((n_run, num_samples), bool),
            jnp.zeros((n_run, total), jnp.result_type(int)),
            jnp.zeros(n_run),
            jnp.zeros((n_run, dim, dim) if dense_mass else (n_run, dim)),
        )

        def take_next_runs(lanes, lane_data, next_run, finished):
            """Lanes whose run is complete take the next runs of the queue (or go idle when it is empty)."""
            new_run = next_run + jnp.cumsum(finished) - 1
            refill = finished & (new_run < n_valid)
            runs = jnp.where(refill, new_run, lanes.run)
            lanes = _where(refill, start_lanes(runs, jnp.ones(n_lanes, bool)), lanes)
            lane_data = _where(refill, jax.tree.map(lambda a: a[runs], data), lane_data)
            lanes = lanes._replace(active=jnp.where(finished & ~refill, False, lanes.active))
            return lanes, lane_data, next_run + jnp.sum(refill)

        def body(state):
            lanes, lane_data, next_run, out, n_step = state
            lanes, drift = jax.vmap(begin_step)(lanes)
            (pe, z_grad), branch = gradients(drift.z_new, lanes.active, lane_data, shared)
            lanes, (rec, it, z, div, steps) = jax.vmap(end_step)(lanes, drift, pe, z_grad)
            draws, diverging, num_steps, step_size, inverse_mass_out = out
            run = jnp.where(rec, lanes.run, n_run)  # n_run: dropped
            num_steps = num_steps.at[run, it].set(steps, mode="drop")
            kept = jnp.where(it >= num_warmup, run, n_run)
            draws = draws.at[kept, it - num_warmup].set(z, mode="drop")
            diverging = diverging.at[kept, it - num_warmup].set(div, mode="drop")
            # lanes whose run is complete report their adaptation and take the next run of the queue
            finished = lanes.active & (lanes.it >= total)
            done_run = jnp.where(finished, lanes.run, n_run)
            step_size = step_size.at[done_run].set(lanes.adapt.step_size, mode="drop")
            inverse_mass_out = inverse_mass_out.at[done_run].set(lanes.adapt.inverse_mass_matrix, mode="drop")
            n_finished = jnp.sum(finished)
            lanes, lane_data, next_run = jax.lax.cond(
                n_finished > 0, take_next_runs, lambda lanes, lane_data, next_run, _: (lanes, lane_data, next_run),
                lanes, lane_data, next_run, finished)
            jax.lax.cond(n_finished > 0, lambda n: jax.debug.callback(on_done, n), lambda n: None, n_finished)
            out = (draws, diverging, num_steps, step_size, inverse_mass_out)
            return lanes, lane_data, next_run, out, n_step.at[branch].add(1)

        first = jnp.arange(n_lanes) % n_run
        start = (lanes, jax.tree.map(lambda a: a[first], data), jnp.minimum(n_lanes, n_valid), out,
                 jnp.zeros(len(sizes), jnp.result_type(int)))
        _, _, _, out, n_step = jax.lax.while_loop(lambda s: jnp.any(s[0].active), body, start)
        return out, n_step

    progress: list[Callable[[int], None]] = [lambda n: None]
    compiled = jax.jit(lambda *a: runner(*a, lambda n: progress[0](int(n))))

    def run(keys, z0, inverse_mass, data, n_valid, on_done=None, shared=None) -> NutsDraws:
        progress[0] = on_done or (lambda n: None)
        try:
            (draws, diverging, num_steps, step_size, imm), n_step = compiled(keys, z0, inverse_mass, data, shared, n_valid)
        finally:
            progress[0] = lambda n: None
        return NutsDraws(np.asarray(draws), np.asarray(diverging), np.asarray(num_steps), np.asarray(step_size),
                         np.asarray(imm), int(np.sum(n_step)), dict(zip(sizes, np.asarray(n_step).tolist())))

    return run


def model_nuts_runner(
    model: Callable[..., None],
    example_args: tuple[Any, ...],
    init_strategy: Callable[..., Any],
    *,
    num_warmup: int,
    num_samples: int,
    n_lanes: int,
    target_accept_prob: float = 0.8,
) -> tuple[Callable[..., NutsDraws], np.ndarray, Callable[[jax.Array], Any], dict[str, Any]]:
    """:func:`build_nuts_runner` on a NumPyro model whose arguments are each run's data.

    ``model(*args)`` is a plain NumPyro model; every run gets its own
    ``args`` (the runner's ``data``, leading axis the run), of the shapes of
    ``example_args``. The sites' transforms must not depend on the data.

    Returns
    -------
    (runner, z0, unravel, postprocess)
        The runner; the starting point of ``init_strategy``, unconstrained
        and flat; ``unravel`` (flat -> the sites' unconstrained values) and
        ``postprocess`` (those -> every site, deterministic ones included,
        constrained), both to be vmapped over draws.
    """
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import initialize_model, potential_energy

    info, _, postprocess, _ = initialize_model(jax.random.key(0), model, model_args=example_args,
                                               init_strategy=init_strategy, dynamic_args=True)
    flat, unravel = ravel_pytree(info.z)

    def potential(z: jax.Array, data: tuple[Any, ...], shared: Any) -> jax.Array:
        return potential_energy(model, data, {}, unravel(z))

    runner = build_nuts_runner(potential, num_warmup=num_warmup, num_samples=num_samples, n_lanes=n_lanes,
                               target_accept_prob=target_accept_prob)
    return runner, np.asarray(flat), unravel, postprocess(*example_args)

"""The lane-scheduled NUTS of bayesslam.infer.nuts: correct draws, one run independent of its lane-mates, busy lanes."""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS

from bayesslam.infer.nuts import bucket_sizes, build_nuts_runner

SCALES = np.array([1.0, 0.05, 4.0])


def gaussian(z, data, shared):
    del shared
    mu, scale = data
    return 0.5 * jnp.sum(((z - mu) / scale) ** 2)


def banana(z, data, shared):
    """x ~ N(0, 1), y | x ~ N(x**2 / 2, 0.5**2): E[y] = 0.5, Var[y] = 0.75, a curved target."""
    del data, shared
    x, y = z[0], z[1]
    return 0.5 * x**2 + 0.5 * ((y - 0.5 * x**2) / 0.5) ** 2


def _gaussian_runs(n_run: int, seed: int):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n_run, 3))
    scale = SCALES * rng.uniform(0.5, 2.0, size=(n_run, 1))  # heterogeneous runs: different tree sizes
    return jnp.asarray(mu), jnp.asarray(scale)


def _moment_z_scores(draws: np.ndarray, mean: np.ndarray, sd: np.ndarray, n_eff: float) -> np.ndarray:
    """z-scores of the sample mean and sample sd of ``(n_run, n_draw, dim)`` draws pooled over runs."""
    std = (draws - mean[:, None]) / sd[:, None]
    pooled = std.reshape(-1, std.shape[-1])
    z_mean = pooled.mean(0) / np.sqrt(1.0 / n_eff)
    z_sd = (pooled.std(0) - 1.0) / np.sqrt(0.5 / n_eff)
    return np.concatenate([z_mean, z_sd])


@pytest.fixture(scope="module")
def gaussian_draws():
    n_run = 24
    mu, scale = _gaussian_runs(n_run, 0)
    runner = build_nuts_runner(gaussian, num_warmup=300, num_samples=600, n_lanes=4)
    keys = jax.random.split(jax.random.key(0), n_run)
    done = []
    out = runner(keys, mu + 0.3 * scale, jnp.ones((n_run, 3)), (mu, scale), n_run, on_done=done.append)
    return out, np.asarray(mu), np.asarray(scale), done


def test_draws_have_the_targets_moments(gaussian_draws):
    out, mu, scale, _ = gaussian_draws
    # NUTS draws of a Gaussian are nearly independent; a conservative ESS of half the draws
    n_eff = 0.5 * out.z.shape[0] * out.z.shape[1]
    z = _moment_z_scores(out.z, mu, scale, n_eff)
    assert np.all(np.abs(z) < 4.0), z
    assert out.diverging.sum() == 0
    # the adapted inverse mass matrix is the target's variance (within the noise of 300 warm-up
    # iterations and the Welford shrinkage towards 1e-3)
    ratio = out.inverse_mass_matrix / scale**2
    assert np.all((ratio > 0.4) & (ratio < 2.0)), ratio


def test_negative_control_wrong_target_fails_the_moment_check(gaussian_draws):
    out, mu, scale, _ = gaussian_draws
    n_eff = 0.5 * out.z.shape[0] * out.z.shape[1]
    z = _moment_z_scores(out.z, mu, 1.1 * scale, n_eff)  # a 10% wider target than the one sampled
    assert np.max(np.abs(z)) > 4.0


def test_every_run_done_once_and_lanes_kept_busy(gaussian_draws):
    out, *_ , done = gaussian_draws
    n_run, total = out.num_steps.shape
    assert sum(done) == n_run
    assert np.all(out.num_steps >= 1)
    used = out.num_steps.sum() / (out.n_lockstep * 4)
    # vmapped NUTS in lock-step uses ~30-45% of its lanes on targets like these
    assert used > 0.85, used
    # in the tail (queue empty) the gradient ran on fewer lanes than the batch
    assert sum(out.gradient_batches.values()) == out.n_lockstep
    assert 0 < out.gradient_batches[4] < out.n_lockstep
    assert sum(out.gradient_batches[size] for size in (2, 1)) > 0


def test_gradient_batch_sizes_halve_down_to_one():
    assert bucket_sizes(128) == (128, 64, 32, 16, 8)
    assert bucket_sizes(5) == (5, 2, 1)
    assert bucket_sizes(1) == (1,)


def test_a_run_does_not_depend_on_its_lane_mates_or_padding():
    n_run = 6
    mu, scale = _gaussian_runs(n_run, 1)
    keys = jax.random.split(jax.random.key(3), n_run)
    z0 = mu + 0.1
    a = build_nuts_runner(gaussian, num_warmup=50, num_samples=50, n_lanes=2)(
        keys, z0, jnp.ones((n_run, 3)), (mu, scale), n_run)
    b = build_nuts_runner(gaussian, num_warmup=50, num_samples=50, n_lanes=5)(
        keys, z0, jnp.ones((n_run, 3)), (mu, scale), n_run - 2)
    np.testing.assert_allclose(a.z[: n_run - 2], b.z[: n_run - 2], rtol=1e-12, atol=1e-12)
    assert np.all(b.num_steps[n_run - 2:] == 0)  # padding runs are never started


@pytest.mark.slow
def test_curved_target_agrees_with_numpyro_nuts():
    """Moments and quantiles of a banana are right, and trajectories are as long as NumPyro's NUTS makes them."""
    n_run = 16
    runner = build_nuts_runner(banana, num_warmup=500, num_samples=2000, n_lanes=8)
    out = runner(jax.random.split(jax.random.key(5), n_run), jnp.zeros((n_run, 2)), jnp.ones((n_run, 2)),
                 jnp.zeros(n_run), n_run)
    # runs as arviz chains: the Monte Carlo standard errors include the disagreement between runs
    # (now and then a run lingers in the banana's curved tail, and its draws are worth less)
    y = np.asarray(out.z[..., 1], dtype=float)
    assert abs(y.mean() - 0.5) < 4 * float(az.mcse(y, method="mean"))
    assert abs(y.std() - np.sqrt(0.75)) < 4 * float(az.mcse(y, method="sd"))
    mcmc = MCMC(NUTS(potential_fn=lambda z: banana(z, None, None)), num_warmup=500, num_samples=8000, progress_bar=False)
    mcmc.run(jax.random.key(6), init_params=jnp.zeros(2), extra_fields=("num_steps",))
    ours = out.num_steps[:, 500:].mean()
    theirs = float(np.mean(mcmc.get_extra_fields()["num_steps"]))
    assert abs(ours / theirs - 1) < 0.15, (ours, theirs)
    # exact quantiles of y (10^7 direct draws): median 0.369, 90% 1.532
    for prob, exact in ((0.5, 0.369), (0.9, 1.532)):
        assert abs(np.quantile(y, prob) - exact) < 4 * float(az.mcse(y, method="quantile", prob=prob)) + 0.01

"""Tests of bayesslam.train.batched_svr against libsvm (scikit-learn's SVR) on small problems."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVR

from bayesslam.errors import BayesSlamError
from bayesslam.train.batched_svr import (
    BatchedSVRError,
    KernelSpectrum,
    kkt_violation,
    libsvm_intercept,
    rbf_kernel_matrix,
    solve_svr_batch,
)

GAMMA = 0.5


def problem(rng: np.random.Generator, n: int = 90, n_pix: int = 6, noise: float = 0.3):
    """Standardized 4-label inputs and standardized targets: smooth functions plus noise."""
    x = rng.normal(size=(n, 4))
    weights = rng.normal(size=(4, n_pix))
    y = np.tanh(x @ weights / 2.0) + 0.3 * np.sin(x[:, :1] * np.arange(1, n_pix + 1)) + noise * rng.normal(size=(n, n_pix))
    y = (y - y.mean(axis=0)) / y.std(axis=0)
    return x, y


@pytest.fixture(scope="module")
def small():
    x, y = problem(np.random.default_rng(0))
    return x, y, KernelSpectrum.rbf(x, GAMMA)


def dual_objective(K, y, beta, eps):
    return 0.5 * beta @ K @ beta - y @ beta + eps * np.abs(beta).sum()


def libsvm(K, y, C, eps, tol=1e-3):
    svr = SVR(kernel="precomputed", C=C, epsilon=eps, tol=tol).fit(K, y)
    beta = np.zeros(len(y))
    beta[svr.support_] = svr.dual_coef_[0]
    return beta, float(svr.intercept_[0])


@pytest.mark.parametrize("C", [2.0**-5, 1.0, 2.0**5])
@pytest.mark.parametrize("eps", [0.01, 0.15])
def test_tight_solution_is_libsvms(small, C, eps):
    """At a tight tolerance both solvers find the same optimum: objective, support set, predictions."""
    x, y, spectrum = small
    K = spectrum.kernel
    solution = solve_svr_batch(spectrum, y, C, eps, tol=1e-7, dtype=np.float64, max_iter=200000)
    assert solution.converged.all()
    for j in range(y.shape[1]):
        beta_ref, b_ref = libsvm(K, y[:, j], C, eps, tol=1e-9)
        beta = solution.beta[:, j]
        obj, obj_ref = dual_objective(K, y[:, j], beta, eps), dual_objective(K, y[:, j], beta_ref, eps)
        assert obj == pytest.approx(obj_ref, rel=1e-7, abs=1e-9)
        # support sets agree away from ties (|beta| within 1e-5 C of 0 or C can go either way)
        clear = (np.abs(np.abs(beta_ref) - C) > 1e-5 * C) & (np.abs(beta_ref) > 1e-5 * C)
        clear |= np.abs(beta_ref) > C * (1 - 1e-9)
        assert np.array_equal(np.abs(beta[clear]) >= C * (1 - 1e-6), np.abs(beta_ref[clear]) >= C * (1 - 1e-6))
        assert np.array_equal(beta[clear] != 0, beta_ref[clear] != 0)
        np.testing.assert_allclose(K @ beta + solution.intercept[j], K @ beta_ref + b_ref, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_tolerance_meets_libsvms_stopping_rule(small, dtype):
    """The returned solution satisfies libsvm's KKT test at tol, the box and sum constraints exactly."""
    x, y, spectrum = small
    C = np.array([0.03125, 0.25, 1.0, 4.0, 16.0, 32.0])
    eps = np.array([0.01, 0.05, 0.1, 0.15, 0.05, 0.01])
    solution = solve_svr_batch(spectrum, y, C, eps, dtype=dtype)
    gap = kkt_violation(spectrum.kernel, y, solution.beta, C, eps)
    assert solution.converged.all()
    np.testing.assert_allclose(gap, solution.violation, atol=1e-12)
    assert np.all(gap < 1e-3)
    assert np.all(np.abs(solution.beta) <= C + 1e-15)
    assert np.all(np.abs(solution.beta.sum(axis=0)) < 1e-9 * C * len(y))
    # predictions within libsvm's own tolerance-level differences
    for j in range(y.shape[1]):
        beta_ref, b_ref = libsvm(spectrum.kernel, y[:, j], C[j], eps[j])
        pred = spectrum.kernel @ solution.beta[:, j] + solution.intercept[j]
        assert np.max(np.abs(pred - (spectrum.kernel @ beta_ref + b_ref))) < 5e-3


def test_negative_control_far_from_optimum_fails_the_kkt_test(small):
    """kkt_violation must reject non-optimal points: zero, a sign-flipped and an early-stopped solution."""
    x, y, spectrum = small
    K = spectrum.kernel
    beta_ref, _ = libsvm(K, y[:, 0], 1.0, 0.05, tol=1e-8)
    assert kkt_violation(K, y[:, 0], beta_ref, 1.0, 0.05)[0] < 1e-6
    assert kkt_violation(K, y[:, 0], np.zeros_like(beta_ref), 1.0, 0.05)[0] > 1.0
    assert kkt_violation(K, y[:, 0], -beta_ref, 1.0, 0.05)[0] > 1.0
    early = solve_svr_batch(spectrum, y[:, :1], 1.0, 0.05, tol=1e-3, max_iter=10)
    assert not early.converged[0] and early.violation[0] > 1e-3


def test_intercept_is_libsvms(small):
    x, y, spectrum = small
    K = spectrum.kernel
    for C, eps in [(1.0, 0.05), (32.0, 0.01), (0.03125, 0.15)]:
        svr = SVR(kernel="precomputed", C=C, epsilon=eps, tol=1e-3).fit(K, y[:, 1])
        beta = np.zeros(len(y))
        beta[svr.support_] = svr.dual_coef_[0]
        h = (y[:, 1] - K @ beta)[:, None]
        b = libsvm_intercept(beta[:, None], h, np.array([C]), np.array([eps]), np.ones_like(h, dtype=bool))
        assert b[0] == pytest.approx(svr.intercept_[0], abs=1e-7)  # libsvm accumulates its gradient


def test_masked_stars_are_dropped_rows(small):
    """A star excluded from a pixel gets beta = 0, and the fit equals the fit without its row."""
    x, y, spectrum = small
    rng = np.random.default_rng(1)
    mask = rng.random(y.shape) > 0.15
    solution = solve_svr_batch(spectrum, y, 1.0, 0.05, mask=mask, tol=1e-7, dtype=np.float64, max_iter=200000)
    assert np.all(solution.beta[~mask] == 0)
    for j in range(y.shape[1]):
        rows = np.flatnonzero(mask[:, j])
        sub = solve_svr_batch(KernelSpectrum.rbf(x[rows], GAMMA), y[rows, j], 1.0, 0.05, tol=1e-7,
                              dtype=np.float64, max_iter=200000)
        np.testing.assert_allclose(solution.beta[rows, j], sub.beta[:, 0], atol=1e-5)
        assert solution.intercept[j] == pytest.approx(sub.intercept[0], abs=1e-5)


def test_heavily_masked_pixel_is_solved_on_its_own_stars():
    """A pixel with few usable stars (the restricted path) agrees with libsvm on those stars."""
    rng = np.random.default_rng(2)
    x, y = problem(rng, n=200, n_pix=3)
    spectrum = KernelSpectrum.rbf(x, GAMMA)
    mask = np.ones(y.shape, dtype=bool)
    mask[rng.permutation(200)[:185], 0] = False  # 15 usable stars
    mask[rng.permutation(200)[:120], 1] = False  # 80 usable stars (shared path)
    solution = solve_svr_batch(spectrum, y, 2.0, 0.05, mask=mask)
    assert solution.converged.all()
    assert solution.n_iter[0] < 400
    for j in (0, 1):
        rows = np.flatnonzero(mask[:, j])
        K = rbf_kernel_matrix(x[rows], x[rows], GAMMA)
        beta_ref, b_ref = libsvm(K, y[rows, j], 2.0, 0.05)
        pred = K @ solution.beta[rows, j] + solution.intercept[j]
        assert np.max(np.abs(pred - (K @ beta_ref + b_ref))) < 5e-3


def test_edge_cases_behave_as_libsvm(small):
    """A constant pixel, a pixel with two usable stars, one with a single star, C at the grid's ends."""
    x, y, spectrum = small
    n = len(y)
    targets = np.column_stack([np.zeros(n), y[:, 0], y[:, 1], y[:, 2], y[:, 3]])
    mask = np.ones(targets.shape, dtype=bool)
    mask[2:, 1] = False  # two usable stars
    mask[1:, 2] = False  # one usable star: nothing to optimize
    C = np.array([1.0, 1.0, 1.0, 2.0**-5, 2.0**5])
    solution = solve_svr_batch(spectrum, targets, C, 0.1, mask=mask)
    assert solution.converged.all()
    # constant pixel: all stars inside the tube, beta = 0, intercept 0 (libsvm gives the same)
    beta_ref, b_ref = libsvm(spectrum.kernel, np.zeros(n), 1.0, 0.1)
    assert np.all(solution.beta[:, 0] == 0) and np.all(beta_ref == 0)
    assert solution.intercept[0] == pytest.approx(b_ref, abs=1e-12)
    # two stars: libsvm's solution on those two rows
    K2 = spectrum.kernel[:2, :2]
    beta_ref, b_ref = libsvm(K2, targets[:2, 1], 1.0, 0.1)
    np.testing.assert_allclose(K2 @ solution.beta[:2, 1] + solution.intercept[1], K2 @ beta_ref + b_ref, atol=2e-3)
    # one star: beta = 0, gap -inf (nothing to optimize), intercept 0
    assert np.all(solution.beta[:, 2] == 0) and solution.violation[2] == -np.inf
    for j in (3, 4):
        beta_ref, b_ref = libsvm(spectrum.kernel, targets[:, j], C[j], 0.1)
        pred = spectrum.kernel @ solution.beta[:, j] + solution.intercept[j]
        assert np.max(np.abs(pred - (spectrum.kernel @ beta_ref + b_ref))) < 5e-3


def test_warm_start_and_state(small):
    x, y, spectrum = small
    cold, state = solve_svr_batch(spectrum, y, 2.0, 0.05, return_state=True)
    warm = solve_svr_batch(spectrum, y, 2.0, 0.05, warm_start=state)
    assert warm.converged.all() and np.all(warm.n_iter <= cold.n_iter)
    np.testing.assert_allclose(spectrum.kernel @ warm.beta, spectrum.kernel @ cold.beta, atol=5e-3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"C": -1.0}, "C must be finite and positive"),
        ({"epsilon": np.zeros(6)}, "epsilon must be finite and positive"),
        ({"C": np.ones(3)}, r"C must be a scalar or an array of shape \(6,\)"),
        ({"tol": 0.0}, "tol must be positive"),
        ({"dtype": np.float16}, "dtype must be float32 or float64"),
        ({"mask": np.ones((5, 6), bool)}, "mask must have shape"),
    ],
)
def test_bad_input_raises_named_errors(small, kwargs, message):
    x, y, spectrum = small
    args = {"C": 1.0, "epsilon": 0.1, **kwargs}
    with pytest.raises(BatchedSVRError, match=message):
        solve_svr_batch(spectrum, y, args.pop("C"), args.pop("epsilon"), **args)


def test_bad_targets_and_kernels_raise_named_errors(small):
    x, y, spectrum = small
    bad = y.copy()
    bad[3, 1] = np.nan
    with pytest.raises(BatchedSVRError, match="non-finite values at usable stars"):
        solve_svr_batch(spectrum, bad, 1.0, 0.1)
    mask = np.ones(y.shape, dtype=bool)
    mask[3, 1] = False
    assert solve_svr_batch(spectrum, bad, 1.0, 0.1, mask=mask).converged.all()  # masked NaN is fine
    with pytest.raises(BatchedSVRError, match="rows"):
        solve_svr_batch(spectrum, y[:10], 1.0, 0.1)
    with pytest.raises(BatchedSVRError, match="square"):
        KernelSpectrum.from_kernel(np.ones((3, 4)))
    with pytest.raises(BayesSlamError):
        KernelSpectrum.from_kernel(np.full((3, 3), np.nan))


def test_truncated_spectrum_solves_a_nearby_problem():
    """Dropping eigenvalues below 1e-8 of the largest barely moves the solution (the CV kernels do this)."""
    x, y = problem(np.random.default_rng(3), n=240, n_pix=4)
    spectrum = KernelSpectrum.rbf(x, 0.2)
    truncated = spectrum.truncated(1e-8, multiple=1)
    assert truncated.rank < spectrum.n == truncated.n
    assert np.linalg.norm(truncated.kernel - spectrum.kernel, 2) <= 1e-8 * spectrum.values.max() * (1 + 1e-6)
    assert spectrum.truncated(0.0) is spectrum
    assert truncated.rank == np.sum(spectrum.values > 1e-8 * spectrum.values.max())
    # the rank is rounded up to the multiple (here the full rank: no truncation), keeping the largest eigenvalues
    rounded = spectrum.truncated(1e-4, multiple=16)
    assert rounded.rank % 16 == 0 and rounded.rank >= np.sum(spectrum.values > 1e-4 * spectrum.values.max())
    np.testing.assert_array_equal(np.sort(rounded.values), np.sort(spectrum.values)[-rounded.rank:])
    assert spectrum.truncated(1e-8, multiple=spectrum.n) is spectrum
    for C in (2.0**-5, 1.0, 2.0**5):
        exact = solve_svr_batch(spectrum, y, C, 0.05, tol=1e-6, dtype=np.float64, max_iter=200000)
        near = solve_svr_batch(truncated, y, C, 0.05, tol=1e-6, dtype=np.float64, max_iter=200000)
        assert near.converged.all()
        np.testing.assert_allclose(spectrum.kernel @ near.beta + near.intercept,
                                   spectrum.kernel @ exact.beta + exact.intercept, atol=1e-4)

"""Tests of bayesslam.emulator: exact against scikit-learn, differentiable, jit/vmap-safe."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from sklearn.svm import SVR

from bayesslam.emulator import (
    Emulator,
    EmulatorError,
    build_emulator,
    flux_and_jacobian,
    flux_grouped,
    flux_plain,
    label_jacobian,
    least_squares_terms,
)
from bayesslam.train import SlamTrainer

LABEL_NAMES = ("teff", "logg", "fe_h", "alpha_m")
GAMMAS = (0.1, 0.3, 1.0)


@pytest.fixture(scope="module", autouse=True)
def _in_float64(x64):
    """The tests here build JAX arrays and emulators themselves: 64 bits for them (see conftest.x64)."""


def training_set(rng: np.random.Generator, n_star: int = 60, n_pix: int = 20, noise: float = 0.01):
    """Smooth nonlinear functions of 4 M-dwarf-like labels plus Gaussian noise."""
    labels = np.column_stack([
        rng.uniform(3100.0, 3900.0, n_star),
        rng.uniform(4.45, 4.95, n_star),
        rng.uniform(-0.6, 0.5, n_star),
        rng.uniform(-0.05, 0.2, n_star),
    ])
    z = (labels - labels.mean(axis=0)) / labels.std(axis=0)
    weights = rng.normal(size=(n_pix, 4))
    depth = rng.uniform(0.05, 0.4, n_pix)
    flux = 1.0 - depth * np.tanh(np.abs(z @ weights.T)) + 0.03 * np.cos(z[:, [2]] + z[:, [0]])
    return labels, flux + rng.normal(0.0, noise, flux.shape), np.full(flux.shape, 1.0 / noise**2)


@pytest.fixture(scope="module")
def bank(x64):
    """An SVR per pixel fitted directly with scikit-learn, gammas cycling over three values."""
    labels, flux, _ = training_set(np.random.default_rng(7))
    mean, scale = labels.mean(axis=0), labels.std(axis=0)
    x = (labels - mean) / scale
    n_pix = flux.shape[1]
    svrs, dual = [], np.zeros((n_pix, len(labels)))
    flux_mean, flux_scale = flux.mean(axis=0), flux.std(axis=0)
    gamma = np.array([GAMMAS[j % 3] for j in range(n_pix)])
    intercept = np.empty(n_pix)
    for j in range(n_pix):
        svr = SVR(C=2.0 ** (j % 4), epsilon=0.05, gamma=gamma[j]).fit(x, (flux[:, j] - flux_mean[j]) / flux_scale[j])
        svrs.append(svr)
        dual[j, svr.support_] = svr.dual_coef_[0]
        intercept[j] = svr.intercept_[0]
    emulator = build_emulator(
        dual_coef=dual, intercept=intercept, gamma=gamma, train_x=x, label_mean=mean, label_scale=scale,
        flux_mean=flux_mean, flux_scale=flux_scale, model_variance=np.full(n_pix, 1e-4),
        wave=np.linspace(6000.0, 9000.0, n_pix), training_labels=labels, label_names=LABEL_NAMES,
        label_units=("K", "dex", "dex", "dex"),
    )
    return emulator, svrs, labels, (mean, scale, flux_mean, flux_scale)


def _sklearn_flux(svrs, scalers, thetas: np.ndarray) -> np.ndarray:
    mean, scale, flux_mean, flux_scale = scalers
    z = (thetas - mean) / scale
    return np.column_stack([flux_mean[j] + flux_scale[j] * svr.predict(z) for j, svr in enumerate(svrs)])


def _thetas(labels: np.ndarray, rng: np.random.Generator, n: int = 25) -> np.ndarray:
    lo, hi = labels.min(axis=0), labels.max(axis=0)
    span = hi - lo
    return rng.uniform(lo - 0.2 * span, hi + 0.2 * span, size=(n, labels.shape[1]))


def test_matches_svr_predict(bank):
    emulator, svrs, labels, scalers = bank
    assert emulator.group_sizes == (7, 7, 6)
    thetas = np.vstack([_thetas(labels, np.random.default_rng(0)), labels[:5]])
    expected = _sklearn_flux(svrs, scalers, thetas)
    jitted = jax.jit(emulator)
    single = np.stack([np.asarray(jitted(theta)) for theta in thetas])
    np.testing.assert_allclose(single, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(emulator(thetas)), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(flux_plain(emulator, thetas)), expected, rtol=0, atol=1e-10)


def test_trained_bank_matches_svr_predict():
    labels, flux, ivar = training_set(np.random.default_rng(11))
    ivar[[2, 9], 4] = 0.0
    grid = {"C": [0.5, 4.0], "epsilon": [0.05], "gamma": list(GAMMAS)}
    model = SlamTrainer(grid, n_folds=5, progress=False).fit(labels, flux, ivar, label_names=LABEL_NAMES,
                                                            wave=np.linspace(6000.0, 9000.0, flux.shape[1]))
    emulator = model.to_emulator()
    assert emulator.dtype == np.float64
    thetas = _thetas(labels, np.random.default_rng(1))
    z = (thetas - model.label_mean_) / model.label_scale_
    got = np.asarray(emulator(thetas))
    for j in range(flux.shape[1]):
        used = ivar[:, j] > 0
        y = (flux[used, j] - model.flux_mean_[j]) / model.flux_scale_[j]
        svr = SVR(C=model.C_[j], epsilon=model.epsilon_[j], gamma=model.gamma_[j]).fit(model.train_x_[used], y)
        np.testing.assert_allclose(got[:, j], model.flux_mean_[j] + model.flux_scale_[j] * svr.predict(z),
                                   rtol=0, atol=1e-10)


def test_jit_and_vmap_give_the_same_values(bank):
    emulator, _, labels, _ = bank
    thetas = jnp.asarray(_thetas(labels, np.random.default_rng(2)))
    eager = np.stack([np.asarray(emulator(theta)) for theta in thetas[:3]])
    np.testing.assert_allclose(np.asarray(jax.jit(emulator)(thetas[0])), eager[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.asarray(jax.vmap(emulator)(thetas))[:3], eager, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.asarray(emulator(thetas))[:3], eager, rtol=1e-13, atol=1e-13)
    as_argument = jax.jit(lambda em, theta: em(theta))
    np.testing.assert_allclose(np.asarray(as_argument(emulator, thetas[1])), eager[1], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(emulator))(thetas))[:3], eager, rtol=1e-13, atol=1e-13)


def test_gradients_check_grads(bank):
    emulator, _, labels, _ = bank
    mean, scale = labels.mean(axis=0), labels.std(axis=0)

    def in_standard_units(z):
        """The emulator with labels in units of their training spread (even finite-difference steps)."""
        return emulator(mean + scale * z)

    z = jnp.asarray([0.1, -0.3, 0.5, 0.2])
    check_grads(jax.jit(in_standard_units), (z,), order=2, modes=("fwd", "rev"))
    check_grads(jax.jit(emulator), (mean + scale * z,), order=1, modes=("fwd", "rev"))
    check_grads(jax.jit(lambda t: flux_plain(emulator, mean + scale * t)), (z,), order=1)


def test_jacobian_matches_finite_differences(bank):
    emulator, svrs, labels, scalers = bank
    theta = labels[3] + 0.05 * labels.std(axis=0)
    jac = np.asarray(jax.jit(jax.jacfwd(emulator))(jnp.asarray(theta)))
    assert jac.shape == (emulator.n_pixels, emulator.n_labels)
    np.testing.assert_allclose(np.asarray(jax.jit(jax.jacrev(emulator))(jnp.asarray(theta))), jac,
                               rtol=1e-10, atol=1e-12)
    step = 1e-5 * labels.std(axis=0)
    for k in range(4):
        delta = np.zeros(4)
        delta[k] = step[k]
        difference = (_sklearn_flux(svrs, scalers, (theta + delta)[None])[0]
                      - _sklearn_flux(svrs, scalers, (theta - delta)[None])[0])
        np.testing.assert_allclose(2 * step[k] * jac[:, k], difference, rtol=1e-5, atol=1e-13)


def test_grad_of_a_scalar_loss(bank):
    emulator, _, labels, _ = bank
    target = np.asarray(emulator(labels[0]))

    def loss(theta):
        return jnp.sum((emulator(theta) - target) ** 2)

    assert np.allclose(np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(labels[0]))), 0.0, atol=1e-12)
    hessian = np.asarray(jax.jit(jax.hessian(loss))(jnp.asarray(labels[1])))
    assert np.all(np.isfinite(hessian)) and np.allclose(hessian, hessian.T, rtol=1e-10, atol=0)


def test_flux_and_jacobian_match_jacfwd_and_finite_differences(bank):
    emulator, svrs, labels, scalers = bank
    thetas = _thetas(labels, np.random.default_rng(4), n=6)
    flux, jac = jax.jit(emulator.value_and_jacobian)(jnp.asarray(thetas))
    assert flux.shape == (6, emulator.n_pixels) and jac.shape == (6, emulator.n_pixels, emulator.n_labels)
    np.testing.assert_allclose(np.asarray(flux), np.asarray(emulator(thetas)), rtol=0, atol=1e-12)
    expected = np.asarray(jax.vmap(jax.jacfwd(emulator))(jnp.asarray(thetas)))
    np.testing.assert_allclose(np.asarray(jac), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(label_jacobian(emulator, thetas)), expected, rtol=1e-10, atol=1e-12)
    one_flux, one_jac = flux_and_jacobian(emulator, thetas[0])
    assert one_flux.shape == (emulator.n_pixels,) and one_jac.shape == (emulator.n_pixels, emulator.n_labels)
    step = 1e-5 * labels.std(axis=0)
    for k in range(emulator.n_labels):
        delta = np.zeros(emulator.n_labels)
        delta[k] = step[k]
        difference = (_sklearn_flux(svrs, scalers, (thetas[0] + delta)[None])[0]
                      - _sklearn_flux(svrs, scalers, (thetas[0] - delta)[None])[0])
        np.testing.assert_allclose(2 * step[k] * np.asarray(one_jac[:, k]), difference, rtol=1e-5, atol=1e-13)


def test_weighted_flux_derivatives_match_autodiff(bank):
    emulator, _, labels, _ = bank
    rng = np.random.default_rng(5)
    thetas = jnp.asarray(_thetas(labels, rng, n=4))
    weights = jnp.asarray(rng.normal(size=(4, emulator.n_pixels)))
    gradient, hessian = jax.jit(emulator.weighted_derivatives)(thetas, weights)

    def weighted_sum(theta, w):
        return jnp.dot(w, emulator(theta))

    np.testing.assert_allclose(np.asarray(gradient), np.asarray(jax.vmap(jax.grad(weighted_sum))(thetas, weights)),
                               rtol=1e-10, atol=1e-12)
    expected = np.asarray(jax.vmap(jax.hessian(weighted_sum))(thetas, weights))
    np.testing.assert_allclose(np.asarray(hessian), expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
    np.testing.assert_allclose(np.asarray(hessian), np.swapaxes(np.asarray(hessian), -1, -2), rtol=1e-12, atol=0)


def _objective_data(emulator, labels, n_star=3, seed=6):
    rng = np.random.default_rng(seed)
    thetas = _thetas(labels, rng, n=n_star)
    flux = np.asarray(emulator(thetas)) + rng.normal(0.0, 0.01, (n_star, emulator.n_pixels))
    weights = rng.uniform(1e3, 1e4, (n_star, emulator.n_pixels))
    weights[:, 3] = 0.0  # an excluded pixel
    return jnp.asarray(thetas), jnp.asarray(flux), jnp.asarray(weights)


@pytest.mark.parametrize("jacobian, curvature", [(True, True), (True, False), (False, True), (False, False)])
def test_least_squares_terms_match_autodiff(bank, jacobian, curvature):
    emulator, _, labels, _ = bank
    thetas, flux, weights = _objective_data(emulator, labels)

    def objective(theta, f, w):
        return 0.5 * jnp.sum(w * (f - emulator(theta)) ** 2)

    terms = jax.jit(lambda t, f, w: least_squares_terms(emulator, t, f, w, jacobian=jacobian, curvature=curvature))(
        thetas, flux, weights)
    np.testing.assert_allclose(np.asarray(terms.model_flux), np.asarray(emulator(thetas)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(terms.objective), np.asarray(jax.vmap(objective)(thetas, flux, weights)),
                               rtol=1e-12)
    gradient = np.asarray(jax.vmap(jax.grad(objective))(thetas, flux, weights))
    np.testing.assert_allclose(np.asarray(terms.gradient), gradient, rtol=1e-9, atol=1e-9 * np.abs(gradient).max())
    jac = jax.vmap(jax.jacfwd(emulator))(thetas)
    gauss_newton = np.asarray(jnp.einsum("spk,sp,spl->skl", jac, weights, jac))
    hessian = np.asarray(jax.vmap(jax.hessian(objective))(thetas, flux, weights))
    if jacobian:
        np.testing.assert_allclose(np.asarray(terms.gauss_newton), gauss_newton, rtol=1e-9,
                                   atol=1e-9 * np.abs(gauss_newton).max())
    else:
        assert np.all(np.asarray(terms.gauss_newton) == 0.0)
    if curvature:
        np.testing.assert_allclose(np.asarray(terms.curvature), hessian - gauss_newton, rtol=1e-7,
                                   atol=1e-9 * np.abs(hessian).max())
    else:
        assert np.all(np.asarray(terms.curvature) == 0.0)


def test_least_squares_gradient_matches_finite_differences(bank):
    emulator, _, labels, _ = bank
    thetas, flux, weights = _objective_data(emulator, labels, n_star=1, seed=8)
    terms = least_squares_terms(emulator, thetas[0], flux[0], weights[0])
    scale = labels.std(axis=0)

    def objective(theta):
        return float(0.5 * jnp.sum(weights[0] * (flux[0] - emulator(theta)) ** 2))

    for k in range(emulator.n_labels):
        delta = np.zeros(emulator.n_labels)
        delta[k] = 1e-6 * scale[k]
        difference = (objective(thetas[0] + delta) - objective(thetas[0] - delta)) / (2 * delta[k])
        assert float(terms.gradient[k]) == pytest.approx(difference, rel=1e-5, abs=1e-6 * abs(float(terms.objective)))


def test_least_squares_terms_ignore_excluded_pixels_and_sum_in_the_data_precision(bank):
    emulator, _, labels, _ = bank
    thetas, flux, weights = _objective_data(emulator, labels)
    wild = flux.at[:, 3].set(1e6)  # pixel 3 has weight 0
    a = least_squares_terms(emulator, thetas, flux, weights)
    b = least_squares_terms(emulator, thetas, wild, weights)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    single = emulator.astype(jnp.float32)
    low = least_squares_terms(single, thetas, flux, weights)
    assert low.objective.dtype == jnp.float64 and low.gradient.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(low.objective), np.asarray(a.objective), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(low.gauss_newton), np.asarray(a.gauss_newton), rtol=1e-3,
                               atol=1e-4 * np.abs(np.asarray(a.gauss_newton)).max())


def test_grouped_equals_plain(bank):
    emulator, _, labels, _ = bank
    thetas = jnp.asarray(_thetas(labels, np.random.default_rng(3)))
    np.testing.assert_allclose(np.asarray(flux_grouped(emulator, thetas)), np.asarray(flux_plain(emulator, thetas)),
                               rtol=1e-13, atol=1e-13)


def test_astype_float32(bank):
    emulator, _, labels, _ = bank
    single = emulator.astype(jnp.float32)
    assert single.dtype == np.float32 and single.pixel_rows.dtype == jnp.int32
    out = jax.jit(single)(labels[0])
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), np.asarray(emulator(labels[0])), atol=1e-4)
    with pytest.raises(EmulatorError):
        emulator.astype(np.int32)


def test_pytree_leaves_and_static_metadata(bank):
    emulator = bank[0]
    leaves, treedef = jax.tree_util.tree_flatten(emulator)
    assert all(hasattr(leaf, "shape") for leaf in leaves)
    assert len(leaves) == 16 + len(emulator.group_sizes)  # one dual block per gamma group
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(rebuilt, Emulator) and rebuilt.label_names == LABEL_NAMES
    doubled = jax.tree_util.tree_map(lambda a: a, emulator)
    assert doubled.group_sizes == emulator.group_sizes


def test_attributes(bank):
    emulator, svrs, labels, _ = bank
    assert emulator.label_names == LABEL_NAMES and emulator.label_units == ("K", "dex", "dex", "dex")
    np.testing.assert_array_equal(np.asarray(emulator.training_labels), labels)
    np.testing.assert_array_equal(np.asarray(emulator.label_bounds), np.column_stack([labels.min(0), labels.max(0)]))
    assert emulator.model_variance.shape == emulator.wave.shape == (20,)
    assert emulator.n_train == 60 and emulator.n_labels == 4 and emulator.n_pixels == 20
    for j, svr in enumerate(svrs):
        row = np.zeros(60)
        row[svr.support_] = svr.dual_coef_[0]
        np.testing.assert_array_equal(np.asarray(emulator.dual_coef[j]), row)


def test_wrong_label_shape_is_refused(bank):
    emulator = bank[0]
    with pytest.raises(EmulatorError):
        emulator(jnp.zeros(3))


def test_inconsistent_arrays_are_refused(bank):
    emulator = bank[0]
    arrays = dict(
        dual_coef=np.zeros((3, 5)), intercept=np.zeros(3), gamma=np.ones(3), train_x=np.zeros((5, 2)),
        label_mean=np.zeros(2), label_scale=np.ones(2), flux_mean=np.ones(3), flux_scale=np.ones(3),
        model_variance=np.zeros(3), wave=np.arange(3.0), training_labels=np.zeros((5, 2)), label_names=("a", "b"),
    )
    build_emulator(**arrays)
    for key, value in [("intercept", np.zeros(4)), ("train_x", np.zeros((4, 2))), ("label_names", ("a",)),
                       ("gamma", -np.ones(3)), ("dual_coef", np.full((3, 5), np.nan)), ("flux_scale", np.zeros(3))]:
        with pytest.raises(EmulatorError):
            build_emulator(**{**arrays, key: value})
    assert emulator.n_pixels == 20


def test_library_modules_do_not_import_sklearn(tmp_path, bank):
    """Inference-side modules, and loading a model, never import scikit-learn."""
    from bayesslam.emulator import SlamModel, TrainingSummary, save_model

    emulator = bank[0]
    n_pix, n_train = emulator.n_pixels, emulator.n_train
    arrays = {
        "dual_coef": np.asarray(emulator.dual_coef), "intercept": np.asarray(emulator.intercept),
        "gamma": np.asarray(emulator.gamma), "train_x": np.asarray(emulator.train_x),
        "label_mean": np.asarray(emulator.label_mean), "label_scale": np.asarray(emulator.label_scale),
        "flux_mean": np.asarray(emulator.flux_mean), "flux_scale": np.asarray(emulator.flux_scale),
        "model_variance": np.asarray(emulator.model_variance), "wave": np.asarray(emulator.wave),
        "training_labels": np.asarray(emulator.training_labels), "pixel_mask": np.zeros(n_pix, bool),
    }
    summary = TrainingSummary(
        C=np.ones(n_pix), epsilon=np.ones(n_pix), cv_mse=np.ones(n_pix), cv_mse_flux=np.ones(n_pix),
        param_grid=np.ones((1, 3)), cv_grid_mse=np.ones((n_pix, 1)), oof_flux=np.ones((n_train, n_pix)),
        fold=np.zeros(n_train, int), n_used=np.full(n_pix, n_train),
    )
    metadata = {"label_names": list(LABEL_NAMES), "label_units": ["K", "dex", "dex", "dex"], "created": "now",
                "training_set_sha256": "0" * 64, "library_versions": {}}
    path = save_model(SlamModel(arrays, summary, metadata), tmp_path / "m.npz")
    code = textwrap.dedent(
        f"""
        import sys
        import bayesslam.emulator, bayesslam.emulator
        assert 'sklearn' not in sys.modules, 'import'
        model = bayesslam.emulator.load_model({str(path)!r})
        model.emulator(model.training_labels[0])
        assert 'sklearn' not in sys.modules, 'load'
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

"""Tests of bayesslam.train: the per-pixel SVR trainer against scikit-learn oracles."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict
from sklearn.svm import SVR

import bayesslam.train.batched as batched_training
import bayesslam.train.trainer as trainer_module
from bayesslam.errors import BayesSlamError
from bayesslam.train import (
    PRESETS,
    CheckpointError,
    SlamTrainer,
    TrainerSettingsError,
    TrainingDataError,
    assign_folds,
    resolve_grid,
)
from bayesslam.train.batched import CVRace, race_losers

LABEL_NAMES = ("teff", "logg", "fe_h", "alpha_m")
GRID = {"C": [0.5, 2.0, 8.0], "epsilon": [0.05, 0.1], "gamma": [0.1, 0.3, 1.0]}
FITTED = (
    "flux_mean_", "flux_scale_", "C_", "epsilon_", "gamma_", "best_index_", "cv_mse_", "cv_mse_flux_",
    "cv_grid_mse_", "dual_coef_", "intercept_", "model_variance_", "oof_flux_", "n_used_", "pixel_trained_",
)


def training_set(rng: np.random.Generator, n_star: int = 60, n_pix: int = 20, noise: float = 0.01):
    """Smooth nonlinear functions of 4 M-dwarf-like labels plus Gaussian noise."""
    teff = rng.uniform(3100.0, 3900.0, n_star)
    logg = 4.95 - 0.5 * (teff - 3100.0) / 800.0 + rng.normal(0.0, 0.05, n_star)
    fe_h = rng.uniform(-0.6, 0.5, n_star)
    alpha_m = rng.uniform(-0.05, 0.2, n_star)
    labels = np.column_stack([teff, logg, fe_h, alpha_m])
    z = (labels - labels.mean(axis=0)) / labels.std(axis=0)
    weights = rng.normal(size=(n_pix, 4))
    depth = rng.uniform(0.05, 0.4, n_pix)
    width = rng.uniform(0.3, 2.0, n_pix)
    arg = z @ weights.T
    flux = 1.0 - depth * np.exp(-0.5 * (arg / width) ** 2) - 0.05 * np.sin(z[:, [0]] * width)
    flux = flux + rng.normal(0.0, noise, flux.shape)
    ivar = np.full(flux.shape, 1.0 / noise**2)
    return labels, flux, ivar


class _Trainer(SlamTrainer):
    """A SlamTrainer whose ``fit`` gives the spectra a synthetic wavelength grid unless one is passed."""

    def fit(self, labels, flux, ivar, **kwargs):
        if not isinstance(flux, list):
            kwargs.setdefault("wave", np.linspace(6000.0, 9000.0, np.shape(flux)[1]))
        return super().fit(labels, flux, ivar, **kwargs)


def trainer(**kwargs) -> SlamTrainer:
    options = {"grid": GRID, "n_folds": 5, "progress": False, "chunk_size": 6}
    options.update(kwargs)
    return _Trainer(**options)


@pytest.fixture(scope="module")
def data():
    return training_set(np.random.default_rng(42))


@pytest.fixture(scope="module")
def fitted(data):
    labels, flux, ivar = data
    ivar = ivar.copy()
    flux = flux.copy()
    ivar[[3, 17, 40], 7] = 0.0
    flux[[3, 17, 40], 7] = np.nan
    return trainer().fit(labels, flux, ivar, label_names=LABEL_NAMES), flux, ivar


def _standardized(model: SlamTrainer, flux: np.ndarray, ivar: np.ndarray, pixel: int):
    used = np.flatnonzero(ivar[:, pixel] > 0)
    y = (flux[used, pixel] - model.flux_mean_[pixel]) / model.flux_scale_[pixel]
    return used, model.train_x_[used], y


def _folds_of(model: SlamTrainer, used: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    fold = model.fold_[used]
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(model.n_folds)]


def test_fit_returns_self_and_follows_estimator_conventions(data):
    labels, flux, ivar = data
    model = trainer()
    assert model.fit(labels, flux, ivar) is model
    assert clone(model).get_params() == model.get_params()
    assert not hasattr(clone(model), "dual_coef_")
    assert model.label_names_ == ("label_0", "label_1", "label_2", "label_3")
    assert model.dual_coef_.shape == (flux.shape[1], flux.shape[0])
    assert model.oof_flux_.shape == flux.shape


def test_standardization(fitted, data):
    model, flux, ivar = fitted
    np.testing.assert_allclose(model.train_x_.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(model.train_x_.std(axis=0), 1.0, rtol=1e-12)
    used = ivar[:, 7] > 0
    np.testing.assert_allclose(model.flux_mean_[7], flux[used, 7].mean(), rtol=1e-14)
    np.testing.assert_allclose(model.flux_scale_[7], flux[used, 7].std(), rtol=1e-14)
    assert model.n_used_[7] == used.sum() == len(flux) - 3
    assert model.label_units_ == ("K", "dex", "dex", "dex")


def test_final_fit_is_the_rbf_svr_with_chosen_hyperparameters(fitted):
    model, flux, ivar = fitted
    for pixel in (0, 7, 19):
        used, x, y = _standardized(model, flux, ivar, pixel)
        svr = SVR(C=model.C_[pixel], epsilon=model.epsilon_[pixel], gamma=model.gamma_[pixel]).fit(x, y)
        dense = np.zeros(len(flux))
        dense[used[svr.support_]] = svr.dual_coef_[0]
        np.testing.assert_array_equal(model.dual_coef_[pixel], dense)
        assert model.intercept_[pixel] == svr.intercept_[0]


def test_ivar_zero_stars_are_excluded(fitted, data):
    model, flux, ivar = fitted
    assert np.all(model.dual_coef_[7, [3, 17, 40]] == 0.0)
    assert np.count_nonzero(model.dual_coef_[7]) > 0
    assert np.all(np.isfinite(model.oof_flux_[[3, 17, 40], 7]))
    other_flux = flux.copy()
    other_flux[[3, 17, 40], 7] = 1e6
    again = trainer().fit(data[0], other_flux, ivar, label_names=LABEL_NAMES)
    for name in FITTED:
        np.testing.assert_array_equal(getattr(again, name), getattr(model, name), err_msg=name)


def test_cv_selection_matches_gridsearchcv(fitted):
    model, flux, ivar = fitted
    grid = {key: list(values) for key, values in GRID.items()}
    for pixel in (0, 4, 7):
        used, x, y = _standardized(model, flux, ivar, pixel)
        search = GridSearchCV(SVR(), grid, cv=_folds_of(model, used), scoring="neg_mean_squared_error")
        search.fit(x, y)
        chosen = {"C": model.C_[pixel], "epsilon": model.epsilon_[pixel], "gamma": model.gamma_[pixel]}
        assert chosen == search.best_params_
        np.testing.assert_allclose(model.cv_grid_mse_[pixel], -search.cv_results_["mean_test_score"], rtol=1e-8)
        assert model.cv_mse_[pixel] == model.cv_grid_mse_[pixel].min()
        np.testing.assert_allclose(model.cv_mse_flux_[pixel], model.cv_mse_[pixel] * model.flux_scale_[pixel] ** 2)


def test_model_variance_is_out_of_fold_residual_variance(fitted):
    model, flux, ivar = fitted
    for pixel in (2, 7):
        used, x, y = _standardized(model, flux, ivar, pixel)
        svr = SVR(C=model.C_[pixel], epsilon=model.epsilon_[pixel], gamma=model.gamma_[pixel])
        oof = cross_val_predict(svr, x, y, cv=_folds_of(model, used))
        oof_flux = model.flux_mean_[pixel] + model.flux_scale_[pixel] * oof
        np.testing.assert_allclose(model.oof_flux_[used, pixel], oof_flux, rtol=0, atol=1e-10)
        expected = np.mean((flux[used, pixel] - oof_flux) ** 2)
        np.testing.assert_allclose(model.model_variance_[pixel], expected, rtol=1e-8)
        in_sample = np.mean((flux[used, pixel] - (model.flux_mean_[pixel] + model.flux_scale_[pixel]
                                                  * svr.fit(x, y).predict(x))) ** 2)
        assert model.model_variance_[pixel] > in_sample
        assert model.model_variance_[pixel] != pytest.approx(model.cv_mse_[pixel] ** -2)


def test_folds_are_kfold_shuffled_and_shared(data):
    labels = data[0]
    fold = assign_folds(len(labels), 5, 3)
    for index, (_, test) in enumerate(KFold(5, shuffle=True, random_state=3).split(labels)):
        assert np.all(fold[test] == index)
    assert not np.array_equal(fold, assign_folds(len(labels), 5, 4))


def test_resolve_grid_presets():
    paper = resolve_grid("paper", 4)
    assert len(paper) == 11 * 4 * 4
    assert sorted(set(paper[:, 0])) == [2.0**k for k in range(-5, 6)]
    assert sorted(set(paper[:, 2])) == [0.2, 0.25, 0.3, 0.5]
    assert len(resolve_grid("paper", 3)) == 220
    fast = resolve_grid("fast", 4)
    assert 6 <= len(fast) <= 12
    assert set(PRESETS) == {"paper", "fast"}
    custom = resolve_grid({"C": [1, 2], "epsilon": [0.1], "gamma": ["auto", 0.7]}, 2)
    np.testing.assert_array_equal(custom, [[1, 0.1, 0.5], [1, 0.1, 0.7], [2, 0.1, 0.5], [2, 0.1, 0.7]])


@pytest.mark.parametrize(
    "grid",
    ["nonsense", {"C": [1.0], "epsilon": [0.1]}, {"C": [], "epsilon": [0.1], "gamma": [0.2]},
     {"C": [-1.0], "epsilon": [0.1], "gamma": [0.2]}, {"C": [1.0], "epsilon": [0.1], "gamma": ["scale"]}],
)
def test_bad_grids_are_refused(grid, data):
    with pytest.raises(TrainerSettingsError):
        trainer(grid=grid).fit(*data)


def test_bad_settings_are_refused(data):
    with pytest.raises(TrainerSettingsError):
        trainer(n_folds=1).fit(*data)
    with pytest.raises(TrainerSettingsError):
        trainer(chunk_size=0).fit(*data)
    with pytest.raises(TrainerSettingsError, match="backend must be one of"):
        trainer(backend="gpu").fit(*data)
    with pytest.raises(TrainerSettingsError, match="cv_tol"):
        trainer(cv_tol=0.0).fit(*data)


def _bad_inputs():
    labels, flux, ivar = training_set(np.random.default_rng(1), n_star=12, n_pix=3)
    nan_labels = labels.copy()
    nan_labels[4, 2] = np.nan
    flat = labels.copy()
    flat[:, 3] = 0.1
    negative = ivar.copy()
    negative[2, 1] = -1.0
    ragged = [row[: 3 - (i % 2)] for i, row in enumerate(flux)]
    return {
        "nan label": ((nan_labels, flux, ivar), {}),
        "fewer stars than folds": ((labels[:4], flux[:4], ivar[:4]), {}),
        "zero-spread label": ((flat, flux, ivar), {}),
        "flux and ivar on different grids": ((labels, flux, ivar[:, :2]), {}),
        "ragged spectra": ((labels, ragged, ivar), {}),
        "wave of another grid": ((labels, flux, ivar), {"wave": np.arange(4.0)}),
        "no wavelength grid": ((labels, flux, ivar), {"wave": None}),
        "negative ivar": ((labels, flux, negative), {}),
        "label rows and spectra differ": ((labels[:10], flux, ivar), {}),
        "wrong number of names": ((labels, flux, ivar), {"label_names": ["teff"]}),
        "NaN flux with weight": ((labels, np.where(labels[:, :1] > 3500, np.nan, flux), ivar), {}),
    }


@pytest.mark.parametrize("case", sorted(_bad_inputs()))
def test_bad_training_data_is_refused(case):
    args, kwargs = _bad_inputs()[case]
    with pytest.raises(TrainingDataError) as info:
        trainer().fit(*args, **kwargs)
    assert isinstance(info.value, BayesSlamError)
    assert isinstance(info.value, ValueError)


def test_pixel_with_too_few_stars_is_masked(data):
    labels, flux, ivar = data
    ivar = ivar.copy()
    ivar[8:, 5] = 0.0
    model = trainer().fit(labels, flux, ivar, label_names=LABEL_NAMES)
    assert not model.pixel_trained_[5] and model.pixel_trained_.sum() == flux.shape[1] - 1
    assert np.isinf(model.model_variance_[5]) and np.all(model.dual_coef_[5] == 0)
    assert bool(model.to_emulator().pixel_mask[5])
    np.testing.assert_allclose(model.predict(labels[0])[5], flux[:8, 5].mean(), rtol=1e-6)
    with pytest.raises(TrainingDataError):
        trainer().fit(labels, flux, np.where(np.arange(len(labels))[:, None] < 8, ivar, 0.0))


def test_labels_as_mapping(data):
    labels, flux, ivar = data
    mapping = {name: labels[:, i] for i, name in enumerate(LABEL_NAMES)}
    model = trainer(grid={"C": [1.0], "epsilon": [0.1], "gamma": [0.3]}).fit(mapping, flux[:, :3], ivar[:, :3])
    assert model.label_names_ == LABEL_NAMES
    np.testing.assert_array_equal(model.training_labels_, labels)


class _Killed(RuntimeError):
    pass


def _kill_after(n_chunks: int):
    def callback(done: int, total: int) -> None:
        if done >= n_chunks:
            raise _Killed(f"killed after {done} of {total} chunks")
    return callback


def test_resume_after_kill_gives_the_same_model(fitted, data, tmp_path):
    reference, flux, ivar = fitted
    labels = data[0]
    with pytest.raises(_Killed):
        trainer(checkpoint_dir=tmp_path).fit(labels, flux, ivar, label_names=LABEL_NAMES, callback=_kill_after(2))
    assert len(list(tmp_path.glob("chunk-*.npz"))) == 2
    resumed = trainer(checkpoint_dir=tmp_path).fit(labels, flux, ivar, label_names=LABEL_NAMES)
    assert resumed.n_chunks_resumed_ == 2
    for name in FITTED:
        np.testing.assert_array_equal(getattr(resumed, name), getattr(reference, name), err_msg=name)
    (tmp_path / "chunk-00001.npz").unlink()
    again = trainer(checkpoint_dir=tmp_path).fit(labels, flux, ivar, label_names=LABEL_NAMES)
    assert again.n_chunks_resumed_ == 3
    for name in FITTED:
        np.testing.assert_array_equal(getattr(again, name), getattr(reference, name), err_msg=name)


def test_checkpoint_of_another_training_is_refused(data, tmp_path):
    labels, flux, ivar = data
    small = {"C": [1.0], "epsilon": [0.1], "gamma": [0.3]}
    trainer(grid=small, checkpoint_dir=tmp_path).fit(labels, flux[:, :4], ivar[:, :4])
    with pytest.raises(CheckpointError, match="different training set"):
        trainer(grid=small, checkpoint_dir=tmp_path).fit(labels, flux[:, :4] + 0.001, ivar[:, :4])
    with pytest.raises(CheckpointError, match="different settings"):
        trainer(grid={**small, "C": [2.0]}, checkpoint_dir=tmp_path).fit(labels, flux[:, :4], ivar[:, :4])


def test_parallel_training_is_identical(data):
    labels, flux, ivar = data
    small = {"C": [1.0, 4.0], "epsilon": [0.1], "gamma": [0.3]}
    serial = trainer(grid=small).fit(labels, flux[:, :8], ivar[:, :8])
    parallel = trainer(grid=small, n_jobs=2, chunk_size=2).fit(labels, flux[:, :8], ivar[:, :8])
    for name in FITTED:
        np.testing.assert_array_equal(getattr(parallel, name), getattr(serial, name), err_msg=name)


def test_to_model_metadata(fitted):
    model = fitted[0]
    slam = model.to_model(normalization={"p1": 1e-8}, description="test", survey="synthetic")
    meta = slam.metadata
    assert meta["label_names"] == list(LABEL_NAMES)
    assert meta["label_units"] == ["K", "dex", "dex", "dex"]
    assert meta["training_set_sha256"] == model.training_hash_ and len(model.training_hash_) == 64
    assert meta["normalization"] == {"p1": 1e-8}
    assert meta["extra"] == {"survey": "synthetic"}
    assert meta["training_domain"]["teff"]["min"] == model.training_labels_[:, 0].min()
    assert {"numpy", "scikit-learn", "jax", "bayesslam"} <= set(meta["library_versions"])
    assert meta["trainer"]["n_folds"] == 5 and meta["trainer"]["grid"] == model.param_grid_.tolist()
    np.testing.assert_array_equal(slam.hyperparameters["C"], model.C_)
    np.testing.assert_array_equal(slam.training.oof_flux, model.oof_flux_)


# ---------------------------------------------------------------------------------------------
# the batched backend against the libsvm reference


@pytest.fixture(scope="module")
def batched(fitted, data):
    _, flux, ivar = fitted
    return trainer(backend="batched", cv_tol=1e-3, cv_race=False).fit(data[0], flux, ivar, label_names=LABEL_NAMES)


def test_batched_backend_chooses_libsvms_hyperparameters(fitted, batched):
    """Same folds and grid: the same choice (or one within 1% CV MSE), CV MSE within 1% at every grid point."""
    reference = fitted[0]
    trained = reference.pixel_trained_
    np.testing.assert_array_equal(batched.pixel_trained_, trained)
    np.testing.assert_array_equal(batched.fold_, reference.fold_)
    same = batched.best_index_ == reference.best_index_
    at_choice = reference.cv_grid_mse_[np.arange(len(same)), batched.best_index_]
    equivalent = same | (at_choice <= 1.01 * reference.cv_mse_)
    assert np.mean(equivalent[trained]) >= 0.95
    np.testing.assert_allclose(batched.cv_grid_mse_[trained], reference.cv_grid_mse_[trained], rtol=1e-2)
    np.testing.assert_allclose(batched.model_variance_[trained], reference.model_variance_[trained], rtol=2e-2)


def test_batched_final_models_predict_as_libsvms(fitted, batched, data):
    """Where the choices agree, the batched final SVRs are the exact SVRs (to 1e-5 in standardized flux),
    and differ from the libsvm reference (tol 1e-3) by no more than libsvm's own distance to the exact SVR."""
    reference, flux, ivar = fitted
    same = (batched.best_index_ == reference.best_index_) & reference.pixel_trained_
    assert same.sum() >= 0.9 * reference.pixel_trained_.sum()
    rng = np.random.default_rng(5)
    lo, hi = reference.training_labels_.min(axis=0), reference.training_labels_.max(axis=0)
    z = (np.vstack([reference.training_labels_, rng.uniform(lo, hi, (100, 4))]) - reference.label_mean_) / reference.label_scale_
    for p in np.flatnonzero(same):
        used, x, y = _standardized(reference, flux, ivar, p)
        exact = SVR(C=reference.C_[p], epsilon=reference.epsilon_[p], gamma=reference.gamma_[p], tol=1e-9).fit(x, y)
        kernel = np.exp(-reference.gamma_[p] * ((z[:, None, :] - reference.train_x_[None]) ** 2).sum(axis=-1))
        libsvm = kernel @ reference.dual_coef_[p] + reference.intercept_[p]
        ours = kernel @ batched.dual_coef_[p] + batched.intercept_[p]
        truth = exact.predict(z)
        assert np.max(np.abs(ours - truth)) < 1e-5, p
        assert np.max(np.abs(ours - libsvm)) <= np.max(np.abs(libsvm - truth)) + 1e-5, p
        assert np.median(np.abs(ours - libsvm)) < 1e-3, p
    # excluded stars stay out of the final fits
    assert np.all(batched.dual_coef_[7, [3, 17, 40]] == 0)


def test_batched_backend_settings_and_default_cv_tolerance(data):
    labels, flux, ivar = data
    small = {"C": [1.0], "epsilon": [0.1], "gamma": [0.3]}
    fast = trainer(grid=small, backend="batched").fit(labels, flux[:, :4], ivar[:, :4])
    assert fast.settings_["backend"] == "batched" and fast.settings_["cv_tol"] == 3e-2
    assert trainer(grid=small).fit(labels, flux[:, :4], ivar[:, :4]).settings_["cv_tol"] == 1e-3
    assert fast.to_model().metadata["trainer"]["backend"] == "batched"


def test_batched_training_resumes_from_its_checkpoint(data, tmp_path):
    labels, flux, ivar = data
    small = {"C": [0.5, 2.0], "epsilon": [0.1], "gamma": [0.3, 1.0]}
    reference = trainer(grid=small, backend="batched").fit(labels, flux, ivar)
    with pytest.raises(_Killed):
        trainer(grid=small, backend="batched", checkpoint_dir=tmp_path).fit(labels, flux, ivar,
                                                                            callback=_kill_after(1))
    resumed = trainer(grid=small, backend="batched", checkpoint_dir=tmp_path).fit(labels, flux, ivar)
    assert resumed.n_chunks_resumed_ == 1
    for name in FITTED:
        np.testing.assert_allclose(getattr(resumed, name), getattr(reference, name), rtol=1e-9, err_msg=name)
    with pytest.raises(CheckpointError, match="different settings"):
        trainer(grid=small, checkpoint_dir=tmp_path).fit(labels, flux, ivar)  # libsvm on a batched checkpoint


def test_batched_checkpoint_of_another_kernel_truncation_is_refused(data, tmp_path, monkeypatch):
    labels, flux, ivar = data
    small = {"C": [1.0], "epsilon": [0.1], "gamma": [0.3]}
    first = trainer(grid=small, backend="batched", checkpoint_dir=tmp_path).fit(labels, flux[:, :4], ivar[:, :4])
    assert first.settings_["cv_rank_tol"] == batched_training.CV_RANK_TOL
    monkeypatch.setattr(trainer_module, "CV_RANK_TOL", batched_training.CV_RANK_TOL / 10)
    with pytest.raises(CheckpointError, match="different settings"):
        trainer(grid=small, backend="batched", checkpoint_dir=tmp_path).fit(labels, flux[:, :4], ivar[:, :4])


def test_tight_cv_tolerance_is_solved_in_float64(data, monkeypatch):
    """float32 iterates cannot certify libsvm's 1e-3 at large C: tight CV tolerances switch to float64."""
    seen = []
    solve = batched_training.solve_svr_batch

    def spy(*args, **kwargs):
        seen.append(np.dtype(kwargs["dtype"]))
        return solve(*args, **kwargs)

    monkeypatch.setattr(batched_training, "solve_svr_batch", spy)
    labels, flux, ivar = data
    for cv_tol, expected in ((1e-2, np.float32), (1e-3, np.float64)):
        seen.clear()
        trainer(grid={"C": [32.0], "epsilon": [0.01], "gamma": [0.5]}, backend="batched",
                cv_tol=cv_tol).fit(labels, flux[:, :2], ivar[:, :2])
        cv_dtypes = set(seen[:-1])  # the last solve is the final fit (always float64)
        assert cv_dtypes == {np.dtype(expected)}, cv_tol


# ---- racing the grid points through the folds (batched backend) ----------------------------------


def test_race_drops_clear_losers_only():
    """Consistently and clearly worse points go; points within the margin or within the noise stay."""
    rng = np.random.default_rng(0)
    base = 1.0 + 0.1 * rng.normal(size=4)  # fold-to-fold variation shared by all points (same test stars)
    fold_mse = np.stack([
        base,                                                      # 0: the best
        base * 1.01,                                               # 1: 1% worse (inside the 2% margin)
        base * 1.5,                                                # 2: 50% worse on every fold
        base * 1.3 + np.array([-0.9, 0.9, -0.9, 0.9]),             # 3: 30% worse on average, but noisy
        np.where(np.arange(4) == 1, np.nan, base * 1.5),           # 4: clearly worse, one fold unscored
        base * 1.5,                                                # 5: clearly worse but already out
    ])[None]
    alive = np.array([[True, True, True, True, True, False]])
    losers = race_losers(fold_mse, alive, CVRace())
    np.testing.assert_array_equal(losers[0], [False, False, True, False, True, False])
    # identical points: nothing to drop; a pixel without scores: nothing either
    assert not race_losers(np.ones((1, 3, 4)), np.ones((1, 3), bool), CVRace()).any()
    assert not race_losers(np.full((1, 3, 4), np.nan), np.ones((1, 3), bool), CVRace()).any()


@pytest.fixture(scope="module")
def full_grid_10_folds(data):
    labels, flux, ivar = data
    return trainer(backend="batched", n_folds=10, cv_race=False).fit(labels, flux, ivar)


def test_race_keeps_the_choice_of_the_full_grid(data, full_grid_10_folds):
    """Racing drops many points but chooses as the full grid does, with the same scores where it kept a point."""
    labels, flux, ivar = data
    full = full_grid_10_folds
    raced = trainer(backend="batched", n_folds=10).fit(labels, flux, ivar)
    assert raced.settings_["cv_race"] == CVRace().to_dict() and full.settings_["cv_race"] is None
    trained = raced.pixel_trained_
    dropped = np.isnan(raced.cv_grid_mse_) & trained[:, None]
    assert dropped[trained].mean() > 0.3
    same = raced.best_index_ == full.best_index_
    assert np.mean(same[trained]) >= 0.95
    at_choice = full.cv_grid_mse_[np.arange(len(same)), raced.best_index_]
    assert np.all(at_choice[trained] <= 1.01 * full.cv_mse_[trained])
    kept = ~dropped & trained[:, None]
    np.testing.assert_allclose(raced.cv_grid_mse_[kept], full.cv_grid_mse_[kept], rtol=1e-3)
    rows = np.nonzero(dropped)[0]
    assert np.all(full.cv_grid_mse_[dropped] > 1.02 * full.cv_mse_[rows])
    np.testing.assert_allclose(raced.model_variance_[trained], full.model_variance_[trained], rtol=1e-3)


def test_reckless_race_changes_the_choice(data, full_grid_10_folds, monkeypatch):
    """Negative control: a race that keeps only the leader after two folds does not choose as the full grid."""
    labels, flux, ivar = data
    monkeypatch.setattr(trainer_module, "CVRace", lambda **_: CVRace(min_folds=2, margin=0.0, z=0.0))
    reckless = trainer(backend="batched", n_folds=10).fit(labels, flux, ivar)
    full = full_grid_10_folds
    trained = full.pixel_trained_
    assert np.mean(reckless.best_index_[trained] == full.best_index_[trained]) < 0.95


def test_race_settings(data, tmp_path):
    labels, flux, ivar = data
    small = {"C": [0.5, 8.0], "epsilon": [0.1], "gamma": [0.3]}
    with pytest.raises(TrainerSettingsError, match="cv_race needs backend='batched'"):
        trainer(grid=small, cv_race=True).fit(labels, flux[:, :2], ivar[:, :2])
    with pytest.raises(TrainerSettingsError, match="cv_race must be"):
        trainer(grid=small, backend="batched", cv_race="yes").fit(labels, flux[:, :2], ivar[:, :2])
    assert trainer(grid=small).fit(labels, flux[:, :2], ivar[:, :2]).settings_["cv_race"] is None
    trainer(grid=small, backend="batched", cv_race=False, checkpoint_dir=tmp_path).fit(labels, flux[:, :4], ivar[:, :4])
    with pytest.raises(CheckpointError, match="different settings"):
        trainer(grid=small, backend="batched", checkpoint_dir=tmp_path).fit(labels, flux[:, :4], ivar[:, :4])

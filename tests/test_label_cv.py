"""Label-level cross-validation: fold banks, out-of-fold labels, the calibration measured on them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVR

from bayesslam import float64
from bayesslam.calibration import SnrLaw, coverage, fit_snr_law, spectrum_snr
from bayesslam.emulator import ModelFileError, OutOfFoldLabels, load_model, save_model
from bayesslam.infer import FitStatus, fit_map
from bayesslam.train import (
    SlamTrainer,
    TrainingDataError,
    fold_emulators,
    label_cv_calibration,
    label_cv_snr_laws,
    out_of_fold_labels,
    with_label_cv,
)

LABEL_NAMES = ("teff", "logg", "fe_h", "alpha_m")
N_PIX = 48


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    teff = rng.uniform(3100.0, 3900.0, n)
    fe_h = rng.uniform(-0.5, 0.4, n)
    logg = 4.7 - 0.2 * (teff - 3500.0) / 400.0 + rng.normal(0.0, 0.03, n)
    alpha = -0.2 * fe_h + rng.normal(0.0, 0.05, n)
    return np.column_stack([teff, logg, fe_h, alpha])


def _clean(labels: np.ndarray, seed: int = 7) -> np.ndarray:
    """Spectra that depend on Teff and [Fe/H] only (like the mock), nonlinearly."""
    rng = np.random.default_rng(seed)
    t = (labels[:, :1] - 3500.0) / 400.0
    m = labels[:, 2:3] / 0.45
    a, b, c = rng.normal(size=(3, N_PIX))
    return 1.0 - 0.25 * np.tanh(0.8 * t * a + 0.4 * m * b + 0.3 * t * m * c) ** 2


def _observe(labels: np.ndarray, snr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    clean = _clean(labels)
    sigma = 1.0 / snr[:, None] * np.ones_like(clean)
    return clean + rng.normal(size=clean.shape) * sigma, 1.0 / sigma**2


@pytest.fixture(scope="module")
def trained(x64):
    rng = np.random.default_rng(20251207)
    labels = _labels(240, rng)
    flux, ivar = _observe(labels, rng.uniform(15.0, 60.0, len(labels)), rng)
    ivar[:20, 5] = 0.0
    trainer = SlamTrainer({"C": [1.0, 4.0], "epsilon": [0.05], "gamma": [0.2, 0.6]}, n_folds=4, progress=False)
    trainer.fit(labels, flux, ivar, label_names=LABEL_NAMES, wave=np.linspace(6000.0, 9000.0, N_PIX))
    return trainer.to_model(description="label-cv test"), flux, ivar


@pytest.fixture(scope="module")
def cv(trained):
    """The label-level CV of the trained model (computed once for the module)."""
    model, flux, ivar = trained
    return out_of_fold_labels(model, flux, ivar)


def test_fold_bank_is_the_svr_trained_without_the_fold(trained):
    model, flux, ivar = trained
    emulators = fold_emulators(model, flux, ivar)
    fold = model.training.fold
    assert len(emulators) == len(np.unique(fold)) == 4
    arrays = model.emulator_arrays
    x = arrays["train_x"]
    probe = model.emulator_arrays["training_labels"][:5]
    for f in (0, 2):
        for p in (3, 5):
            keep = (fold != f) & (ivar[:, p] > 0)
            y = (flux[keep, p] - arrays["flux_mean"][p]) / arrays["flux_scale"][p]
            svr = SVR(kernel="rbf", C=model.training.C[p], epsilon=model.training.epsilon[p],
                      gamma=arrays["gamma"][p]).fit(x[keep], y)
            z = (probe - arrays["label_mean"]) / arrays["label_scale"]
            expected = arrays["flux_mean"][p] + arrays["flux_scale"][p] * svr.predict(z)
            with float64():
                got = np.asarray(emulators[f](probe))[:, p]
            np.testing.assert_allclose(got, expected, atol=1e-9)
    # a fold's bank gives no weight to its own stars
    with float64():
        held = np.flatnonzero(fold == 1)
        assert not np.allclose(np.asarray(emulators[1](probe)), model.predict(probe))
    assert held.size > 0


def test_out_of_fold_errors_exceed_in_sample_errors(trained, cv):
    model, flux, ivar = trained
    truth = model.emulator_arrays["training_labels"]
    assert cv.labels.shape == truth.shape and np.all(cv.status == FitStatus.CONVERGED)
    with float64():
        in_sample = fit_map(model.emulator, flux, ivar)
    oof_rms = np.sqrt(np.mean((cv.labels - truth) ** 2, axis=0))
    in_rms = np.sqrt(np.mean((in_sample.labels - truth) ** 2, axis=0))
    # the fold models have not seen the star: their errors are the larger ones (Teff, [Fe/H] are informative)
    assert oof_rms[0] > in_rms[0] and oof_rms[2] > in_rms[2]
    np.testing.assert_allclose(cv.snr, spectrum_snr(flux, ivar))


def test_label_cv_is_stored_and_read_back(trained, tmp_path):
    model, flux, ivar = trained
    out = with_label_cv(model, flux, ivar)
    assert out.label_cv is not None and out.error_calibration.laplace is not None
    assert "cross-validation" in out.error_calibration.laplace.source
    back = load_model(save_model(out, tmp_path / "m.npz"))
    for name, value in out.label_cv.arrays().items():
        np.testing.assert_array_equal(getattr(back.label_cv, name), value)
    np.testing.assert_allclose(back.error_calibration.laplace.scale, out.error_calibration.laplace.scale)
    assert set(back.snr_laws) == set(LABEL_NAMES) and back.snr_laws == out.snr_laws
    # a model without label CV still saves and loads without the record
    assert load_model(save_model(model, tmp_path / "plain.npz")).label_cv is None


def test_bad_label_cv_records_are_named_errors(trained):
    model, flux, ivar = trained
    n, k = len(model.training.fold), len(LABEL_NAMES)
    good = dict(labels=np.zeros((n, k)), sigma=np.ones((n, k)), status=np.zeros(n, dtype=int), snr=np.ones(n))
    with pytest.raises(ModelFileError, match="sigma"):
        OutOfFoldLabels(**{**good, "sigma": np.ones((n, k + 1))})
    with pytest.raises(ModelFileError, match="status"):
        OutOfFoldLabels(**{**good, "status": np.zeros(n)})
    with pytest.raises(ModelFileError, match="training stars"):
        model.with_label_cv(OutOfFoldLabels(**{**good, "labels": np.zeros((n - 1, k)), "sigma": np.ones((n - 1, k)),
                                               "status": np.zeros(n - 1, dtype=int), "snr": np.ones(n - 1)}))
    with pytest.raises(TrainingDataError, match="own training spectra"):
        out_of_fold_labels(model, flux[:-1], ivar[:-1])


@pytest.mark.slow
def test_own_calibration_covers_independent_stars(trained, cv):
    """The calibration measured on the training stars alone covers new stars; the raw sigmas do not."""
    model, flux, ivar = trained
    cal = label_cv_calibration(model, cv)
    rng = np.random.default_rng(99)
    truth = _labels(600, rng)
    new_flux, new_ivar = _observe(truth, rng.uniform(15.0, 60.0, len(truth)), rng)
    with float64():
        fit = fit_map(model.emulator, new_flux, new_ivar)
    ok = fit.status == FitStatus.CONVERGED
    errors, raw = fit.labels[ok] - truth[ok], fit.sigma[ok]
    n = int(ok.sum())
    se = np.sqrt(0.6827 * 0.3173 / n)
    covered = coverage(errors, cal.apply(raw), 0.6827)
    assert np.all(np.abs(covered - 0.6827) < 3 * se), covered
    # negative control: the raw Laplace sigmas of the same fits miss the nominal rate
    raw_covered = coverage(errors, raw, 0.6827)
    assert np.any(np.abs(raw_covered - 0.6827) > 5 * se), raw_covered


def test_snr_law_fit_recovers_an_injected_law_with_its_errors():
    """Errors drawn from sigma = 0.3 SNR**-0.4: the fit finds it within its quoted errors (fixed seed)."""
    rng = np.random.default_rng(5)
    snr = np.exp(rng.uniform(np.log(3.0), np.log(80.0), 4000))
    law, bin_snr, bin_sigma = fit_snr_law(snr, rng.normal(size=snr.size) * 0.3 * snr**-0.4)
    assert abs(law.b + 0.4) < 3 * law.b_err and abs(law.a - 0.3) < 3 * law.a_err
    assert 0 < law.b_err < 0.05 and law.snr_range == (snr.min(), snr.max())
    # negative control: a law with the wrong exponent is many of its errors away
    assert abs(law.b + 0.25) > 5 * law.b_err
    assert SnrLaw.from_metadata(law.to_metadata()) == law


def test_models_own_snr_laws_reach_the_catalog(trained, cv):
    from bayesslam.catalog import build_catalog

    model, flux, ivar = trained
    laws = label_cv_snr_laws(model, cv)
    truth = model.emulator_arrays["training_labels"]
    # the Teff law describes the out-of-fold Teff scatter, which falls with SNR
    assert laws["teff"].b < 0
    rms = np.sqrt(np.nanmean((cv.labels[:, 0] - truth[:, 0]) ** 2))
    assert 0.5 < np.median(laws["teff"](cv.snr)) / rms < 2.0
    with pytest.raises(ModelFileError, match="does not have"):
        model.with_snr_laws({"vsini": laws["teff"]})
    own = model.with_snr_laws(laws)
    with float64():
        fit = fit_map(own.emulator, flux[:5], ivar[:5])
    ids, snr = [f"s{i}" for i in range(5)], np.full(5, 15.0)
    table = build_catalog(ids, snr, fit, snr_laws=own.snr_laws, law_snr=spectrum_snr(flux[:5], ivar[:5]))
    assert table.meta["SNRLAWS"] == "model"
    np.testing.assert_allclose(table["TEFF_SNR_ERR"], laws["teff"](spectrum_snr(flux[:5], ivar[:5])))
    paper = build_catalog(ids, snr, fit)
    assert paper.meta["SNRLAWS"] == "paper" and np.all(np.isnan(paper["ALPHA_M_SNR_ERR"]))

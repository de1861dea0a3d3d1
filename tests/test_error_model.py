"""The emulator error model: learning it, the low-rank density, and calibrated intervals by construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal
from toymodel import BOUNDS, ToyModel, make_toy_model

from bayesslam.calibration import ONE_SIGMA, coverage
from bayesslam.emulator import EmulatorErrorModel, ErrorModelError, error_factor, marginal_precision
from bayesslam.infer import FitStatus, fit_map, sample_nuts
from bayesslam.infer.likelihood import log_likelihood
from bayesslam.infer.priors import default_prior
from bayesslam.train import deconvolved_pixel_variance, fit_label_covariance
from bayesslam.train.error_model import ErrorModelFitError, fisher_matrices

pytestmark = pytest.mark.usefixtures("x64")


@dataclass(frozen=True)
class ToyWithError(ToyModel):
    """The toy forward model carrying a label-space error covariance."""

    label_error_covariance: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((4, 4)))


#: The injected label-space error: sd 40 K, 0.03 dex, 0.06 dex (none on alpha, which the toy ignores);
#: Teff and [Fe/H] errors correlated (+0.6), as an emulator that confuses the two would make them.
SIGMA_ETA = np.array([40.0, 0.03, 0.06, 0.0])
CORR = np.eye(4)
CORR[0, 2] = CORR[2, 0] = 0.6
TRUE_COVARIANCE = CORR * np.outer(SIGMA_ETA, SIGMA_ETA)


def _stars_with_label_error(model: ToyModel, n: int, snr: np.ndarray, seed: int):
    """Spectra that look like the model's at ``truth + eta``, ``eta ~ N(0, TRUE_COVARIANCE)``, plus noise."""
    rng = np.random.default_rng(seed)
    lo, hi = BOUNDS[:, 0], BOUNDS[:, 1]
    margin = 0.15 * (hi - lo)
    truth = rng.uniform(lo + margin, hi - margin, size=(n, 4))
    eta = rng.multivariate_normal(np.zeros(4), TRUE_COVARIANCE, size=n)
    clean = np.asarray(jax.vmap(model)(jnp.asarray(truth + eta)))
    sigma = np.sqrt(1.0 / snr[:, None] ** 2 + model.model_variance[None, :])
    flux = clean + rng.normal(size=clean.shape) * sigma
    ivar = np.broadcast_to((snr**2)[:, None], clean.shape).copy()
    return truth, flux, ivar


@pytest.fixture(scope="module")
def toy():
    return make_toy_model(n_pix=300, seed=3)


@pytest.fixture(scope="module")
def learnt(toy):
    """The label covariance fitted to 300 'training' stars' MAP labels (SNR 20-150)."""
    snr = np.exp(np.random.default_rng(11).uniform(np.log(20.0), np.log(150.0), 300))
    truth, flux, ivar = _stars_with_label_error(toy, 300, snr, seed=12)
    fit = fit_map(toy, flux, ivar)
    ok = fit.status == FitStatus.CONVERGED
    fisher = fisher_matrices(toy, fit.labels[ok], ivar[ok])
    precision = default_prior(toy).laplace_precision()
    return fit_label_covariance(fit.labels[ok] - truth[ok], fisher, precision, scale=toy.training_labels.std(axis=0))


def test_learnt_label_covariance_recovers_the_injected_one(learnt):
    sd = np.sqrt(np.diag(learnt))
    np.testing.assert_allclose(sd[:3], SIGMA_ETA[:3], rtol=0.2)
    # alpha: the toy spectra ignore it, so its entry is unidentifiable (and harmless: no information to cap)
    corr = learnt[0, 2] / (sd[0] * sd[2])
    assert abs(corr - 0.6) < 0.2
    # whitened by the injected covariance, the learnt one is close to the identity in every direction
    root = np.linalg.cholesky(TRUE_COVARIANCE[:3, :3])
    whitened = np.linalg.solve(root, np.linalg.solve(root, learnt[:3, :3]).T)
    eig = np.linalg.eigvalsh(whitened)
    print("learnt / injected covariance, eigenvalues after whitening:", eig.round(3))
    assert np.all((eig > 0.6) & (eig < 1.5))


@pytest.mark.slow
def test_map_intervals_with_the_error_model_cover_nominally_and_without_do_not(toy, learnt):
    snr = np.exp(np.random.default_rng(21).uniform(np.log(15.0), np.log(150.0), 600))
    truth, flux, ivar = _stars_with_label_error(toy, 600, snr, seed=22)
    with_error = fit_map(ToyWithError(**{f.name: getattr(toy, f.name) for f in dataclasses.fields(toy)},
                                      label_error_covariance=learnt), flux, ivar)
    diagonal = fit_map(toy, flux, ivar)
    np.testing.assert_allclose(with_error.labels, diagonal.labels, atol=1e-8)  # the MAP labels do not move
    ok = with_error.status == FitStatus.CONVERGED
    errors = with_error.labels[ok] - truth[ok]
    se = np.sqrt(ONE_SIGMA * (1 - ONE_SIGMA) / ok.sum())
    covered = coverage(errors, with_error.sigma[ok])[:3]
    raw = coverage(errors, diagonal.sigma[ok])[:3]
    print("68% coverage with the error model", covered.round(3), "diagonal", raw.round(3))
    assert np.all(np.abs(covered - ONE_SIGMA) < 3 * se)
    high = snr[ok] > np.median(snr[ok])  # where the label-space error dominates
    assert np.all(np.abs(coverage(errors[high], with_error.sigma[ok][high])[:3] - ONE_SIGMA) < 3 * se * np.sqrt(2))
    # negative control: the diagonal likelihood misses by far
    assert np.all(raw < ONE_SIGMA - 5 * se)


def test_nuts_posterior_widens_with_the_label_error(toy):
    """NUTS samples the low-rank density: its sd matches the Laplace sigma with the error model."""
    model = ToyWithError(**{f.name: getattr(toy, f.name) for f in dataclasses.fields(toy)},
                         label_error_covariance=TRUE_COVARIANCE)
    truth, flux, ivar = _stars_with_label_error(toy, 4, np.full(4, 100.0), seed=31)
    fit = fit_map(model, flux, ivar)
    post = sample_nuts(model, flux, ivar, rng_key=jax.random.key(0), num_warmup=300, num_samples=600,
                       emulator_dtype=None, progress=False)
    ratio = post.summary["sd"][:, :3] / fit.sigma[:, :3]
    print("NUTS sd / Laplace sigma:", ratio.round(3))
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio
    narrow = fit_map(toy, flux, ivar)
    assert np.all(post.summary["sd"][:, 0] > 3 * narrow.sigma[:, 0])  # Teff: label error >> noise at SNR 100


def test_deconvolved_pixel_variance_takes_out_the_known_noise():
    rng = np.random.default_rng(5)
    d_true = rng.uniform(1e-4, 4e-4, 200)
    noise_var = 1.0 / rng.uniform(30.0, 150.0, (800, 1)) ** 2 * np.ones((1, 200))
    ivar = 1.0 / noise_var
    ivar[rng.random(ivar.shape) < 0.05] = 0.0  # masked pixels are left out
    residuals = rng.normal(size=ivar.shape) * np.sqrt(d_true + noise_var)
    d = deconvolved_pixel_variance(residuals, ivar)
    rel = (d - d_true) / d_true
    print("relative error of D: mean", np.mean(rel).round(3), "sd", np.std(rel).round(3))
    assert abs(np.mean(rel)) < 0.05 and np.std(rel) < 0.3
    naive = np.mean(residuals**2, axis=0)  # negative control: the raw residual variance holds the noise too
    assert np.median(naive / d_true) > 1.5
    assert np.isinf(deconvolved_pixel_variance(residuals[:1], ivar[:1])).all()


def test_marginal_precision_identities():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    fisher = a @ a.T + 0.1 * np.eye(4)
    s = TRUE_COVARIANCE / np.outer([100, 0.1, 0.2, 0.1], [100, 0.1, 0.2, 0.1]) + 0.01 * np.eye(4)
    got = np.asarray(marginal_precision(fisher, s))
    np.testing.assert_allclose(got, np.linalg.inv(np.linalg.inv(fisher) + s), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(marginal_precision(fisher, np.zeros((4, 4)))), fisher, rtol=1e-12)
    singular = np.diag([4.0, 1.0, 0.0, 0.0])  # labels 3 and 4 unconstrained: no information, still finite
    got = np.asarray(marginal_precision(singular, np.diag([0.25, 1.0, 1.0, 1.0])))
    np.testing.assert_allclose(got, np.diag([2.0, 0.5, 0.0, 0.0]), atol=1e-12)


def _toy_star(toy):
    truth, flux, ivar = _stars_with_label_error(toy, 1, np.array([30.0]), seed=41)
    ivar[0, :20] = 0.0  # masked
    return truth[0], flux[0], ivar[0]


def test_low_rank_density_is_the_multivariate_normal_on_the_usable_pixels(toy):
    truth, flux, ivar = _toy_star(toy)
    jac = jax.jacfwd(toy)(jnp.asarray(truth))
    w = np.asarray(error_factor(jac, TRUE_COVARIANCE))
    model_flux = np.asarray(toy(jnp.asarray(truth)))
    got = float(log_likelihood(model_flux, flux, ivar, toy.model_variance, error_factor=w))
    good = ivar > 0
    cov = np.diag(1.0 / ivar[good] + toy.model_variance[good]) + w[good] @ w[good].T
    want = multivariate_normal(model_flux[good], cov).logpdf(flux[good]) - 0.5 * np.log(2 * np.pi) * (~good).sum()
    assert got == pytest.approx(want, rel=1e-10)
    # masked pixels are out exactly: their flux does not matter
    garbage = np.where(good, flux, 1e6)
    assert float(log_likelihood(model_flux, garbage, ivar, toy.model_variance, error_factor=w)) == pytest.approx(got)


def test_low_rank_density_gradient_matches_finite_differences(toy):
    truth, flux, ivar = _toy_star(toy)
    w = error_factor(jax.jacfwd(toy)(jnp.asarray(truth)), TRUE_COVARIANCE)

    def logl(labels):
        return log_likelihood(toy(labels), flux, ivar, toy.model_variance, error_factor=w)

    x = jnp.asarray(truth + np.array([20.0, 0.02, 0.03, 0.05]))
    grad = np.asarray(jax.grad(logl)(x))
    step = np.array([0.5, 1e-4, 1e-4, 1e-4])
    for k in range(4):
        e = np.zeros(4)
        e[k] = step[k]
        fd = (float(logl(x + e)) - float(logl(x - e))) / (2 * step[k])
        assert grad[k] == pytest.approx(fd, rel=1e-5, abs=1e-6 * (1 + abs(fd)))


def test_error_model_rejects_bad_arrays():
    good = dict(pixel_variance=np.full(10, 1e-5), label_covariance=np.eye(4) * 1e-2, metadata={})
    EmulatorErrorModel(**good)
    for change in ({"pixel_variance": np.full((2, 5), 1e-5)}, {"pixel_variance": np.full(10, np.nan)},
                   {"pixel_variance": np.full(10, -1.0)}, {"label_covariance": np.eye(3)[:, :2]},
                   {"label_covariance": np.full((4, 4), np.inf)}, {"label_covariance": np.diag([1.0, -1.0, 1.0, 1.0])},
                   {"label_covariance": np.triu(np.ones((4, 4)))}):
        with pytest.raises(ErrorModelError):
            EmulatorErrorModel(**{**good, **change})
    with pytest.raises(ErrorModelFitError, match="at least"):
        fit_label_covariance(np.zeros((5, 4)), np.tile(np.eye(4), (5, 1, 1)), np.zeros((4, 4)))


def test_default_model_describes_real_sdss_m_dwarfs_at_reduced_chi2_near_one(sdss_files):
    """With the training noise taken out of the pixel variance, real BOSS M dwarfs get reduced chi2 ~ 1."""
    import bayesslam
    from bayesslam.emulator import default_model_path, load_model

    prepared = bayesslam.prepare(sdss_files)
    table = bayesslam.fit(prepared)
    assert table.meta["ERRMODEL"] == "label+pixel" and table.meta["LAPCORR"]
    chi2 = np.asarray(table["REDUCED_CHI2"])
    print("reduced chi2 of the real SDSS M dwarfs:", chi2.round(3))
    assert np.all((chi2 > 0.7) & (chi2 < 1.5))
    # negative control: the out-of-fold variance s_j^2, which holds the training spectra's noise
    diagonal = bayesslam.fit(prepared, model=load_model(default_model_path()).with_error_model(None))
    assert diagonal.meta["ERRMODEL"] == "diagonal" and not diagonal.meta["LAPCORR"]  # learnt under the error model
    assert np.all(np.asarray(diagonal["REDUCED_CHI2"]) < 0.6)


def test_misfit_widens_the_errors_of_spectra_the_model_does_not_describe(toy):
    """A smooth continuum error per star (a bad normalization): reduced chi2 ~ 2, intervals still near 68%."""
    from bayesslam.infer import misfit_scale
    from toymodel import simulate

    truth, flux, ivar = simulate(toy, 400, snr=50, seed=8)
    x = np.linspace(0.0, 1.0, flux.shape[1])
    modes = np.array([np.sin(np.pi * (k + 1) * x) for k in range(12)])
    bad = flux + np.random.default_rng(7).normal(size=(400, 12)) * 0.01 @ modes
    fit = fit_map(toy, bad, ivar)
    ok = fit.status == FitStatus.CONVERGED
    errors = fit.labels[ok] - truth[ok]
    scale = np.asarray(misfit_scale(jnp.asarray(fit.chi2[ok]), jnp.asarray(fit.n_good[ok] - 4.0)))
    covered = coverage(errors, fit.sigma[ok])[:3]
    without = coverage(errors, fit.sigma[ok] / np.sqrt(scale)[:, None])[:3]
    print("median reduced chi2", np.median(fit.reduced_chi2[ok]).round(2), "68% coverage with the misfit term",
          covered.round(3), "without", without.round(3))
    assert np.all((covered > 0.55) & (covered < 0.80))
    se = np.sqrt(ONE_SIGMA * (1 - ONE_SIGMA) / ok.sum())
    assert np.all(without < ONE_SIGMA - 5 * se)  # negative control: the noise alone under-covers
    # spectra the model describes keep their errors: the goodness-of-fit test passes them
    clean = fit_map(toy, flux, ivar)
    assert np.mean(np.asarray(misfit_scale(jnp.asarray(clean.chi2), jnp.asarray(clean.n_good - 4.0))) > 1) < 0.02

"""Posterior-predictive checks: the one density's log likelihood, chi2 p-values, replicated spectra, the file.

The p-value tests use exact posterior draws of a linear toy model (flat prior,
Gaussian likelihood: the posterior of the labels the spectrum constrains is
Gaussian), so they test the checks and not a sampler; the sampler tests check
the plumbing into ``InferenceData``, the NetCDF file and ``arviz.plot_ppc``.
"""

from __future__ import annotations

import dataclasses
import warnings

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy import stats
from toymodel import BOUNDS, ToyModel, make_toy_model, simulate

import bayesslam.infer.sample as sample_module
from bayesslam.catalog import build_catalog, write_catalog
from bayesslam.cli import build_parser
from bayesslam.infer import (
    MapResult,
    PredictiveError,
    chi_square,
    log_likelihood,
    predictive_checks,
    sample_emcee,
    sample_nuts,
)
from bayesslam.infer.predictive import emulated_draws, replicate_draws

matplotlib.use("Agg")


@pytest.fixture(scope="module", autouse=True)
def _in_float64(x64):
    """The tests build JAX arrays and emulators themselves: 64 bits for them (see conftest.x64)."""


@dataclasses.dataclass(frozen=True)
class Toy(ToyModel):
    """The toy as a JAX pytree, like the emulator: compiled code takes it as an argument (one compilation per shapes)."""


@dataclasses.dataclass(frozen=True)
class ToyWithLabelError(Toy):
    """The toy with a label-space emulator error on teff: the samplers also sample ``emulated_teff``."""

    label_error_covariance: np.ndarray = dataclasses.field(default_factory=lambda: np.diag([30.0**2, 0, 0, 0]))


for _cls in (Toy, ToyWithLabelError):
    jax.tree_util.register_dataclass(_cls, data_fields=[f.name for f in dataclasses.fields(_cls)
                                                        if f.name != "label_names"], meta_fields=["label_names"])


def as_pytree(model: ToyModel, cls: type = Toy) -> Toy:
    return cls(**{f.name: getattr(model, f.name) for f in dataclasses.fields(ToyModel)})


@pytest.fixture(scope="module")
def toy():
    return as_pytree(make_toy_model(n_pix=200, s2=1.0 / 40.0**2))


@pytest.fixture(scope="module")
def linear():
    """The toy without its quadratic term: flux linear in the labels."""
    model = as_pytree(make_toy_model(n_pix=200, s2=1.0 / 40.0**2, seed=3))
    return dataclasses.replace(model, c=np.zeros_like(model.c))


@pytest.fixture(scope="module")
def untrained(toy):
    """The toy with 7 pixels it could not be trained on (variance inf); one object, so compiled once."""
    variance = np.array(toy.model_variance, dtype=float)
    variance[[3, 50, 51, 52, 120, 121, 199]] = np.inf
    return dataclasses.replace(toy, model_variance=variance)


def masked(flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spectra with 11 masked pixels (ivar 0, garbage flux)."""
    ivar = ivar.copy()
    ivar[:, [0, 10, 11, 12, 13, 80, 81, 82, 150, 151, 3]] = 0.0
    flux = flux.copy()
    flux[ivar == 0] = 7.0
    return flux, ivar


def gaussian_posterior(model: ToyModel, flux: np.ndarray, ivar: np.ndarray, n_draw: int, seed: int) -> np.ndarray:
    """Exact posterior draws ``(1, n_draw, n_star, 4)`` of the linear toy under a flat prior.

    teff, logg, fe_h: Gaussian (the box is far away at this SNR); alpha_m,
    which the spectrum does not constrain: uniform over its box.
    """
    rng = np.random.default_rng(seed)
    mean, scale = model.training_labels.mean(axis=0), model.training_labels.std(axis=0)
    b = model.b[:, :3]
    variance = np.asarray(model.model_variance, dtype=float)
    good = (ivar > 0) & np.isfinite(variance)
    draws = np.empty((n_draw, flux.shape[0], 4))
    for i in range(flux.shape[0]):
        w = np.where(good[i], 1.0 / (1.0 / np.where(good[i], ivar[i], 1.0) + np.where(good[i], variance, 0.0)), 0.0)
        precision = b.T @ (w[:, None] * b)
        cov = np.linalg.inv(precision)
        z_hat = cov @ (b.T @ (w * np.where(good[i], flux[i] - 1.0, 0.0)))
        z = rng.multivariate_normal(z_hat, cov, size=n_draw)
        draws[:, i, :3] = mean[:3] + scale[:3] * z
        draws[:, i, 3] = rng.uniform(*model.label_bounds[3], size=n_draw)
    return draws[None]


def test_log_likelihood_and_chi2_are_the_densitys(toy, untrained):
    truth, flux, ivar = simulate(toy, 3, snr=30, seed=5)
    model = untrained
    flux, ivar = masked(flux, ivar)
    rng = np.random.default_rng(0)
    labels = truth[None, None] + rng.normal(0.0, 0.01, size=(2, 5, 3, 4)) * np.ptp(toy.label_bounds, axis=1)
    scale = rng.uniform(0.8, 1.5, size=(2, 5, 3))
    jitter = rng.uniform(0.0, 0.01, size=(2, 5, 3))
    checks = predictive_checks(model, flux, ivar, labels, rng_key=jax.random.key(1), noise_scale=scale,
                               jitter=jitter, n_replicated=4)
    assert checks.log_likelihood.shape == checks.chi2.shape == (2, 5, 3)
    for chain, draw, star in [(0, 0, 0), (1, 4, 2), (0, 3, 1), (1, 1, 0)]:
        model_flux = model(jnp.asarray(labels[chain, draw, star]))
        args = (model_flux, flux[star], ivar[star], model.model_variance, scale[chain, draw, star],
                jitter[chain, draw, star])
        assert checks.log_likelihood[chain, draw, star] == pytest.approx(float(log_likelihood(*args)), rel=1e-12)
        assert checks.chi2[chain, draw, star] == pytest.approx(float(chi_square(*args)), rel=1e-12)
    good = (ivar > 0) & np.isfinite(model.model_variance)
    np.testing.assert_array_equal(checks.n_good, good.sum(axis=1))
    # replicated spectra: 2 per chain, NaN exactly where the likelihood has no pixel
    np.testing.assert_array_equal(checks.replicated_draws, [0, 4])
    assert checks.replicated.shape == (2, 2, 3, 200)
    np.testing.assert_array_equal(np.isfinite(checks.replicated), np.broadcast_to(good, checks.replicated.shape))
    # the kept replicates are the ones whose chi2 entered the p-values
    rep = checks.replicated[1, 1, 2]
    model_flux = model(jnp.asarray(labels[1, 4, 2]))
    chi2_rep = chi_square(model_flux, np.nan_to_num(rep), ivar[2], model.model_variance, scale[1, 4, 2],
                          jitter[1, 4, 2])
    assert checks.chi2_rep[1, 4, 2] == pytest.approx(float(chi2_rep), rel=1e-12)


def test_masked_pixels_do_not_enter_and_blocks_do_not_matter(toy, untrained):
    truth, flux, ivar = simulate(toy, 3, snr=30, seed=6)
    model = untrained
    flux, ivar = masked(flux, ivar)
    labels = truth + np.random.default_rng(1).normal(0.0, 0.01, (2, 5, 3, 4)) * np.ptp(BOUNDS, axis=1)
    whole = predictive_checks(model, flux, ivar, labels, rng_key=jax.random.key(2), n_replicated=4)
    other = flux.copy()
    other[ivar == 0] = -3.0  # another value at masked pixels
    other[:, ~np.isfinite(model.model_variance)] = 11.0  # and at untrained ones
    blocks = predictive_checks(model, other, ivar, labels, rng_key=jax.random.key(2), n_replicated=4,
                               max_elements=3 * 200)  # 1 star x 3 draws per block, the last padded
    for name in ("log_likelihood", "chi2", "chi2_rep", "p_value", "replicated"):
        np.testing.assert_allclose(getattr(blocks, name), getattr(whole, name), rtol=1e-12, err_msg=name)


def test_p_values_uniform_for_the_models_own_spectra(linear):
    truth, flux, ivar = simulate(linear, 60, snr=40, seed=7)
    draws = gaussian_posterior(linear, flux, ivar, 400, seed=8)
    checks = predictive_checks(linear, flux, ivar, draws, rng_key=jax.random.key(3))
    ks = stats.kstest(checks.p_value, "uniform")
    assert ks.pvalue > 0.01, (ks, np.sort(checks.p_value))
    # negative control: 3x the noise the ivar says
    rng = np.random.default_rng(9)
    clean = np.asarray(jax.vmap(linear)(jnp.asarray(truth)))
    noisy = clean + rng.normal(size=clean.shape) * np.sqrt(9.0 / ivar + linear.model_variance)
    control = predictive_checks(linear, noisy, ivar, gaussian_posterior(linear, noisy, ivar, 400, seed=10),
                                rng_key=jax.random.key(3))
    assert np.all(control.p_value < 0.01)


def test_emulated_draws_replace_the_labels_they_have():
    samples = {name: np.full((1, 2, 3), k, dtype=float) for k, name in enumerate(("a", "b", "c"))}
    phi = emulated_draws(samples, ("a", "b", "c"), {"emulated_b": np.full((1, 2, 3), 9.0)})
    np.testing.assert_array_equal(phi[0, 0, 0], [0.0, 9.0, 2.0])
    np.testing.assert_array_equal(replicate_draws(4, 10, 10), [0, 4, 9])  # 3 per chain
    assert replicate_draws(1, 10, 0).size == 0


def test_bad_inputs_are_named(toy, untrained):
    _, flux, ivar = simulate(toy, 3, snr=30, seed=5)
    with pytest.raises(PredictiveError, match="n_chain, n_draw, n_star"):
        predictive_checks(untrained, flux, ivar, np.zeros((1, 5, 4, 4)), rng_key=jax.random.key(0))
    labels = np.broadcast_to(toy.training_labels[:3], (2, 5, 3, 4)).copy()
    labels[0, 3, 1, 2] = np.nan  # a broken draw: that star's p-value is NaN, the others' are not
    checks = predictive_checks(untrained, flux, ivar, labels, rng_key=jax.random.key(0))
    assert np.all(np.isfinite(checks.p_value[[0, 2]])) and np.isnan(checks.p_value[1])
    assert np.isnan(checks.log_likelihood[0, 3, 1]) and np.isfinite(checks.log_likelihood[0, 2, 1])


@pytest.fixture(scope="module")
def nuts_run(toy):
    """NUTS on 3 stars of the toy with a label-space error, 2 chains, 10 replicated draws; what ``criticize`` got."""
    model = as_pytree(toy, ToyWithLabelError)
    truth, flux, ivar = simulate(model, 3, snr=30, seed=12)
    flux[1, 20:30] = np.nan  # masked (non-finite flux)
    seen = {}
    real = sample_module.criticize

    def spy(idata, model, flux, ivar, labels, *args):
        seen["labels"], seen["ivar"] = labels, ivar
        return real(idata, model, flux, ivar, labels, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sample_module, "criticize", spy)
        post = sample_nuts(model, flux, ivar, rng_key=jax.random.key(0), num_warmup=150, num_samples=100,
                           num_chains=2, init_labels=truth, init_sigma=0.02 * np.ptp(BOUNDS, axis=1) + 0 * truth,
                           identifiers=["a", "b", "c"], posterior_predictive=10, progress=False)
    return model, flux, post, seen


def test_nuts_log_likelihood_is_at_the_emulated_labels(nuts_run):
    model, flux, post, seen = nuts_run
    idata = post.idata
    # the emulator is evaluated at the emulated teff, not at teff; the other labels are the labels
    assert not np.allclose(seen["labels"][..., 0], idata.posterior["teff"].values)
    np.testing.assert_array_equal(seen["labels"][..., 2], idata.posterior["fe_h"].values)
    for chain, draw, star in [(1, 17, 2), (0, 99, 1)]:
        at = model(jnp.asarray(seen["labels"][chain, draw, star]))
        expected = log_likelihood(at, np.nan_to_num(flux[star]), seen["ivar"][star], model.model_variance)
        got = float(idata.log_likelihood["flux"].values[chain, draw, star])
        assert got == pytest.approx(float(expected), rel=1e-10)
    assert post.summary["ppc_chi2_p"].shape == (3,)
    assert np.all((post.summary["ppc_chi2_p"] > 0.0) & (post.summary["ppc_chi2_p"] < 1.0))


def test_posterior_file_reads_back_and_plot_ppc_runs(nuts_run, tmp_path):
    _, _, post, _ = nuts_run
    back = az.from_netcdf(str(post.to_netcdf(tmp_path / "posterior.nc")))
    assert {"posterior", "sample_stats", "observed_data", "constant_data", "log_likelihood",
            "posterior_predictive"} <= set(back.groups())
    assert set(back.posterior.data_vars) == {"teff", "logg", "fe_h", "alpha_m"}  # labels only, as before
    assert back.observed_data["flux"].dims == ("star", "pixel")
    assert list(back.observed_data["star"].values) == ["a", "b", "c"]
    assert np.all(np.isnan(back.observed_data["flux"].values[1, 20:30]))  # masked: not data of the likelihood
    np.testing.assert_array_equal(back.constant_data["ivar"].values[1, 20:30], 0.0)
    assert back.log_likelihood["flux"].dims == ("chain", "draw", "star")
    assert back.posterior_predictive["flux"].shape == (2, 5, 3, 200)  # ceil(10 / 2) draws per chain
    np.testing.assert_array_equal(back.posterior_predictive["draw"].values, [0, 25, 50, 74, 99])
    axes = az.plot_ppc(back, num_pp_samples=5, random_seed=0)
    assert np.size(axes) == 1
    az.plot_ppc(back, coords={"star": ["b"]}, num_pp_samples=5, random_seed=0)  # one star
    plt.close("all")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few draws and one observation per star: PSIS warns, as it should
        loo = az.loo(back, pointwise=True)
    assert loo.loo_i.shape == (3,)


def test_catalog_has_the_p_values(nuts_run, tmp_path):
    _, _, post, _ = nuts_run
    n, k = 3, 4
    eye = np.broadcast_to(np.eye(k), (n, k, k)).copy()
    fit = MapResult(label_names=post.label_names, labels=post.summary["median"], covariance=eye,
                    sigma=np.ones((n, k)), correlation=eye, chi2=np.full(n, 200.0), reduced_chi2=np.ones(n),
                    n_good=np.full(n, 200), model_flux=np.ones((n, 200)), start=post.summary["median"],
                    status=np.zeros(n, dtype=int), n_iter=np.ones(n, dtype=int), at_bound=np.zeros((n, k), bool),
                    log_posterior=np.zeros(n))
    table = build_catalog(list(post.identifiers), np.full(n, 30.0), fit, post)
    np.testing.assert_array_equal(table["PPC_CHI2_P"], post.summary["ppc_chi2_p"])
    path = write_catalog(table, tmp_path / "catalog.fits")
    header = fits.getheader(path, "CATALOG")
    number = Table.read(path, hdu="CATALOG").colnames.index("PPC_CHI2_P") + 1
    assert header[f"TCOMM{number}"].startswith("posterior-predictive p-value of chi2")
    assert "PPC_CHI2_P" not in build_catalog(list(post.identifiers), np.full(n, 30.0), fit).colnames
    assert build_parser().parse_args(["sample", "x.fits", "-o", "x.nc", "--ppc", "7"]).ppc == 7


def test_emcee_and_switching_the_checks_off(toy):
    truth, flux, ivar = simulate(toy, 1, snr=30, seed=13)
    post = sample_emcee(toy, flux, ivar, seed=1, n_walkers=16, n_steps=150, n_burn=50, init_labels=truth,
                        posterior_predictive=32, progress=False)
    assert post.idata.log_likelihood["flux"].shape == (16, 100, 1)
    assert post.idata.posterior_predictive["flux"].shape == (16, 2, 1, 200)
    assert 0.0 <= post.summary["ppc_chi2_p"][0] <= 1.0
    bare = sample_emcee(toy, flux, ivar, seed=1, n_walkers=16, n_steps=150, n_burn=50, init_labels=truth,
                        log_likelihood=False, progress=False)
    assert "log_likelihood" not in bare.idata.groups() and "ppc_chi2_p" not in bare.summary
    np.testing.assert_array_equal(bare.idata.posterior["teff"].values, post.idata.posterior["teff"].values)

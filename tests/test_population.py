"""Population inference: densities, the sampling prior's record, SBC of the hyperparameters, negative controls,
the two routes against each other, and stars in groups (binaries, clusters)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import stats
from toymodel import BOUNDS, LABELS, make_toy_model

from bayesslam.infer import box_prior, custom_prior, prior_from_record, prior_record, sample_nuts
from bayesslam.infer.priors import PriorError, training_density_prior
from bayesslam.infer.results import to_inference_data
from bayesslam.population import (
    GaussianPopulation,
    HistogramPopulation,
    MixturePopulation,
    PopulationError,
    StarDraws,
    combine_draws,
    draws_from_posterior,
    effective_draws,
    parse_population_model,
    reweight_population,
    reweight_populations,
    sample_population,
    truncated_normal_log_density,
)
from bayesslam.population.groups import GroupError, assign_groups, read_groups, sample_groups

FE_H = tuple(BOUNDS[2])  # (-0.6, 0.5)
#: Stars and reweighting settings of the joint-vs-reweighting test (shared with another test: one compilation).
N_AGREE = 24
AGREE_SETTINGS = dict(num_warmup=300, num_samples=800, num_chains=2, seed=3)
#: Simulated populations of the SBC test, and their stars and draws per star.
SBC_POPULATIONS = 50
SBC_SHAPE = (30, 200)


@pytest.fixture(scope="module", autouse=True)
def _in_float64(x64):
    """The tests build JAX arrays themselves: 64 bits for them (see conftest.x64)."""


def _density_integral(model, hyper) -> float:
    grid = np.linspace(*FE_H, 20001)
    return float(np.trapezoid(np.exp(np.asarray(model.log_density(jnp.asarray(grid), hyper, FE_H))), grid))


def test_population_densities_are_normalized_over_the_box():
    for mean, sd in [(0.0, 0.1), (0.45, 0.03), (-2.0, 0.2), (3.0, 0.05)]:
        a, b = (FE_H[0] - mean) / sd, (FE_H[1] - mean) / sd
        x = np.linspace(*FE_H, 9)
        np.testing.assert_allclose(truncated_normal_log_density(jnp.asarray(x), mean, sd, *FE_H),
                                   stats.truncnorm.logpdf(x, a, b, loc=mean, scale=sd), rtol=1e-9, atol=1e-9)
    assert _density_integral(GaussianPopulation(), {"mean": 0.2, "sd": 0.3}) == pytest.approx(1.0, abs=1e-6)
    mixture = {"weight": jnp.array([0.3, 0.7]), "mean": jnp.array([-0.3, 0.2]), "sd": jnp.array([0.1, 0.4])}
    assert _density_integral(MixturePopulation(2), mixture) == pytest.approx(1.0, abs=1e-6)
    assert _density_integral(HistogramPopulation(4), {"weight": jnp.array([0.1, 0.2, 0.3, 0.4])}) == \
        pytest.approx(1.0, abs=1e-3)
    assert np.isneginf(float(GaussianPopulation().log_density(jnp.asarray(0.6), {"mean": 0.0, "sd": 0.1}, FE_H)))


def test_parse_population_model():
    assert parse_population_model("gaussian") == GaussianPopulation()
    assert parse_population_model("mixture:3") == MixturePopulation(3)
    assert parse_population_model("histogram") == HistogramPopulation()
    assert parse_population_model("histogram:6") == HistogramPopulation(6)
    for bad in ("gauss", "mixture:0", "gaussian:2", "histogram:1", ""):
        with pytest.raises(PopulationError):
            parse_population_model(bad)


def test_prior_record_round_trip():
    box = box_prior(LABELS, BOUNDS)
    assert prior_from_record(prior_record(box)) == box
    custom = custom_prior(LABELS, BOUNDS, {"fe_h": dist.TruncatedNormal(-0.1, 0.2, low=-0.6, high=0.5),
                                           "teff": dist.Normal(3500.0, 200.0)})
    rebuilt = prior_from_record(prior_record(custom))
    x = jnp.array([[3400.0, 4.7, 0.1, 0.0]])
    assert float(rebuilt.log_prob(x)[0]) == pytest.approx(float(custom.log_prob(x)[0]), rel=1e-12)
    kde = training_density_prior(LABELS, BOUNDS, np.random.default_rng(0).uniform(BOUNDS[:, 0], BOUNDS[:, 1], (50, 4)))
    with pytest.raises(PriorError, match="cannot be rebuilt"):
        prior_from_record(prior_record(kde))
    with pytest.raises(PriorError, match="not a bayesslam prior record"):
        prior_from_record("{not json")


# --- reweighting: exact per-star posteriors of a label measured with Gaussian errors --------------------------


def _population_draws(rng, mean, sd, n_star, n_draw, *, error=(0.05, 0.15), shrink=1.0, prior=None):
    """Per-star draws of [Fe/H] for stars from a truncated Gaussian population, measured with Gaussian errors.

    Each star's posterior under its sampling prior is exact: a truncated Normal around its measurement
    (uniform prior) or the product with a Normal prior ``(mu0, s0)``. ``shrink`` < 1 makes the draws
    over-confident (a negative control).
    """
    lo, hi = FE_H
    truth = stats.truncnorm.rvs((lo - mean) / sd, (hi - mean) / sd, loc=mean, scale=sd, size=n_star,
                                random_state=rng)
    err = rng.uniform(*error, n_star)
    obs = truth + err * rng.normal(size=n_star)
    loc, scale = obs, err
    if prior is not None:
        mu0, s0 = prior
        scale = 1.0 / np.sqrt(1.0 / err**2 + 1.0 / s0**2)
        loc = scale**2 * (obs / err**2 + mu0 / s0**2)
    scale = scale * shrink
    values = stats.truncnorm.rvs((lo - loc[:, None]) / scale[:, None], (hi - loc[:, None]) / scale[:, None],
                                 loc=loc[:, None], scale=scale[:, None], size=(n_star, n_draw), random_state=rng)
    if prior is None:
        log_prior = np.full_like(values, -np.log(hi - lo))
    else:
        log_prior = np.asarray(dist.Normal(*prior).log_prob(values))
    return StarDraws("fe_h", tuple(f"s{i}" for i in range(n_star)), values, log_prior, FE_H)


def _covers(result, truth: dict[str, float], level: float) -> dict[str, bool]:
    out = {}
    for name, value in truth.items():
        draws = result.hyper_draws()[name]
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
        out[name] = bool(lo <= value <= hi)
    return out


def _coverage(results, truths, level: float) -> np.ndarray:
    """Fraction of the populations whose central ``level`` interval holds the true mean and sd (two rates)."""
    return np.array([[c["mean"], c["sd"]] for c in (_covers(r, t, level) for r, t in zip(results, truths))]).mean(0)


@pytest.mark.slow
def test_hyperparameters_are_calibrated_over_repeated_populations():
    """SBC of the Gaussian population's mean and sd over 50 populations drawn from the hyperprior; negative
    controls on the same populations: draws sampled under a Normal prior that is not divided out, and
    over-confident per-star posteriors (half their width), bias the intrinsic scatter and fail the coverage."""
    model = GaussianPopulation(sd_min_fraction=0.05, sd_max_fraction=0.3)
    rng = np.random.default_rng(20261207)
    width = FE_H[1] - FE_H[0]
    truths, right, undivided, confident = [], [], [], []
    for _ in range(SBC_POPULATIONS):
        truth = {"mean": rng.uniform(*FE_H), "sd": rng.uniform(0.05 * width, 0.3 * width)}
        truths.append(truth)
        seed = int(rng.integers(2**31))
        right.append(_population_draws(np.random.default_rng(seed), truth["mean"], truth["sd"], *SBC_SHAPE))
        sampled = _population_draws(np.random.default_rng(seed), truth["mean"], truth["sd"], *SBC_SHAPE,
                                    prior=(-0.05, 0.15))
        undivided.append(StarDraws(sampled.label, sampled.identifiers, sampled.values,
                                   np.zeros_like(sampled.log_prior), FE_H))
        confident.append(_population_draws(np.random.default_rng(seed), truth["mean"], truth["sd"], *SBC_SHAPE,
                                           shrink=0.5))
    results = reweight_populations(right + undivided + confident, model, num_warmup=200, num_samples=400,
                                   num_chains=1, seed=1)
    n = SBC_POPULATIONS
    fits = {"right": results[:n], "undivided": results[n:2 * n], "confident": results[2 * n:]}
    def calibrated(results) -> bool:
        """68% and 95% coverage of the mean and the sd within 3 binomial standard errors of nominal."""
        return all(np.all(np.abs(_coverage(results, truths, level) - level)
                          < 3 * np.sqrt(level * (1 - level) / len(truths))) for level in (0.6827, 0.95))

    assert calibrated(fits["right"]), [_coverage(fits["right"], truths, level) for level in (0.6827, 0.95)]
    assert not calibrated(fits["undivided"]) and not calibrated(fits["confident"])
    bias = {key: np.mean([np.median(r.hyper_draws()["sd"]) - t["sd"] for r, t in zip(fits[key], truths)])
            for key in fits}
    assert abs(bias["right"]) < 0.01 and abs(bias["undivided"]) > 0.02 and abs(bias["confident"]) > 0.02, bias


def test_reweighting_reports_unsupported_stars(caplog):
    """A population far narrower than the stars' draws leaves few effective draws per star: a warning says so."""
    rng = np.random.default_rng(3)
    draws = _population_draws(rng, 0.0, 0.01, N_AGREE, 800, error=(0.3, 0.3))
    with caplog.at_level("WARNING"):
        result = reweight_population(draws, GaussianPopulation(), n_check=10**6, **AGREE_SETTINGS)
    assert result.effective_draws.min() < 20
    assert "effective draws" in caplog.text
    # the reported per-star minimum is Kish's formula over the hyperposterior draws (numpy, all at once)
    hyper = result.hyper_draws()
    log_w = np.stack([GaussianPopulation().log_density(draws.values, {"mean": m, "sd": s}, draws.bounds)
                      - draws.log_prior for m, s in zip(hyper["mean"], hyper["sd"])])
    np.testing.assert_allclose(result.effective_draws, effective_draws(log_w).min(axis=0), rtol=2e-3)


def test_draws_from_posterior_divides_the_recorded_prior(tmp_path):
    rng = np.random.default_rng(0)
    ids = ("a", "b", "c")
    samples = {name: rng.uniform(lo, hi, size=(2, 50, 3)) for name, (lo, hi) in zip(LABELS, BOUNDS)}
    prior = custom_prior(LABELS, BOUNDS, {"fe_h": dist.TruncatedNormal(0.0, 0.2, low=FE_H[0], high=FE_H[1])})
    idata = to_inference_data(samples, None, ids, "nuts", prior_record(prior))
    path = tmp_path / "posterior.nc"
    idata.to_netcdf(str(path))
    draws = draws_from_posterior(path, "fe_h", stars=["c", "a"])
    assert draws.identifiers == ("c", "a") and draws.values.shape == (2, 100)
    np.testing.assert_allclose(draws.values[0], samples["fe_h"][..., 2].reshape(-1))
    a, b = FE_H[0] / 0.2, FE_H[1] / 0.2
    np.testing.assert_allclose(draws.log_prior, stats.truncnorm.logpdf(draws.values, a, b, 0.0, 0.2), rtol=1e-6)
    assert draws.bounds == FE_H
    unbounded = to_inference_data(samples, None, ids, "nuts",
                                  prior_record(custom_prior(LABELS, BOUNDS, {"fe_h": dist.Normal(0.0, 0.2)})))
    with pytest.raises(PopulationError, match="unbounded"):
        draws_from_posterior(unbounded, "fe_h")
    with pytest.raises(PopulationError, match="no label 'vsini'"):
        draws_from_posterior(path, "vsini")
    with pytest.raises(PopulationError, match="not in the posterior"):
        draws_from_posterior(path, "fe_h", stars=["zz"])
    bare = to_inference_data(samples, None, ids, "nuts")
    with pytest.raises(PopulationError, match="do not record the prior"):
        draws_from_posterior(bare, "fe_h")
    with pytest.raises(PopulationError, match="no posterior file"):
        draws_from_posterior(tmp_path / "missing.nc", "fe_h")
    # two posterior files (e.g. two chunks of a survey), each divided by its own prior, as one sample
    other = {name: v[:1, :30] for name, v in samples.items()}  # one chain of 30 draws
    second = to_inference_data(other, None, ("d", "e", "f"), "nuts", prior_record(box_prior(LABELS, BOUNDS)))
    both = combine_draws([draws_from_posterior(path, "fe_h"), draws_from_posterior(second, "fe_h")])
    assert both.identifiers == ("a", "b", "c", "d", "e", "f") and both.values.shape == (6, 30)
    np.testing.assert_allclose(both.log_prior[3:], -np.log(FE_H[1] - FE_H[0]))
    np.testing.assert_allclose(both.log_prior[:3], stats.truncnorm.logpdf(both.values[:3], a, b, 0.0, 0.2), rtol=1e-6)
    with pytest.raises(PopulationError, match="more than one posterior"):
        combine_draws([draws_from_posterior(path, "fe_h"), draws_from_posterior(path, "fe_h", stars=["b"] * 2)])
    with pytest.raises(PopulationError, match="different labels"):
        combine_draws([draws_from_posterior(path, "fe_h"), draws_from_posterior(second, "alpha_m")])


# --- the joint route and stars in groups, on the toy emulator ---------------------------------------------------


@pytest.fixture(scope="module")
def toy():
    return make_toy_model()


def _observe(model, truth, snr, rng):
    clean = np.asarray(jax.vmap(model)(jnp.asarray(truth)))
    flux = clean + rng.normal(size=clean.shape) * np.sqrt(1.0 / snr**2 + model.model_variance)
    return flux, np.full(clean.shape, float(snr) ** 2)


def _field(rng, n, fe_h_mean=-0.1, fe_h_sd=0.1):
    margin = 0.1 * (BOUNDS[:, 1] - BOUNDS[:, 0])
    truth = rng.uniform(BOUNDS[:, 0] + margin, BOUNDS[:, 1] - margin, size=(n, 4))
    truth[:, 2] = stats.truncnorm.rvs((FE_H[0] - fe_h_mean) / fe_h_sd, (FE_H[1] - fe_h_mean) / fe_h_sd,
                                      loc=fe_h_mean, scale=fe_h_sd, size=n, random_state=rng)
    return truth


@pytest.mark.slow
def test_joint_model_and_reweighting_agree(toy):
    """Route (a), every star's spectrum in one model, and route (b), reweighted per-star NUTS draws, agree."""
    rng = np.random.default_rng(11)
    truth = _field(rng, N_AGREE)
    flux, ivar = _observe(toy, truth, 15, rng)
    joint = sample_population(toy, flux, ivar, label="fe_h", population=GaussianPopulation(), num_warmup=300,
                              num_samples=800, seed=1)
    per_star = sample_nuts(toy, flux, ivar, rng_key=jax.random.key(2), num_warmup=300, num_samples=800,
                           progress=False)
    reweighted = reweight_population(draws_from_posterior(per_star, "fe_h"), GaussianPopulation(), **AGREE_SETTINGS)
    a, b = joint.hyper_draws(), reweighted.hyper_draws()
    for name in ("mean", "sd"):
        assert abs(np.mean(a[name]) - np.mean(b[name])) < 0.35 * np.std(a[name]), name
        assert np.std(b[name]) == pytest.approx(np.std(a[name]), rel=0.3)
    sample_sd = float(np.std(truth[:, 2], ddof=1))
    for result in (joint, reweighted):
        draws = result.hyper_draws()
        assert np.quantile(draws["mean"], 0.005) < truth[:, 2].mean() < np.quantile(draws["mean"], 0.995)
        assert np.quantile(draws["sd"], 0.005) < sample_sd < np.quantile(draws["sd"], 0.995)
    shrunk = reweighted.star_estimates()
    # partial pooling moves the stars' estimates toward the population: closer to the truth on average
    assert np.mean((shrunk["median"] - truth[:, 2]) ** 2) < np.mean((shrunk["own_median"] - truth[:, 2]) ** 2)


def test_groups_table_and_bad_groupings(tmp_path):
    table = tmp_path / "groups.csv"
    table.write_text("identifier,group\na,g1\nb,g1\nc,g2\nd,g2\n")
    mapping = read_groups(table)
    groups = assign_groups(["a", "b", "c", "d"], mapping)
    assert groups.names == ("g1", "g2") and groups.group_of.tolist() == [0, 0, 1, 1]
    with pytest.raises(GroupError, match="not among the spectra"):
        assign_groups(["a", "b", "c"], mapping)
    with pytest.raises(GroupError, match="in no group"):
        assign_groups(["a", "b", "c", "d", "e"], mapping)
    with pytest.raises(GroupError, match="single star"):
        assign_groups(["a", "b", "c"], {"a": "g1", "b": "g1", "c": "g2"})
    (tmp_path / "twice.csv").write_text("identifier,group\na,g1\na,g2\n")
    with pytest.raises(GroupError, match="more than once"):
        read_groups(tmp_path / "twice.csv")
    (tmp_path / "cols.csv").write_text("star,cluster\na,g1\n")
    with pytest.raises(GroupError, match="no column"):
        read_groups(tmp_path / "cols.csv")


@pytest.mark.slow
def test_binaries_share_a_narrower_covering_metallicity(toy):
    """A pair's shared [Fe/H] is ~1/sqrt(2) as wide as one star's at equal SNR, and covers the truth."""
    rng = np.random.default_rng(5)
    n_pair = 40
    truth = _field(rng, 2 * n_pair)
    truth[1::2, 2:] = truth[0::2, 2:]  # partners share [Fe/H] and [alpha/M]
    flux, ivar = _observe(toy, truth, 15, rng)
    ids = [f"s{i}" for i in range(2 * n_pair)]
    groups = assign_groups(ids, {star: f"pair{i // 2}" for i, star in enumerate(ids)})
    with pytest.raises(GroupError, match="model's labels"):
        sample_groups(toy, flux, ivar, groups, rng_key=jax.random.key(0), shared=("vsini",))
    joint = sample_groups(toy, flux, ivar, groups, rng_key=jax.random.key(0), num_warmup=250, num_samples=400,
                          progress=False)
    single = sample_nuts(toy, flux, ivar, rng_key=jax.random.key(1), num_warmup=250, num_samples=400,
                         progress=False)
    sd_one = single.summary["sd"][:, 2]
    sd_pair = joint.group_summary["sd"][:, 0]
    assert np.median(sd_pair / np.sqrt(sd_one[0::2] * sd_one[1::2])) == pytest.approx(2**-0.5, abs=0.07)
    z = (joint.group_summary["median"][:, 0] - truth[0::2, 2]) / sd_pair
    se = np.sqrt(0.6827 * 0.3173 / n_pair)
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 3 * se
    # every member carries its group's draws
    np.testing.assert_array_equal(joint.stars.idata.posterior["fe_h"].values[..., 0],
                                  joint.group_draws["group_fe_h"][..., 0])
    table = joint.table()
    assert list(table["GROUP"][:2]) == ["pair0", "pair1"] and np.all(table["N_STARS"] == 2)
    assert "GROUP_FE_H_MEDIAN" in table.colnames


@pytest.mark.slow
def test_cluster_intrinsic_scatter_is_recovered(toy):
    rng = np.random.default_rng(9)
    truth = _field(rng, 60, fe_h_mean=0.05, fe_h_sd=0.08)
    flux, ivar = _observe(toy, truth, 20, rng)
    ids = [f"m{i}" for i in range(len(truth))]
    groups = assign_groups(ids, dict.fromkeys(ids, "cluster"))
    result = sample_groups(toy, flux, ivar, groups, rng_key=jax.random.key(4), shared=("fe_h",), scatter=True,
                           num_warmup=300, num_samples=300, num_chains=2, progress=False)
    mean, scatter = result.group_draws["group_fe_h"].reshape(-1), result.group_draws["scatter_fe_h"].reshape(-1)
    for draws, value in ((mean, truth[:, 2].mean()), (scatter, np.std(truth[:, 2], ddof=1))):
        assert np.quantile(draws, 0.0015) < value < np.quantile(draws, 0.9985), (np.quantile(draws, [0.16, 0.84]), value)
    assert result.group_summary["r_hat"].max() < 1.05

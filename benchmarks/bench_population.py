"""Benchmark population inference: a 10,000-star [Fe/H] distribution, a mock cluster and mock wide binaries.

One command; each section prints its figures and writes its JSON record
(``benchmarks/results/bench_population-<section>.json``; ``--results PATH``
with ``--only``)::

    python benchmarks/bench_population.py                   # all three sections
    python benchmarks/bench_population.py --only mdf        # or cluster, binaries

``python benchmarks/report.py`` turns the records into ``docs/benchmarks.md``.

* ``mdf``: a Gaussian metallicity distribution of ``--mdf-stars`` (10,000)
  stars from per-star draws, built analytically: true [Fe/H] from a Gaussian
  of mean -0.1 and sd 0.15 truncated to the box [-0.6, 0.5]; each star
  measured with an error drawn uniformly in 0.05-0.2 dex, so that its exact
  posterior under the uniform box prior is a normal around the measurement
  truncated to the box; ``--mdf-draws`` (1000) draws per star. Wall time of
  :func:`bayesslam.population.reweight_population` with
  :class:`~bayesslam.population.GaussianPopulation` and the default NUTS
  settings (500 warm-up + 1000 draws, 2 chains), end to end: the first call
  (compilation included) and a second call on new draws of the same shape
  (the compiled sampler is reused), for each ``max_draws`` of ``--max-draws``
  (100, 250, 1000), with ``n_check`` hyperposterior draws checked (``--n-check``,
  the library's default 200); the hyperparameters against the truth, the smallest
  per-star effective number of draws and the largest Monte Carlo variance of
  log L. Baseline in the same run: the same likelihood
  (``bayesslam.population.reweighting._hyper_model``) sampled with a plain
  ``numpyro.infer.MCMC(NUTS(...))`` (same warm-up, draws and chains, chains
  run sequentially, the same draws per star), one call, compilation included.
* ``cluster``: ``--n-cluster`` (150) mock members of one cluster
  (``bayesslam.mock.generate_survey_files``, SNR 3-50, dispersion 0.03 dex)
  sampled with the shipped default model by
  :func:`bayesslam.pipeline.sample_grouped` (``scatter=True``,
  ``shared=("fe_h",)``): wall time, the group's [Fe/H] and intrinsic scatter
  (median and central 68%) against the members' true mean and sd and the
  generator's mean and dispersion, R-hat.
* ``binaries``: ``--n-pairs`` (256) mock wide binaries, sampled jointly by
  :func:`~bayesslam.pipeline.sample_grouped` (exact sharing of [Fe/H] and
  [alpha/M]) and, as the baseline, each star alone by :func:`bayesslam.sample`
  (one chain each): wall time per pair and chain for both, the median ratio
  of a pair's [Fe/H] posterior sd to the geometric mean of its two single-star
  sds (about 1/sqrt(2) = 0.71 expected), and the coverage of the true [Fe/H]
  by the central 68% intervals.

Before each timed run the 1-minute load average is read; above 1.5 (other
jobs on the machine) the benchmark waits (60 s, at most 10 times) and prints
the load it was measured at.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import tempfile
import time
from pathlib import Path

import _record
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from bayesslam._precision import float64
from bayesslam.population import GaussianPopulation, StarDraws, reweight_population

SECTIONS = ("mdf", "cluster", "binaries")
#: The analytic metallicity distribution of the ``mdf`` section.
MDF_MEAN, MDF_SD, MDF_BOX = -0.1, 0.15, (-0.6, 0.5)
MDF_ERRORS = (0.05, 0.2)
Q16, Q84 = 0.15865525393145707, 0.8413447460685429
fig = _record.figure


#: Wait before a timed run while the 1-minute load average is above this (``--max-load``).
MAX_LOAD = [1.5]


def quiet_load(what: str, wait_s: int = 60, tries: int = 10) -> float:
    """The 1-minute load average, after waiting (``wait_s``, at most ``tries`` times) while it exceeds ``limit``."""
    limit = MAX_LOAD[0]
    load = os.getloadavg()[0]
    for _ in range(tries):
        if load <= limit:
            break
        print(f"  load average {load:.2f} > {limit} before {what}: waiting {wait_s} s", flush=True)
        time.sleep(wait_s)
        load = os.getloadavg()[0]
    return round(load, 2)


def show(figures: list[dict]) -> None:
    for f in figures:
        value = f["value"]
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {f['name']:<72} {text:>10} {f['unit']:<10} {f['note']}", flush=True)


#: Leapfrog steps of every NUTS iteration of the runs made since :func:`count_steps` was last called.
STEPS: list[np.ndarray] = []


def count_steps() -> None:
    """Record ``num_steps`` of every NUTS run of :mod:`bayesslam.population.groups` and :mod:`bayesslam.infer.sample`.

    Wraps their ``build_nuts_runner`` (the runners are cached, so this is done before the first one is
    built); the figures need nothing else from the package. Clears what was recorded.
    """
    import bayesslam.infer.sample as sample_module
    import bayesslam.population.groups as groups_module

    STEPS.clear()
    for module in (groups_module, sample_module):
        if getattr(module.build_nuts_runner, "_counted", False):
            continue
        original = module.build_nuts_runner

        def build(*args, _original=original, **kwargs):
            runner = _original(*args, **kwargs)

            def run(keys, z0, inverse_mass, data, n_valid, *rest, **options):
                out = runner(keys, z0, inverse_mass, data, n_valid, *rest, **options)
                STEPS.append(np.asarray(out.num_steps)[: int(n_valid)])
                return out

            return run

        build._counted = True
        module.build_nuts_runner = build


def step_figures(prefix: str, num_warmup: int) -> list[dict]:
    """Mean leapfrog steps per iteration (warm-up, draws) and the fraction of draws at the maximum tree depth."""
    if not STEPS:
        return []
    warm = np.concatenate([s[:, :num_warmup].reshape(-1) for s in STEPS])
    draw = np.concatenate([s[:, num_warmup:].reshape(-1) for s in STEPS])
    STEPS.clear()
    return [fig(f"{prefix}: leapfrog steps per iteration, draws, mean", float(draw.mean()), "steps",
                note=f"warm-up mean {warm.mean():.0f}; median of draws {np.median(draw):.0f}"),
            fig(f"{prefix}: draws at the maximum tree depth (1023 steps)", float(np.mean(draw >= 1023)),
                "fraction")]


# ---------------------------------------------------------------------------------------------- mdf


def truncated_normal_draws(mean: np.ndarray, sd: np.ndarray, low: float, high: float, n: int,
                           rng: np.random.Generator) -> np.ndarray:
    """``n`` draws per row of Normal(mean, sd) truncated to [low, high], by the inverse CDF (upper tail mirrored)."""
    mean, sd = np.asarray(mean, float)[:, None], np.asarray(sd, float)[:, None]
    a, b = (low - mean) / sd, (high - mean) / sd
    flip = a > 0  # both bounds in the upper tail: sample the mirrored interval, where Phi does not saturate at 1
    a, b = np.where(flip, -b, a), np.where(flip, -a, b)
    pa, pb = special.ndtr(a), special.ndtr(b)
    u = pa + (pb - pa) * rng.random((mean.shape[0], n))
    z = special.ndtri(np.clip(u, 1e-300, 1.0 - 1e-16))
    z = np.clip(np.where(flip, -z, z), (low - mean) / sd, (high - mean) / sd)
    return mean + sd * z


def mock_mdf_draws(n_star: int, n_draw: int, seed: int) -> tuple[StarDraws, np.ndarray]:
    """Per-star draws of [Fe/H] of a truncated-Gaussian population (exact posteriors), and the true values."""
    rng = np.random.default_rng(seed)
    low, high = MDF_BOX
    truth = stats.truncnorm.rvs((low - MDF_MEAN) / MDF_SD, (high - MDF_MEAN) / MDF_SD, loc=MDF_MEAN, scale=MDF_SD,
                                size=n_star, random_state=rng)
    error = rng.uniform(*MDF_ERRORS, n_star)
    measured = truth + error * rng.standard_normal(n_star)
    values = truncated_normal_draws(measured, error, low, high, n_draw, rng)
    log_prior = np.full(values.shape, -np.log(high - low))  # the uniform box prior the draws are "sampled" under
    identifiers = tuple(f"star{i:05d}" for i in range(n_star))
    return StarDraws("fe_h", identifiers, values, log_prior, MDF_BOX), truth


def _interval(draws: np.ndarray) -> tuple[float, float, float]:
    q16, median, q84 = np.quantile(np.asarray(draws).reshape(-1), [Q16, 0.5, Q84])
    return float(median), float(q16), float(q84)


def plain_mcmc(draws: StarDraws, max_draws: int, num_warmup: int, num_samples: int, num_chains: int,
               seed: int) -> dict[str, np.ndarray]:
    """The baseline: a plain ``numpyro.infer.MCMC(NUTS)`` on the package's reweighted likelihood, the same draws."""
    from numpyro.infer import MCMC, NUTS

    from bayesslam.population.reweighting import _hyper_model

    bound = functools.partial(_hyper_model, population=GaussianPopulation(), bounds=draws.bounds)
    mcmc = MCMC(NUTS(bound), num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method="sequential", progress_bar=False)
    used = draws.thinned(max_draws, seed)  # the same subset reweight_population uses
    with float64():
        mcmc.run(jax.random.key(seed), jnp.asarray(used.values, dtype="float32"),
                 jnp.asarray(used.log_prior, dtype="float32"))
        samples = mcmc.get_samples()
        jax.block_until_ready(samples)
    return {k: np.asarray(v) for k, v in samples.items()}


def section_mdf(args) -> list[dict]:
    n_star, n_draw = args.mdf_stars, args.mdf_draws
    warmup, samples, chains = args.mdf_warmup, args.mdf_samples, args.mdf_chains
    print(f"mdf: {n_star} stars x {n_draw} exact posterior draws, Gaussian population (truth mean {MDF_MEAN}, "
          f"sd {MDF_SD}, box {MDF_BOX}); NUTS {warmup} + {samples}, {chains} chains", flush=True)
    first, truth = mock_mdf_draws(n_star, n_draw, args.seed)
    second, _ = mock_mdf_draws(n_star, n_draw, args.seed + 1)
    print(f"  true values: mean {truth.mean():+.4f}, sd {truth.std():.4f} (the sample's own)", flush=True)
    figures = [fig("true [Fe/H] of the stars, sample mean", float(truth.mean()), "dex",
                   note=f"population mean {MDF_MEAN}, truncated to {MDF_BOX}"),
               fig("true [Fe/H] of the stars, sample sd", float(truth.std()), "dex",
                   note=f"population sd {MDF_SD}, truncated to {MDF_BOX}")]
    met = []
    for max_draws in args.max_draws:
        tag = f"max_draws {max_draws}"
        seconds, loads = {}, {}
        for call, draws in (("first call", first), ("second call", second)):
            loads[call] = quiet_load(f"{tag}, {call}")
            t = time.perf_counter()
            result = reweight_population(draws, GaussianPopulation(), num_warmup=warmup, num_samples=samples,
                                         num_chains=chains, seed=args.seed, max_draws=max_draws,
                                         n_check=args.n_check)
            seconds[call] = time.perf_counter() - t
            if call == "first call":
                kept = result
        summary = kept.summary()
        mean, sd = summary["mean"], summary["sd"]
        n_eff = float(np.min(kept.effective_draws))
        variance = float(np.max(kept.log_likelihood_variance))
        divergent = int(np.sum(kept.idata.sample_stats["diverging"].values))
        rows = [
            fig(f"reweight_population, {tag}, first call", seconds["first call"], "s",
                note=f"{n_star} stars; {warmup} + {samples}, {chains} chains; n_check {args.n_check}; compilation "
                     f"included; load average {loads['first call']}"),
            fig(f"reweight_population, {tag}, second call (new draws, same shape)", seconds["second call"], "s",
                note=f"compiled sampler reused; load average {loads['second call']}"),
            fig(f"{tag}: mean, posterior median", mean["median"], "dex",
                note=f"68% [{mean['q16']:+.4f}, {mean['q84']:+.4f}]; truth {MDF_MEAN}"),
            fig(f"{tag}: sd, posterior median", sd["median"], "dex",
                note=f"68% [{sd['q16']:.4f}, {sd['q84']:.4f}]; truth {MDF_SD}"),
            fig(f"{tag}: smallest per-star effective draws", n_eff, "draws",
                note=f"over {n_star} stars and {args.n_check} checked hyperposterior draws; of "
                     f"{min(max_draws, n_draw)}"),
            fig(f"{tag}: max Monte Carlo variance of log L", variance, "",
                note="over the checked hyperposterior draws (warning above 1)"),
            fig(f"{tag}: divergent transitions", divergent, "", note="first call"),
        ]
        if not args.no_baseline:
            load = quiet_load(f"{tag}, baseline")
            t = time.perf_counter()
            base_draws = plain_mcmc(first, max_draws, warmup, samples, chains, args.seed)
            base = time.perf_counter() - t
            name = f"plain numpyro MCMC(NUTS), {tag}"
            b_mean, b_sd = _interval(base_draws["mean"]), _interval(base_draws["sd"])
            rows += [
                fig(name, base, "s",
                    note=f"same likelihood, draws and NUTS settings; chains sequential; compilation included (a few "
                         f"s); load average {load}; hyperposterior mean {b_mean[0]:+.4f}, sd {b_sd[0]:.4f}"),
                fig(f"speed-up against plain MCMC, {tag}, first call", base / seconds["first call"], "x",
                    baseline=name),
                fig(f"speed-up against plain MCMC, {tag}, second call", base / seconds["second call"], "x",
                    baseline=name, note="the baseline's time includes its (short) compilation"),
            ]
        show(rows)
        figures += rows
        if seconds["first call"] < args.target_s:
            met.append(max_draws)
    verdict = (f"met with max_draws {', '.join(map(str, met))}" if met else "not met with any max_draws tried")
    print(f"  target: {n_star} stars end to end (first call, compilation included) under {args.target_s:g} s: "
          f"{verdict}", flush=True)
    figures.append(fig(f"target: first call under {args.target_s:g} s", bool(met), "",
                       note=verdict + f" (tried {', '.join(map(str, args.max_draws))})"))
    return figures


# ------------------------------------------------------------------------------------------ cluster


def _labels_table(folder: Path):
    from astropy.table import Table

    return Table.read(folder / "labels.csv", format="ascii.csv")


def section_cluster(args, model) -> list[dict]:
    from bayesslam.mock import generate_survey_files
    from bayesslam.mock.population import PAPER_DOMAIN, draw_teff_fe_h
    from bayesslam.pipeline import sample_grouped

    n, warmup, samples, chains = args.n_cluster, args.cluster_warmup, args.cluster_samples, args.cluster_chains
    dispersion = 0.03
    # the generator's cluster mean: generate_survey_files(folder, 0, seed, n_cluster=n) draws it first, from the field
    generator_mean = float(draw_teff_fe_h(1, np.random.default_rng(args.seed), PAPER_DOMAIN, "birky2020")[1][0])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate_survey_files(folder, 0, args.seed, n_cluster=n, cluster_dispersion=dispersion)
        table = _labels_table(folder)
        files = [folder / str(f) for f in table["file"]]
        groups = {str(i): "cluster" for i in table["identifier"]}
        true = np.asarray(table["fe_h"], float)
        print(f"cluster: {n} mock members (seed {args.seed}, SNR 3-50); generator mean {generator_mean:+.4f}, "
              f"dispersion {dispersion}; members' true mean {true.mean():+.4f}, sd {true.std(ddof=1):.4f}; "
              f"sample_grouped scatter=True shared=('fe_h',), {warmup} + {samples}, {chains} chains", flush=True)
        count_steps()
        load = quiet_load("cluster")
        t = time.perf_counter()
        result = sample_grouped(files, groups, model, scatter=True, shared=("fe_h",), seed=args.seed,
                                num_warmup=warmup, num_samples=samples, num_chains=chains)
        seconds = time.perf_counter() - t
    post = result.posterior
    names = list(post.group_draws)
    r_hat = {name: float(post.group_summary["r_hat"][0, k]) for k, name in enumerate(names)}
    ess = {name: float(post.group_summary["ess_bulk"][0, k]) for k, name in enumerate(names)}
    fe_h = _interval(post.group_draws["group_fe_h"][..., 0])
    scatter = _interval(post.group_draws["scatter_fe_h"][..., 0])
    star_rhat = post.stars.summary["r_hat"]
    k_fe = list(model.label_names).index("fe_h")
    map_fe_h, map_sigma = np.asarray(result.map.labels)[:, k_fe], np.asarray(result.map.sigma)[:, k_fe]
    weight = 1.0 / np.maximum(map_sigma, 1e-6) ** 2
    map_mean = float(np.sum(weight * map_fe_h) / np.sum(weight))
    n_sampled = len(post.groups.identifiers)
    divergent = int(np.sum(post.stars.summary["n_divergent"])) if "n_divergent" in post.stars.summary else None
    figures = [
        fig("sample_grouped, cluster, wall time", seconds, "s",
            note=f"{n_sampled} stars, one group, {chains} chains x ({warmup} + {samples}); MAP, compilation and "
                 f"summaries included; load average {load}"),
        fig("sample_grouped, cluster, seconds per star and chain", seconds / (n_sampled * chains), "s"),
        fig("group [Fe/H], posterior median", fe_h[0], "dex",
            note=f"68% [{fe_h[1]:+.4f}, {fe_h[2]:+.4f}]; members' true mean {true.mean():+.4f}, "
                 f"generator mean {generator_mean:+.4f}"),
        fig("intrinsic [Fe/H] scatter, posterior median", scatter[0], "dex",
            note=f"68% [{scatter[1]:.4f}, {scatter[2]:.4f}]; members' true sd {true.std(ddof=1):.4f}, "
                 f"generator dispersion {dispersion}"),
        fig("members' true [Fe/H], mean", float(true.mean()), "dex", note=f"{n} members"),
        fig("members' true [Fe/H], sd", float(true.std(ddof=1)), "dex", note=f"{n} members"),
        fig("members' MAP [Fe/H], inverse-variance weighted mean", map_mean, "dex",
            note=f"plain mean {map_fe_h.mean():+.4f}, median {np.median(map_fe_h):+.4f}; the sampler starts here"),
        fig("generator's cluster [Fe/H] mean", generator_mean, "dex", note="drawn from the field distribution"),
        fig("generator's cluster [Fe/H] dispersion", dispersion, "dex"),
        fig("R-hat, group [Fe/H]", r_hat["group_fe_h"], "", note=f"bulk ESS {ess['group_fe_h']:.0f}"),
        fig("R-hat, intrinsic scatter", r_hat["scatter_fe_h"], "", note=f"bulk ESS {ess['scatter_fe_h']:.0f}"),
        fig("R-hat, members' labels, max", float(np.nanmax(star_rhat)), "",
            note=f"{int(np.sum(np.any(star_rhat > 1.05, axis=1)))} of {n_sampled} stars with a label above 1.05"),
    ]
    if divergent is not None:
        figures.append(fig("divergent transitions", divergent, "", note="summed over members' draws"))
    figures += step_figures("cluster", warmup)
    show(figures)
    return figures


# ----------------------------------------------------------------------------------------- binaries


def section_binaries(args, model) -> list[dict]:
    import bayesslam
    from bayesslam.mock import generate_survey_files
    from bayesslam.pipeline import sample_grouped

    n_pairs, warmup, samples = args.n_pairs, args.pair_warmup, args.pair_samples
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate_survey_files(folder, 0, args.seed, n_binaries=n_pairs)
        table = _labels_table(folder)
        files = [folder / str(f) for f in table["file"]]
        groups = {str(i): f"pair{int(g):04d}" for i, g in zip(table["identifier"], table["group_id"])}
        true = {str(i): float(v) for i, v in zip(table["identifier"], table["fe_h"])}
        print(f"binaries: {n_pairs} mock wide binaries (seed {args.seed}, SNR 3-50); sample_grouped (exact "
              f"[Fe/H] and [alpha/M]) and bayesslam.sample of each star alone, {warmup} + {samples}, one chain",
              flush=True)
        count_steps()
        load_pairs = quiet_load("binaries, sample_grouped")
        t = time.perf_counter()
        pairs = sample_grouped(files, groups, model, seed=args.seed, num_warmup=warmup, num_samples=samples)
        pair_seconds = time.perf_counter() - t
        pair_steps = step_figures("pairs", warmup)
        load_single = quiet_load("binaries, bayesslam.sample")
        t = time.perf_counter()
        single = bayesslam.sample(files, model, seed=args.seed, num_warmup=warmup, num_samples=samples)
        single_seconds = time.perf_counter() - t
        single_steps = step_figures("stars alone", warmup)
    post = pairs.posterior
    gnames = list(post.groups.names)
    k_fe = list(post.group_draws).index("group_fe_h")
    pair_sd = post.group_summary["sd"][:, k_fe]
    lo, hi = post.group_summary["q16"][:, k_fe], post.group_summary["q84"][:, k_fe]
    members = {name: [post.groups.identifiers[i] for i in post.groups.members(g)] for g, name in enumerate(gnames)}
    pair_true = np.array([true[members[name][0]] for name in gnames])
    sp = single.posterior
    j_fe = list(sp.label_names).index("fe_h")
    index = {ident: i for i, ident in enumerate(sp.identifiers)}
    complete = [g for g, name in enumerate(gnames) if len(members[name]) == 2 and all(m in index for m in members[name])]
    ratios = np.array([pair_sd[g] / np.sqrt(np.prod([sp.summary["sd"][index[m], j_fe] for m in members[gnames[g]]]))
                       for g in complete])
    single_true = np.array([true[i] for i in sp.identifiers])
    single_cover = np.mean((single_true >= sp.summary["q16"][:, j_fe]) & (single_true <= sp.summary["q84"][:, j_fe]))
    pair_cover = np.mean((pair_true >= lo) & (pair_true <= hi))
    n_g, n_s = len(gnames), len(sp.identifiers)
    se = np.sqrt(0.6827 * 0.3173 / n_g)
    per_pair = pair_seconds / n_g
    per_single_pair = single_seconds / (n_s / 2)
    figures = [
        fig("sample_grouped, seconds per pair and chain", per_pair, "s",
            note=f"{n_g} pairs, {warmup} + {samples}, one chain; wall {pair_seconds:.0f} s with MAP, compilation "
                 f"and summaries; load average {load_pairs}"),
        fig("bayesslam.sample (stars alone), seconds per pair and chain", per_single_pair, "s",
            note=f"{n_s} stars, {warmup} + {samples}, one chain each; wall {single_seconds:.0f} s "
                 f"({single_seconds / n_s:.3f} s per star and chain); load average {load_single}"),
        fig("pair against stars alone, time ratio", per_pair / per_single_pair, "x",
            baseline="bayesslam.sample (stars alone), seconds per pair and chain"),
        fig("pair [Fe/H] sd / geometric mean of the two single-star sds, median", float(np.median(ratios)), "",
            note=f"{len(ratios)} pairs; 16-84%: {np.quantile(ratios, Q16):.3f}-{np.quantile(ratios, Q84):.3f}; "
                 "expected ~0.71"),
        fig("68% coverage of the true [Fe/H], pairs", float(pair_cover), "fraction",
            note=f"{n_g} pairs; {(pair_cover - 0.6827) / se:+.1f} binomial SE from 0.683"),
        fig("68% coverage of the true [Fe/H], stars alone", float(single_cover), "fraction",
            note=f"{n_s} stars; {(single_cover - 0.6827) / np.sqrt(0.6827 * 0.3173 / n_s):+.1f} binomial SE "
                 "from 0.683"),
        fig("R-hat (split, one chain) above 1.05, pairs", int(np.sum(post.group_summary["r_hat"][:, k_fe] > 1.05)),
            "pairs", note="group [Fe/H]"),
        fig("R-hat (split, one chain) above 1.05, stars alone", int(np.sum(sp.summary["r_hat"][:, j_fe] > 1.05)),
            "stars", note="[Fe/H]"),
    ] + pair_steps + single_steps
    show(figures)
    return figures


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=SECTIONS, help="run this section only")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", type=Path, help="default: the shipped default model")
    parser.add_argument("--mdf-stars", type=int, default=10000)
    parser.add_argument("--mdf-draws", type=int, default=1000, help="draws per star")
    parser.add_argument("--max-draws", type=lambda s: [int(x) for x in s.split(",")], default=[100, 250, 1000],
                        help="comma-separated max_draws values (default 100,250,1000)")
    parser.add_argument("--mdf-warmup", type=int, default=500)
    parser.add_argument("--mdf-samples", type=int, default=1000)
    parser.add_argument("--mdf-chains", type=int, default=2)
    parser.add_argument("--n-check", type=int, default=200,
                        help="mdf: reweight_population's n_check, hyperposterior draws checked for effective draws")
    parser.add_argument("--target-s", type=float, default=30.0, help="the mdf target, seconds")
    parser.add_argument("--no-baseline", action="store_true", help="mdf: skip the plain MCMC baseline")
    parser.add_argument("--max-load", type=float, default=1.5,
                        help="wait before a timed run while the 1-minute load average is above this (default 1.5)")
    parser.add_argument("--n-cluster", type=int, default=150)
    parser.add_argument("--cluster-warmup", type=int, default=300)
    parser.add_argument("--cluster-samples", type=int, default=300)
    parser.add_argument("--cluster-chains", type=int, default=2)
    parser.add_argument("--n-pairs", type=int, default=256)
    parser.add_argument("--pair-warmup", type=int, default=500)
    parser.add_argument("--pair-samples", type=int, default=500)
    _record.add_results_option(parser, "bench_population-SECTION",
                               extra=" per section; a PATH only with --only")
    args = parser.parse_args()
    if args.results and not args.only:
        parser.error("--results PATH needs --only (each section writes its own record)")
    logging.basicConfig(level=logging.WARNING)
    MAX_LOAD[0] = args.max_load
    print(f"{os.cpu_count()} cores, JAX {jax.default_backend()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    model = None
    settings_all = {key: value for key, value in vars(args).items() if key not in ("results", "model", "only")}
    settings_all["model"] = str(args.model or "default")
    for section in SECTIONS if args.only is None else (args.only,):
        if section == "mdf":
            figures = section_mdf(args)
            title = (f"{args.mdf_stars} stars x {args.mdf_draws} exact per-star draws of [Fe/H]: a truncated "
                     f"Gaussian population (mean {MDF_MEAN}, sd {MDF_SD}) by importance reweighting, against a plain "
                     "numpyro MCMC on the same likelihood")
            keys = ("seed", "mdf_stars", "mdf_draws", "max_draws", "mdf_warmup", "mdf_samples", "mdf_chains",
                    "n_check", "target_s", "no_baseline", "max_load")
        else:
            if model is None:
                from bayesslam.pipeline import load_model

                model = load_model(args.model)
            if section == "cluster":
                figures = section_cluster(args, model)
                title = (f"a mock cluster of {args.n_cluster} stars, default model: sample_grouped with an intrinsic "
                         "[Fe/H] scatter")
                keys = ("seed", "n_cluster", "cluster_warmup", "cluster_samples", "cluster_chains", "model")
            else:
                figures = section_binaries(args, model)
                title = (f"{args.n_pairs} mock wide binaries, default model: sample_grouped (exact sharing) against "
                         "bayesslam.sample of the stars alone")
                keys = ("seed", "n_pairs", "pair_warmup", "pair_samples", "model")
        name = f"bench_population-{section}"
        path = _record.results_path(args.results, name) if args.only else _record.results_path(None, name)
        if args.results == "":
            path = None
        _record.write(path, "bench_population", figures, title=title,
                      settings={key: settings_all[key] for key in keys})


if __name__ == "__main__":
    main()

"""Benchmark inference with the shipped default model: MAP, NUTS, emcee; figures for one real M dwarf.

One command prints the table, writes the plots and the JSON record of the
figures (``benchmarks/results/bench_inference.json``, with ``--only map``
``bench_inference-map.json``; ``--results PATH``)::

    python benchmarks/bench_inference.py [--n-map 10000] [--n-baseline 3] [--n-nuts 256] [--out benchmarks/out]
    python benchmarks/bench_inference.py --only map     # the MAP rows only

``python benchmarks/report.py`` turns the records into ``docs/benchmarks.md``.

* MAP: stars per second of :func:`bayesslam.infer.fit_map` (float64) on mock
  stars (a second pass over the same stars: compilation excluded), against a
  baseline measured in the same run on a subsample: the astroslam way, one
  scikit-learn ``SVR.predict`` per pixel inside ``scipy.optimize.least_squares`` (the per-pixel SVRs are refitted at the
  model's chosen hyperparameters, which gives the same functions).
* NUTS: seconds per star and chain for 1000 warm-up + 1000 draws, ``--n-nuts``
  star-chains with 1 chain per star and with 4 (bayesslam's lane-scheduled
  NUTS, 128 lanes, float32 emulator; wall time including compilation), against
  two baselines measured in the same run: NumPyro's NUTS kernel vmapped over 8
  stars in lock-step (bayesslam's previous runner, float64, compilation
  excluded) and a plain ``numpyro.infer.MCMC`` loop over stars; emcee seconds
  per star (32 walkers, 2000 steps).
* Figures: a corner plot and a data-vs-model spectrum of the real SDSS M dwarf
  ``tests/data/spec-1079-52621-0509.fits``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
from pathlib import Path

import _record
import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402
from sklearn.svm import SVR  # noqa: E402

from bayesslam.emulator import default_model_path, load_model  # noqa: E402
from bayesslam.infer import (  # noqa: E402
    default_prior,
    fit_map,
    sample_emcee,
    sample_nuts,
    slam_model,
)
from bayesslam.mock import ObservingSetup, make_survey  # noqa: E402
from bayesslam.preparation import prepare_files, prepare_spectra  # noqa: E402

REAL_STAR = Path("tests/data/spec-1079-52621-0509.fits")


def mock_prepared(n: int, seed: int, model):
    batch, table = make_survey(n, np.random.default_rng(seed), setup=ObservingSetup(snr_range=(5.0, 50.0)))
    prepared = prepare_spectra(iter(batch), model.wave, progress=False)
    order = {name: i for i, name in enumerate(table["identifier"])}
    rows = [order[i] for i in prepared.spectra.identifiers]
    truth = np.column_stack([np.asarray(table[c], float)[rows] for c in model.label_names])
    return prepared.spectra, truth


def astroslam_baseline(model, flux, ivar, start):
    """Per-pixel sklearn SVRs inside scipy least_squares, one star at a time (as astroslam does)."""
    emulator = model.emulator
    x = np.asarray(emulator.train_x)
    # refit the per-pixel SVRs at the model's hyperparameters on the emulator's own standardized
    # predictions at the training labels (the same functions, as scikit-learn objects)
    targets = (np.asarray(jax.vmap(emulator)(jnp.asarray(emulator.training_labels))) - np.asarray(emulator.flux_mean)) / np.asarray(emulator.flux_scale)
    hyper = model.hyperparameters
    svrs = []
    t0 = time.perf_counter()
    for j in range(targets.shape[1]):
        if not np.isfinite(hyper["C"][j]):
            svrs.append(None)
            continue
        svrs.append(SVR(C=hyper["C"][j], epsilon=hyper["epsilon"][j], gamma=hyper["gamma"][j]).fit(x, targets[:, j]))
    refit_seconds = time.perf_counter() - t0
    mean, scale = np.asarray(emulator.label_mean), np.asarray(emulator.label_scale)
    fmean, fscale = np.asarray(emulator.flux_mean), np.asarray(emulator.flux_scale)
    s2 = np.asarray(emulator.model_variance)
    bounds = np.asarray(emulator.label_bounds)
    times = []
    for f, w, x0 in zip(flux, ivar, start):
        good = (w > 0) & np.isfinite(s2)
        sigma = np.sqrt(1 / np.where(good, w, 1) + np.where(good, s2, 0))

        def residual(theta):
            z = ((theta - mean) / scale)[None, :]
            pred = np.array([svr.predict(z)[0] if svr is not None else 0.0 for svr in svrs]) * fscale + fmean
            return np.where(good, (f - pred) / sigma, 0.0)

        t = time.perf_counter()
        least_squares(residual, x0, bounds=(bounds[:, 0], bounds[:, 1]), x_scale=scale)
        times.append(time.perf_counter() - t)
    return float(np.mean(times)), refit_seconds


def time_mcmc_plain(model, flux, ivar, start, n_star):
    from numpyro.infer import MCMC, NUTS

    prior = default_prior(model.emulator)
    kernel = NUTS(functools.partial(slam_model, model.emulator, prior=prior))
    mcmc = MCMC(kernel, num_warmup=1000, num_samples=1000, progress_bar=False, jit_model_args=True)
    mcmc.run(jax.random.key(0), jnp.asarray(ivar[:1]), jnp.asarray(flux[:1]))  # compile
    t = time.perf_counter()
    for i in range(n_star):
        mcmc.run(jax.random.key(i), jnp.asarray(ivar[i : i + 1]), jnp.asarray(flux[i : i + 1]))
        jax.block_until_ready(mcmc.get_samples())
    return (time.perf_counter() - t) / n_star


def time_lockstep_nuts(model, flux, ivar, start, n_star: int) -> float:
    """Seconds per star of NumPyro's NUTS kernel vmapped over ``n_star`` stars (a second batch: no compile)."""
    from numpyro.distributions.transforms import biject_to
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import potential_energy

    prior = default_prior(model.emulator)
    bound = functools.partial(slam_model, model.emulator, prior=prior)
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda f, w: (lambda z: potential_energy(bound, (w[None], f[None]), {}, z)), algo="NUTS"
    )

    def run_one(key, z0, f, w):
        def step(state, _):
            state = sample_kernel(state, model_args=(f, w))
            return state, state.z

        state = init_kernel(z0, 1000, model_args=(f, w), rng_key=key)
        return jax.lax.scan(step, state, None, length=2000)[1]

    runner = jax.jit(jax.vmap(run_one))
    seconds = 0.0
    for batch in (slice(0, n_star), slice(n_star, 2 * n_star)):
        z0 = {name: biject_to(prior.marginals[k].support).inv(jnp.asarray(start[batch, k : k + 1]))
              for k, name in enumerate(prior.names)}
        keys = jax.random.split(jax.random.key(batch.start), n_star)
        t = time.perf_counter()
        jax.block_until_ready(runner(keys, z0, jnp.asarray(flux[batch]), jnp.asarray(ivar[batch])))
        seconds = time.perf_counter() - t
    return seconds / n_star


def figures_real_star(model, out: Path) -> None:
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prepared = prepare_files([REAL_STAR], model.wave, progress=False)
    spectrum = prepared.spectra[0]
    fit = fit_map(model.emulator, spectrum.flux[None], spectrum.ivar[None])
    post = sample_nuts(model.emulator, spectrum.flux[None], spectrum.ivar[None], rng_key=jax.random.key(1),
                       num_chains=4, batch_size=4, init_labels=fit.labels, progress=False)
    axes = az.plot_pair(post.idata, var_names=list(model.label_names), kind="kde", marginals=True,
                        point_estimate="median", figsize=(9, 9))
    fig = np.ravel(axes)[0].figure
    fig.suptitle(f"{spectrum.meta.identifier} (real SDSS M dwarf), NUTS 4 chains x 1000 draws", fontsize=10)
    fig.savefig(out / "corner_real_star.png", dpi=100)
    plt.close(fig)
    good = ~spectrum.mask
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(model.wave, np.where(good, spectrum.flux, np.nan), lw=0.6, color="k", label="data (normalized)")
    top.plot(model.wave, fit.model_flux[0], lw=0.8, color="tab:red", label="emulator at MAP")
    top.legend(fontsize=8)
    top.set_title(f"{spectrum.meta.identifier}: " + ", ".join(
        f"{n} = {v:.3g}" for n, v in zip(model.label_names, fit.labels[0])), fontsize=9)
    bottom.plot(model.wave, np.where(good, spectrum.flux - fit.model_flux[0], np.nan), lw=0.5, color="k")
    bottom.set_xlabel("rest-frame vacuum wavelength [A]")
    bottom.set_ylabel("data - model")
    fig.tight_layout()
    fig.savefig(out / "spectrum_real_star.png", dpi=100)
    plt.close(fig)


class _Rows(list):
    """Table rows, printed as soon as they are measured (a long run keeps what it measured)."""

    def append(self, row: tuple[str, str, str]) -> None:
        super().append(row)
        print(f"{row[0]:<40}  {row[1]:>16}  {row[2]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--n-map", type=int, default=10000)
    parser.add_argument("--n-baseline", type=int, default=3)
    parser.add_argument("--n-nuts", type=int, default=256, help="star-chains per NUTS row")
    parser.add_argument("--n-lockstep", type=int, default=8, help="stars of the lock-step NUTS baseline")
    parser.add_argument("--n-emcee", type=int, default=2)
    parser.add_argument("--n-plain", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--only", choices=("map",), help="run only this part (no sampling, no figures)")
    _record.add_results_option(parser, "bench_inference", extra=", bench_inference-map.json with --only map")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model or default_model_path())
    emulator = model.emulator
    print(f"model: {emulator.n_pixels} pixels x {emulator.n_train} training stars, {jax.devices()[0].platform}", flush=True)
    rows = _Rows()
    figures: list[dict] = []
    fig = _record.figure
    title = (f"default model ({emulator.n_pixels} pixels x {emulator.n_train} training stars), "
             f"{args.n_map} mock stars at SNR 5-50")
    settings = {key: value for key, value in vars(args).items() if key not in ("out", "results", "model")}
    settings["model"] = str(args.model or "default")

    spectra, truth = mock_prepared(args.n_map, 1, model)
    # compile every batch shape this survey needs (the active stars are re-batched as they converge,
    # so a smaller warm-up set leaves shapes to compile inside the timed run)
    fit_map(emulator, spectra.flux, spectra.ivar)
    t = time.perf_counter()
    result = fit_map(emulator, spectra.flux, spectra.ivar)
    map_seconds = time.perf_counter() - t
    map_rate = len(spectra) / map_seconds
    rows.append(("MAP, bayesslam (float64, batched LM)", f"{map_rate:,.0f} stars/s", f"{len(spectra)} stars in {map_seconds:.1f} s"))
    base, refit = astroslam_baseline(model, spectra.flux[: args.n_baseline], spectra.ivar[: args.n_baseline],
                                     result.start[: args.n_baseline])
    rows.append(("MAP, astroslam-style baseline", f"{1 / base:.3f} stars/s", f"{base:.1f} s/star (n={args.n_baseline}); SVR refit {refit:.0f} s"))
    rows.append(("MAP speed-up", f"{map_rate * base:,.0f}x", "same run"))
    ok = result.status == 0
    it = result.n_iter
    rows.append(("MAP converged", f"{ok.mean():.2%}",
                 f"iterations: mean {it.mean():.1f}, median {np.median(it):.0f}, "
                 f"p99 {np.percentile(it, 99):.0f}, max {it.max()}"))
    figures += [
        fig("MAP, bayesslam (float64, batched LM)", map_rate, "stars/s",
            note=f"{len(spectra)} stars in {map_seconds:.1f} s; second pass, compilation excluded"),
        fig("MAP, astroslam-style baseline", base, "s/star",
            note=f"scipy least_squares over per-pixel scikit-learn SVRs, {args.n_baseline} stars; "
                 f"SVR refit {refit:.0f} s not counted"),
        fig("MAP speed-up", map_rate * base, "x", baseline="MAP, astroslam-style baseline"),
        fig("MAP converged", float(ok.mean()), "fraction",
            note=f"iterations: mean {it.mean():.1f}, median {np.median(it):.0f}, p99 {np.percentile(it, 99):.0f}, "
                 f"max {it.max()}"),
    ]
    for k, name in enumerate(model.label_names):
        d = result.labels[ok, k] - truth[ok, k]
        rows.append((f"MAP {name} - truth", f"bias {np.median(d):+.3g}", f"scatter {np.std(d):.3g} (SNR 5-50)"))
        unit = model.label_units[k] if model.label_units else ""
        figures += [fig(f"MAP {name} - truth, median", float(np.median(d)), unit, note="converged stars, SNR 5-50"),
                    fig(f"MAP {name} - truth, standard deviation", float(np.std(d)), unit,
                        note="converged stars, SNR 5-50")]
    if args.only == "map":
        _record.write(_record.results_path(args.results, "bench_inference-map"), "bench_inference", figures,
                      title=title + "; MAP only", settings=settings)
        return

    runs = args.n_nuts
    for chains in (1, 4):
        n = runs // chains
        t = time.perf_counter()
        sample_nuts(emulator, spectra.flux[:n], spectra.ivar[:n], rng_key=jax.random.key(chains), num_chains=chains,
                    init_labels=result.labels[:n], progress=False)
        per = (time.perf_counter() - t) / (n * chains)
        rows.append((f"NUTS lane-scheduled, {chains} chain(s)", f"{per:.2f} s/star-chain",
                     f"{n} stars x {chains}; 1000+1000; incl. compilation"))
        figures.append(fig(f"NUTS lane-scheduled, {chains} chain(s) per star", per, "s per star and chain",
                           note=f"{n} stars x {chains} chain(s); 1000 warm-up + 1000 draws; 128 lanes, float32 "
                                "emulator; compilation included"))
    lockstep = time_lockstep_nuts(model, spectra.flux, spectra.ivar, result.labels, args.n_lockstep)
    rows.append(("NUTS vmapped lock-step (previous)", f"{lockstep:.2f} s/star-chain",
                 f"{args.n_lockstep} stars, float64; ratio {lockstep / per:.1f}x (4-chain row)"))
    plain = time_mcmc_plain(model, spectra.flux, spectra.ivar, result.labels, args.n_plain)
    rows.append(("NUTS plain numpyro MCMC loop, 1 chain", f"{plain:.2f} s/star", f"ratio {plain / per:.1f}x"))
    t = time.perf_counter()
    sample_emcee(emulator, spectra.flux[: args.n_emcee], spectra.ivar[: args.n_emcee], seed=0, n_steps=2000,
                 n_burn=1000, init_labels=result.labels[: args.n_emcee], progress=False)
    emcee_per = (time.perf_counter() - t) / args.n_emcee
    rows.append(("emcee, 32 walkers x 2000 steps", f"{emcee_per:.2f} s/star", ""))
    four_chains = "NUTS lane-scheduled, 4 chain(s) per star"
    figures += [
        fig("NUTS, NumPyro's kernel vmapped in lock-step (previous runner)", lockstep, "s per star and chain",
            note=f"{args.n_lockstep} stars, float64; second batch, compilation excluded"),
        fig("NUTS lane-scheduled speed-up against vmapped lock-step", lockstep / per, "x",
            baseline="NUTS, NumPyro's kernel vmapped in lock-step (previous runner)",
            note=f"against the row '{four_chains}'"),
        fig("NUTS, plain numpyro.infer.MCMC loop over stars, 1 chain", plain, "s per star",
            note=f"{args.n_plain} stars, float64; compilation excluded"),
        fig("NUTS lane-scheduled speed-up against the plain MCMC loop", plain / per, "x",
            baseline="NUTS, plain numpyro.infer.MCMC loop over stars, 1 chain",
            note=f"against the row '{four_chains}'"),
        fig("emcee, 32 walkers x 2000 steps", emcee_per, "s per star", note=f"{args.n_emcee} stars, 1000 burn-in"),
    ]

    figures_real_star(model, args.out)
    print(f"figures: {args.out / 'corner_real_star.png'}, {args.out / 'spectrum_real_star.png'}")
    _record.write(_record.results_path(args.results, "bench_inference"), "bench_inference", figures, title=title,
                  settings=settings)


if __name__ == "__main__":
    main()

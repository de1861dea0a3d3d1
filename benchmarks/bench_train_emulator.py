"""Benchmark SLAM training (fast preset) and the JAX emulator against scikit-learn.

One command prints the tables and writes the JSON record of the figures
(``benchmarks/results/bench_train_emulator.json``, ``--results PATH``;
``python benchmarks/report.py`` turns the records into ``docs/benchmarks.md``)::

    python benchmarks/bench_train_emulator.py                  # training scan + emulator timings
    python benchmarks/bench_train_emulator.py --full           # + end to end 870 x 1739 fit/to_model/save
    python benchmarks/bench_train_emulator.py --compare-paper 8  # + fast vs paper grid on 8 pixels
    python benchmarks/bench_train_emulator.py --quick          # small sizes, a smoke test

Training data are synthetic M-dwarf-like normalized spectra: smooth
nonlinear functions of (teff, logg, fe_h, alpha_m) with per-star noise of
SNR log-uniform in ``--snr`` (libsvm's cost grows with the noise, since noisier
pixels have more support vectors). Training times are wall-clock with
``--n-jobs`` workers; the extrapolation to 1739 pixels is linear in pixels.

The emulator is timed on an 870-star x 1739-pixel bank: a set of pixels is
trained for real (fast preset) and tiled to 1739 pixels, which keeps the
real dual-matrix sparsity and gamma groups (with ``--full``, the full
trained and saved model is timed instead). The baseline, measured in the
same run, is the per-pixel loop of scikit-learn ``SVR.predict`` calls that
old SLAM code ran per likelihood evaluation; gradients are compared with a
central finite-difference Jacobian from that loop (2 x n_label loops).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import _record
import jax
import jax.numpy as jnp
import numpy as np
from joblib.externals.loky import get_reusable_executor
from sklearn.svm import SVR

from bayesslam.emulator import (
    Emulator,
    build_emulator,
    flux_grouped,
    flux_plain,
    load_model,
    save_model,
)
from bayesslam.grid import model_wavelength
from bayesslam.train import SlamTrainer, resolve_grid

LABEL_NAMES = ("teff", "logg", "fe_h", "alpha_m")
N_MODEL_PIXELS = 1739
fig = _record.figure


def synthetic_survey(
    n_star: int, n_pix: int, rng: np.random.Generator, snr: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (n_star, 4), normalized flux and ivar (n_star, n_pix) of a synthetic M-dwarf survey."""
    teff = rng.uniform(3100.0, 3900.0, n_star)
    logg = 4.95 - 0.5 * (teff - 3100.0) / 800.0 + rng.normal(0.0, 0.05, n_star)
    fe_h = rng.uniform(-0.6, 0.5, n_star)
    alpha_m = rng.uniform(-0.05, 0.2, n_star)
    labels = np.column_stack([teff, logg, fe_h, alpha_m])
    z = np.column_stack([(teff - 3500) / 230, (logg - 4.7) / 0.15, (fe_h + 0.05) / 0.32, (alpha_m - 0.07) / 0.07])
    weights = rng.normal(size=(n_pix, 4)) * np.array([1.0, 0.3, 0.6, 0.2])
    depth = rng.uniform(0.02, 0.4, n_pix)
    curvature = rng.normal(0.0, 0.3, n_pix)
    arg = z @ weights.T
    flux = 1.0 - depth / (1.0 + np.exp(-(arg + curvature * arg**2)))
    star_snr = np.exp(rng.uniform(np.log(snr[0]), np.log(snr[1]), n_star))
    sigma = flux / star_snr[:, None]
    return labels, flux + rng.normal(size=flux.shape) * sigma, 1.0 / sigma**2


def synthetic_wave(n_pix: int) -> np.ndarray:
    """A wavelength grid for ``n_pix`` synthetic pixels (the trainer records it; no figure depends on it)."""
    wave = model_wavelength()
    return wave[:n_pix] if n_pix <= wave.size else 6000.0 + np.arange(n_pix, dtype=float)


def timeit(func: Callable[[], Any], min_time: float = 0.5, max_repeat: int = 200) -> float:
    """Median seconds per call (after one warm-up call, which also compiles)."""
    jax.block_until_ready(func())
    times: list[float] = []
    total = 0.0
    while (total < min_time or len(times) < 3) and len(times) < max_repeat:
        start = time.perf_counter()
        jax.block_until_ready(func())
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        total += elapsed
    return statistics.median(times)


def ms(seconds: float) -> str:
    """Seconds as milliseconds with three significant digits."""
    return f"{seconds * 1e3:.3g}"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    sys.stdout.flush()


def training_scan(stars: list[int], pixels: list[int], snr: tuple[float, float], seed: int) -> list[dict]:
    """Train in this process (n_jobs=1) and report CPU seconds, immune to other load on the machine.

    Pixels are independent, so the wall time on ``k`` cores is about CPU / ``k``.
    """
    rows, figures = [], []
    for n_star in stars:
        for n_pix in pixels:
            labels, flux, ivar = synthetic_survey(n_star, n_pix, np.random.default_rng(seed), snr)
            trainer = SlamTrainer("fast", n_jobs=1, progress=False)
            wall, cpu = time.perf_counter(), time.process_time()
            trainer.fit(labels, flux, ivar, label_names=LABEL_NAMES, wave=synthetic_wave(n_pix))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append([
                str(n_star), str(n_pix), f"{wall:.1f}", f"{cpu:.1f}", f"{cpu / n_pix * 1e3:.0f}",
                f"{cpu / n_pix * N_MODEL_PIXELS / 2 / 60:.1f}", f"{np.median(trainer.cv_mse_):.3f}",
            ])
            where = f"libsvm, fast grid, {n_star} stars x {n_pix} pixels"
            figures += [
                fig(f"training, {where}: CPU per pixel", cpu / n_pix * 1e3, "ms",
                    note=f"one process (n_jobs=1); wall {wall:.1f} s, CPU {cpu:.1f} s"),
                fig(f"training, {where}: {N_MODEL_PIXELS} pixels on 2 cores", cpu / n_pix * N_MODEL_PIXELS / 2 / 60,
                    "min", note="CPU per pixel x pixels / 2"),
                fig(f"training, {where}: median CV MSE", float(np.median(trainer.cv_mse_)), "standardized flux"),
            ]
    print_table(
        f"Training, fast preset ({len(resolve_grid('fast', 4))} grid points x 10 folds + refit), one process, "
        f"SNR {snr[0]:g}-{snr[1]:g}; last column = CPU x {N_MODEL_PIXELS} px / n_pix / 2 cores",
        ["stars", "pixels", "wall s", "CPU s", "CPU ms/pixel", f"min for {N_MODEL_PIXELS} px on 2 cores",
         "median CV MSE"],
        rows,
    )
    return figures


def full_run(n_jobs: int, snr: tuple[float, float], seed: int, out: Path) -> tuple[Emulator, list[SVR], list[dict]]:
    wave = model_wavelength()
    labels, flux, ivar = synthetic_survey(870, wave.size, np.random.default_rng(seed), snr)
    trainer = SlamTrainer("fast", n_jobs=n_jobs, progress=True)
    get_reusable_executor().shutdown(wait=True)
    before = os.times()
    start = time.perf_counter()
    trainer.fit(labels, flux, ivar, label_names=LABEL_NAMES, wave=wave)
    fit_s = time.perf_counter() - start
    load = os.getloadavg()[0]
    get_reusable_executor().shutdown(wait=True)
    after = os.times()
    cpu_s = sum(after[i] - before[i] for i in range(4))
    start = time.perf_counter()
    model = trainer.to_model(description="synthetic benchmark model")
    to_model_s = time.perf_counter() - start
    start = time.perf_counter()
    path = save_model(model, out, overwrite=True)
    save_s = time.perf_counter() - start
    start = time.perf_counter()
    emulator = load_model(path, dtype=jnp.float64).emulator
    load_s = time.perf_counter() - start
    print_table(
        f"End to end, 870 stars x {wave.size} pixels, fast preset, n_jobs={n_jobs} "
        f"(1-min load average at the end of fit: {load:.1f} on {os.cpu_count()} CPUs)",
        ["step", "seconds"],
        [["fit (wall)", f"{fit_s:.0f}"], ["fit (CPU, all processes)", f"{cpu_s:.0f}"],
         ["fit, CPU / n_jobs", f"{cpu_s / n_jobs:.0f}"],
         ["to_model", f"{to_model_s:.2f}"], ["save_model", f"{save_s:.2f}"],
         ["load_model", f"{load_s:.2f}"], ["file MB", f"{path.stat().st_size / 1e6:.1f}"]],
    )
    where = f"end to end, 870 stars x {wave.size} pixels, fast grid, n_jobs={n_jobs}"
    figures = [
        fig(f"{where}: fit, wall", fit_s, "s",
            note=f"1-min load average at the end: {load:.1f} on {os.cpu_count()} CPUs"),
        fig(f"{where}: fit, CPU of all processes", cpu_s, "s"),
        fig(f"{where}: to_model", to_model_s, "s"),
        fig(f"{where}: save_model", save_s, "s"),
        fig(f"{where}: load_model", load_s, "s"),
        fig(f"{where}: model file", path.stat().st_size / 1e6, "MB", note="savez_compressed"),
    ]
    return emulator, refit_svrs(trainer, flux, ivar), figures


def compare_paper(n_pix: int, n_jobs: int, snr: tuple[float, float], seed: int) -> list[dict]:
    labels, flux, ivar = synthetic_survey(870, n_pix, np.random.default_rng(seed), snr)
    results = {}
    for preset in ("fast", "paper"):
        trainer = SlamTrainer(preset, n_jobs=n_jobs, chunk_size=max(1, n_pix // (2 * n_jobs)), progress=False)
        start = time.perf_counter()
        trainer.fit(labels, flux, ivar, label_names=LABEL_NAMES, wave=synthetic_wave(n_pix))
        results[preset] = (time.perf_counter() - start, trainer)
    ratio = results["fast"][1].cv_mse_ / results["paper"][1].cv_mse_
    paper = results["paper"][1]
    chosen = ", ".join(f"{c:g}/{e:g}/{g:g}" for c, e, g in zip(paper.C_, paper.epsilon_, paper.gamma_))
    print_table(
        f"Fast vs paper grid, 870 stars x {n_pix} pixels (CV MSE of the chosen point; ratio fast/paper)",
        ["preset", "wall s", "median CV MSE", "ratio median", "ratio max"],
        [["paper", f"{results['paper'][0]:.0f}", f"{np.median(paper.cv_mse_):.4f}", "1", "1"],
         ["fast", f"{results['fast'][0]:.0f}", f"{np.median(results['fast'][1].cv_mse_):.4f}",
          f"{np.median(ratio):.4f}", f"{ratio.max():.4f}"]],
    )
    print(f"paper grid's choices (C/epsilon/gamma): {chosen}")
    where = f"libsvm, 870 stars x {n_pix} pixels, n_jobs={n_jobs}"
    paper_name = f"training, {where}: paper grid, wall"
    return [
        fig(paper_name, results["paper"][0], "s"),
        fig(f"training, {where}: fast grid, wall", results["fast"][0], "s"),
        fig(f"training, {where}: paper grid's time / fast grid's", results["paper"][0] / results["fast"][0], "x",
            baseline=f"training, {where}: fast grid, wall"),
        fig(f"training, {where}: fast grid's best CV MSE / paper grid's, median", float(np.median(ratio)), "",
            baseline=f"training, {where}: paper grid's CV MSE"),
        fig(f"training, {where}: fast grid's best CV MSE / paper grid's, max", float(ratio.max()), "",
            baseline=f"training, {where}: paper grid's CV MSE"),
    ]


def emulator_bank(n_train: int, n_real: int, n_jobs: int, snr: tuple[float, float], seed: int):
    """A real trained bank of ``n_real`` pixels tiled to 1739 pixels, and matching sklearn SVRs."""
    labels, flux, ivar = synthetic_survey(n_train, n_real, np.random.default_rng(seed), snr)
    trainer = SlamTrainer("fast", n_jobs=n_jobs, chunk_size=max(1, n_real // (2 * n_jobs)), progress=False)
    trainer.fit(labels, flux, ivar, label_names=LABEL_NAMES, wave=synthetic_wave(n_real))
    tile = np.arange(N_MODEL_PIXELS) % n_real
    emulator = build_emulator(
        dual_coef=trainer.dual_coef_[tile], intercept=trainer.intercept_[tile], gamma=trainer.gamma_[tile],
        train_x=trainer.train_x_, label_mean=trainer.label_mean_, label_scale=trainer.label_scale_,
        flux_mean=trainer.flux_mean_[tile], flux_scale=trainer.flux_scale_[tile],
        model_variance=trainer.model_variance_[tile], wave=model_wavelength(), training_labels=labels,
        label_names=LABEL_NAMES, dtype=jnp.float64,
    )
    svrs = refit_svrs(trainer, flux, ivar)
    return emulator, [svrs[j] for j in tile]


def refit_svrs(trainer: SlamTrainer, flux: np.ndarray, ivar: np.ndarray) -> list[SVR]:
    """scikit-learn SVRs of every pixel with the trainer's chosen hyperparameters (the baseline)."""
    svrs = []
    for j in range(flux.shape[1]):
        used = ivar[:, j] > 0
        y = (flux[used, j] - trainer.flux_mean_[j]) / trainer.flux_scale_[j]
        svr = SVR(C=trainer.C_[j], epsilon=trainer.epsilon_[j], gamma=trainer.gamma_[j])
        svrs.append(svr.fit(trainer.train_x_[used], y))
    return svrs


def emulator_timings(emulator: Emulator, svrs: list[SVR], batch: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(emulator.label_bounds).T
    thetas = rng.uniform(lo, hi, size=(batch, emulator.n_labels))
    mean, scale = np.asarray(emulator.label_mean), np.asarray(emulator.label_scale)
    flux_mean, flux_scale = np.asarray(emulator.flux_mean), np.asarray(emulator.flux_scale)

    def sklearn_loop(z: np.ndarray) -> np.ndarray:
        return flux_mean + flux_scale * np.column_stack([svr.predict(z) for svr in svrs])

    z_one = (thetas[:1] - mean) / scale
    z_all = (thetas - mean) / scale
    base_one = timeit(lambda: sklearn_loop(z_one), min_time=1.0, max_repeat=20)
    base_batch = timeit(lambda: sklearn_loop(z_all), min_time=1.0, max_repeat=5)
    n_fd = 2 * emulator.n_labels
    check = sklearn_loop(z_all[:5])
    got = np.asarray(jax.vmap(emulator)(jnp.asarray(thetas[:5])))
    max_diff = float(np.abs(got - check).max())

    figures = [
        fig("max |emulator - sklearn|", max_diff, "normalized flux", note="5 stars, float64"),
        fig("sklearn svr.predict loop, value, 1 star", base_one * 1e3, "ms"),
        fig(f"sklearn svr.predict loop, value, {batch} stars", base_batch * 1e3, "ms"),
        fig("sklearn loop, central FD, jacobian, 1 star", n_fd * base_one * 1e3, "ms",
            note=f"{n_fd} loops"),
        fig(f"sklearn loop, central FD, jacobian, {batch} stars", n_fd * base_batch * 1e3, "ms",
            note=f"{n_fd} loops"),
    ]
    baselines = {("value", "1"): figures[1]["name"], ("value", str(batch)): figures[2]["name"],
                 ("jacobian", "1"): figures[3]["name"], ("jacobian", str(batch)): figures[4]["name"]}
    rows = [
        ["sklearn svr.predict loop", "value", "1", "float64", ms(base_one), "1"],
        ["sklearn svr.predict loop", "value", str(batch), "float64", ms(base_batch), "1"],
        ["sklearn loop, central FD", "jacobian", "1", "float64", ms(n_fd * base_one), "1"],
        ["sklearn loop, central FD", "jacobian", str(batch), "float64", ms(n_fd * base_batch), "1"],
    ]
    plain_batch = max(1, min(batch, int(2e8 // (emulator.n_pixels * emulator.n_train))))
    for dtype in (jnp.float64, jnp.float32):
        em = emulator.astype(dtype)
        one = jnp.asarray(thetas[0], dtype=dtype)
        many = jnp.asarray(thetas, dtype=dtype)
        for name, func in (("grouped", flux_grouped), ("plain", flux_plain)):
            def value(theta, em=em, func=func):
                return func(em, theta)

            single = jax.jit(value)
            jac = jax.jit(jax.jacfwd(value))
            if name == "grouped":
                batched = jax.jit(jax.vmap(value))
                batched_jac = jax.jit(jax.vmap(jax.jacfwd(value)))
            else:
                batched = jax.jit(lambda t, value=value: jax.lax.map(value, t, batch_size=plain_batch))
                batched_jac = jax.jit(
                    lambda t, value=value: jax.lax.map(jax.jacfwd(value), t, batch_size=max(1, plain_batch // 4))
                )
            dname = np.dtype(dtype).name
            t_one = timeit(lambda: single(one))
            t_many = timeit(lambda: batched(many), min_time=1.0, max_repeat=20)
            t_jac = timeit(lambda: jac(one))
            t_many_jac = timeit(lambda: batched_jac(many), min_time=1.0, max_repeat=10)
            label = f"emulator {name}" + (" (lax.map)" if name == "plain" else " (vmap)")
            rows += [
                [f"emulator {name} (jit)", "value", "1", dname, ms(t_one), f"{base_one / t_one:.0f}"],
                [label, "value", str(batch), dname, ms(t_many), f"{base_batch / t_many:.0f}"],
                [f"emulator {name} jacfwd", "jacobian", "1", dname, ms(t_jac),
                 f"{n_fd * base_one / t_jac:.0f}"],
                [label + " jacfwd", "jacobian", str(batch), dname, ms(t_many_jac),
                 f"{n_fd * base_batch / t_many_jac:.0f}"],
            ]
            for method, output, stars, seconds, base in (
                (f"emulator {name} (jit)", "value", "1", t_one, base_one),
                (label, "value", str(batch), t_many, base_batch),
                (f"emulator {name} jacfwd", "jacobian", "1", t_jac, n_fd * base_one),
                (label + " jacfwd", "jacobian", str(batch), t_many_jac, n_fd * base_batch),
            ):
                what = f"{method}, {output}, {stars} star{'s' if stars != '1' else ''}, {dname}"
                figures += [fig(what, seconds * 1e3, "ms"),
                            fig(f"{what}, speed-up", base / seconds, "x", baseline=baselines[(output, stars)])]
    print_table(
        f"Emulator, {emulator.n_train} training stars x {emulator.n_pixels} pixels, "
        f"{len(emulator.group_sizes)} gamma groups, backend {jax.default_backend()} "
        f"(max |emulator - sklearn| = {max_diff:.1e})",
        ["method", "output", "stars", "dtype", "ms/call", "speed-up"],
        rows,
    )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-jobs", type=int, default=2, help="training workers (default 2)")
    parser.add_argument("--pixels", type=int, nargs="+", default=[20, 100, 400])
    parser.add_argument("--stars", type=int, nargs="+", default=[200, 500, 870])
    parser.add_argument("--snr", type=float, nargs=2, default=[10.0, 150.0], help="SNR range of the synthetic stars")
    parser.add_argument("--batch", type=int, default=1000, help="stars per batched emulator call")
    parser.add_argument("--real-pixels", type=int, default=48, help="pixels trained for the emulator bank")
    parser.add_argument("--full", action="store_true", help="also fit 870 x 1739 end to end and save the model")
    parser.add_argument("--compare-paper", type=int, default=0, metavar="N",
                        help="also compare the fast and paper grids on N pixels")
    parser.add_argument("--skip-training", action="store_true", help="only time the emulator")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    _record.add_results_option(parser, "bench_train_emulator")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    jax.config.update("jax_enable_x64", True)
    snr = (args.snr[0], args.snr[1])
    if args.quick:
        args.pixels, args.stars, args.batch, args.real_pixels = [8], [100], 50, 8
    print(f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPUs visible")
    figures: list[dict] = []
    if not args.skip_training:
        figures += training_scan(args.stars, args.pixels, snr, args.seed)
    if args.compare_paper:
        figures += compare_paper(args.compare_paper, args.n_jobs, snr, args.seed)
    if args.full:
        out = Path(tempfile.gettempdir()) / "bayesslam_bench_model.npz"
        emulator, svrs, full = full_run(args.n_jobs, snr, args.seed, out)
        figures += full
        bank = f"the full 870 x {emulator.n_pixels} model"
    else:
        n_train = 100 if args.quick else 870
        emulator, svrs = emulator_bank(n_train, args.real_pixels, args.n_jobs, snr, args.seed)
        bank = f"{args.real_pixels} trained pixels tiled to {emulator.n_pixels}, {n_train} training stars"
    figures += emulator_timings(emulator, svrs, args.batch, args.seed)
    settings = {key: value for key, value in vars(args).items() if key != "results"}
    title = (f"synthetic M-dwarf-like spectra, SNR {snr[0]:g}-{snr[1]:g}; emulator on {bank}, "
             f"{len(emulator.group_sizes)} gamma groups")
    record = _record.results_path(args.results, "bench_train_emulator")
    _record.write(record, "bench_train_emulator", figures, title=title, settings=settings)


if __name__ == "__main__":
    main()

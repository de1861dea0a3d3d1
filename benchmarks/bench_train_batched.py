"""Benchmark the batched SVR trainer backend against the scikit-learn/libsvm reference.

One command prints every figure, writes them to ``--out``/bench_train_batched.json
and writes their JSON record (``benchmarks/results/bench_train_batched.json``,
``--results PATH``; ``python benchmarks/report.py`` turns the records into
``docs/benchmarks.md``)::

    python benchmarks/bench_train_batched.py                      # fast and paper grids, scaling
    python benchmarks/bench_train_batched.py --grids fast --no-scaling --ref-pixels 8 --pixels 64   # quick

Training set: the default model's 870 mock BOSS M dwarfs (``bayesslam.mock``,
seed 20251126, SNR 10-100) prepared on the production window (1739 pixels),
cached in ``build/mock-cache`` (``bayesslam.default_recipe.mock_set``).
Both backends use the same folds (10), grid and ``tol = 1e-3``; the reference is
``SlamTrainer(backend="libsvm", n_jobs=--libsvm-jobs)`` (default 2).

For each grid, in the same run:

* libsvm on ``--ref-pixels`` random trainable pixels (wall time on ``--libsvm-jobs`` workers);
* the batched backend with its defaults (``cv_tol`` 3e-2, racing the grid
  points through the folds) on ``--pixels`` pixels that include the
  reference ones, at two batch sizes so that the cost is split into a fixed
  part (kernel eigendecompositions, compilation) and a per-pixel part; on
  ``--full-grids`` also without racing (every point scored on every fold)
  and on ``--tight-grids`` at ``cv_tol`` 1e-3 = libsvm's tolerance (float64,
  no racing), each at the larger size;
* wall times extrapolated to the production window (1739 pixels) and the
  whole BOSS grid (4648 pixels), linear in pixels (libsvm: per pixel;
  batched: fixed + per pixel), and the speed-up;
* agreement on the reference pixels: same choice of (C, epsilon, gamma),
  same-or-within-1% CV MSE, CV MSE differences at every grid point scored
  (and the fraction of points the race dropped), and the
  final models' predictions (standardized flux) where the choices agree,
  beside libsvm's own distance to the exact SVR (libsvm at ``tol = 1e-9``).

``--scaling`` adds the batched backend's time against pixels, training stars
and grid size (fast grid unless noted).

On a machine with more cores or a GPU (JAX runs the batched solver on its
default device)::

    python benchmarks/bench_train_batched.py --libsvm-jobs 16 --chunk-size 2048

``--ref-pixels 0`` (``--paper-ref-pixels 0``) times the batched backend alone.

``--astroslam-pixels N`` also times astroslam's own training loop on N of the
reference pixels (``slam.train.train_single_pixel_grid``: one
``GridSearchCV(SVR(), grid, cv=10, scoring="neg_mean_squared_error")`` per
pixel on the undeduplicated grid, the pixels spread over ``--libsvm-jobs``
joblib workers), so that the speed-up against the loop people retrain SLAM
with today is measured in the same run rather than quoted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

import _record
import jax
import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVR

from bayesslam import default_recipe as build
from bayesslam.train import (
    BATCHED_CV_TOL,
    DEFAULT_CHUNK_SIZE,
    PRESETS,
    SlamTrainer,
    resolve_grid,
)
from bayesslam.train.batched_svr import rbf_kernel_matrix

PRODUCTION_PIXELS = 1739
BOSS_PIXELS = 4648
LABELS = ("teff", "logg", "fe_h", "alpha_m")


def training_set() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The default model's mock training set: labels, flux, ivar (prepared once, cached by ``build.mock_set``)."""
    mock = build.mock_set(build.N_TRAIN, build.TRAIN_SEED, (10.0, 100.0), progress=False)
    return mock.truth, mock.flux, mock.ivar


#: Settings of the runs (``--libsvm-jobs``, ``--chunk-size``).
RUN = {"libsvm_jobs": 2, "chunk_size": None}


def timed_fit(labels, flux, ivar, **options) -> tuple[SlamTrainer, float]:
    if options.get("backend") == "batched":
        options.setdefault("chunk_size", RUN["chunk_size"])
    # the trainer records the spectra's grid; a stand-in for the pixel subsets (it changes no figure)
    wave = 6000.0 + np.arange(flux.shape[1], dtype=float)
    start = time.perf_counter()
    trainer = SlamTrainer(progress=False, **options).fit(labels, flux, ivar, label_names=LABELS, wave=wave)
    return trainer, time.perf_counter() - start


def astroslam_pixel(x: np.ndarray, y: np.ndarray, grid: dict) -> float:
    """One pixel as astroslam's ``train_single_pixel_grid`` trains it (unit weights); returns its best CV MSE."""
    search = GridSearchCV(SVR(), grid, cv=10, scoring="neg_mean_squared_error", n_jobs=1)
    return -search.fit(x, y).best_score_


def astroslam_loop(labels, flux, ivar, pixels: np.ndarray, grid: str) -> float:
    """Wall time of astroslam's per-pixel GridSearchCV loop on ``pixels`` (standardized as the trainer does)."""
    x = (labels - labels.mean(axis=0)) / labels.std(axis=0)
    tasks = []
    for p in pixels:
        used = ivar[:, p] > 0
        y = flux[used, p]
        tasks.append((x[used], (y - y.mean()) / y.std()))
    param_grid = {key: list(values) for key, values in PRESETS[grid].items()}
    start = time.perf_counter()
    Parallel(n_jobs=RUN["libsvm_jobs"])(delayed(astroslam_pixel)(xp, yp, param_grid) for xp, yp in tasks)
    return time.perf_counter() - start


def machine() -> str:
    """The cores and JAX's default device, for the printed figures."""
    device = jax.devices()[0]
    return f"{os.cpu_count()} cores, JAX {jax.__version__} on {device.platform} ({device.device_kind})"


def warm_up(labels, flux, ivar, grid) -> None:
    """Compile the batched solver's shapes once so that timings compare steady states."""
    timed_fit(labels, flux[:, :16], ivar[:, :16], grid=grid, backend="batched")


def agreement(reference: SlamTrainer, batched: SlamTrainer, columns: np.ndarray, flux: np.ndarray,
              ivar: np.ndarray) -> dict:
    """Choice, CV MSE and final-model agreement with the reference on its pixels.

    ``columns`` are the reference pixels' columns in the batched trainer; ``flux`` and ``ivar``
    hold the reference pixels.
    """
    trained = reference.pixel_trained_
    best = batched.best_index_[columns]
    same = best == reference.best_index_
    at_choice = reference.cv_grid_mse_[np.arange(trained.size), np.maximum(best, 0)]
    equivalent = same | (at_choice <= 1.01 * reference.cv_mse_)
    scores = batched.cv_grid_mse_[columns][trained]
    rel = np.abs(scores / reference.cv_grid_mse_[trained] - 1)[np.isfinite(scores)]
    ours, libsvm_error = [], []
    x = reference.train_x_
    kernels = {g: rbf_kernel_matrix(x, x, g) for g in np.unique(reference.gamma_[same & trained])}
    for p in np.flatnonzero(same & trained):
        used = ivar[:, p] > 0
        y = (flux[used, p] - reference.flux_mean_[p]) / reference.flux_scale_[p]
        kernel = kernels[reference.gamma_[p]]
        a = kernel @ reference.dual_coef_[p] + reference.intercept_[p]
        b = kernel @ batched.dual_coef_[columns[p]] + batched.intercept_[columns[p]]
        exact = SVR(C=reference.C_[p], epsilon=reference.epsilon_[p], gamma=reference.gamma_[p], tol=1e-9)
        ours.append(np.abs(a - b))
        libsvm_error.append(np.abs(a - exact.fit(x[used], y).predict(x)))
    ours = np.concatenate(ours) if ours else np.zeros(1)
    libsvm_error = np.concatenate(libsvm_error) if libsvm_error else np.zeros(1)

    def summary(values: np.ndarray) -> dict:
        return {"median": float(np.median(values)), "p99": float(np.percentile(values, 99)), "max": float(values.max())}

    return {
        "pixels": int(trained.sum()),
        "same_choice": float(np.mean(same[trained])),
        "same_or_within_1pct": float(np.mean(equivalent[trained])),
        "cv_mse_rel_diff_all_points": summary(rel),
        "points_dropped_by_race": float(np.mean(~np.isfinite(scores))),
        "final_pred_diff": summary(ours),
        "libsvm_vs_exact": summary(libsvm_error),
    }


def fmt_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_agreement(a: dict) -> None:
    print(f"    agreement on {a['pixels']} libsvm pixels: same choice {a['same_choice']:.3f}, same or within 1% "
          f"CV MSE {a['same_or_within_1pct']:.3f}; points dropped by the race {a['points_dropped_by_race']:.2f}; "
          f"CV MSE rel. diff at all grid points scored median "
          f"{a['cv_mse_rel_diff_all_points']['median']:.1e} max {a['cv_mse_rel_diff_all_points']['max']:.1e}; "
          f"final predictions |batched - libsvm| median {a['final_pred_diff']['median']:.1e} max "
          f"{a['final_pred_diff']['max']:.1e} (libsvm vs exact SVR: median {a['libsvm_vs_exact']['median']:.1e} "
          f"max {a['libsvm_vs_exact']['max']:.1e})", flush=True)


#: Batched variants: key, printed name, trainer options.
VARIANTS = {
    "default": ("batched_default", f"batched, cv_tol {BATCHED_CV_TOL:g}, race", {}),
    "full": ("batched_no_race", f"batched, cv_tol {BATCHED_CV_TOL:g}, no race", {"cv_race": False}),
    "tight": ("batched_cv_tol_1e-3", "batched, cv_tol 1e-3, no race", {"cv_tol": 1e-3, "cv_race": False}),
}


def bench_grid(grid: str, labels, flux, ivar, ref_pixels: np.ndarray, pixels: np.ndarray,
               variants: Sequence[str], one_size: bool = False, astroslam_pixels: int = 0) -> dict:
    n_points = len(resolve_grid(grid, 4))
    warm_up(labels, flux, ivar, grid)
    out = {"grid": grid, "grid_points": n_points}
    if astroslam_pixels:
        chosen = ref_pixels[:astroslam_pixels] if ref_pixels.size else pixels[:astroslam_pixels]
        seconds = astroslam_loop(labels, flux, ivar, chosen, grid)
        per_pixel = seconds / chosen.size
        points = int(np.prod([len(values) for values in PRESETS[grid].values()]))
        print(f"  astroslam loop (GridSearchCV per pixel, {points} points): "
              f"{seconds:.0f} s for {chosen.size} pixels = {per_pixel:.2f} s per pixel ({RUN['libsvm_jobs']} workers)",
              flush=True)
        out.update(astroslam_s_per_pixel=per_pixel, astroslam_production_s=per_pixel * PRODUCTION_PIXELS,
                   astroslam_boss_s=per_pixel * BOSS_PIXELS)
    reference = None
    if ref_pixels.size:
        jobs = RUN["libsvm_jobs"]
        reference, t_ref = timed_fit(labels, flux[:, ref_pixels], ivar[:, ref_pixels], grid=grid, backend="libsvm",
                                     n_jobs=jobs, chunk_size=max(1, -(-ref_pixels.size // jobs)))
        ref_per_pixel = t_ref / ref_pixels.size
        print(f"  libsvm: {t_ref:.0f} s for {ref_pixels.size} pixels = {ref_per_pixel:.2f} s per pixel ({jobs} workers)",
              flush=True)
        out.update(libsvm_s_per_pixel=ref_per_pixel, libsvm_production_s=ref_per_pixel * PRODUCTION_PIXELS,
                   libsvm_boss_s=ref_per_pixel * BOSS_PIXELS)
    half = pixels[: pixels.size // 2]
    for variant in variants:
        key, label, options = VARIANTS[variant]
        sizes = (half, pixels) if variant == "default" and not one_size else (pixels,)
        times = {}
        for chosen in sizes:
            trainer, seconds = timed_fit(labels, flux[:, chosen], ivar[:, chosen], grid=grid, backend="batched",
                                         **options)
            times[chosen.size] = seconds
            print(f"  {label}: {seconds:.0f} s for {chosen.size} pixels", flush=True)
        if len(times) == 2:
            (n1, t1), (n2, t2) = sorted(times.items())
            per_pixel = max((t2 - t1) / (n2 - n1), 1e-9)
            fixed = max(t2 - per_pixel * n2, 0.0)
        else:
            fixed = 0.0 if one_size else out["batched_default"]["fixed_s"]
            per_pixel = max(times[pixels.size] - fixed, 0.0) / pixels.size
        production = fixed + per_pixel * PRODUCTION_PIXELS
        boss = fixed + per_pixel * BOSS_PIXELS
        out[key] = {"fixed_s": fixed, "s_per_pixel": per_pixel, "production_s": production, "boss_s": boss,
                    "sizes": sorted(times)}
        print(f"    -> {fmt_time(production)} for {PRODUCTION_PIXELS} pixels, {fmt_time(boss)} for {BOSS_PIXELS} "
              f"(fixed {fixed:.0f} s + {per_pixel:.3f} s per pixel)", flush=True)
        if "astroslam_production_s" in out:
            out[key]["speedup_vs_astroslam"] = out["astroslam_production_s"] / production
            print(f"    speed-up against the astroslam loop {out[key]['speedup_vs_astroslam']:.1f}x", flush=True)
        if reference is not None:
            out[key]["speedup"] = out["libsvm_production_s"] / production
            out[key]["agreement"] = agreement(reference, trainer, np.searchsorted(pixels, ref_pixels),
                                              flux[:, ref_pixels], ivar[:, ref_pixels])
            print(f"    speed-up {out[key]['speedup']:.1f}x", flush=True)
            print_agreement(out[key]["agreement"])
    return out


def scaling(labels, flux, ivar, rng) -> dict:
    """Batched wall time against pixels, training stars and grid size."""
    trainable = np.flatnonzero((ivar > 0).sum(axis=0) >= 0.9 * len(labels))
    out = {"pixels": {}, "stars": {}, "grid": {}}
    for n_pix in (64, 128, 256, 512):
        chosen = np.sort(rng.choice(trainable, n_pix, replace=False))
        out["pixels"][n_pix] = timed_fit(labels, flux[:, chosen], ivar[:, chosen], grid="fast", backend="batched")[1]
        print(f"  fast grid, {n_pix} pixels: {out['pixels'][n_pix]:.1f} s", flush=True)
    chosen = np.sort(rng.choice(trainable, 128, replace=False))
    for n_star in (300, 500, 870):
        stars = np.sort(rng.choice(len(labels), n_star, replace=False))
        out["stars"][n_star] = timed_fit(labels[stars], flux[np.ix_(stars, chosen)], ivar[np.ix_(stars, chosen)],
                                         grid="fast", backend="batched")[1]
        print(f"  fast grid, 128 pixels, {n_star} stars: {out['stars'][n_star]:.1f} s", flush=True)
    grids = {
        "1 point": {"C": [1.0], "epsilon": [0.1], "gamma": [0.25]},
        "fast (8)": "fast",
        "paper C x 1 eps x 1 gamma (11)": {"C": [2.0**k for k in range(-5, 6)], "epsilon": [0.1], "gamma": [0.25]},
        "paper C x eps x 1 gamma (44)": {"C": [2.0**k for k in range(-5, 6)], "epsilon": [0.01, 0.05, 0.1, 0.15],
                                         "gamma": [0.25]},
    }
    for name, grid in grids.items():
        out["grid"][name] = timed_fit(labels, flux[:, chosen], ivar[:, chosen], grid=grid, backend="batched")[1]
        print(f"  128 pixels, grid {name}: {out['grid'][name]:.1f} s", flush=True)
    return out


def record_figures(results: dict) -> list[dict]:
    """The run's figures for its JSON record (``_record``): times, speed-ups, agreement, scaling."""
    fig = _record.figure
    figures = []
    for grid, r in results["grids"].items():
        g = f"{grid} grid ({r['grid_points']} points)"
        bases = {}
        for prefix, name, note in (
            ("astroslam", "astroslam's loop (GridSearchCV per pixel)",
             "undeduplicated grid; per-pixel time of its pixels x the pixels"),
            ("libsvm", "libsvm backend (reference)", "per-pixel time of the reference pixels x the pixels"),
        ):
            if f"{prefix}_production_s" not in r:
                continue
            bases[prefix] = f"{g}: {name}, {PRODUCTION_PIXELS} pixels"
            jobs = f"{results['run']['libsvm_jobs']} workers"
            figures += [
                fig(f"{g}: {name}, per pixel", r[f"{prefix}_s_per_pixel"], "s", note=jobs),
                fig(bases[prefix], r[f"{prefix}_production_s"] / 60, "min", note=note),
                fig(f"{g}: {name}, {BOSS_PIXELS} pixels", r[f"{prefix}_boss_s"] / 60, "min", note=note),
            ]
        for key, name, _ in VARIANTS.values():
            if key not in r:
                continue
            b = r[key]
            sizes = " and ".join(str(n) for n in b["sizes"])
            how = (f"extrapolated: fixed + per-pixel cost from {sizes} pixels" if len(b["sizes"]) == 2
                   else f"from {sizes} pixels, linear in pixels (fixed part {b['fixed_s']:.0f} s)")
            figures += [
                fig(f"{g}: {name}, {PRODUCTION_PIXELS} pixels", b["production_s"] / 60, "min", note=how),
                fig(f"{g}: {name}, {BOSS_PIXELS} pixels", b["boss_s"] / 60, "min", note=how),
                fig(f"{g}: {name}, per pixel", b["s_per_pixel"], "s", note=f"plus a fixed {b['fixed_s']:.1f} s"),
            ]
            if "speedup_vs_astroslam" in b:
                figures.append(fig(f"{g}: {name}, speed-up against astroslam's loop", b["speedup_vs_astroslam"], "x",
                                   baseline=bases["astroslam"]))
            if "speedup" in b:
                figures.append(fig(f"{g}: {name}, speed-up against libsvm", b["speedup"], "x",
                                   baseline=bases["libsvm"]))
            if "agreement" in b:
                a = b["agreement"]
                on = f"{a['pixels']} libsvm pixels"
                figures += [
                    fig(f"{g}: {name}, same choice as libsvm", a["same_choice"], "fraction", note=on),
                    fig(f"{g}: {name}, same choice or within 1% of libsvm's CV MSE", a["same_or_within_1pct"],
                        "fraction", note=on),
                    fig(f"{g}: {name}, CV MSE relative difference to libsvm, max over scored points",
                        a["cv_mse_rel_diff_all_points"]["max"], "", note=on),
                    fig(f"{g}: {name}, grid points dropped by the race", a["points_dropped_by_race"], "fraction",
                        note=on),
                    fig(f"{g}: {name}, final predictions |batched - libsvm|, max", a["final_pred_diff"]["max"],
                        "standardized flux", note=f"{on}, median {a['final_pred_diff']['median']:.1e}"),
                ]
                exact = f"{g}: libsvm's own distance to the exact SVR (tol 1e-9), max"
                if not any(f["name"] == exact for f in figures):
                    figures.append(fig(exact, a["libsvm_vs_exact"]["max"], "standardized flux",
                                       note=f"{on}, median {a['libsvm_vs_exact']['median']:.1e}"))
    scaling = results.get("scaling")
    if scaling:
        for n_pix, seconds in scaling["pixels"].items():
            figures.append(fig(f"scaling: fast grid, {n_pix} pixels", seconds, "s", note="870 stars; wall time"))
        for n_star, seconds in scaling["stars"].items():
            figures.append(fig(f"scaling: fast grid, 128 pixels, {n_star} stars", seconds, "s", note="wall time"))
        for name, seconds in scaling["grid"].items():
            figures.append(fig(f"scaling: 128 pixels, grid {name}", seconds, "s", note="870 stars; wall time"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", default="fast,paper")
    parser.add_argument("--ref-pixels", type=int, default=16, help="pixels trained with libsvm (both grids)")
    parser.add_argument("--paper-ref-pixels", type=int, default=8, help="libsvm pixels for the paper grid")
    parser.add_argument("--pixels", type=int, default=256, help="pixels trained with the batched backend")
    parser.add_argument("--full-grids", default="paper",
                        help="grids on which the batched backend is timed without racing too (default: %(default)s)")
    parser.add_argument("--tight-grids", default="fast",
                        help="grids on which cv_tol 1e-3 (float64 CV solves) is timed too (default: %(default)s)")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--one-size", action="store_true",
                        help="time the batched backend at --pixels only (e.g. the whole window: no extrapolation "
                             "below it, the fixed cost counted per pixel above it)")
    parser.add_argument("--astroslam-pixels", type=int, default=0,
                        help="also time astroslam's GridSearchCV loop on this many pixels (default: %(default)s)")
    parser.add_argument("--libsvm-jobs", type=int, default=2, help="worker processes of the libsvm reference")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="pixels per batched solve (default: the trainer's, %d)" % DEFAULT_CHUNK_SIZE["batched"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    _record.add_results_option(parser, "bench_train_batched")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    RUN.update(libsvm_jobs=args.libsvm_jobs, chunk_size=args.chunk_size)
    print(f"machine: {machine()}; batched chunk size {args.chunk_size or DEFAULT_CHUNK_SIZE['batched']}", flush=True)
    labels, flux, ivar = training_set()
    rng = np.random.default_rng(args.seed)
    trainable = np.flatnonzero((ivar > 0).sum(axis=0) >= 10)
    pixels = rng.choice(trainable, min(args.pixels, trainable.size), replace=False)
    results = {"machine": machine(), "run": dict(RUN),
               "training_set": {"stars": int(len(labels)), "pixels": int(flux.shape[1])}, "grids": {}}
    for grid in args.grids.split(","):
        n_ref = args.paper_ref_pixels if grid == "paper" else args.ref_pixels
        ref = np.sort(pixels[:n_ref])
        ordered = np.sort(pixels)
        print(f"\n== grid {grid} ({len(resolve_grid(grid, 4))} points), 870 stars, 10 folds", flush=True)
        variants = ["default"] + [name for name, option in (("full", args.full_grids), ("tight", args.tight_grids))
                                  if grid in option.split(",")]
        results["grids"][grid] = bench_grid(grid, labels, flux, ivar, ref, ordered, variants, args.one_size,
                                            args.astroslam_pixels)
    if not args.no_scaling:
        print("\n== scaling of the batched backend", flush=True)
        results["scaling"] = scaling(labels, flux, ivar, rng)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_train_batched.json").write_text(json.dumps(results, indent=1))

    print(f"\nSummary (wall time on this machine, {machine()}; extrapolated linearly in pixels)")
    print(f"{'grid':>6} {'backend':>32} {'1739 px':>10} {'4648 px':>10} {'speed-up':>9} {'same choice':>12} "
          f"{'<=1% MSE':>9} {'max dMSE':>9} {'max dpred':>10} {'libsvm err':>10} {'dropped':>8} {'vs astroslam':>13}")
    for grid, r in results["grids"].items():
        for prefix, name in (("astroslam", "astroslam loop"), ("libsvm", "libsvm (reference)")):
            if f"{prefix}_production_s" in r:
                print(f"{grid:>6} {name:>32} {fmt_time(r[f'{prefix}_production_s']):>10} "
                      f"{fmt_time(r[f'{prefix}_boss_s']):>10}")
        for key, name, _ in VARIANTS.values():
            if key not in r:
                continue
            b = r[key]
            line = f"{grid:>6} {name:>32} {fmt_time(b['production_s']):>10} {fmt_time(b['boss_s']):>10}"
            if "agreement" in b:
                a = b["agreement"]
                line += (f" {b['speedup']:>8.1f}x {a['same_choice']:>12.3f} {a['same_or_within_1pct']:>9.3f} "
                         f"{a['cv_mse_rel_diff_all_points']['max']:>9.1e} {a['final_pred_diff']['max']:>10.1e} "
                         f"{a['libsvm_vs_exact']['max']:>10.1e} {a['points_dropped_by_race']:>8.2f}")
            else:
                line += " " * 78
            if "speedup_vs_astroslam" in b:
                line += f" {b['speedup_vs_astroslam']:>12.1f}x"
            print(line.rstrip())
    settings = {key: value for key, value in vars(args).items() if key not in ("out", "results")}
    settings["training_set"] = results["training_set"]
    title = (f"{results['training_set']['stars']} mock training stars, 10 folds, tol 1e-3; "
             f"grids {args.grids}; batched on {pixels.size} pixels")
    record = _record.results_path(args.results, "bench_train_batched")
    _record.write(record, "bench_train_batched", record_figures(results), title=title, settings=settings)


if __name__ == "__main__":
    main()

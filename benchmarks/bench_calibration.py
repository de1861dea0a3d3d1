"""Coverage of a model's uncertainties on independent held-out mock stars, before and after calibration.

    python benchmarks/bench_calibration.py [--model MODEL] [--n 1000] [--seed 20251129] [--nuts 500]

The stars are a mock survey (SNR log-uniform 3-50) whose seed differs from
the model's training (20251126), test (20251127) and calibration (20251128)
sets. Printed per label and SNR bin: the fraction of true labels inside the
central 68.27% and 95% intervals (nominal 0.683 and 0.950; in brackets the
deviation in binomial standard errors), raw and calibrated with the model's
calibration (:mod:`bayesslam.calibration`), for

1. MAP +- Laplace sigma (all stars whose fit converged);
2. NUTS posterior intervals of the first ``--nuts`` stars (one chain, 500
   warm-up + 500 draws; raw: the posterior's own quantiles; calibrated: the
   quantiles of the calibrated posterior);
3. a negative control: the MAP fit with the emulator variance ``s_j^2``
   switched off, calibrated with the same (now wrong) calibration, must
   under-cover;
4. coverage in bins of true [Fe/H] (the calibration is marginal over the
   label distribution; it is not conditional on the label).

Prepared stars and posteriors are cached under ``build/mock-cache``; the
first run with ``--nuts 500`` samples 500 NUTS posteriors, by far its longest
step. The figures also go to a JSON record
(``benchmarks/results/bench_calibration.json``, ``--results PATH``;
``python benchmarks/report.py`` turns the records into ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import _record
import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bayesslam import default_recipe as build  # noqa: E402
from bayesslam.calibration import LEVELS, draws_pit, gaussian_pit, pit_coverage  # noqa: E402
from bayesslam.emulator import default_model_path, load_model  # noqa: E402
from bayesslam.infer import FitStatus, fit_map  # noqa: E402

SNR_BINS = ((3.0, 50.0), (3.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 35.0), (35.0, 50.0))


def cell(pit: np.ndarray, level: float) -> str:
    """Coverage of finite PIT values at ``level`` with its deviation in binomial standard errors."""
    pit = pit[np.isfinite(pit)]
    if pit.size == 0:
        return f"{'-':>12s}"
    c = float(pit_coverage(pit, level))
    z = (c - level) / np.sqrt(level * (1 - level) / pit.size)
    return f"{c:6.3f}({z:+5.1f})"


def coverage_figures(method: str, names, pit: np.ndarray, kind: str, bin_values: np.ndarray, bins,
                     bin_name: str = "SNR", labels=None, bin_labels=None) -> list[dict]:
    """Record figures: coverage at both levels per label (``labels``: a subset) and bin, with its deviation.

    Bins are named ``lo to hi`` unless ``bin_labels`` names them.
    """
    figures = []
    for k, name in enumerate(names):
        if labels is not None and name not in labels:
            continue
        for b, (lo, hi) in enumerate(bins):
            sel = (bin_values >= lo) & (bin_values < hi) & np.isfinite(pit[:, k])
            where = f"{lo:.3g} to {hi:.3g}" if bin_labels is None else bin_labels[b]
            for level in LEVELS:
                values = pit[sel, k]
                if values.size == 0:
                    continue
                c = float(pit_coverage(values, level))
                z = (c - level) / np.sqrt(level * (1 - level) / values.size)
                figures.append(_record.figure(
                    f"{method}, {name}, {bin_name} {where}, {100 * level:.4g}% {kind}", c, "coverage",
                    note=f"nominal {level:.3f}; {z:+.1f} binomial s.e.; {values.size} stars"
                         + ("" if bin_labels is None else f"; {lo:.3g} to {hi:.3g}")))
    return figures


def print_coverage(title: str, names, raw: np.ndarray, calibrated: np.ndarray | None, bin_values: np.ndarray,
                   bins=SNR_BINS, bin_name: str = "SNR") -> None:
    """One table per label: rows are bins, columns raw and calibrated 68%/95% coverage."""
    print(f"\n{title}")
    head = f"{'68% raw':>13s} {'95% raw':>13s}" + ("" if calibrated is None else f" {'68% cal':>13s} {'95% cal':>13s}")
    for k, name in enumerate(names):
        print(f"  {name:8s} {bin_name:>11s} {'n':>5s} {head}")
        for lo, hi in bins:
            sel = (bin_values >= lo) & (bin_values < hi) & np.isfinite(raw[:, k])
            row = f"{cell(raw[sel, k], LEVELS[0])} {cell(raw[sel, k], LEVELS[1])}"
            if calibrated is not None:
                row += f" {cell(calibrated[sel, k], LEVELS[0])} {cell(calibrated[sel, k], LEVELS[1])}"
            print(f"  {'':8s} {lo:5.3g}-{hi:<5.3g} {int(sel.sum()):5d} {row}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=build.CHECK_SEED)
    parser.add_argument("--nuts", type=int, default=500, help="NUTS posteriors of the first N stars (0: none)")
    _record.add_results_option(parser, "bench_calibration")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.seed in (build.TRAIN_SEED, build.CALIBRATION_SEED):
        parser.error(f"seed {args.seed} is the model's training or calibration seed; the check needs independent stars")
    path = args.model or default_model_path()
    model = load_model(path)
    names = model.label_names
    calibration = model.error_calibration
    laplace = None if calibration is None else calibration.laplace
    posterior_cal = None if calibration is None else calibration.posterior
    mock = build.mock_set(args.n, args.seed, (3.0, 50.0), progress=False)
    truth, snr = mock.truth, mock.snr
    t = time.perf_counter()
    fit = fit_map(model.emulator, mock.flux, mock.ivar, laplace_correction=model.laplace_correction)
    map_seconds = time.perf_counter() - t
    converged = fit.status == FitStatus.CONVERGED
    print(f"model {path}: {len(truth)} mock stars (seed {args.seed}, SNR 3-50), MAP {map_seconds:.1f} s, "
          f"{int(converged.sum())} converged")
    fig = _record.figure
    figures = [fig("MAP fits converged", int(converged.sum()), "stars", note=f"of {len(truth)}"),
               fig("MAP fits, wall time", map_seconds, "s", note="compilation included")]
    for kind, cal in (("laplace", laplace), ("posterior", posterior_cal)):
        if cal is None:
            print(f"{kind} calibration: none")
            continue
        terms = ", ".join(f"{n} x{a:.3f}(+-{da:.3f}) (+) {f:.4g}(+-{df:.2g})"
                          for n, a, da, f, df in zip(names, cal.scale, cal.scale_err, cal.floor, cal.floor_err))
        print(f"{kind} calibration ({cal.n_stars} stars; {cal.source}): {terms}")

    errors = np.where(converged[:, None], fit.labels - truth, np.nan)
    raw = gaussian_pit(errors, fit.sigma)
    cal = None if laplace is None else gaussian_pit(errors, laplace.apply(fit.sigma))
    print_coverage("1. MAP +- Laplace sigma: coverage raw and calibrated, by SNR", names, raw, cal, snr)
    everything = SNR_BINS[:1]
    figures += coverage_figures("MAP ± Laplace", names, raw, "raw", snr, everything)
    if cal is not None:
        figures += coverage_figures("MAP ± Laplace", names, cal, "calibrated", snr, SNR_BINS)

    if args.nuts:
        t = time.perf_counter()
        post = build.posterior_set(model, mock, args.nuts)
        n = len(post.draws)
        print(f"\n2. NUTS (500 warm-up + 500 draws, one chain) on the first {n} stars ({time.perf_counter() - t:.0f} s; "
              f"R-hat > 1.05 for {int(np.sum(np.any(post.r_hat > 1.05, axis=1)))} stars, "
              f"divergences for {int(np.sum(post.n_divergent > 0))})")
        raw_p = draws_pit(truth[:n], post.draws)
        cal_p = None if posterior_cal is None else draws_pit(truth[:n], post.draws, posterior_cal.scale,
                                                             posterior_cal.floor)
        print_coverage("   posterior central intervals: coverage raw and calibrated, by SNR", names, raw_p, cal_p,
                       snr[:n])
        lo, hi = np.asarray(model.emulator.label_bounds)[-1]
        print(f"   [alpha/M] (the mock spectra do not depend on it): posterior sd, median over stars, "
              f"{np.median(post.sd[:, -1]):.3f}; prior sd {(hi - lo) / np.sqrt(12):.3f}; "
              f"true population sd {np.std(truth[:, -1]):.3f}")
        nuts = f"NUTS posterior ({n} stars)"
        figures += [
            fig(f"{nuts}: stars with R-hat > 1.05", int(np.sum(np.any(post.r_hat > 1.05, axis=1))), "stars",
                note="500 warm-up + 500 draws, one chain"),
            fig(f"{nuts}: stars with divergences", int(np.sum(post.n_divergent > 0)), "stars"),
        ]
        figures += coverage_figures(nuts, names, raw_p, "raw", snr[:n], everything)
        if cal_p is not None:
            figures += coverage_figures(nuts, names, cal_p, "calibrated", snr[:n], everything)
        last = names[-1]
        figures += [
            fig(f"{nuts}: {last} posterior sd, median over stars", float(np.median(post.sd[:, -1])), "dex",
                note="the mock spectra do not depend on it"),
            fig(f"{last} prior sd", float((hi - lo) / np.sqrt(12)), "dex", note="uniform over the training box"),
            fig(f"{last} true population sd", float(np.std(truth[:, -1])), "dex", note="these mock stars"),
        ]

    if laplace is not None:
        emulator = model.emulator
        blind = dataclasses.replace(emulator, model_variance=jnp.where(jnp.isfinite(emulator.model_variance), 0.0,
                                                                       jnp.inf))
        fit0 = fit_map(blind, mock.flux, mock.ivar)
        errors0 = np.where((fit0.status == FitStatus.CONVERGED)[:, None], fit0.labels - truth, np.nan)
        cal0 = gaussian_pit(errors0, laplace.apply(fit0.sigma))
        print_coverage("3. negative control: s_j^2 = 0 in the likelihood, same calibration (must under-cover)", names,
                       gaussian_pit(errors0, fit0.sigma), cal0, snr)
        figures += coverage_figures("negative control (s_j^2 = 0)", names, cal0, "calibrated", snr,
                                    (SNR_BINS[0], SNR_BINS[-1]))
        fe_h = list(names).index("fe_h") if "fe_h" in names else None
        if fe_h is not None:
            edges = np.quantile(truth[:, fe_h], [0.0, 0.25, 0.5, 0.75, 1.0])
            edges[-1] = np.nextafter(edges[-1], np.inf)
            quartiles = tuple(zip(edges[:-1], edges[1:]))
            print_coverage("4. MAP +- Laplace sigma by true [Fe/H] quartile (the calibration is marginal over labels)",
                           names, raw, cal, truth[:, fe_h], bins=quartiles, bin_name="[Fe/H]")
            figures += coverage_figures("MAP ± Laplace", names, cal, "calibrated", truth[:, fe_h], quartiles,
                                        bin_name="true [Fe/H] quartile", labels=("fe_h",),
                                        bin_labels=("1", "2", "3", "4"))
    title = f"{len(truth)} independent mock stars (seed {args.seed}, SNR log-uniform 3-50), model {path.name}"
    settings = {"model": str(args.model or "default"), "n": args.n, "seed": args.seed, "nuts": args.nuts}
    record = _record.results_path(args.results, "bench_calibration")
    _record.write(record, "bench_calibration", figures, title=title, settings=settings)


if __name__ == "__main__":
    main()

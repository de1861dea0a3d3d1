"""Benchmark the emulator error model: speed and coverage with it against the diagonal likelihood, same run.

One command prints the figures and writes the JSON record
(``benchmarks/results/bench_error_model.json``; ``--results PATH``)::

    python benchmarks/bench_error_model.py [--model PATH] [--n-map 1000] [--n-nuts 128]

On independent mock stars (seed 20251129, SNR log-uniform 3-50,
``bayesslam.default_recipe.mock_set``), with the model as it is (its error
model) and with ``SlamModel.with_error_model(None)`` (the diagonal likelihood
``1/ivar + s_j^2``, the baseline):

* MAP: stars per second of :func:`bayesslam.infer.fit_map` (a second pass
  over the same stars: compilation excluded) and the raw 68% / 95% coverage of
  MAP +- Laplace sigma per label;
* NUTS: seconds per star and chain (500 warm-up + 500 draws, one chain, the
  first ``--n-nuts`` stars, 128 lanes, wall time with compilation), leapfrog
  steps per iteration, and the raw coverage of the posterior central
  intervals per label.

``python benchmarks/report.py`` turns the record into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import _record
import jax
import numpy as np
from scipy.stats import norm

from bayesslam import default_recipe
from bayesslam._precision import in_float64
from bayesslam.emulator import default_model_path, load_model
from bayesslam.infer import FitStatus, fit_map, sample_nuts


def _coverage(inside: np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in np.mean(inside, axis=0)]


@in_float64
def measure(model, mock, n_nuts: int, label: str, fig) -> list[dict]:
    """MAP and NUTS figures of one likelihood on the mock stars."""
    emulator = model.emulator
    fit_map(emulator, mock.flux, mock.ivar)  # compile
    t = time.perf_counter()
    fit = fit_map(emulator, mock.flux, mock.ivar)
    map_rate = len(mock.flux) / (time.perf_counter() - t)
    ok = fit.status == FitStatus.CONVERGED
    errors = np.abs(fit.labels[ok] - mock.truth[ok])
    names = model.label_names
    figures = [fig(f"{label}: MAP, stars per second", round(map_rate, 1), "stars/s",
                   baseline=None if label == "diagonal" else "diagonal: MAP, stars per second")]
    for level in (0.6827, 0.95):
        cover = _coverage(errors < norm.ppf(0.5 + level / 2) * fit.sigma[ok])
        figures += [fig(f"{label}: MAP +- Laplace {level:.0%} coverage, {n}", c, note=f"{int(ok.sum())} stars")
                    for n, c in zip(names, cover)]
    n = min(n_nuts, len(mock.flux))
    t = time.perf_counter()
    post = sample_nuts(emulator, mock.flux[:n], mock.ivar[:n], rng_key=jax.random.key(1), num_warmup=500,
                       num_samples=500, init_labels=fit.labels[:n], init_sigma=fit.sigma[:n], progress=False)
    per_star = (time.perf_counter() - t) / n
    figures.append(fig(f"{label}: NUTS, seconds per star and chain", round(per_star, 3), "s",
                       baseline=None if label == "diagonal" else "diagonal: NUTS, seconds per star and chain",
                       note=f"{n} stars, 500 + 500, one chain, compilation included"))
    draws = np.stack([post.draws(i) for i in range(n)])
    truth = mock.truth[:n]
    for level in (0.6827, 0.95):
        lo, hi = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2], axis=1)
        cover = _coverage((truth >= lo) & (truth <= hi))
        figures += [fig(f"{label}: NUTS {level:.0%} coverage, {name}", c, note=f"{n} stars")
                    for name, c in zip(names, cover)]
    figures.append(fig(f"{label}: NUTS, stars with R-hat > 1.05", int(np.sum(np.any(post.summary["r_hat"] > 1.05,
                                                                                    axis=1))), "stars"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--n-map", type=int, default=1000)
    parser.add_argument("--n-nuts", type=int, default=128)
    _record.add_results_option(parser, "bench_error_model")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    path = args.model or default_model_path()
    model = load_model(path)
    if model.error_model is None:
        parser.error(f"{path} has no error model; there is nothing to compare")
    mock = default_recipe.mock_set(args.n_map, default_recipe.CHECK_SEED, progress=False)
    fig = _record.figure
    figures = []
    for label, variant in (("diagonal", model.with_error_model(None)), ("error model", model)):
        figures += measure(variant, mock, args.n_nuts, label, fig)
    for f in figures:
        print(f"{f['name']:60s} {f['value']!s:>10} {f['unit']}")
    title = (f"{len(mock.flux)} independent mock stars (seed {default_recipe.CHECK_SEED}, SNR 3-50), model "
             f"{path.name}: its error model against the diagonal likelihood")
    settings = {"model": str(args.model or "default"), "n_map": args.n_map, "n_nuts": args.n_nuts}
    _record.write(_record.results_path(args.results, "bench_error_model"), "bench_error_model", figures,
                  title=title, settings=settings)


if __name__ == "__main__":
    main()

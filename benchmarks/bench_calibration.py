"""Posterior calibration of a model on a held-out mock test set: coverage, prior recovery, Laplace vs NUTS.

    python benchmarks/bench_calibration.py [--model MODEL] [--n 80] [--seed 20251127]

Prints, per label, the fraction of stars whose true label lies inside the posterior's central 68% and
95% intervals (nominal 0.68 and 0.95, binomial error quoted), the same with the emulator variance
switched off (a negative control), the ratio of Laplace to posterior sigma, and the posterior width of
[alpha/M] against its prior's (the mock spectra do not depend on [alpha/M]).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import build_default_model as build  # noqa: E402

from bayesslam.default_model import default_model_path  # noqa: E402
from bayesslam.fit import fit_map  # noqa: E402
from bayesslam.modelfile import load_model  # noqa: E402
from bayesslam.sample import sample_nuts  # noqa: E402


def coverage(emulator, flux, ivar, truth, start, seed):
    post = sample_nuts(emulator, flux, ivar, rng_key=jax.random.key(seed), num_warmup=400, num_samples=600,
                       batch_size=40, init_labels=start, progress=False)
    n, k = truth.shape
    hits68 = np.zeros((n, k), bool)
    hits95 = np.zeros((n, k), bool)
    for i in range(n):
        d = post.draws(i)
        lo68, hi68 = np.quantile(d, [0.16, 0.84], axis=0)
        lo95, hi95 = np.quantile(d, [0.025, 0.975], axis=0)
        hits68[i] = (truth[i] >= lo68) & (truth[i] <= hi68)
        hits95[i] = (truth[i] >= lo95) & (truth[i] <= hi95)
    return hits68.mean(axis=0), hits95.mean(axis=0), post


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--seed", type=int, default=build.TEST_SEED)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    model = load_model(args.model or default_model_path())
    emulator = model.emulator
    test, truth, _ = build._prepare_mock(args.n, args.seed, (3.0, 50.0))
    flux, ivar = test.spectra.flux, test.spectra.ivar
    fit = fit_map(emulator, flux, ivar)
    t = time.perf_counter()
    c68, c95, post = coverage(emulator, flux, ivar, truth, fit.labels, 1)
    seconds = time.perf_counter() - t
    blind = dataclasses.replace(emulator, model_variance=jnp.where(jnp.isfinite(emulator.model_variance), 0.0, jnp.inf))
    b68, b95, _ = coverage(blind, flux, ivar, truth, fit.labels, 1)
    e68, e95 = np.sqrt(0.68 * 0.32 / args.n), np.sqrt(0.95 * 0.05 / args.n)
    print(f"model {args.model or default_model_path()}: {args.n} mock stars (seed {args.seed}), NUTS 400+600, {seconds:.0f} s")
    print(f"{'label':8s} {'68% cov':>8s} {'95% cov':>8s} {'68% no s2':>10s} {'95% no s2':>10s} {'Laplace/post sd':>16s}")
    ratio = np.median(fit.sigma / post.summary["sd"], axis=0)
    for k, name in enumerate(model.label_names):
        print(f"{name:8s} {c68[k]:8.3f} {c95[k]:8.3f} {b68[k]:10.3f} {b95[k]:10.3f} {ratio[k]:16.2f}")
    print(f"binomial 1-sigma: {e68:.3f} (68%), {e95:.3f} (95%)")
    lo, hi = np.asarray(emulator.label_bounds)[-1]
    print(f"[alpha/M] posterior sd (median over stars) {np.median(post.summary['sd'][:, -1]):.3f} "
          f"vs prior sd {(hi - lo) / np.sqrt(12):.3f}")


if __name__ == "__main__":
    main()

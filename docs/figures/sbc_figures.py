"""Make the figures of docs/calibration-research.md from the exact toy emulator of the tests.

Run from the repository root (about a minute on two cores)::

    python3 docs/figures/sbc_figures.py

It repeats the SBC study of ``tests/test_sbc.py`` (same toy model, seed and sizes: 128 simulations
at SNR 10, NUTS 150 + 200, ranks among 49 draws) with the right noise and with twice the noise,
writes ``sbc_ranks.png``, ``sbc_ecdf.png`` and ``sbc_control_ecdf.png``, then samples 128 held-out
toy stars at SNR 5, 10, 20 and 40 with MAP + Laplace and NUTS and writes their coverage report
(``coverage_curves.png``, ``coverage_posterior_by_snr.png``). It prints the numbers the page quotes.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from toymodel import make_toy_model  # noqa: E402

from bayesslam import float64  # noqa: E402
from bayesslam.infer import default_prior, fit_map, sample_nuts  # noqa: E402
from bayesslam.validation import EmulatorSimulator, coverage_report, draw_from_prior, run_sbc  # noqa: E402

N_SIM, SNR, SEED = 128, 10.0, 3
NUTS = dict(num_warmup=150, num_samples=200, num_draws=49, batch_size=N_SIM)


def _numbers(result) -> dict:
    test = result.uniformity()
    curve = result.coverage_curve()
    return {"chi2_pvalue": np.round(test.chi2_pvalue, 12).tolist(), "ks_pvalue": np.round(test.ks_pvalue, 6).tolist(),
            "n_bins": test.n_bins, "ecdf_in_band": result.ecdf_in_band().tolist(),
            "coverage_68": np.round(curve.at(0.68), 3).tolist(), "coverage_95": np.round(curve.at(0.95), 3).tolist(),
            "max_abs_deviation": np.round(curve.max_abs_deviation, 3).tolist()}


def main() -> None:
    with float64():
        toy = make_toy_model(s2=1.0 / 20.0**2)
    right = run_sbc(toy, N_SIM, SNR, seed=SEED, **NUTS)
    noisy = run_sbc(toy, N_SIM, SNR, seed=SEED, simulator=EmulatorSimulator(toy, noise_scale=2.0), **NUTS)
    print(json.dumps({"labels": right.label_names, "right": _numbers(right), "noise x2": _numbers(noisy)}, indent=1))
    with tempfile.TemporaryDirectory() as tmp:
        for result, prefix, keep in ((right, "sbc", ("ranks", "ecdf")), (noisy, "sbc_control", ("ecdf",))):
            paths = result.plot(tmp, prefix)
            for key in keep:
                shutil.copy(paths[key], HERE / paths[key].name)

    # held-out stars: MAP + Laplace and NUTS side by side, by SNR
    rng = np.random.default_rng(SEED)
    prior = default_prior(toy)
    truth = draw_from_prior(prior, N_SIM, rng)
    snr = np.array([5.0, 10.0, 20.0, 40.0])[np.arange(N_SIM) % 4]
    flux, ivar = EmulatorSimulator(toy)(truth, snr, rng)
    fit = fit_map(toy, flux, ivar, prior=prior)
    post = sample_nuts(toy, flux, ivar, rng_key=jax.random.key(SEED), prior=prior, num_warmup=150,
                       num_samples=200, batch_size=N_SIM, progress=False)
    draws = np.stack([post.draws(i) for i in range(N_SIM)])
    with tempfile.TemporaryDirectory() as tmp:
        report = coverage_report(truth, label_names=toy.label_names, estimate=fit.labels, sigma=fit.sigma,
                                 draws=draws, by={"snr": snr}, bins=[4.0, 7.5, 15.0, 30.0, 50.0], folder=tmp)
        for name in ("coverage_curves.png", "coverage_posterior_by_snr.png"):
            shutil.copy(Path(tmp) / name, HERE / name)
    summary = report.summary()["kinds"]
    print(json.dumps({kind: {key: value for key, value in entry.items() if key.startswith("coverage_")}
                      for kind, entry in summary.items()}, indent=1))


if __name__ == "__main__":
    main()

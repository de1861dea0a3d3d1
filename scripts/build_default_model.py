"""Rebuild the shipped default model in ``models/`` from scratch (one command).

    python scripts/build_default_model.py [--grid fast] [--n-jobs 2] [--output models/bayesslam-default-v1.npz]
    python scripts/build_default_model.py --calibrate-only   # redo only the last step on an existing model

Steps: a mock training survey of the paper's size (870 stars, the paper's
label domain, SNR log-uniform 10-100) made by :mod:`bayesslam.mock` from the
real Kesseli et al. (2017) BOSS templates -> the same ``prepare`` users run
(rest frame, rebinning onto the BOSS production-window grid, SLAM
normalization) -> :class:`bayesslam.train.SlamTrainer` -> model file. Then a
held-out mock test set (250 stars, another seed, SNR log-uniform 3-50) is
fitted with the new model, and the figures and numbers of the model card
(``models/README.md``) are written to ``models/card/``. Last, the model's
error calibration (:mod:`bayesslam.calibration`) is measured on a third
mock set (1000 stars, its own seed, SNR log-uniform 3-50: MAP fits of all,
NUTS posteriors of the first 500) and stored in the model file's metadata;
``benchmarks/bench_calibration.py`` checks it on a fourth (``CHECK_SEED``).
Prepared mock sets and posteriors are cached under ``build/mock-cache``
(about 30 s per 1000 prepared stars, 30-60 min per 500 NUTS posteriors on
two cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from bayesslam.calibration import ErrorCalibration, ModelCalibration
from bayesslam.fit import FitStatus, fit_map
from bayesslam.mock import ObservingSetup, make_survey
from bayesslam.modelfile import load_model, save_model
from bayesslam.prepare import prepare_spectra
from bayesslam.snr_law import PAPER_SNR_LAWS
from bayesslam.train import SlamTrainer

logger = logging.getLogger("build_default_model")

LABELS = ("teff", "logg", "fe_h", "alpha_m")
TRAIN_SEED = 20251126
TEST_SEED = 20251127
CALIBRATION_SEED = 20251128
CHECK_SEED = 20251129
N_TRAIN = 870
N_TEST = 250
N_CALIBRATION = 1000
N_POSTERIOR_CALIBRATION = 500
CACHE = Path("build/mock-cache")


def _prepare_mock(n: int, seed: int, snr_range: tuple[float, float], progress: bool = True):
    batch, table = make_survey(n, np.random.default_rng(seed), setup=ObservingSetup(snr_range=snr_range))
    prepared = prepare_spectra(iter(batch), progress=progress, total=len(batch))
    if prepared.failures:
        raise RuntimeError(f"{len(prepared.failures)} mock spectra failed to prepare: {prepared.failures[:3]}")
    order = {name: i for i, name in enumerate(table["identifier"])}
    rows = [order[i] for i in prepared.spectra.identifiers]
    labels = np.column_stack([np.asarray(table[name], dtype=float)[rows] for name in LABELS])
    return prepared, labels, np.asarray(table["snr"], dtype=float)[rows]


@dataclass(frozen=True)
class MockSet:
    """A prepared mock survey: normalized spectra on the model grid, true labels and SNR."""

    flux: np.ndarray
    ivar: np.ndarray
    wave: np.ndarray
    truth: np.ndarray
    snr: np.ndarray
    seed: int


def mock_set(n: int, seed: int, snr_range: tuple[float, float] = (3.0, 50.0), cache: Path | None = CACHE,
             progress: bool = True) -> MockSet:
    """A prepared held-out mock survey, cached as ``.npz`` under ``cache`` (None: no cache).

    The cache key is ``(n, seed, snr_range)``; a mock survey is a pure function
    of them (and of the installed bayesslam), so delete the cache after
    changing :mod:`bayesslam.mock` or :mod:`bayesslam.prepare`.
    """
    path = None if cache is None else cache / f"mock-{n}-{seed}-snr{snr_range[0]:g}-{snr_range[1]:g}.npz"
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as data:
            return MockSet(data["flux"], data["ivar"], data["wave"], data["truth"], data["snr"], seed)
    t0 = time.time()
    prepared, truth, snr = _prepare_mock(n, seed, snr_range, progress=progress)
    out = MockSet(prepared.spectra.flux, prepared.spectra.ivar, prepared.wave, truth, snr, seed)
    logger.info("mock set of %d stars (seed %d) prepared in %.0f s", n, seed, time.time() - t0)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, flux=out.flux, ivar=out.ivar, wave=out.wave, truth=out.truth, snr=out.snr)
    return out


def _model_key(model) -> str:
    """Short hash of a model's emulator arrays (its calibration metadata aside): a cache key."""
    digest = hashlib.sha256()
    for name in ("dual_coef", "intercept", "gamma", "train_x", "model_variance"):
        digest.update(np.ascontiguousarray(model.emulator_arrays[name]).tobytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class PosteriorSet:
    """NUTS posteriors of the first stars of a :class:`MockSet` (draws thinned to at most 250 per star)."""

    draws: np.ndarray
    median: np.ndarray
    sd: np.ndarray
    r_hat: np.ndarray
    ess_bulk: np.ndarray
    n_divergent: np.ndarray


def posterior_set(model, mock: MockSet, n: int, cache: Path | None = CACHE, num_warmup: int = 500,
                  num_samples: int = 500, max_draws: int = 250) -> PosteriorSet:
    """NUTS posteriors (one chain, MAP start) of the first ``n`` stars of ``mock``, cached under ``cache``."""
    from bayesslam.sample import sample_nuts

    n = min(n, len(mock.truth))
    key = f"nuts-{_model_key(model)}-{len(mock.truth)}-{mock.seed}-{n}-{num_warmup}-{num_samples}.npz"
    path = None if cache is None else cache / key
    fields = [f.name for f in dataclasses.fields(PosteriorSet)]
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as data:
            return PosteriorSet(**{name: data[name] for name in fields})
    t0 = time.time()
    fit = fit_map(model.emulator, mock.flux[:n], mock.ivar[:n])
    post = sample_nuts(model.emulator, mock.flux[:n], mock.ivar[:n], rng_key=jax.random.key(mock.seed),
                       num_warmup=num_warmup, num_samples=num_samples, init_labels=fit.labels, progress=False)
    thin = max(1, num_samples // max_draws)
    draws = np.stack([post.draws(i)[::thin] for i in range(n)])
    out = PosteriorSet(draws, post.summary["median"], post.summary["sd"], post.summary["r_hat"],
                       post.summary["ess_bulk"], np.asarray(post.summary["n_divergent"]))
    logger.info("NUTS %d+%d on %d mock stars (seed %d) in %.0f s", num_warmup, num_samples, n, mock.seed,
                time.time() - t0)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{name: getattr(out, name) for name in fields})
    return out


def _plot_card(folder: Path, model, test_labels, fit, snr) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    folder.mkdir(parents=True, exist_ok=True)
    wave = model.wave
    cv = model.training.cv_mse_flux
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.semilogy(wave, cv, lw=0.6, color="k", label="CV MSE (normalized flux)")
    ax.semilogy(wave, model.model_variance, lw=0.6, color="tab:red", alpha=0.7, label="emulator variance $s_j^2$")
    ax.set_xlabel("vacuum wavelength [A]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "cv_mse.png", dpi=110)
    plt.close(fig)

    stats = {}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    bins = np.quantile(snr, np.linspace(0, 1, 7))
    for ax, (k, name) in zip(axes, [(0, "teff"), (1, "logg"), (2, "fe_h")]):
        diff = fit.labels[:, k] - test_labels[:, k]
        ok = fit.status == 0
        stats[name] = {"bias_median": float(np.median(diff[ok])), "scatter_std": float(np.std(diff[ok])),
                       "n": int(ok.sum())}
        ax.scatter(snr[ok], diff[ok], s=6, color="k", alpha=0.5)
        centres, scatters = [], []
        for lo, hi in zip(bins[:-1], bins[1:]):
            sel = ok & (snr >= lo) & (snr <= hi)
            centres.append(np.median(snr[sel]))
            scatters.append(np.std(diff[sel]))
        ax.plot(centres, scatters, "o-", color="tab:blue", label="test-set scatter")
        ax.plot(centres, -np.array(scatters), "o-", color="tab:blue")
        grid = np.geomspace(snr.min(), snr.max(), 50)
        if name in PAPER_SNR_LAWS:
            ax.plot(grid, PAPER_SNR_LAWS[name](grid), "--", color="tab:red", label="paper SNR law")
            ax.plot(grid, -PAPER_SNR_LAWS[name](grid), "--", color="tab:red")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("SNR")
        ax.set_ylabel(f"MAP - true {name}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "test_residuals.png", dpi=110)
    plt.close(fig)
    return stats


def calibrate(path: Path, n: int = N_CALIBRATION, seed: int = CALIBRATION_SEED,
              n_posterior: int = N_POSTERIOR_CALIBRATION) -> ModelCalibration:
    """Measure the model's error calibration on a held-out mock set and store it in the model file.

    The Laplace calibration is fitted on the MAP fits of all ``n`` stars, the
    posterior calibration on NUTS posteriors of the first ``n_posterior``.
    """
    model = load_model(path)
    snr_range = (3.0, 50.0)
    mock = mock_set(n, seed, snr_range)
    fit = fit_map(model.emulator, mock.flux, mock.ivar)
    estimates = np.where((fit.status == FitStatus.CONVERGED)[:, None], fit.labels, np.nan)
    survey = f"bayesslam.mock.make_survey({n}, seed {seed}, SNR {snr_range[0]:g}-{snr_range[1]:g})"
    laplace = ErrorCalibration.measure(model.label_names, estimates, mock.truth, fit.sigma,
                                       source=f"MAP Laplace sigmas of the converged stars of {survey}")
    post = posterior_set(model, mock, n_posterior)
    posterior = ErrorCalibration.measure_posterior(
        model.label_names, post.draws, mock.truth[: len(post.draws)],
        source=f"NUTS posteriors (500 warm-up + 500 draws, one chain) of the first {len(post.draws)} stars of {survey}",
    )
    calibration = ModelCalibration(laplace=laplace, posterior=posterior)
    save_model(model.with_calibration(calibration), path, overwrite=True)
    logger.info("calibration stored in %s: %s", path, json.dumps(calibration.to_metadata()))
    return calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="fast", help="SlamTrainer grid preset (default: fast)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("models/bayesslam-default-v1.npz"))
    parser.add_argument("--checkpoint", type=Path, default=Path("build/default-model-checkpoint"))
    parser.add_argument("--calibrate-only", action="store_true",
                        help="only measure and store the error calibration of the existing --output model")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.calibrate_only:
        calibrate(args.output)
        return

    t0 = time.time()
    prepared, labels, _ = _prepare_mock(N_TRAIN, TRAIN_SEED, (10.0, 100.0))
    logger.info("training set prepared: %d spectra x %d pixels (%.0f s)", len(prepared), prepared.wave.size, time.time() - t0)
    trainer = SlamTrainer(grid=args.grid, n_folds=10, random_state=0, n_jobs=args.n_jobs,
                          checkpoint_dir=args.checkpoint, progress=True)
    t1 = time.time()
    trainer.fit_prepared(labels, prepared, label_names=LABELS)
    train_seconds = time.time() - t1
    logger.info("trained in %.0f s", train_seconds)
    model = trainer.to_model(
        description=(
            "bayesslam default model v1: per-pixel RBF SVRs trained on a semi-empirical MOCK survey "
            f"(870 stars, bayesslam.mock from the real Kesseli+2017 BOSS templates, seed {TRAIN_SEED}); "
            "not trained on real labelled spectra."
        ),
        training_set={"source": "bayesslam.mock.make_survey", "seed": TRAIN_SEED, "n_stars": N_TRAIN,
                      "snr_range": [10.0, 100.0], "distribution": "birky2020"},
        train_seconds=round(train_seconds, 1),
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, args.output, overwrite=True)
    model = load_model(args.output)
    logger.info("saved %s (%.1f MB)", args.output, args.output.stat().st_size / 1e6)

    test, test_labels, test_snr = _prepare_mock(N_TEST, TEST_SEED, (3.0, 50.0))
    fit = fit_map(model.emulator, test.spectra.flux, test.spectra.ivar)
    stats = _plot_card(args.output.parent / "card", model, test_labels, fit, test_snr)
    stats["train_seconds"] = round(train_seconds, 1)
    stats["grid"] = args.grid
    stats["converged"] = int(np.sum(fit.status == 0))
    (args.output.parent / "card" / "test_set.json").write_text(json.dumps(stats, indent=1))
    logger.info("test set: %s", json.dumps(stats))
    calibrate(args.output)


if __name__ == "__main__":
    main()

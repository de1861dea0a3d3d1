"""Rebuild the shipped default model in ``models/`` from scratch (one command).

    python scripts/build_default_model.py [--grid fast] [--n-jobs 2] [--output models/bayesslam-default-v1.npz]
    python scripts/build_default_model.py --error-model-only   # redo only the error model and label-level CV
    python scripts/build_default_model.py --laplace-correction-only   # learn only the Laplace correction

Runs the recipe of :mod:`bayesslam.default_recipe`: train on the mock training
set, save, learn the emulator error model and label-level CV from the
training stars (coverage before and after in ``models/card/error_model.json``),
then fit the held-out test set and write the model card's figures and numbers
(``models/card/``).
Prepared mock sets and posteriors are cached under ``build/mock-cache``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from bayesslam.catalog import PAPER_SNR_LAWS
from bayesslam.default_recipe import (
    LABELS,
    N_TEST,
    N_TRAIN,
    TEST_SEED,
    TRAIN_SEED,
    add_error_model,
    add_laplace_correction,
)
from bayesslam.emulator import load_model, save_model
from bayesslam.infer import fit_map
from bayesslam.mock import prepare_mock
from bayesslam.train import SlamTrainer

logger = logging.getLogger("build_default_model")


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
    ax.semilogy(wave, model.model_variance, lw=0.6, color="tab:red", alpha=0.7,
                label="out-of-fold residual variance $s_j^2$")
    if model.error_model is not None:
        ax.semilogy(wave, model.error_model.pixel_variance, lw=0.6, color="tab:green", alpha=0.8,
                    label="emulator pixel variance $D_j$ (training noise taken out)")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="fast", help="SlamTrainer grid preset (default: fast)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("models/bayesslam-default-v1.npz"))
    parser.add_argument("--checkpoint", type=Path, default=Path("build/default-model-checkpoint"))
    parser.add_argument("--error-model-only", action="store_true",
                        help="only learn the error model and label-level CV of the existing --output model, "
                             "store them and redo the model card's test set")
    parser.add_argument("--laplace-correction-only", action="store_true",
                        help="only learn the Laplace correction of the existing --output model (which carries its "
                             "error model and label-level CV), store it and redo the model card's test set")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.laplace_correction_only:
        report = add_laplace_correction(args.output)
        card = args.output.parent / "card"
        (card / "laplace_correction.json").write_text(json.dumps(report, indent=1))
        _card(args.output, None)
        return
    if args.error_model_only:
        _error_model_and_card(args.output, args.n_jobs, None)
        return

    t0 = time.time()
    prepared, labels, _ = prepare_mock(N_TRAIN, TRAIN_SEED, (10.0, 100.0))
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
    logger.info("saved %s (%.1f MB)", args.output, args.output.stat().st_size / 1e6)
    _error_model_and_card(args.output, args.n_jobs, {"train_seconds": round(train_seconds, 1), "grid": args.grid})


def _error_model_and_card(path: Path, n_jobs: int, training: dict | None) -> None:
    card = path.parent / "card"
    card.mkdir(parents=True, exist_ok=True)
    report = add_error_model(path, n_jobs=n_jobs)
    (card / "error_model.json").write_text(json.dumps(report, indent=1))
    logger.info("error model: %s", json.dumps(report["error_model"]))
    _card(path, training)


def _card(path: Path, training: dict | None) -> None:
    card = path.parent / "card"
    model = load_model(path)
    test, test_labels, test_snr = prepare_mock(N_TEST, TEST_SEED, (3.0, 50.0))
    fit = fit_map(model.emulator, test.spectra.flux, test.spectra.ivar, laplace_correction=model.laplace_correction)
    stats = _plot_card(card, model, test_labels, fit, test_snr)
    previous = json.loads((card / "test_set.json").read_text()) if (card / "test_set.json").exists() else {}
    training = training or {key: previous[key] for key in ("train_seconds", "grid") if key in previous}
    stats.update(training, converged=int(np.sum(fit.status == 0)))
    (card / "test_set.json").write_text(json.dumps(stats, indent=1))
    logger.info("test set: %s", json.dumps(stats))


if __name__ == "__main__":
    main()

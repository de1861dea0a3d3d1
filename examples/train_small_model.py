"""Train a small SLAM model on a mock survey, save it, and check it on held-out mock stars.

A mock BOSS M-dwarf survey is generated in memory
(:func:`bayesslam.mock.make_survey`) and prepared on a narrow window of the
BOSS grid (default 8100-8300 A, 106 pixels around the Na I doublet and the
TiO band head at 8200 A) so that training takes seconds. One SVR per pixel is
trained with the ``"fast"`` hyperparameter grid and k-fold cross-validation
(:func:`bayesslam.pipeline.train`), the model is saved and loaded back, and a
second, independent mock survey (another seed) is fitted with it
(:func:`bayesslam.pipeline.fit_labels`). The script prints the bias and
scatter of the MAP labels against the truth and writes to ``--out`` (default
``examples/out/``):

``small-model.npz``
    The trained model (``bayesslam.load_model`` reads it).
``held_out_catalog.fits``
    The held-out stars' catalog with their true labels added (``TRUE_TEFF``,
    ``TRUE_LOGG``, ``TRUE_FE_H``, ``TRUE_ALPHA_M``).
``small_model_vs_truth.png``
    MAP against true labels of the held-out stars.

Mock log g and [alpha/M] do not change the mock spectra (docs/mock.md), so only
Teff and [Fe/H] can be recovered. On the default 200 A window Teff comes back to
~80 K and [Fe/H] hardly at all; ``--window 7500 8500`` (about a minute) gives
~30 K and ~0.13 dex.

Run it from any folder::

    python examples/train_small_model.py                                  # 300 training stars, 5 folds
    python examples/train_small_model.py --n-train 80 --n-test 40 --folds 3 --out /tmp/small

``--help`` lists all options.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

import bayesslam
from bayesslam.catalog import write_catalog
from bayesslam.emulator import save_model
from bayesslam.grid import model_wavelength
from bayesslam.mock import ObservingSetup, make_survey
from bayesslam.pipeline import fit_labels, train
from bayesslam.preparation import PreparedSpectra, prepare_spectra

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "examples" / "out"
LABEL_NAMES = ("teff", "logg", "fe_h", "alpha_m")
UNITS = {"teff": "K", "logg": "dex", "fe_h": "dex", "alpha_m": "dex"}
PRETTY = {"teff": r"$T_\mathrm{eff}$ [K]", "logg": r"$\log g$", "fe_h": "[Fe/H]", "alpha_m": r"[$\alpha$/M]"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--n-train", type=int, default=300, help="mock training stars")
    parser.add_argument("--n-test", type=int, default=100, help="held-out mock stars")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--grid", default="fast", help="hyperparameter grid preset ('fast' or 'paper')")
    parser.add_argument("--backend", choices=("libsvm", "batched"), default="libsvm", help="SVR trainer")
    parser.add_argument("--window", type=float, nargs=2, default=(8100.0, 8300.0), metavar=("LO", "HI"),
                        help="wavelength window of the model grid (vacuum A)")
    parser.add_argument("--snr", type=float, nargs=2, default=(20.0, 100.0), metavar=("LO", "HI"),
                        help="SNR range of the mock spectra (drawn log-uniformly)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the training survey (held-out: seed + 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the model, catalog and figure")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    return parser.parse_args(argv)


def mock_prepared(n: int, seed: int, wave: np.ndarray, snr: tuple[float, float]) -> tuple[PreparedSpectra, np.ndarray]:
    """A mock survey of ``n`` stars prepared on ``wave``, and its true labels in the order of the prepared spectra."""
    batch, truth = make_survey(n, np.random.default_rng(seed), setup=ObservingSetup(snr_range=tuple(snr)))
    prepared = prepare_spectra(iter(batch), wave, progress=False, total=len(batch))
    if prepared.failures:
        print(f"{len(prepared.failures)} mock spectra could not be prepared and are left out")
    row = {identifier: i for i, identifier in enumerate(truth["identifier"])}
    rows = [row[identifier] for identifier in prepared.spectra.identifiers]
    labels = np.column_stack([np.asarray(truth[name], dtype=float)[rows] for name in LABEL_NAMES])
    return prepared, labels


def print_accuracy(fitted: np.ndarray, truth: np.ndarray) -> None:
    """Bias and scatter of the MAP labels against the truth, with the spread of the truth itself."""
    print(f"held-out accuracy ({len(truth)} stars): MAP - true")
    for i, name in enumerate(LABEL_NAMES):
        diff = fitted[:, i] - truth[:, i]
        print(f"  {name:<8} bias {np.mean(diff):+9.3f}  scatter {np.std(diff):8.3f}  "
              f"(spread of the true labels {np.std(truth[:, i]):8.3f}) {UNITS[name]}")


def plot_truth(fitted: np.ndarray, sigma: np.ndarray, truth: np.ndarray, path: Path) -> Path:
    """MAP against true labels, one panel per label."""
    figure, axes = plt.subplots(1, len(LABEL_NAMES), figsize=(4 * len(LABEL_NAMES), 4))
    for i, (ax, name) in enumerate(zip(axes, LABEL_NAMES)):
        ax.errorbar(truth[:, i], fitted[:, i], yerr=sigma[:, i], fmt="o", ms=3, color="C0", ecolor="0.7", lw=0.8)
        lo, hi = truth[:, i].min(), truth[:, i].max()
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--")
        scatter = np.std(fitted[:, i] - truth[:, i])
        ax.set_title(f"scatter {scatter:.3g} {UNITS[name]}", fontsize=10)
        ax.set_xlabel(f"true {PRETTY[name]}")
        ax.set_ylabel(f"MAP {PRETTY[name]}")
    figure.suptitle(f"small model: {len(truth)} held-out mock stars (error bars: Laplace sigma)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Train, save, reload and check a small model; return the exit status."""
    args = parse_args(argv)
    matplotlib.use("Agg")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    wave = model_wavelength(tuple(args.window))

    start = time.perf_counter()
    prepared, labels = mock_prepared(args.n_train, args.seed, wave, args.snr)
    print(f"training set: {len(prepared)} mock stars x {wave.size} pixels ({wave[0]:.1f}-{wave[-1]:.1f} A), "
          f"SNR {args.snr[0]:g}-{args.snr[1]:g}")
    model = train(prepared, labels, label_names=LABEL_NAMES, grid=args.grid, backend=args.backend,
                  n_folds=args.folds, description=f"examples/train_small_model.py, seed {args.seed}",
                  progress=args.progress)
    print(f"trained in {time.perf_counter() - start:.1f} s (with the mock survey)")
    model_path = save_model(model, args.out / "small-model.npz", overwrite=True)
    model = bayesslam.load_model(model_path)

    held_out, truth = mock_prepared(args.n_test, args.seed + 1, wave, args.snr)
    result = fit_labels(held_out, model, progress=args.progress)
    print_accuracy(result.map.labels, truth)

    catalog = result.catalog
    for i, name in enumerate(LABEL_NAMES):
        catalog[f"TRUE_{name.upper()}"] = truth[:, i]
    catalog_path = args.out / "held_out_catalog.fits"
    write_catalog(catalog, catalog_path, failures=result.failures, overwrite=True)
    figure_path = plot_truth(result.map.labels, result.map.sigma, truth, args.out / "small_model_vs_truth.png")
    print(f"wrote {model_path}, {catalog_path}, {figure_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

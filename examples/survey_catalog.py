"""A survey catalog from raw spectrum files: MAP labels, calibrated errors and flags for many stars.

The default inputs are the 12 mock BOSS M dwarfs of ``examples/data/mock/``
(their true labels are in ``examples/data/mock/labels.csv``) and the four real
SDSS M dwarfs of ``tests/data/``. :func:`bayesslam.fit` reads and prepares
every file (files, folders and glob patterns are all accepted; a file that
cannot be read is reported and skipped) and fits MAP labels with the shipped
default model. The script prints a short summary and writes to ``--out``
(default ``examples/out/``):

``catalog.fits``
    The catalog, one row per star (the columns of ``bayesslam fit``).
``survey_vs_truth.png``
    MAP Teff and [Fe/H] with their calibrated errors (``TEFF_ERR``,
    ``FE_H_ERR``) against the true labels of the stars found in ``--truth``
    (matched on ``IDENTIFIER``).
``survey_errors_vs_snr.png``
    The calibrated errors against SNR for all stars, with the SNR-law errors
    of Qiu et al. (2025) and the flagged stars marked.

Run it from any folder::

    python examples/survey_catalog.py                           # mock + real spectra
    python examples/survey_catalog.py "my-spectra/*.fits" --out my-catalog/

``--help`` lists all options.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from astropy.table import Table, join
from matplotlib.ticker import ScalarFormatter

import bayesslam
from bayesslam.catalog import Flag, write_catalog
from bayesslam.pipeline import fit_labels

REPO = Path(__file__).resolve().parents[1]
MOCK = REPO / "examples" / "data" / "mock"
# a folder (its spectrum files: .fits, .fits.gz, .npz, not the labels.csv beside them) and a glob pattern
DEFAULT_INPUTS = (str(MOCK), str(REPO / "tests" / "data" / "spec-*.fits"))
DEFAULT_TRUTH = MOCK / "labels.csv"
DEFAULT_OUT = REPO / "examples" / "out"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("inputs", nargs="*", default=list(DEFAULT_INPUTS),
                        help="spectrum files, folders or glob patterns (quote patterns)")
    parser.add_argument("--truth", type=Path, default=DEFAULT_TRUTH,
                        help="CSV of true labels (columns identifier, teff, fe_h) for the comparison figure")
    parser.add_argument("--model", type=Path, default=None, help="a model file (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the catalog and figures")
    return parser.parse_args(argv)


def flag_names(value: int) -> str:
    """The names of the flag bits set in ``value`` ("-" for none)."""
    return "|".join(flag.name for flag in Flag if value & flag) or "-"


def print_summary(table: Table) -> None:
    """One line per star, and the flag counts."""
    print(f"{len(table)} stars fitted")
    print(f"{'IDENTIFIER':<24} {'SNR':>6} {'TEFF_MAP':>9} {'TEFF_ERR':>8} {'FE_H_MAP':>8} {'FE_H_ERR':>8}  FLAGS")
    for row in table:
        print(f"{row['IDENTIFIER']:<24} {row['SNR']:6.1f} {row['TEFF_MAP']:9.1f} {row['TEFF_ERR']:8.1f} "
              f"{row['FE_H_MAP']:8.3f} {row['FE_H_ERR']:8.3f}  {flag_names(int(row['FLAGS']))}")
    flagged = int(np.count_nonzero(table["FLAGS"]))
    print(f"{flagged} of {len(table)} stars have a flag set")


def match_truth(table: Table, truth_path: Path) -> Table:
    """The catalog rows with a true label in ``truth_path``, joined with ``TRUE_TEFF`` and ``TRUE_FE_H``."""
    if not truth_path.is_file():
        return table[:0]
    truth = Table.read(truth_path, format="ascii.csv")
    truth = Table({"IDENTIFIER": [str(i) for i in truth["identifier"]],
                   "TRUE_TEFF": np.asarray(truth["teff"], dtype=float),
                   "TRUE_FE_H": np.asarray(truth["fe_h"], dtype=float)})
    catalog = table.copy()
    catalog["IDENTIFIER"] = [str(i).strip() for i in catalog["IDENTIFIER"]]
    return join(catalog, truth, keys="IDENTIFIER", join_type="inner")


def print_accuracy(matched: Table) -> None:
    """Bias and scatter of the MAP labels against the truth."""
    print(f"{len(matched)} stars with true labels:")
    for key, unit in (("TEFF", "K"), ("FE_H", "dex")):
        diff = np.asarray(matched[f"{key}_MAP"]) - np.asarray(matched[f"TRUE_{key}"])
        pull = diff / np.asarray(matched[f"{key}_ERR"])
        print(f"  {key:<5} bias {np.mean(diff):+8.3f} {unit}, scatter {np.std(diff):7.3f} {unit}, "
              f"std of (MAP - true) / {key}_ERR {np.std(pull):.2f}")


def plot_truth(matched: Table, path: Path) -> Path:
    """MAP against true Teff and [Fe/H], with the calibrated errors, coloured by SNR."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, key, label in zip(axes, ("TEFF", "FE_H"), (r"$T_\mathrm{eff}$ [K]", "[Fe/H]")):
        true = np.asarray(matched[f"TRUE_{key}"])
        fit = np.asarray(matched[f"{key}_MAP"])
        ax.errorbar(true, fit, yerr=np.asarray(matched[f"{key}_ERR"]), fmt="none", ecolor="0.6", zorder=1)
        points = ax.scatter(true, fit, c=np.asarray(matched["SNR"]), cmap="viridis", zorder=2)
        lo, hi = min(true.min(), fit.min()), max(true.max(), fit.max())
        pad = 0.05 * (hi - lo)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="k", lw=0.8, ls="--")
        ax.set_xlabel(f"true {label}")
        ax.set_ylabel(f"MAP {label}")
    figure.colorbar(points, ax=axes, label="SNR")
    figure.suptitle(f"{len(matched)} mock stars: MAP labels with their calibrated errors")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_errors(table: Table, path: Path) -> Path:
    """Calibrated and SNR-law errors of Teff and [Fe/H] against SNR; flagged stars circled."""
    snr = np.asarray(table["SNR"], dtype=float)
    flagged = np.asarray(table["FLAGS"]) != 0
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in zip(axes, ("TEFF", "FE_H"), (r"$T_\mathrm{eff}$ error [K]", "[Fe/H] error [dex]")):
        ax.scatter(snr, np.asarray(table[f"{key}_ERR"]), color="C0", label=f"{key}_ERR (calibrated)")
        ax.scatter(snr, np.asarray(table[f"{key}_SNR_ERR"]), color="C1", marker="x", label=f"{key}_SNR_ERR")
        ax.scatter(snr[flagged], np.asarray(table[f"{key}_ERR"])[flagged], s=150, facecolors="none",
                   edgecolors="C3", label="FLAGS != 0")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("SNR")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Fit every input, write the catalog and figures; return the exit status."""
    args = parse_args(argv)
    matplotlib.use("Agg")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    try:
        result = fit_labels(args.inputs, args.model)
    except bayesslam.BayesSlamError as error:  # no input found, none readable, ...
        print(f"error: {error}")
        return 1
    table = result.catalog
    catalog_path = args.out / "catalog.fits"
    write_catalog(table, catalog_path, failures=result.failures, overwrite=True)
    for failure in result.failures:
        print(f"failed: {failure.source} {failure.identifier} ({failure.error}): {failure.reason}")
    print_summary(table)
    written = [catalog_path, plot_errors(table, args.out / "survey_errors_vs_snr.png")]

    matched = match_truth(table, args.truth)
    if len(matched):
        print_accuracy(matched)
        written.append(plot_truth(matched, args.out / "survey_vs_truth.png"))
    else:
        print(f"no star has a true label in {args.truth}: no comparison figure")
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

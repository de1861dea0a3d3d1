"""Calibration research with the shipped default model: SBC, a coverage report, and a recalibrated model.

Three steps, all on the default model and mock stars made in memory (no data files, no network):

1. **Simulation-based calibration** (:func:`bayesslam.validation.run_sbc`): ``--n-sbc`` label vectors
   drawn from the model's box, spectra simulated through the model's own generative model (the emulator
   at ``theta + eta`` with its label-space and per-pixel errors, plus noise at SNR 10, 20 and 40), MAP +
   Laplace posteriors, rank statistics. Then the same through the mock generator (realistic spectra
   the model was not built from).
2. **A calibration report** (:func:`bayesslam.calibration_report.calibration_report`, what
   ``bayesslam calibrate`` writes): ``--n-mock`` mock stars with known labels, their MAP + Laplace labels,
   coverage curves, the label scatter against SNR with fitted power laws beside the paper's, and a
   scale/floor calibration refitted on them and checked out of sample.
3. **A recalibrated model**: the report writes a copy of the model carrying that calibration
   (``write_model``), which is loaded again and used for a catalog of new mock stars.

It writes to ``--out`` (default: a new temporary folder, printed)::

    sbc_emulator/   sbc_mock/   SBC figures (rank histograms, ECDF differences, coverage) and sbc.json
    report/                     the calibration report (report.json, coverage and SNR-law figures)
    recalibrated.npz            the default model with the refitted calibration

Run it from any folder::

    python examples/calibration_research.py                     # about a minute on two cores
    python examples/calibration_research.py --n-sbc 400 --n-mock 1000 --out research/
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

logger = logging.getLogger("calibration_research")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--n-sbc", type=int, default=200, help="SBC simulations per simulator")
    parser.add_argument("--n-mock", type=int, default=300, help="mock stars of the calibration report")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three steps and write their outputs; return the exit status."""
    args = parse_args(argv)
    matplotlib.use("Agg")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)

    import bayesslam
    from bayesslam.calibration_report import calibration_report
    from bayesslam.validation import run_sbc

    out = args.out or Path(tempfile.mkdtemp(prefix="bayesslam-calibration-"))
    out.mkdir(parents=True, exist_ok=True)
    model = bayesslam.load_model()

    logger.info("1. SBC of the default model, MAP + Laplace, %d simulations per simulator", args.n_sbc)
    for simulator in ("emulator", "mock"):
        result = run_sbc(model, args.n_sbc, [10.0, 20.0, 40.0], sampler="map", simulator=simulator, seed=args.seed)
        result.plot(out / f"sbc_{simulator}")
        result.to_json(out / f"sbc_{simulator}" / "sbc.json")
        p_values = result.uniformity().chi2_pvalue
        covered = result.coverage_curve().at(0.68)
        for name, p, c in zip(result.label_names, p_values, covered):
            logger.info("   %-8s %-8s rank chi-square p %8.2g   68%% coverage %.2f", simulator, name, p, c)

    logger.info("2. calibration report on %d mock stars", args.n_mock)
    new_model = out / "recalibrated.npz"
    report = calibration_report(model, mock=args.n_mock, seed=args.seed, folder=out / "report",
                                write_model=new_model, overwrite=True)
    coverage = report.record["coverage"]
    for name in report.label_names:
        raw, refitted = coverage["laplace"], coverage.get("laplace_refitted")
        line = f"   {name:8s} 68%/95% coverage raw {raw['68'][name]:.2f} / {raw['95'][name]:.2f}"
        if refitted:
            line += f", refitted out of sample {refitted['68'][name]:.2f} / {refitted['95'][name]:.2f}"
        logger.info(line)

    logger.info("3. the recalibrated model on new mock stars")
    recalibrated = bayesslam.load_model(new_model)
    from bayesslam.mock import make_survey

    batch, _ = make_survey(50, np.random.default_rng(args.seed + 100))
    catalog = bayesslam.fit(batch, recalibrated)
    sigma_raw, sigma_cal = np.asarray(catalog["FE_H_MAP_ERR"]), np.asarray(catalog["FE_H_ERR"])
    logger.info("   [Fe/H] errors of 50 new stars: raw Laplace median %.3f dex, calibrated %.3f dex",
                float(np.median(sigma_raw)), float(np.median(sigma_cal)))
    logger.info("outputs -> %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

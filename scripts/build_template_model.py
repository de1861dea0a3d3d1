"""Rebuild the mock's template model from the original Kesseli et al. (2017) FITS templates.

Usage::

    python scripts/build_template_model.py [TEMPLATE_FOLDER] [--out STEM]

``TEMPLATE_FOLDER`` defaults to ``../shared/data/kesseli2017_boss_templates``
relative to the repository root; ``--out`` to
``bayesslam/mock/data/template_model`` (writes ``.npz`` + ``.json``). The
templates (MIT licence, (c) 2016 Aurora Kesseli) are read, labelled (Teff from
the spectral type with Pecaut & Mamajek 2013, [Fe/H] from the bin centre),
rebinned onto BOSS pixels and sub-pixels, normalized with the package's SLAM
normalization, and fitted; the orders are chosen by leave-one-out. See
docs/mock.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bayesslam.mock.build import (
    DEFAULT_FE_H_RANGE,
    DEFAULT_OVERSAMPLE,
    DEFAULT_TEFF_RANGE,
    DEFAULT_WINDOW,
    build_from_folder,
)
from bayesslam.mock.template_model import save_template_model
from bayesslam.mock.templates import TemplateSelection

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("build_template_model")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the model, write it and log its diagnostics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder", nargs="?", type=Path,
        default=REPO.parent / "shared" / "data" / "kesseli2017_boss_templates",
        help="folder with the Kesseli et al. (2017) template FITS files and manifest.csv",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bayesslam" / "mock" / "data" / "template_model",
                        help="output path stem (writes STEM.npz and STEM.json)")
    parser.add_argument("--wave-min", type=float, default=DEFAULT_WINDOW[0], help="rest-frame window start (A)")
    parser.add_argument("--wave-max", type=float, default=DEFAULT_WINDOW[1], help="rest-frame window end (A)")
    parser.add_argument("--oversample", type=int, default=DEFAULT_OVERSAMPLE, help="sub-pixels per BOSS pixel")
    parser.add_argument("--spt-min", default="K7", help="earliest spectral type used")
    parser.add_argument("--spt-max", default="M6", help="latest spectral type used")
    parser.add_argument("--max-bin-width", type=float, default=0.5, help="widest [Fe/H] bin used (dex)")
    parser.add_argument("--min-coadded", type=int, default=2, help="fewest co-added spectra per template")
    parser.add_argument("--teff-range", type=float, nargs=2, default=DEFAULT_TEFF_RANGE, help="valid Teff (K)")
    parser.add_argument("--fe-h-range", type=float, nargs=2, default=DEFAULT_FE_H_RANGE, help="valid [Fe/H]")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every template")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)

    model = build_from_folder(
        args.folder,
        window=(args.wave_min, args.wave_max),
        oversample=args.oversample,
        selection=TemplateSelection(args.spt_min, args.spt_max, args.max_bin_width, args.min_coadded),
        teff_range=tuple(args.teff_range),
        fe_h_range=tuple(args.fe_h_range),
    )
    npz_path, json_path = save_template_model(model, args.out)
    sel = model.meta["order_selection"]
    logger.info("normalized flux: %s -> %s", sel["norm_candidates"], sel["norm_chosen"])
    logger.info("log continuum: %s -> %s", sel["cont_candidates"], sel["cont_chosen"])
    logger.info("%-16s %6s %6s %8s %8s", "template", "Teff", "[Fe/H]", "rms", "LOO rms")
    for row in model.meta["fit_residuals"]:
        logger.info("%-16s %6.0f %+6.2f %8.4f %8.4f", row["name"], row["teff"], row["fe_h"], row["rms"], row["loo_rms"])
    logger.info("wrote %s (%.0f kB) and %s", npz_path, npz_path.stat().st_size / 1e3, json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

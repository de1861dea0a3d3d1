"""The paper's science tools on synthetic catalogs: an M-dwarf selection, a catalog comparison, a learnt correction.

Everything is synthetic and made in memory (no data files, no network):

1. **Selection.** A Gaia-like table of ``--n-gaia`` stars (M and K dwarfs
   on a rough main sequence, giants, white dwarfs, and unresolved
   binaries with a high RUWE; parallaxes in mas, small GSP-Phot
   extinctions) goes through :func:`bayesslam.relations.select_mdwarfs`
   with the cuts of Qiu et al. (2025); the colour-magnitude diagram is
   drawn with the cuts (:func:`~bayesslam.relations.plot_cmd`).
2. **Comparison.** ``--n-match`` of the selected stars get an ASPCAP-like
   catalog (``TEFF``, ``FE_H`` with errors) and a bayesslam-like one
   (``TEFF_MEDIAN``, ``FE_H_MEDIAN``, ``*_ERR``, ``SNR``) whose [Fe/H] differs
   from ASPCAP's by the paper's offset (plus 0.03 dex of intrinsic
   scatter). They are cross-matched on the sky (positions 0.2" apart) and
   compared (:func:`~bayesslam.relations.compare_catalogs`), in bins of
   ASPCAP [Fe/H].
3. **Correction.** The offset is learnt from the cross-match as a quadratic
   in ASPCAP Teff/1000 and [Fe/H] with an intrinsic scatter
   (:func:`~bayesslam.relations.learn_offset`, NUTS) and compared with the
   paper's coefficients; then ASPCAP [Fe/H] corrected with the paper's
   formula (:func:`~bayesslam.relations.aspcap_feh_correction`) is compared
   with bayesslam again: the offset is gone.

It writes to ``--out`` (default: a new temporary folder, printed)::

    gaia.fits                 the synthetic Gaia table
    mdwarfs.fits              the selected stars with their cut columns
    relations_cmd.png         the colour-magnitude diagram with the cuts
    compare/                  ASPCAP vs bayesslam: matched.fits, figures, summary.json
    compare_corrected/        the same after the paper's correction
    learnt_correction.json    the learnt coefficients and scatter (posterior summaries)
    relations_correction.png  learnt and paper Delta[Fe/H] against Teff at three [Fe/H]

Run it from any folder::

    python examples/relations.py                       # ~30 s on two cores, most of it compiling NUTS
    python examples/relations.py --out relations/ --n-gaia 20000 --n-match 1000
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from astropy.table import Table

from bayesslam.relations import (
    ASPCAP_FEH_RANGE,
    ASPCAP_TEFF_RANGE,
    PAPER_ASPCAP_COEFFICIENTS,
    aspcap_feh_correction,
    compare_catalogs,
    learn_offset,
    plot_cmd,
    select_mdwarfs,
)

logger = logging.getLogger("bayesslam.examples.relations")

#: The injected intrinsic scatter of bayesslam [Fe/H] around ASPCAP + the paper's offset (dex).
SCATTER = 0.03


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--n-gaia", type=int, default=5000, help="stars in the synthetic Gaia table")
    parser.add_argument("--n-match", type=int, default=400, help="selected stars in the ASPCAP cross-match")
    parser.add_argument("--warmup", type=int, default=500, help="NUTS warm-up steps of the learner")
    parser.add_argument("--draws", type=int, default=500, help="NUTS draws of the learner")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    args = parser.parse_args(argv)
    if args.n_gaia < 100 or args.n_match < 20:
        parser.error("--n-gaia must be at least 100 and --n-match at least 20")
    return args


def gaia_table(n: int, rng: np.random.Generator) -> Table:
    """A synthetic Gaia DR3 table with the archive's column names (parallax in mas)."""
    kind = rng.choice(["m_dwarf", "k_dwarf", "giant", "white_dwarf"], size=n, p=[0.7, 0.15, 0.1, 0.05])
    colour = np.select([kind == "m_dwarf", kind == "k_dwarf", kind == "giant"],
                       [rng.uniform(1.8, 4.5, n), rng.uniform(0.6, 1.8, n), rng.uniform(1.0, 3.0, n)],
                       rng.uniform(-0.3, 0.8, n))
    # a rough main sequence (M_G ~ 2.6 (BP-RP) + 3.3, 0.35 mag wide); giants and white dwarfs off it
    absolute = np.select([kind == "giant", kind == "white_dwarf"], [rng.uniform(-1.0, 2.0, n), rng.uniform(11, 15, n)],
                         2.6 * colour + 3.3 + 0.35 * rng.standard_normal(n))
    distance = np.where(kind == "giant", rng.uniform(500, 3000, n), rng.uniform(10, 250, n))  # pc
    a_g = rng.uniform(0.0, 0.08, n) * distance / 250.0
    ruwe = np.where(rng.random(n) < 0.12, rng.uniform(1.4, 4.0, n), rng.normal(1.0, 0.07, n))
    parallax = 1000.0 / distance
    table = Table()
    table["source_id"] = rng.choice(np.arange(10**15, 10**15 + 10 * n), size=n, replace=False).astype(np.int64)
    table["ra"] = rng.uniform(120.0, 130.0, n)
    table["dec"] = rng.uniform(10.0, 20.0, n)
    table["parallax"] = parallax + rng.normal(0.0, 0.05, n)
    table["parallax_error"] = np.full(n, 0.05)
    table["phot_g_mean_mag"] = absolute + 5.0 * np.log10(distance) - 5.0 + a_g
    table["bp_rp"] = colour + 0.45 * a_g
    table["ruwe"] = ruwe
    have = rng.random(n) < 0.8  # GSP-Phot is missing for some stars
    table["ag_gspphot"] = np.ma.masked_array(a_g, mask=~have)
    table["ebpminrp_gspphot"] = np.ma.masked_array(0.45 * a_g, mask=~have)
    table["kind"] = kind
    return table


def cross_match(selected: Table, n: int, rng: np.random.Generator) -> tuple[Table, Table]:
    """ASPCAP-like and bayesslam-like catalogs of ``n`` selected stars; bayesslam [Fe/H] = ASPCAP + paper's offset."""
    rows = rng.choice(len(selected), size=min(n, len(selected)), replace=False)
    stars = selected[rows]
    m = len(stars)
    teff = rng.uniform(*ASPCAP_TEFF_RANGE, m)
    fe_h = rng.uniform(*ASPCAP_FEH_RANGE, m)
    err_a, err_b = rng.uniform(0.02, 0.06, m), rng.uniform(0.03, 0.08, m)
    truth_b = fe_h + aspcap_feh_correction(teff, fe_h).delta
    aspcap = Table({"APOGEE_ID": [f"2M{s}" for s in stars["source_id"]],
                    "ra": stars["ra"] + rng.normal(0, 0.2 / 3600, m), "dec": stars["dec"] + rng.normal(0, 0.2 / 3600, m),
                    "TEFF": teff, "TEFF_ERR": np.full(m, 15.0), "FE_H": fe_h, "FE_H_ERR": err_a})
    bayesslam = Table({"IDENTIFIER": [f"gaia-{s}" for s in stars["source_id"]], "ra": stars["ra"], "dec": stars["dec"],
                       "TEFF_MEDIAN": teff + 60.0 + rng.normal(0, np.hypot(15.0, 40.0), m),
                       "TEFF_ERR": np.full(m, 40.0),
                       "FE_H_MEDIAN": truth_b + rng.normal(0, np.sqrt(SCATTER**2 + err_a**2 + err_b**2)),
                       "FE_H_ERR": err_b, "SNR": rng.uniform(5, 80, m)})
    return aspcap, bayesslam


def plot_correction(post, path: Path) -> None:
    """The learnt Delta[Fe/H] (mean and 68% band) and the paper's, against Teff at three [Fe/H]."""
    import matplotlib.pyplot as plt

    teff = np.linspace(*ASPCAP_TEFF_RANGE, 100)
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for fe_h, colour in ((-0.8, "tab:blue"), (-0.25, "tab:green"), (0.3, "tab:red")):
        learnt = post.predict(teff=teff, fe_h=np.full_like(teff, fe_h))
        ax.fill_between(teff, learnt.q16, learnt.q84, color=colour, alpha=0.25, lw=0)
        ax.plot(teff, learnt.mean, color=colour, lw=1.5, label=f"learnt, [Fe/H] = {fe_h:+.2f}")
        ax.plot(teff, aspcap_feh_correction(teff, np.full_like(teff, fe_h)).delta, color=colour, ls="--", lw=1)
    ax.set_xlabel("ASPCAP Teff (K)")
    ax.set_ylabel("Delta[Fe/H] to add to ASPCAP (dex)")
    ax.set_title("learnt (band: 68%) and Qiu et al. (2025) (dashed)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three steps and write their outputs; return the exit status."""
    args = parse_args(argv)
    matplotlib.use("Agg")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("bayesslam").setLevel(logging.INFO)
    out = args.out or Path(tempfile.mkdtemp(prefix="bayesslam-relations-"))
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    logger.info("1. selection: %d synthetic Gaia stars", args.n_gaia)
    gaia = gaia_table(args.n_gaia, rng)
    gaia.write(out / "gaia.fits", overwrite=True)
    selection = select_mdwarfs(out / "gaia.fits", extinction_columns=True, min_parallax_over_error=10.0)
    selection.write(out / "mdwarfs.fits", overwrite=True)
    plot_cmd(selection, out / "relations_cmd.png")
    chosen = selection.table["selected"]
    for kind in ("m_dwarf", "k_dwarf", "giant", "white_dwarf"):  # late K dwarfs pass the paper's cuts too
        rows = selection.table["kind"] == kind
        logger.info("   %-12s %5d of %5d selected", kind, int(np.sum(chosen & rows)), int(np.sum(rows)))

    logger.info("2. comparison: ASPCAP-like vs bayesslam-like catalogs of %d selected stars", args.n_match)
    aspcap, ours = cross_match(selection.selected, args.n_match, rng)
    comparison = compare_catalogs(aspcap, ours, names=("ASPCAP", "bayesslam"), bin_by="FE_H", n_bins=4)
    comparison.log_summary(logger)
    for row in comparison.summary()["binned"]["fe_h"]:
        logger.info("   ASPCAP [Fe/H] %+.2f..%+.2f: n %3d, median Delta[Fe/H] %+.3f", row["lo"], row["hi"], row["n"],
                    row["bias"])
    comparison.write(out / "compare", overwrite=True)

    logger.info("3. the offset learnt as a quadratic in ASPCAP Teff/1000 and [Fe/H] (NUTS, %d + %d steps)",
                args.warmup, args.draws)
    matched = comparison.matched
    post = learn_offset({"teff": matched["TEFF_A"], "fe_h": matched["FE_H_A"]}, matched["FE_H_A"],
                        matched["FE_H_MEDIAN_B"], matched["FE_H_ERR_A"], matched["FE_H_ERR_B"], scales={"teff": 1000.0},
                        num_warmup=args.warmup, num_samples=args.draws, seed=args.seed)
    summary = post.summary()
    logger.info("   %-18s %9s %9s %9s", "term", "paper", "learnt", "+-")
    for name, paper in zip(post.names, PAPER_ASPCAP_COEFFICIENTS.values()):
        entry = summary["coefficients"][name]
        logger.info("   %-18s %9.3f %9.3f %9.3f", name, paper, entry["mean"], entry["sd"])
    logger.info("   intrinsic scatter %.3f +- %.3f dex (injected %.3f)", summary["scatter"]["mean"],
                summary["scatter"]["sd"], SCATTER)
    # the coefficients are strongly correlated; the correction itself is what to compare
    grid_teff, grid_fe_h = np.meshgrid(np.linspace(*ASPCAP_TEFF_RANGE, 11), np.linspace(*ASPCAP_FEH_RANGE, 11))
    learnt = post.predict(teff=grid_teff, fe_h=grid_fe_h)
    difference = learnt.mean - aspcap_feh_correction(grid_teff, grid_fe_h).delta
    logger.info("   learnt - paper Delta[Fe/H] over the domain: at most %.3f dex, %.1f of its sd (median sd %.3f dex)",
                np.max(np.abs(difference)), np.max(np.abs(difference) / learnt.sd), np.median(learnt.sd))
    (out / "learnt_correction.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_correction(post, out / "relations_correction.png")

    corrected = aspcap.copy()
    corrected["FE_H"] = aspcap["FE_H"] + aspcap_feh_correction(aspcap["TEFF"], aspcap["FE_H"]).delta
    after = compare_catalogs(corrected, ours, names=("ASPCAP corrected", "bayesslam"), labels=["fe_h"])
    after.write(out / "compare_corrected", overwrite=True)
    logger.info("   after the paper's correction: median Delta[Fe/H] %+.4f, std %.4f dex (before %+.4f, %.4f)",
                after.summary()["labels"]["fe_h"]["bias"], after.summary()["labels"]["fe_h"]["std"],
                comparison.summary()["labels"]["fe_h"]["bias"], comparison.summary()["labels"]["fe_h"]["std"])
    logger.info("outputs -> %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Population inference on a mock survey: wide binaries, a cluster and the field's metallicity distribution.

The script draws one mock BOSS survey in memory (:func:`bayesslam.mock.make_survey`
for wide-binary pairs that share [Fe/H] and [alpha/M] and one cluster whose
members scatter around a common [Fe/H]; :func:`bayesslam.mock.observe_labels`
for field stars whose [Fe/H] is drawn from a known Gaussian), samples it with
the shipped default model and shows the three things :mod:`bayesslam.population`
does:

(a) **Wide binaries.** Every star alone (:func:`bayesslam.sample`, NUTS) and
    the binary test of Qiu et al. (2025) on them
    (:func:`~bayesslam.population.pairs_from_table`, i.e. ``compare_pairs``:
    Delta[Fe/H] = B - A, its z-score and the excess scatter); then the two
    members of each pair sampled jointly with one shared [Fe/H] and
    [alpha/M] (:func:`bayesslam.pipeline.sample_grouped`), against the truth.
(b) **A cluster with an intrinsic scatter.** Its members sampled jointly,
    each member's [Fe/H] drawn around the cluster's with a sampled scatter
    (``sample_grouped(..., scatter=True)``); the recovered mean and scatter
    against the truth.
(c) **The field's [Fe/H] distribution.** A Gaussian population fitted to
    the field stars' per-star NUTS draws with their sampling prior divided
    out (:func:`~bayesslam.population.reweight_population`).

It logs the results and writes to ``--out`` (default ``examples/out/``):

``population_pairs.png``
    The binary test of the single-star posteriors: histograms of
    Delta[Fe/H] and of its z-score (:func:`~bayesslam.population.plot_pair_comparison`).
``population_binaries.fits``
    The catalog of the jointly sampled binaries (column ``GROUP``) with a
    ``GROUPS`` extension, one row per pair (what ``bayesslam sample --groups`` writes).
``population_field.png``
    The inferred field [Fe/H] density and each star's estimate shrunk by
    it (:func:`~bayesslam.population.plotting.plot_population`).
``population_field.nc``
    The field's hyperposterior (ArviZ NetCDF, per-star estimates and
    effective draws in ``constant_data``; what ``bayesslam population`` writes).

Run it from any folder::

    python examples/population.py                                   # 6 pairs, 8 members, 30 field stars
    python examples/population.py --pairs 2 --members 3 --field 6 --warmup 60 --draws 60   # a quick look

``--help`` lists all options. The default model is trained on mock spectra
and compresses [Fe/H] toward the middle of its training set
(``docs/calibration.md``), so recovered means lean toward it and recovered
scatters come out smaller than the truth; with so few stars, read the
intervals. ``examples/README.md`` says what to expect.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from astropy.table import Table, vstack
from scipy.stats import truncnorm

import bayesslam
from bayesslam.catalog import write_catalog
from bayesslam.emulator import SlamModel
from bayesslam.mock import ObservingSetup, draw_labels, make_survey, observe_labels
from bayesslam.pipeline import SampleResult, sample_grouped
from bayesslam.population import (
    GaussianPopulation,
    draws_from_posterior,
    pairs_from_groups,
    pairs_from_table,
    plot_pair_comparison,
    reweight_population,
)
from bayesslam.population.plotting import plot_population
from bayesslam.spectra import SpectrumBatch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "examples" / "out"

logger = logging.getLogger("bayesslam.examples.population")

#: The 68% central interval.
Q16, Q84 = 0.15865525393145707, 0.8413447460685429
#: Range of the field's true [Fe/H] (dex): inside the default model's training box.
FIELD_RANGE = (-0.35, 0.45)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pairs", type=int, default=6, help="wide-binary pairs (at least 2)")
    parser.add_argument("--members", type=int, default=8, help="cluster members (at least 2)")
    parser.add_argument("--field", type=int, default=30, help="field stars (at least 2)")
    parser.add_argument("--cluster-fe-h", type=float, default=-0.05, help="the cluster's mean [Fe/H] (dex)")
    parser.add_argument("--cluster-scatter", type=float, default=0.1, help="the cluster's [Fe/H] scatter (dex)")
    parser.add_argument("--field-fe-h", type=float, default=0.0, help="mean [Fe/H] of the field's Gaussian (dex)")
    parser.add_argument("--field-sd", type=float, default=0.2, help="sd of the field's Gaussian [Fe/H] (dex)")
    parser.add_argument("--snr", nargs=2, type=float, default=(10.0, 50.0), metavar=("LO", "HI"),
                        help="log-uniform SNR range of the mock spectra")
    parser.add_argument("--warmup", type=int, default=200, help="NUTS warm-up steps per star or group")
    parser.add_argument("--draws", type=int, default=200, help="NUTS draws per star or group")
    parser.add_argument("--hyper-warmup", type=int, default=500, help="NUTS warm-up steps of the population")
    parser.add_argument("--hyper-draws", type=int, default=1000, help="NUTS draws of the population (per chain)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the mock survey and the samplers")
    parser.add_argument("--model", type=Path, default=None, help="a model file (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the figures and files")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)
    for option in ("pairs", "members", "field"):
        if getattr(args, option) < 2:
            parser.error(f"--{option} must be at least 2")
    return args


def mock_survey(args: argparse.Namespace) -> tuple[SpectrumBatch, Table]:
    """Wide binaries and a cluster (``make_survey``), then field stars whose [Fe/H] is a known Gaussian.

    The field's [Fe/H] is drawn from ``N(--field-fe-h, --field-sd)`` truncated to
    FIELD_RANGE, inside the default model's training box; its other labels as the
    generator draws them. Returns the spectra and the true labels (columns
    ``identifier``, the labels, ``group`` = field/binary/cluster, ``group_id``, ...).
    """
    rng = np.random.default_rng(args.seed)
    setup = ObservingSetup(snr_range=tuple(args.snr))
    grouped, grouped_truth = make_survey(0, rng, n_binaries=args.pairs, n_cluster=args.members,
                                         cluster_fe_h=args.cluster_fe_h, cluster_dispersion=args.cluster_scatter,
                                         setup=setup)
    labels = draw_labels(args.field, rng)
    low, high = ((bound - args.field_fe_h) / args.field_sd for bound in FIELD_RANGE)
    labels["fe_h"] = truncnorm.rvs(low, high, loc=args.field_fe_h, scale=args.field_sd, size=args.field,
                                   random_state=rng)
    field, field_truth = observe_labels(labels, rng, setup=setup, first_id=len(grouped_truth))
    spectra = SpectrumBatch(grouped.wave, np.concatenate([grouped.flux, field.flux]),
                            np.concatenate([grouped.ivar, field.ivar]), np.concatenate([grouped.mask, field.mask]),
                            grouped.meta + field.meta)
    return spectra, vstack([grouped_truth, field_truth])


def subset(batch: SpectrumBatch, rows: np.ndarray) -> SpectrumBatch:
    """The spectra of ``rows`` (indices) of a batch."""
    return SpectrumBatch(batch.wave, batch.flux[rows], batch.ivar[rows], batch.mask[rows],
                         tuple(batch.meta[i] for i in rows))


def interval(draws: np.ndarray) -> str:
    """``median [q16, q84]`` of draws."""
    q16, median, q84 = np.quantile(np.ravel(draws), [Q16, 0.5, Q84])
    return f"{median:+.3f} [{q16:+.3f}, {q84:+.3f}]"


def binaries(spectra: SpectrumBatch, truth: Table, single: SampleResult, model: SlamModel,
             args: argparse.Namespace) -> list[Path]:
    """(a) The binary test on the single-star posteriors, then the pairs sampled jointly."""
    rows = np.flatnonzero(truth["group"] == "binary")
    ids = [str(i) for i in truth["identifier"][rows]]
    pair_of = [f"pair{int(g)}" for g in truth["group_id"][rows]]

    pairs = pairs_from_groups(ids, pair_of)
    comparison = pairs_from_table(single.catalog, pairs, label="fe_h")
    logger.info("(a) %d wide binaries, each star sampled alone: Delta[Fe/H] = B - A", comparison.n)
    logger.info("    median %+.3f, std %.3f dex (the paper's 256 M+M pairs: -0.01 +- 0.11 dex); median sigma %.3f",
                comparison.median_delta, comparison.std_delta, comparison.median_sigma)
    logger.info("    z = Delta / sigma: sd %.2f (1 if the errors are right), |z| < 1 for %.2f (0.68), "
                "excess scatter %.3f dex", comparison.z_std, comparison.fraction_within_1sigma,
                comparison.excess_scatter)
    written = [plot_pair_comparison([comparison], args.out / "population_pairs.png")]

    joint = sample_grouped(subset(spectra, rows), dict(zip(ids, pair_of)), model, seed=args.seed + 1,
                           num_warmup=args.warmup, num_samples=args.draws, progress=args.progress)
    groups = joint.groups_table
    true_fe_h = {p: float(v) for p, v in zip(pair_of, truth["fe_h"][rows])}
    sd_single = dict(zip([str(i).strip() for i in single.catalog["IDENTIFIER"]], single.catalog["FE_H_POST_ERR"]))
    logger.info("    the pairs sampled jointly, one [Fe/H] per pair (median [16%, 84%]):")
    ratio, covered = [], []
    for row in groups:
        members = row["MEMBERS"].split(",")
        lo, hi, sd = row["GROUP_FE_H_P16"], row["GROUP_FE_H_P84"], row["GROUP_FE_H_SD"]
        true = true_fe_h[row["GROUP"]]
        ratio.append(sd / np.sqrt(sd_single[members[0]] * sd_single[members[1]]))
        covered.append(lo <= true <= hi)
        logger.info("      %-8s true %+.3f  joint %+.3f [%+.3f, %+.3f]  sd %.3f (stars alone: %.3f, %.3f)",
                    row["GROUP"], true, row["GROUP_FE_H_MEDIAN"], lo, hi, sd, sd_single[members[0]],
                    sd_single[members[1]])
    logger.info("    joint sd / the members' (geometric mean): median %.2f (1/sqrt(2) = 0.71 where the noise "
                "dominates); the truth is inside the 68%% interval for %d of %d pairs",
                float(np.median(ratio)), int(np.sum(covered)), len(covered))
    path = args.out / "population_binaries.fits"
    write_catalog(joint.catalog, path, failures=joint.failures, extensions={"GROUPS": groups}, overwrite=True)
    return [*written, path]


def cluster(spectra: SpectrumBatch, truth: Table, model: SlamModel, args: argparse.Namespace) -> None:
    """(b) The cluster's members sampled jointly with an intrinsic [Fe/H] scatter."""
    rows = np.flatnonzero(truth["group"] == "cluster")
    ids = [str(i) for i in truth["identifier"][rows]]
    result = sample_grouped(subset(spectra, rows), dict.fromkeys(ids, "cluster"), model, shared=("fe_h",),
                            scatter=True, seed=args.seed + 2, num_warmup=args.warmup, num_samples=args.draws,
                            progress=args.progress)
    draws = result.posterior.group_draws
    members = np.asarray(truth["fe_h"][rows], dtype=float)
    logger.info("(b) a cluster of %d members, sampled jointly with an intrinsic scatter (median [16%%, 84%%]):",
                len(rows))
    logger.info("    mean [Fe/H]  %s   truth %+.3f (drawn around %+.3f)", interval(draws["group_fe_h"]),
                members.mean(), args.cluster_fe_h)
    logger.info("    scatter      %s   truth %.3f (drawn with %.3f)", interval(draws["scatter_fe_h"]),
                members.std(ddof=1), args.cluster_scatter)
    logger.info("    R-hat %.3f, %d divergent transitions", float(result.posterior.group_summary["r_hat"].max()),
                int(np.sum(result.posterior.stars.idata.sample_stats["diverging"].values[..., 0])))


def field(truth: Table, single: SampleResult, args: argparse.Namespace) -> list[Path]:
    """(c) A Gaussian population of the field's [Fe/H] from the stars' own NUTS draws."""
    stars = [str(i) for i, g in zip(truth["identifier"], truth["group"]) if g == "field"]
    draws = draws_from_posterior(single.posterior, "fe_h", stars=stars)
    result = reweight_population(draws, GaussianPopulation(), num_warmup=args.hyper_warmup,
                                 num_samples=args.hyper_draws, seed=args.seed + 3, progress=args.progress)
    true = np.asarray([v for v, g in zip(truth["fe_h"], truth["group"]) if g == "field"], dtype=float)
    hyper = result.hyper_draws()
    logger.info("(c) the [Fe/H] of %d field stars as a Gaussian population, from their NUTS draws "
                "(sampling prior divided out; median [16%%, 84%%]):", len(stars))
    logger.info("    mean %s   truth %+.3f (drawn around %+.3f)", interval(hyper["mean"]), true.mean(),
                args.field_fe_h)
    logger.info("    sd   %s   truth %.3f (drawn with %.3f, truncated to %g..%g)", interval(hyper["sd"]),
                true.std(ddof=1), args.field_sd, *FIELD_RANGE)
    logger.info("    fewest effective draws of a star %.0f of %d; Monte Carlo variance of log L up to %.3f",
                float(result.effective_draws.min()), draws.values.shape[1],
                float(np.max(result.log_likelihood_variance)))
    return [result.to_netcdf(args.out / "population_field.nc"),
            plot_population(result, args.out / "population_field.png")]


def main(argv: Sequence[str] | None = None) -> int:
    """Make the mock survey, run the three population analyses and write the files; return the exit status."""
    args = parse_args(argv)
    matplotlib.use("Agg")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    args.out.mkdir(parents=True, exist_ok=True)

    spectra, truth = mock_survey(args)
    logger.info("mock survey: %d wide binaries, a cluster of %d, %d field stars (SNR %g-%g)",
                args.pairs, args.members, args.field, *args.snr)
    model = bayesslam.load_model(args.model)

    written: list[Path] = []
    seconds = {}
    start = time.perf_counter()
    # Every field star and binary member alone, in one call (one compiled sampler).
    alone = np.flatnonzero(truth["group"] != "cluster")
    single = bayesslam.sample(subset(spectra, alone), model, seed=args.seed, num_warmup=args.warmup,
                              num_samples=args.draws, progress=args.progress)
    if single.failures:
        for failure in single.failures:
            logger.warning("failed: %s (%s): %s", failure.identifier, failure.error, failure.reason)
        return 1
    seconds["stars alone"] = time.perf_counter() - start

    for name, step in (("binaries", lambda: binaries(spectra, truth, single, model, args)),
                       ("cluster", lambda: cluster(spectra, truth, model, args)),
                       ("field population", lambda: field(truth, single, args))):
        start = time.perf_counter()
        written += step() or []
        seconds[name] = time.perf_counter() - start
    logger.info("time: %s", ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()))
    logger.info("wrote %s", ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

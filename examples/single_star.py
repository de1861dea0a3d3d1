"""One star's label posterior: NUTS draws, a corner plot and the data-vs-model spectrum.

The default input is a real SDSS M1/M2 dwarf shipped with the tests
(``tests/data/spec-1079-52621-0509.fits``, SNR 24). The script samples the
posterior of Teff, log g, [Fe/H] and [alpha/M] with NUTS from the MAP fit of
the shipped default model (:func:`bayesslam.sample`), prints the catalog row's
labels (MAP, posterior median with its 16th/84th percentiles, and the
calibrated error ``L_ERR``), and writes to ``--out`` (default ``examples/out/``):

``single_star_corner.png``
    The posterior of the four labels (ArviZ pair plot: the draws and their
    marginal densities; the red crosses mark the MAP).
``single_star_spectrum.png``
    The normalized observed flux (pixels the fit leaves out hidden), the model spectra at
    the MAP and at the posterior median, and their residuals with the
    likelihood's 1 sigma (observed noise and emulator variance).
``single_star_catalog.fits``
    The star's catalog row (the columns of ``bayesslam fit``, posterior
    columns filled).
``single_star_posterior.nc``
    The draws as ArviZ NetCDF (``arviz.from_netcdf`` reads them back).

Run it from any folder::

    python examples/single_star.py                             # 1000 warm-up steps + 1000 draws
    python examples/single_star.py --warmup 200 --draws 200    # a quick look
    python examples/single_star.py --spectrum my-spec.fits --out figures/ --seed 2

``--help`` lists all options.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import arviz as az
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from astropy.table import Table

import bayesslam
from bayesslam.catalog import Flag, write_catalog
from bayesslam.emulator import SlamModel
from bayesslam.pipeline import SampleResult

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPECTRUM = REPO / "tests" / "data" / "spec-1079-52621-0509.fits"
DEFAULT_OUT = REPO / "examples" / "out"

#: Axis labels of the default model's labels.
PRETTY = {"teff": r"$T_\mathrm{eff}$ [K]", "logg": r"$\log g$", "fe_h": "[Fe/H]", "alpha_m": r"[$\alpha$/M]"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--spectrum", type=Path, default=DEFAULT_SPECTRUM, help="the spectrum file to fit")
    parser.add_argument("--model", type=Path, default=None, help="a model file (default: the shipped model)")
    parser.add_argument("--warmup", type=int, default=1000, help="NUTS warm-up steps")
    parser.add_argument("--draws", type=int, default=1000, help="NUTS draws kept")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampler")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the figures and files")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    return parser.parse_args(argv)


def print_labels(result: SampleResult, model: SlamModel) -> None:
    """Print the catalog row's MAP and posterior labels with their errors."""
    row = result.catalog[0]
    print(f"{row['IDENTIFIER']}: SNR {row['SNR']:.1f}, reduced chi2 {row['REDUCED_CHI2']:.2f}, "
          f"{int(row['N_DIVERGENT'])} divergent transitions, FLAGS {row['FLAGS']} "
          f"({'|'.join(flag.name for flag in Flag if row['FLAGS'] & flag) or 'none'})")
    print(f"{'label':>8} {'MAP':>9} {'median':>9} {'P16':>9} {'P84':>9} {'L_ERR':>7}  unit")
    for name, unit in zip(model.label_names, model.label_units):
        key = name.upper()
        print(f"{name:>8} {row[key + '_MAP']:9.3f} {row[key + '_MEDIAN']:9.3f} {row[key + '_P16']:9.3f} "
              f"{row[key + '_P84']:9.3f} {row[key + '_ERR']:7.3f}  {unit}")


def plot_corner(result: SampleResult, path: Path) -> Path:
    """The posterior pair plot of all labels, with the MAP marked."""
    names = list(result.posterior.label_names)
    star = result.posterior.identifiers[0]
    reference = {name: float(value) for name, value in zip(names, result.map.labels[0])}
    axes = az.plot_pair(
        result.posterior.idata.posterior.sel(star=star),
        var_names=names,
        kind="scatter",
        marginals=True,
        reference_values=reference,
        reference_values_kwargs={"marker": "+", "markersize": 14, "markeredgecolor": "C3", "markeredgewidth": 2},
        scatter_kwargs={"alpha": 0.5, "s": 12, "color": "C0"},
        labeller=az.labels.MapLabeller(var_name_map=PRETTY),
        textsize=10,
        figsize=(8, 8),
    )
    figure = np.ravel(axes)[0].figure
    figure.suptitle(f"{star}: posterior ({result.posterior.method}), + = MAP")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_spectrum(result: SampleResult, model: SlamModel, path: Path) -> Path:
    """The normalized spectrum with the MAP and posterior-median models, and the residuals."""
    spectra = result.prepared.spectra
    wave = result.prepared.wave
    model_variance = model.model_variance
    bad = spectra.mask[0] | (spectra.ivar[0] <= 0) | ~np.isfinite(model_variance)
    flux = np.where(bad, np.nan, spectra.flux[0])
    # The likelihood's per-pixel sigma: the observed noise and the emulator's own variance.
    variance = 1.0 / np.where(bad, 1.0, spectra.ivar[0]) + np.where(bad, 0.0, model_variance)
    sigma = np.where(bad, np.nan, np.sqrt(variance))
    map_flux = result.map.model_flux[0]
    row = result.catalog[0]
    median_labels = [row[name.upper() + "_MEDIAN"] for name in model.label_names]
    median_flux = model.predict(median_labels)

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1.3]})
    top.plot(wave, flux, color="0.3", lw=0.7, label="observed (normalized)")
    top.plot(wave, map_flux, color="C3", lw=1.0, label="model at the MAP")
    top.plot(wave, median_flux, color="C0", lw=1.0, ls="--", label="model at the posterior median")
    top.set_ylabel("normalized flux")
    top.set_title(f"{spectra.identifiers[0]}: {int(bad.sum())} of {wave.size} pixels not fitted "
                  "(masked, or not modelled)")
    top.legend(loc="lower left", fontsize=9)
    bottom.fill_between(wave, -sigma, sigma, color="0.85", step="mid", label=r"$\pm 1\sigma$ (noise and model)")
    bottom.plot(wave, flux - map_flux, color="C3", lw=0.7, label="observed - MAP model")
    bottom.plot(wave, flux - median_flux, color="C0", lw=0.7, ls="--", label="observed - median model")
    bottom.axhline(0.0, color="k", lw=0.5)
    bottom.set_xlabel(r"vacuum wavelength [$\AA$]")
    bottom.set_ylabel("residual")
    bottom.legend(loc="lower left", fontsize=8, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Sample one star's posterior and write the figures; return the exit status."""
    args = parse_args(argv)
    matplotlib.use("Agg")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    model = bayesslam.load_model(args.model)
    try:
        result = bayesslam.sample([args.spectrum], model, seed=args.seed, num_warmup=args.warmup,
                                  num_samples=args.draws, progress=args.progress)
    except bayesslam.BayesSlamError as error:  # unreadable file, no usable pixels, ...
        print(f"error: {error}")
        return 1
    print_labels(result, model)

    written = [
        plot_corner(result, args.out / "single_star_corner.png"),
        plot_spectrum(result, model, args.out / "single_star_spectrum.png"),
        result.to_netcdf(args.out / "single_star_posterior.nc"),
    ]
    catalog: Table = result.catalog
    write_catalog(catalog, args.out / "single_star_catalog.fits", failures=result.failures, overwrite=True)
    written.append(args.out / "single_star_catalog.fits")
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

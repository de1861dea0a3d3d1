"""Benchmark the continuum normalization of the prepare stage: the Reinsch-form splines against scipy, same run.

One command prints the figures and writes the JSON record
(``benchmarks/results/bench_preparation.json``; ``--results PATH``)::

    python benchmarks/bench_preparation.py [--n-mock 200] [--repeats 3]

The spectra are put on the model grid as ``prepare_spectrum`` does (rest
frame, rebinning; that part is not timed): ``--n-mock`` mock BOSS M dwarfs
(:func:`bayesslam.mock.survey.make_survey`, seed 20251208, SNR 3-50) and the
four real SDSS spectra in ``tests/data``. On each set, in the same process:

* the reference path (``continuum._continuum_reference``: two
  :func:`scipy.interpolate.make_smoothing_spline` fits per spectrum, the
  former implementation) and the new path (``continuum._continuum``: two
  pentadiagonal Cholesky solves, :mod:`bayesslam.preparation.smoothing_spline`)
  on the whole batch, alternating, the best of ``--repeats`` runs each:
  seconds per spectrum and their ratio;
* the new path one spectrum at a time through :func:`bayesslam.preparation.normalize`
  (what ``prepare_spectrum`` calls);
* the largest relative difference ``max |new - old| / |old|`` of the continua.

``python benchmarks/report.py`` turns the record into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import time

import _record
import numpy as np

from bayesslam.grid import model_wavelength
from bayesslam.io import read_spectrum
from bayesslam.mock.observe import ObservingSetup
from bayesslam.mock.survey import make_survey
from bayesslam.preparation import normalize
from bayesslam.preparation.continuum import ContinuumSettings, _continuum, _continuum_reference, usable_pixels
from bayesslam.preparation.resample import rebin
from bayesslam.wavelength import to_rest_frame

ROOT = _record.ROOT
SEED = 20251208
REAL = ("spec-0618-52049-0372.fits", "spec-1079-52621-0509.fits", "spec-1123-52882-0065.fits",
        "spec-5047-55833-0936.fits")


def on_model_grid(spectra) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rest frame and rebinning onto the model grid, as ``prepare_spectrum`` does before it normalizes."""
    wave = model_wavelength()
    rows = []
    for spectrum in spectra:
        wave_in = spectrum.wave
        if not spectrum.meta.rest_frame and np.isfinite(spectrum.meta.v_rad):
            wave_in = to_rest_frame(wave_in, spectrum.meta.v_rad)
        rows.append(rebin(wave_in, spectrum.flux, spectrum.ivar, wave, spectrum.mask))
    return (wave, np.stack([r.flux for r in rows]), np.stack([r.ivar for r in rows]),
            np.stack([r.mask for r in rows]))


def measure(name: str, data, repeats: int, fig) -> list[dict]:
    """Reference and new path on one set of spectra: seconds per spectrum, ratio, largest relative difference."""
    wave, flux, ivar, mask = data
    n = flux.shape[0]
    settings = ContinuumSettings()
    good = usable_pixels(flux, ivar, mask)
    best = {"reference": np.inf, "new": np.inf, "one": np.inf}
    for _ in range(repeats):
        t = time.perf_counter()
        old = _continuum_reference(wave, flux, ivar, good, settings)
        best["reference"] = min(best["reference"], time.perf_counter() - t)
        t = time.perf_counter()
        new = _continuum(wave, flux, ivar, good, settings)
        best["new"] = min(best["new"], time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(n):
            normalize(wave, flux[i], ivar[i], mask[i])
        best["one"] = min(best["one"], time.perf_counter() - t)
    rel = float(np.max(np.abs(new - old) / np.abs(old)))
    ref_name = f"{name}: reference (scipy make_smoothing_spline), seconds per spectrum"
    new_name = f"{name}: new (Reinsch form), seconds per spectrum"
    note = f"{n} spectra as one batch, best of {repeats}"
    return [
        fig(ref_name, float(f"{best['reference'] / n:.3g}"), "s", note=note),
        fig(new_name, float(f"{best['new'] / n:.3g}"), "s", note=note),
        fig(f"{name}: speed-up of the new path", round(best["reference"] / best["new"], 1), "x", baseline=ref_name),
        fig(f"{name}: new path through normalize, one spectrum per call, seconds per spectrum",
            float(f"{best['one'] / n:.3g}"), "s", note=f"as prepare_spectrum calls it; best of {repeats}"),
        fig(f"{name}: speed-up, one spectrum per call", round(best["reference"] / best["one"], 1), "x",
            baseline=ref_name),
        fig(f"{name}: largest relative difference of the continua", float(f"{rel:.2g}"), "",
            note="max |new - reference| / |reference| over all pixels and spectra"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-mock", type=int, default=200, help="mock spectra (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each path; the best counts")
    _record.add_results_option(parser, "bench_preparation")
    args = parser.parse_args()

    batch, _ = make_survey(args.n_mock, np.random.default_rng(SEED), setup=ObservingSetup(snr_range=(3.0, 50.0)))
    sets = {f"{args.n_mock} mock spectra": on_model_grid(batch)}
    paths = [ROOT / "tests" / "data" / name for name in REAL]
    if all(p.exists() for p in paths):
        sets["4 real SDSS spectra"] = on_model_grid(read_spectrum(p) for p in paths)
    else:
        print("tests/data lacks the real SDSS spectra; timing the mock spectra only")

    fig = _record.figure
    figures = []
    for name, data in sets.items():
        figures += measure(name, data, args.repeats, fig)
    for f in figures:
        print(f"{f['name']:88s} {f['value']!s:>10} {f['unit']}")
    title = (f"SLAM double-smoothing continuum on the model grid ({model_wavelength().size} pixels), default "
             "settings: the Reinsch-form splines against the former scipy path, same run")
    settings = {"n_mock": args.n_mock, "repeats": args.repeats, "seed": SEED, "snr_range": [3.0, 50.0]}
    _record.write(_record.results_path(args.results, "bench_preparation"), "bench_preparation", figures,
                  title=title, settings=settings)


if __name__ == "__main__":
    main()

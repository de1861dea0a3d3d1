"""A whole survey from raw files to a catalog: seconds per stage, stars per second, peak memory.

One command prints the figures and writes the JSON record
(``benchmarks/results/bench_survey.json``; ``--results PATH``)::

    python benchmarks/bench_survey.py [--sizes 5000,20000] [--chunk-size 1000] [--workers 2] [--folder build/survey]

``N`` raw mock SDSS spec files (:func:`bayesslam.mock.generate_survey_files`,
seed 20251213, SNR 3-50; written once into ``--folder`` and reused) become a
MAP + Laplace catalog with the default model:

* **stages**, on the first 1000 files in this process (compiled programs
  warm): reading (:func:`bayesslam.io.read_spectrum`), preparation (rest
  frame, rebinning, the SLAM continuum: :func:`bayesslam.preparation.prepare_spectra`),
  the fit (:func:`bayesslam.infer.fit_map`) and the catalog (building and
  writing it), in seconds per star; and the preparation of the same spectra
  with the former scipy continuum (``continuum._continuum_reference``,
  serial), the baseline of today's preparation, in the same run;
* **end to end** for each size, in a fresh process each (so that its peak
  memory, ``ru_maxrss``, is its own): :func:`bayesslam.chunked.fit_in_chunks`
  with ``--chunk-size`` files per chunk, in one process, and as Dask tasks on
  a ``LocalCluster`` of ``--workers`` worker processes (their peak memory is
  the largest child's); stars per second including start-up and compilation,
  and peak memory (must not grow with N).

``python benchmarks/report.py`` turns the record into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import _record
import numpy as np

SEED = 20251213


def survey_files(folder: Path, n: int) -> list[Path]:
    """``n`` mock spec files in ``folder`` (generated once)."""
    from bayesslam.mock import generate_survey_files

    files = sorted(folder.glob("spec-*.fits"))
    if len(files) < n:
        t0 = time.perf_counter()
        generate_survey_files(folder, n, seed=SEED, overwrite=True)
        files = sorted(folder.glob("spec-*.fits"))
        print(f"generated {len(files)} mock files in {time.perf_counter() - t0:.0f} s")
    return files[:n]


def stages(files: list[Path]) -> dict[str, float]:
    """Seconds per star of each stage on ``files``, warm (see the module docstring)."""
    from bayesslam import pipeline
    from bayesslam.infer import fit_map
    from bayesslam.io import read_spectrum
    from bayesslam.preparation import continuum, prepare_spectra

    model = pipeline.load_model(None)
    pipeline.fit_labels(files[:64], model)  # compile
    settings = pipeline.continuum_settings(model)
    n = len(files)
    t0 = time.perf_counter()
    spectra = [read_spectrum(f) for f in files]
    t1 = time.perf_counter()
    prepared = prepare_spectra(iter(spectra), model.wave, settings=settings, progress=False)
    t2 = time.perf_counter()
    fit_map(model.emulator, prepared.spectra.flux[:64], prepared.spectra.ivar[:64])  # the batch shapes of n stars
    t3 = time.perf_counter()
    fit = fit_map(model.emulator, prepared.spectra.flux, prepared.spectra.ivar,
                  laplace_correction=model.laplace_correction)
    t4 = time.perf_counter()
    from bayesslam.catalog import write_catalog

    catalog = pipeline._catalog(model, prepared, fit)
    write_catalog(catalog, Path("/tmp/bench_survey_stage.fits"), overwrite=True)
    t5 = time.perf_counter()
    original = continuum._continuum
    continuum._continuum = continuum._continuum_reference  # today's baseline: the scipy splines
    try:
        prepare_spectra(iter(spectra), model.wave, settings=settings, progress=False)
    finally:
        continuum._continuum = original
    t6 = time.perf_counter()
    return {"read": (t1 - t0) / n, "prepare": (t2 - t1) / n, "fit": (t4 - t3) / n, "catalog": (t5 - t4) / n,
            "prepare_scipy": (t6 - t5) / n}


def end_to_end(files: list[Path], output: Path, chunk_size: int, scheduler: str | None, workers: int) -> dict:
    """``fit_in_chunks`` of ``files`` in a fresh process: seconds and peak memory (MB)."""
    script = f"""
import json, resource, sys, time
t0 = time.perf_counter()
from bayesslam.chunked import fit_in_chunks
files = json.load(open(sys.argv[1]))
run = fit_in_chunks(files, sys.argv[2], chunk_size={chunk_size}, overwrite=True,
                    scheduler={scheduler!r}, workers={workers})
seconds = time.perf_counter() - t0
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(dict(seconds=seconds, stars=run.n_stars, failed=run.n_failed, rss_mb=own, child_rss_mb=children)))
"""
    listing = output.with_suffix(".json")
    listing.write_text(json.dumps([str(f) for f in files]))
    done = subprocess.run([sys.executable, "-c", script, str(listing), str(output)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,20000", help="survey sizes (default %(default)s)")
    parser.add_argument("--chunk-size", type=int, default=1000, help="files per chunk (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (default %(default)s)")
    parser.add_argument("--folder", type=Path, default=_record.ROOT / "build" / "survey",
                        help="where the mock files are written once (default %(default)s)")
    _record.add_results_option(parser, "bench_survey")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    args.folder.mkdir(parents=True, exist_ok=True)
    files = survey_files(args.folder, max(sizes))
    fig = _record.figure
    figures = []
    per_stage = stages(files[:1000])
    for name, seconds in per_stage.items():
        what = "preparation with the former scipy continuum (baseline)" if name == "prepare_scipy" else name
        figures.append(fig(f"stage, {what}: ms per star", round(1e3 * seconds, 3), "ms",
                           note=f"{min(1000, len(files))} files, one process, warm"))
    figures.append(fig("preparation: speed-up over the former scipy continuum",
                       round(per_stage["prepare_scipy"] / per_stage["prepare"], 2), "x", baseline="prepare_scipy"))
    for n in sizes:
        for scheduler, label in ((None, "one process"), ("local", f"LocalCluster, {args.workers} workers")):
            out = end_to_end(files[:n], args.folder / f"catalog-{n}-{scheduler or 'single'}.fits", args.chunk_size,
                             scheduler, args.workers)
            rss = out["rss_mb"] if scheduler is None else max(out["rss_mb"], out["child_rss_mb"])
            note = f"chunks of {args.chunk_size}; start-up and compilation included"
            figures.append(fig(f"{n} files, {label}: stars per second end to end",
                               round(out["stars"] / out["seconds"], 1), "stars/s", note=note))
            figures.append(fig(f"{n} files, {label}: peak memory", round(rss), "MB",
                               note="largest process" if scheduler else "the process"))
    for f in figures:
        print(f"{f['name']:78s} {f['value']!s:>10} {f['unit']}")
    title = (f"Raw mock SDSS spec files to a MAP + Laplace catalog with the default model: stages, end to end in "
             f"chunks of {args.chunk_size}, one process and a {args.workers}-worker LocalCluster")
    settings = {"sizes": sizes, "chunk_size": args.chunk_size, "workers": args.workers, "seed": SEED,
                "snr_range": [3.0, 50.0]}
    _record.write(_record.results_path(args.results, "bench_survey"), "bench_survey", figures, title=title,
                  settings=settings)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

"""Whole surveys in chunks: each chunk's catalog written as it finishes, a killed run resumed, nothing lost.

:func:`fit_in_chunks` and :func:`sample_in_chunks` work through a list of
spectrum files ``chunk_size`` files at a time with the one library path
(:func:`bayesslam.pipeline.fit_labels`, :func:`bayesslam.pipeline.sample_labels`),
so memory is bounded by the chunk, not by the survey. Next to the output
``CATALOG`` they keep a work folder ``CATALOG.parts/``:

* ``manifest.json``: what the run is (command, input files in order, chunk
  size, model, options); a resumed run must match it.
* ``chunk-NNNNN.fits``: each finished chunk's catalog and its ``FAILED``
  table, written atomically (a killed run leaves no half-written chunk); a
  chunk whose every input failed is ``chunk-NNNNN.failed.json``.
* for ``sample``, ``chunk-NNNNN.nc``: the chunk's posteriors (ArviZ NetCDF;
  ``bayesslam population`` reads several).

With ``resume=True`` the finished chunks are kept and only the others run;
the final catalog (all chunks' rows in input order, every failure in
``FAILED``) is then identical to that of an uninterrupted run: each chunk is
the same stars with the same seed whichever run computes it. Identifiers that
repeat across chunks are renamed ``NAME#2``, ... as within one call.

With ``scheduler`` the chunks run as Dask tasks (``dask.distributed``: a
``LocalCluster`` of worker processes, or any running scheduler, e.g. one
started on a SLURM or PBS cluster by ``dask-jobqueue``); the chunk function
(:func:`run_chunk`) is the same, so is the catalog.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from astropy.table import Table, vstack
from tqdm.auto import tqdm

from bayesslam import pipeline
from bayesslam._files import atomic_write
from bayesslam.catalog import write_catalog
from bayesslam.emulator import SlamModel
from bayesslam.errors import BayesSlamError
from bayesslam.preparation import Failure, NothingPreparedError

__all__ = ["ChunkedRunError", "ChunkedRun", "fit_in_chunks", "sample_in_chunks", "run_chunk", "MANIFEST_FORMAT"]

logger = logging.getLogger(__name__)

#: The ``format`` of a work folder's ``manifest.json``.
MANIFEST_FORMAT = "bayesslam-chunked-run-1"


class ChunkedRunError(BayesSlamError):
    """A chunked run cannot start or resume (a work folder of another run, an output in the way, bad settings)."""


@dataclass(frozen=True)
class ChunkedRun:
    """What a chunked run produced.

    Attributes
    ----------
    catalog : pathlib.Path
        The merged catalog (FITS: ``CATALOG`` and ``FAILED``).
    parts : pathlib.Path
        The work folder with the manifest and every chunk's files.
    n_stars, n_failed : int
        Rows of the catalog, and inputs that failed.
    n_chunks, n_resumed : int
        Chunks of the run, and chunks found finished and not run again.
    posteriors : tuple of pathlib.Path
        The chunks' posterior files (``sample`` only).
    """

    catalog: Path
    parts: Path
    n_stars: int
    n_failed: int
    n_chunks: int
    n_resumed: int
    posteriors: tuple[Path, ...] = ()


def _chunk_seed(seed: int, index: int) -> int:
    """The seed of chunk ``index``: fixed by the run's seed and the chunk, whichever run computes it."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _model_record(model: pipeline.ModelInput) -> str:
    """How the manifest names the model: its file and checksum, or the default model."""
    if model is None:
        return "default"
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"
        return f"{path.resolve()} sha256:{digest}"
    return f"in-memory model {model.metadata.get('created', '')} {model.metadata.get('training_set_sha256', '')}"


def _manifest(kind: str, files: Sequence[Path], chunk_size: int, model: Any, options: dict) -> dict:
    return {"format": MANIFEST_FORMAT, "command": kind, "inputs": [str(f) for f in files],
            "chunk_size": int(chunk_size), "model": _model_record(model), "options": options}


def _open_parts(parts: Path, manifest: dict, resume: bool, overwrite: bool) -> int:
    """Create or check the work folder; the number of finished chunks found in it."""
    path = parts / "manifest.json"
    if path.exists() and resume:
        try:
            found = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ChunkedRunError(f"cannot read {path} ({exc}); start again with --overwrite.") from exc
        if found != manifest:
            differ = sorted(k for k in manifest if found.get(k) != manifest[k])
            raise ChunkedRunError(f"{parts} belongs to another run (it differs in: {', '.join(differ)}); resume with the "
                                  "same inputs, model and settings, or start again with --overwrite.")
        return len(list(parts.glob("chunk-*.fits"))) + len(list(parts.glob("chunk-*.failed.json")))
    if parts.exists() and any(parts.iterdir()) and not (overwrite or resume):
        raise ChunkedRunError(f"{parts} exists from an earlier run; pass --resume to continue it or --overwrite to "
                              "start again.")
    parts.mkdir(parents=True, exist_ok=True)
    for old in list(parts.glob("chunk-*")):
        old.unlink()
    atomic_write(path, json.dumps(manifest, indent=1).encode())
    return 0


def _failures_json(failures: Sequence[Failure]) -> bytes:
    return json.dumps([dataclasses.asdict(f) for f in failures], indent=1).encode()


def _read_chunk(parts: Path, index: int) -> tuple[Table | None, list[Failure]]:
    """One finished chunk's catalog (None when every input failed) and failures."""
    failed = parts / f"chunk-{index:05d}.failed.json"
    if failed.exists():
        return None, [Failure(**record) for record in json.loads(failed.read_text())]
    path = parts / f"chunk-{index:05d}.fits"
    table = Table.read(path, hdu="CATALOG")
    bad = Table.read(path, hdu="FAILED")
    failures = [Failure(source=str(r["SOURCE"]), error=str(r["ERROR"]), reason=str(r["REASON"]),
                        identifier=str(r["IDENTIFIER"])) for r in bad]
    return table, failures


def _done(parts: Path, index: int) -> bool:
    return (parts / f"chunk-{index:05d}.fits").exists() or (parts / f"chunk-{index:05d}.failed.json").exists()


def _rename_repeats(table: Table) -> Table:
    """Identifiers repeated across chunks get ``#2``, ``#3``, ... after the first, with a warning."""
    names = [str(v) for v in table["IDENTIFIER"]]
    counts = Counter(names)
    if len(counts) == len(names):
        return table
    seen: Counter[str] = Counter()
    renamed = []
    for name in names:
        seen[name] += 1
        renamed.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    logger.warning("%d identifier(s) occur in more than one chunk; later occurrences are renamed NAME#2, ...",
                   sum(1 for c in counts.values() if c > 1))
    table["IDENTIFIER"] = renamed
    return table


@functools.lru_cache(maxsize=4)
def _model_from_file(path: str | None) -> SlamModel:
    """A model file (None: the default model), loaded once per process (each Dask worker loads its own)."""
    return pipeline.load_model(path)


def _slam_model(model: pipeline.ModelInput) -> SlamModel:
    if isinstance(model, SlamModel):
        return model
    return _model_from_file(None if model is None else str(Path(model).resolve()))


def run_chunk(kind: str, files: Sequence[str], index: int, parts: str, model: pipeline.ModelInput,
              options: dict) -> int:
    """Run one chunk and write its files into ``parts``; the number of stars in its catalog.

    The one chunk function of :func:`fit_in_chunks` and :func:`sample_in_chunks`,
    in this process or as a Dask task (it takes only plain values and a model
    or model path, and loads the model once per process). A chunk whose every
    input failed is written as ``chunk-NNNNN.failed.json``.
    """
    parts_path, slam = Path(parts), _slam_model(model)
    try:
        if kind == "fit":
            result = pipeline.fit_labels(list(files), slam)
        else:
            result = pipeline.sample_labels(list(files), slam, seed=_chunk_seed(options["seed"], index),
                                            sampler=options["sampler"], num_warmup=options["num_warmup"],
                                            num_samples=options["num_samples"], num_chains=options["num_chains"])
            result.to_netcdf(parts_path / f"chunk-{index:05d}.nc")
    except NothingPreparedError as exc:  # every input of the chunk failed
        atomic_write(parts_path / f"chunk-{index:05d}.failed.json", _failures_json(exc.failures))
        return 0
    write_catalog(result.catalog, parts_path / f"chunk-{index:05d}.fits", failures=result.failures, overwrite=True)
    return len(result.catalog)


def _client(scheduler: Any, workers: int) -> tuple[Any, Callable[[], None]]:
    """A ``dask.distributed`` client for ``scheduler`` and how to close what was opened here."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise ChunkedRunError("the Dask scheduler needs dask.distributed: pip install 'bayesslam[dask]'.") from exc
    if isinstance(scheduler, Client):
        return scheduler, lambda: None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1)
        client = Client(cluster)

        def close() -> None:
            client.close()
            cluster.close()

        return client, close
    client = Client(str(scheduler))
    return client, client.close


def _run(kind: str, spectra: pipeline.SpectraInput, output: str | os.PathLike, model: pipeline.ModelInput,
         chunk_size: int, resume: bool, overwrite: bool, progress: bool, options: dict, scheduler: Any,
         workers: int) -> ChunkedRun:
    """Run every unfinished chunk (here, or as Dask tasks on ``scheduler``), then merge the chunks."""
    output = Path(output)
    if int(chunk_size) < 1:
        raise ChunkedRunError(f"chunk_size must be a positive number of files, not {chunk_size!r}.")
    if output.exists() and not (overwrite or resume):
        raise ChunkedRunError(f"{output} exists; pass --overwrite to replace it or --resume to finish its run.")
    files = pipeline.expand_paths(spectra)
    parts = Path(f"{output}.parts")
    n_chunks = -(-len(files) // int(chunk_size))
    found = _open_parts(parts, _manifest(kind, files, chunk_size, model, options), resume, overwrite)
    if found:
        logger.info("resuming %s: %d of %d chunks finished", parts, found, n_chunks)
    chunks = {index: [str(f) for f in files[index * chunk_size:(index + 1) * chunk_size]] for index in range(n_chunks)}
    todo = [index for index in range(n_chunks) if not _done(parts, index)]
    if isinstance(model, (str, os.PathLike)):
        model = str(Path(model).resolve())
    start, n_stars = time.perf_counter(), 0
    with tqdm(total=len(files), disable=not progress, desc=kind, unit="file") as bar:
        bar.update(sum(len(chunks[i]) for i in range(n_chunks) if i not in todo))

        def finished(index: int, stars: int) -> None:
            nonlocal n_stars
            n_stars += stars
            bar.set_postfix_str(f"{n_stars / max(time.perf_counter() - start, 1e-9):.1f} stars/s")
            bar.update(len(chunks[index]))
            logger.info("%s: chunk %d of %d done (%d files)", kind, index + 1, n_chunks, len(chunks[index]))

        if scheduler is None:
            for index in todo:
                finished(index, run_chunk(kind, chunks[index], index, str(parts), model, options))
        elif todo:
            from dask.distributed import as_completed

            client, close = _client(scheduler, workers)
            try:
                futures = {client.submit(run_chunk, kind, chunks[i], i, str(parts), model, options, pure=False): i
                           for i in todo}
                for future in as_completed(futures):
                    finished(futures[future], future.result())
            finally:
                close()
    return _merge(kind, files, parts, n_chunks, output, found)


def _merge(kind: str, files: Sequence[Path], parts: Path, n_chunks: int, output: Path, found: int) -> ChunkedRun:
    """All chunks' rows in input order, every failure, into ``output``."""
    tables, failures = [], []
    for index in range(n_chunks):
        table, failed = _read_chunk(parts, index)
        failures.extend(failed)
        if table is not None:
            tables.append(table)
    if not tables:
        raise ChunkedRunError(f"every one of the {len(files)} inputs failed; see {parts} for the reasons.")
    catalog = _rename_repeats(vstack(tables, metadata_conflicts="silent"))
    catalog.meta["NCHUNKS"] = n_chunks
    write_catalog(catalog, output, failures=failures, overwrite=True)
    posteriors = tuple(sorted(parts.glob("chunk-*.nc")))
    logger.info("%s: %d stars in %d chunks -> %s (%d inputs failed)", kind, len(catalog), n_chunks, output,
                len(failures))
    return ChunkedRun(output, parts, len(catalog), len(failures), n_chunks, found, posteriors)


def fit_in_chunks(spectra: pipeline.SpectraInput, output: str | os.PathLike, model: pipeline.ModelInput = None, *,
                  chunk_size: int = 1000, resume: bool = False, overwrite: bool = False, progress: bool = False,
                  scheduler: Any = None, workers: int = 2) -> ChunkedRun:
    """MAP labels of a whole survey, ``chunk_size`` files at a time, into one catalog.

    Parameters
    ----------
    spectra : SpectraInput
        Spectrum files, folders or glob patterns (chunks are cut by file).
    output : str or os.PathLike
        The catalog; its work folder is ``OUTPUT.parts``.
    model : SlamModel, path or None
        The model (None: the shipped default model).
    chunk_size : int
        Files per chunk.
    resume : bool
        Keep the chunks a killed run finished and run only the others.
    overwrite : bool
        Replace an existing output and work folder.
    progress : bool
        A progress bar over the files, with stars per second.
    scheduler : None, "local", an address or a ``dask.distributed.Client``
        None: the chunks run one after the other in this process. ``"local"``:
        as Dask tasks on a ``LocalCluster`` of ``workers`` processes; an
        address (``tcp://host:8786``): on that running Dask scheduler (e.g.
        one started by ``dask-jobqueue`` on SLURM or PBS); or a client you
        made. The same chunk function (:func:`run_chunk`) runs either way,
        and so gives the same catalog. Needs ``pip install 'bayesslam[dask]'``.
    workers : int
        Worker processes of a ``"local"`` cluster.

    Returns
    -------
    ChunkedRun

    Raises
    ------
    ChunkedRunError
        If the output or work folder is in the way, the work folder belongs
        to another run, every input failed, or Dask is missing.
    """
    return _run("fit", spectra, output, model, chunk_size, resume, overwrite, progress, {}, scheduler, workers)


def sample_in_chunks(spectra: pipeline.SpectraInput, output: str | os.PathLike, model: pipeline.ModelInput = None, *,
                     chunk_size: int = 1000, resume: bool = False, overwrite: bool = False, progress: bool = False,
                     scheduler: Any = None, workers: int = 2, seed: int = 0, sampler: str = "nuts",
                     num_warmup: int = 1000, num_samples: int = 1000, num_chains: int = 1) -> ChunkedRun:
    """Posteriors of a whole survey, ``chunk_size`` files at a time: one catalog, one posterior file per chunk.

    Parameters are those of :func:`fit_in_chunks` and, for the sampler, of
    :func:`bayesslam.pipeline.sample_labels`; chunk ``i`` samples with a seed
    fixed by ``seed`` and ``i``, so a resumed run draws what an
    uninterrupted one would.

    Returns
    -------
    ChunkedRun
        With ``posteriors``, the chunks' NetCDF files.
    """
    options = {"seed": int(seed), "sampler": sampler, "num_warmup": int(num_warmup), "num_samples": int(num_samples),
               "num_chains": int(num_chains)}
    return _run("sample", spectra, output, model, chunk_size, resume, overwrite, progress, options, scheduler, workers)

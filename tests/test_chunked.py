"""Chunked runs: chunks written as they finish, a run killed with SIGKILL resumed to the same catalog."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from bayesslam import pipeline
from bayesslam.chunked import ChunkedRunError, fit_in_chunks, sample_in_chunks
from bayesslam.mock import generate_survey_files


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> list[Path]:
    """Ten mock spectrum files and a file of random bytes in the middle (it must land in FAILED)."""
    folder = tmp_path_factory.mktemp("survey")
    generate_survey_files(folder, 10, seed=41)
    files = sorted(folder.glob("spec-*.fits"))
    bad = folder / "spec-garbage.fits"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    return files[:5] + [bad] + files[5:]


def _assert_same_catalog(a: Path, b: Path) -> None:
    ta, tb = Table.read(a, hdu="CATALOG"), Table.read(b, hdu="CATALOG")
    assert ta.colnames == tb.colnames and len(ta) == len(tb)
    for name in ta.colnames:
        x, y = np.asarray(ta[name]), np.asarray(tb[name])
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=name)
            np.testing.assert_array_equal(x[~np.isnan(x)], y[~np.isnan(y)], err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)
    fa, fb = Table.read(a, hdu="FAILED"), Table.read(b, hdu="FAILED")
    assert list(fa["SOURCE"]) == list(fb["SOURCE"])


def test_chunked_fit_gives_the_rows_of_one_call_and_records_the_bad_file(survey, tmp_path):
    run = fit_in_chunks(survey, tmp_path / "cat.fits", chunk_size=4)
    assert (run.n_chunks, run.n_stars, run.n_failed, run.n_resumed) == (3, 10, 1, 0)
    assert sorted(p.name for p in run.parts.glob("chunk-*")) == [f"chunk-0000{i}.fits" for i in range(3)]
    table = Table.read(run.catalog, hdu="CATALOG")
    failed = Table.read(run.catalog, hdu="FAILED")
    assert list(failed["SOURCE"]) == [str(survey[5])]
    whole = pipeline.fit(survey)
    assert list(table["IDENTIFIER"]) == list(whole["IDENTIFIER"])
    for column in ("TEFF_MAP", "FE_H_MAP", "FE_H_ERR", "CHI2"):
        np.testing.assert_allclose(np.asarray(table[column]), np.asarray(whole[column]), rtol=1e-7)
    # an existing output or work folder is never overwritten silently; another run's folder is not resumed
    with pytest.raises(ChunkedRunError, match="exists"):
        fit_in_chunks(survey, tmp_path / "cat.fits", chunk_size=4)
    with pytest.raises(ChunkedRunError, match="another run.*chunk_size"):
        fit_in_chunks(survey, tmp_path / "cat.fits", chunk_size=5, resume=True)


def test_fit_killed_with_sigkill_resumes_to_the_uninterrupted_catalog(survey, tmp_path):
    reference = fit_in_chunks(survey, tmp_path / "reference.fits", chunk_size=1).catalog
    output = tmp_path / "killed.fits"
    script = textwrap.dedent(f"""
        from bayesslam.chunked import fit_in_chunks
        fit_in_chunks({[str(p) for p in survey]!r}, {str(output)!r}, chunk_size=1)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = Path(f"{output}.parts") / "chunk-00000.fits"
    deadline = time.time() + 300
    while not first.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = sorted(Path(f"{output}.parts").glob("chunk-*.fits"))
    assert 1 <= len(finished) < len(survey), "the kill must land mid-run"
    assert not output.exists()
    run = fit_in_chunks(survey, output, chunk_size=1, resume=True)
    assert run.n_resumed == len(finished) and run.n_chunks == len(survey)
    _assert_same_catalog(output, reference)


@pytest.mark.slow
def test_sample_resumes_a_lost_chunk_to_the_same_catalog(survey, tmp_path):
    options = dict(chunk_size=3, num_warmup=60, num_samples=60, seed=3)
    files = survey[:6]
    full = sample_in_chunks(files, tmp_path / "full.fits", **options)
    assert full.n_chunks == 2 and len(full.posteriors) == 2
    shutil.copytree(full.parts, tmp_path / "cut.fits.parts")
    for lost in (tmp_path / "cut.fits.parts").glob("chunk-00001.*"):
        lost.unlink()  # as if the run had been killed during the second chunk
    run = sample_in_chunks(files, tmp_path / "cut.fits", resume=True, **options)
    assert run.n_resumed == 1
    _assert_same_catalog(tmp_path / "cut.fits", full.catalog)


def test_fit_on_a_dask_local_cluster_gives_the_single_process_catalog(survey, tmp_path):
    """The same chunk function as Dask tasks on a LocalCluster (a worker process): the same catalog."""
    single = fit_in_chunks(survey, tmp_path / "single.fits", chunk_size=4)
    run = fit_in_chunks(survey, tmp_path / "dask.fits", chunk_size=4, scheduler="local", workers=1)
    assert run.n_chunks == 3 and run.n_failed == 1
    _assert_same_catalog(run.catalog, single.catalog)

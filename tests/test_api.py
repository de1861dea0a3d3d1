"""The one-line API as users run it: fresh processes, outside the repository, JAX's configuration untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bayesslam
from bayesslam.pipeline import GridMismatchError, InputError, expand_paths

ROOT = Path(__file__).resolve().parents[1]
REAL_STAR = ROOT / "tests" / "data" / "spec-1079-52621-0509.fits"
MOCK = ROOT / "examples" / "data" / "mock"

FRESH_FIT = f"""
import json, sys
import bayesslam
assert "jax" not in sys.modules, "import bayesslam must not import JAX"
table = bayesslam.fit([{str(REAL_STAR)!r}])
import jax
print(json.dumps({{
    "x64_after": bool(jax.config.jax_enable_x64),
    "columns": table.colnames,
    "row": {{name: float(table[name][0]) for name in ("TEFF_MAP", "TEFF_MAP_ERR", "TEFF_ERR", "FE_H_MAP",
                                                      "FE_H_MAP_ERR", "FE_H_ERR", "LOGG_MAP", "CHI2")}},
}}))
"""


def _fresh_fit(tmp_path: Path, x64: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "BAYESSLAM_DEFAULT_MODEL")}
    if x64:
        env["JAX_ENABLE_X64"] = "1"
    done = subprocess.run([sys.executable, "-c", FRESH_FIT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_one_line_fit_in_fresh_processes_gives_the_same_numbers_with_and_without_global_x64(tmp_path: Path):
    """``bayesslam.fit`` from a folder outside the repository, without touching JAX's configuration.

    The catalog has the command's columns, JAX's global setting is left as it was, and a user who
    switched 64-bit JAX on globally gets the same numbers.
    """
    plain = _fresh_fit(tmp_path, x64=False)
    assert plain["x64_after"] is False
    for name in ("IDENTIFIER", "TEFF_MAP", "TEFF_ERR", "FE_H_SNR_ERR", "FLAGS", "REDUCED_CHI2"):
        assert name in plain["columns"]
    row = plain["row"]
    assert 3100.0 < row["TEFF_MAP"] < 3900.0 and row["TEFF_MAP_ERR"] > 0.0 and row["TEFF_ERR"] > 0.0
    assert -0.6 <= row["FE_H_MAP"] <= 0.5 and row["FE_H_MAP_ERR"] > 0.0 and row["FE_H_ERR"] > 0.0
    switched_on = _fresh_fit(tmp_path, x64=True)
    assert switched_on["x64_after"] is True
    assert switched_on["row"] == row


def test_fit_takes_folders_patterns_and_records(tmp_path: Path):
    """The same stars from a folder, a glob pattern and Spectrum records give the same catalog."""
    from bayesslam.io import read_spectrum

    by_folder = bayesslam.fit(MOCK)
    by_pattern = bayesslam.fit(str(MOCK / "spec-90000-60000-000*.fits"))
    assert len(by_folder) == 12 and len(by_pattern) == 9
    records = [read_spectrum(path) for path in sorted(MOCK.glob("spec-90000-60000-000*.fits"))]
    by_records = bayesslam.fit(records)
    assert list(by_records["IDENTIFIER"]) == list(by_pattern["IDENTIFIER"])
    np.testing.assert_array_equal(by_records["TEFF_MAP"], by_pattern["TEFF_MAP"])
    np.testing.assert_array_equal(by_folder["TEFF_MAP"][:9], by_pattern["TEFF_MAP"])


def test_bad_inputs_are_named(tmp_path: Path):
    with pytest.raises(InputError, match="holds no spectrum files"):
        expand_paths(tmp_path)
    with pytest.raises(InputError, match="no file matches"):
        expand_paths(str(tmp_path / "*.fits"))
    with pytest.raises(InputError, match="no spectra given"):
        expand_paths([])
    with pytest.raises(InputError, match="does not exist"):
        bayesslam.load_model(tmp_path / "missing.npz")
    prepared = bayesslam.prepare([REAL_STAR])
    assert prepared.wave.size == bayesslam.load_model().wave.size
    from bayesslam.preparation import prepare_files

    other_grid = prepare_files([REAL_STAR], prepared.wave[100:900], progress=False)
    with pytest.raises(GridMismatchError, match="grid"):
        bayesslam.fit(other_grid)


def test_sample_result_exchanges_as_datatree_and_netcdf(tmp_path: Path):
    import arviz as az

    result = bayesslam.sample([REAL_STAR], seed=3, sampler="emcee", num_warmup=100, num_samples=100)
    row = result.catalog[0]
    assert np.isfinite(row["FE_H_MEDIAN"]) and row["FE_H_P16"] < row["FE_H_MEDIAN"] < row["FE_H_P84"]
    tree = result.to_datatree()
    assert "posterior" in tree.children
    path = result.to_netcdf(tmp_path / "post.nc")
    assert az.from_netcdf(path).posterior["teff"].shape == (32, 100, 1)

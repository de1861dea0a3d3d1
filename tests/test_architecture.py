"""The package's shape: stages import only downwards, no import cycles, every folder packaged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from setuptools import find_packages
from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def _lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([LINT_IMPORTS, str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    """``lint-imports`` (the command docs/architecture.md gives) keeps all three contracts."""
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" KEPT") == 3 and "BROKEN" not in done.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path: Path):
    """Negative control: a copy of the package whose reader imports the pipeline must fail the check."""
    copy = tmp_path / "bayesslam"
    shutil.copytree(ROOT / "bayesslam", copy, ignore=shutil.ignore_patterns("__pycache__"))
    labels = copy / "io" / "labels.py"
    labels.write_text(labels.read_text() + "\n\ndef _upward():\n    from bayesslam.pipeline import fit\n\n    return fit\n")
    done = _lint_imports(tmp_path, pythonpath=tmp_path)
    assert done.returncode != 0
    assert "Stages import only downwards" in done.stdout and "BROKEN" in done.stdout
    assert "bayesslam.io.labels -> bayesslam.pipeline" in done.stdout


def test_every_package_folder_is_installed():
    """pyproject's explicit package list holds every folder of the package (and the shipped models)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # setuptools calls some of its pyproject support beta
        listed = set(read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]["packages"])
    found = set(find_packages(where=str(ROOT), include=["bayesslam", "bayesslam.*"]))
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert "bayesslam.models" in listed


@pytest.mark.parametrize("stage", ["io", "preparation", "mock", "calibration", "emulator", "infer", "train", "population",
                                   "relations", "validation", "catalog"])
def test_each_stage_is_a_folder_with_a_docstring(stage: str):
    init = ROOT / "bayesslam" / stage / "__init__.py"
    assert init.is_file()
    assert init.read_text().lstrip().startswith('"""')

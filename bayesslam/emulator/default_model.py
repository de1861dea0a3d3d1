"""The model shipped with bayesslam, and where to find it.

The default model is ``bayesslam-default-v1.npz`` (model card:
``models/README.md`` of the repository). It is installed with the package as
data of ``bayesslam.models``; in a source checkout it is read from the
repository's ``models/`` folder. The environment variable
``BAYESSLAM_DEFAULT_MODEL`` may point to another file instead.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from bayesslam.errors import BayesSlamError

__all__ = ["DEFAULT_MODEL_NAME", "ENV_VARIABLE", "default_model_path"]

DEFAULT_MODEL_NAME = "bayesslam-default-v1.npz"
ENV_VARIABLE = "BAYESSLAM_DEFAULT_MODEL"


def _installed_copy() -> Path | None:
    """The copy installed as package data (``pip install .``), if there is one."""
    try:
        resource = importlib.resources.files("bayesslam.models") / DEFAULT_MODEL_NAME
    except ModuleNotFoundError:  # a source checkout or an editable install
        return None
    return Path(str(resource)) if resource.is_file() else None


def default_model_path() -> Path:
    """Return the path of the default model file.

    Looked up in order: ``$BAYESSLAM_DEFAULT_MODEL``, the copy installed with
    the package, the ``models/`` folder of a source checkout.

    Raises
    ------
    BayesSlamError
        If it cannot be found (the message lists where it looked).
    """
    candidates = []
    if os.environ.get(ENV_VARIABLE):
        candidates.append(Path(os.environ[ENV_VARIABLE]))
    installed = _installed_copy()
    if installed is not None:
        candidates.append(installed)
    candidates.append(Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_NAME)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise BayesSlamError(
        f"the default model was not found (looked at: {looked}). Reinstall bayesslam (python3 -m pip install .), "
        f"pass a model file (-m MODEL, or model=...), or set {ENV_VARIABLE}."
    )

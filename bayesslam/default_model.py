"""Where the shipped default model lives, and loading it.

The default model is ``models/bayesslam-default-v1.npz`` of the bayesslam
repository (see ``models/README.md``, its model card). It is looked up, in
order, at the path in the environment variable ``BAYESSLAM_DEFAULT_MODEL``,
in the ``models/`` folder next to the installed package (a source checkout
or editable install), and in ``./models/`` of the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from bayesslam.errors import BayesSlamError

__all__ = ["DEFAULT_MODEL_NAME", "ENV_VARIABLE", "default_model_path"]

DEFAULT_MODEL_NAME = "bayesslam-default-v1.npz"
ENV_VARIABLE = "BAYESSLAM_DEFAULT_MODEL"


def default_model_path() -> Path:
    """Return the path of the default model file.

    Raises
    ------
    BayesSlamError
        If it cannot be found (the message lists where it looked).
    """
    candidates = []
    if os.environ.get(ENV_VARIABLE):
        candidates.append(Path(os.environ[ENV_VARIABLE]))
    candidates.append(Path(__file__).resolve().parent.parent / "models" / DEFAULT_MODEL_NAME)
    candidates.append(Path.cwd() / "models" / DEFAULT_MODEL_NAME)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise BayesSlamError(
        f"the default model was not found (looked at: {looked}). Pass a model with -m MODEL, set "
        f"{ENV_VARIABLE}, or run from the bayesslam repository."
    )

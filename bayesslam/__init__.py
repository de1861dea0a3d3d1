"""bayesslam: Bayesian SLAM for M-dwarf spectra.

The one-line API (each a thin wrapper of :mod:`bayesslam.pipeline`)::

    import bayesslam

    table = bayesslam.fit(["spec-1079-52621-0509.fits"])          # MAP labels -> astropy Table
    result = bayesslam.sample("spectra/", seed=1)                  # posteriors: .catalog, .to_netcdf()
    model = bayesslam.load_model()                                 # the shipped default model
    prepared = bayesslam.prepare("spectra/*.fits", model)          # normalized on the model's grid

Data flow, one stage per subpackage: read (:mod:`bayesslam.io`) -> prepare
(:mod:`bayesslam.preparation`) -> train (:mod:`bayesslam.train`) -> emulate
(:mod:`bayesslam.emulator`) -> infer (:mod:`bayesslam.infer`) -> catalog
(:mod:`bayesslam.catalog`); :mod:`bayesslam.mock` makes mock surveys and
:mod:`bayesslam.calibration` measures error calibration.

Importing bayesslam is fast: JAX and the stages are imported on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from bayesslam.errors import (
    AllMaskedError,
    BayesSlamError,
    CorruptFileError,
    NoOverlapError,
    NormalizationError,
    SpectrumValidationError,
    UnknownFormatError,
)
from bayesslam.spectra import Spectrum, SpectrumBatch, SpectrumMeta

try:
    __version__ = version("bayesslam")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: The top-level functions, imported from :mod:`bayesslam.pipeline` (and the precision switch) on first use.
_LAZY_API = ("load_model", "prepare", "fit", "sample", "float64")

__all__ = [
    "__version__",
    "load_model",
    "prepare",
    "fit",
    "sample",
    "float64",
    "Spectrum",
    "SpectrumBatch",
    "SpectrumMeta",
    "BayesSlamError",
    "SpectrumValidationError",
    "UnknownFormatError",
    "CorruptFileError",
    "NoOverlapError",
    "AllMaskedError",
    "NormalizationError",
]


def __getattr__(name: str) -> Any:
    """Import the top-level functions on first use (PEP 562), so that ``import bayesslam`` stays light."""
    if name == "float64":
        from bayesslam._precision import float64

        value = float64
    elif name in _LAZY_API:
        from bayesslam import pipeline

        value = getattr(pipeline, name)
    else:
        raise AttributeError(f"module 'bayesslam' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_API))

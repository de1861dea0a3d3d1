"""bayesslam: Bayesian SLAM for M-dwarf spectra.

Data flow: read (:mod:`bayesslam.io`) -> prepare (:mod:`bayesslam.resample`,
:mod:`bayesslam.continuum`, :mod:`bayesslam.prepare`) -> train -> emulate ->
infer.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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

__all__ = [
    "__version__",
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

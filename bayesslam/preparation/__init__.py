"""The prepare stage: spectra on the model grid, in the rest frame, continuum-normalized.

:mod:`~bayesslam.preparation.resample` (flux-conserving rebinning with exact
variances and masks), :mod:`~bayesslam.preparation.continuum` (SLAM's double
smoothing-spline normalization), :mod:`~bayesslam.preparation.prepare` (the
steps, one spectrum or many, failures recorded), and
:mod:`~bayesslam.preparation.prepared_file` (:class:`PreparedSpectra` and its
FITS file).
"""

from bayesslam.preparation.continuum import (
    ContinuumSettings,
    NormalizedSpectrum,
    fit_continuum,
    normalize,
)
from bayesslam.preparation.prepare import (
    NothingPreparedError,
    prepare_files,
    prepare_spectra,
    prepare_spectrum,
)
from bayesslam.preparation.prepared_file import (
    PREPARED_FORMAT,
    PREPARED_VERSION,
    Failure,
    PreparedSpectra,
    is_prepared_file,
    read_prepared,
    settings_json,
    write_prepared,
)
from bayesslam.preparation.resample import RebinResult, rebin

__all__ = [
    "NothingPreparedError",
    "PREPARED_FORMAT",
    "PREPARED_VERSION",
    "ContinuumSettings",
    "Failure",
    "NormalizedSpectrum",
    "PreparedSpectra",
    "RebinResult",
    "fit_continuum",
    "is_prepared_file",
    "normalize",
    "prepare_files",
    "prepare_spectra",
    "prepare_spectrum",
    "read_prepared",
    "rebin",
    "settings_json",
    "write_prepared",
]

"""The catalog stage: one FITS row per star with labels, raw and calibrated errors, SNR-law errors and flags.

:mod:`~bayesslam.catalog.table` (the columns), :mod:`~bayesslam.catalog.flags`
(flag bits and thresholds), :mod:`~bayesslam.catalog.misfit` (the poor-fit
test: how badly the model misses a spectrum), :mod:`~bayesslam.catalog.domain`
(how far labels lie from the training set); the SNR laws (sigma = a SNR^b) live in
:mod:`bayesslam.calibration.snr_law` and are re-exported here.
"""

from bayesslam.catalog.domain import TrainingDomain
from bayesslam.catalog.flags import (
    FLAG_MEANINGS,
    Flag,
    FlagThresholds,
    describe_flags,
    flag_names,
    misfit_tolerance,
    sampling_thresholds,
)
from bayesslam.catalog.misfit import DEFAULT_MISFIT_TOLERANCE, chi2_p_value, misfit_amplitude
from bayesslam.calibration.snr_law import (
    PAPER_SNR_LAWS,
    PAPER_SNR_RANGE,
    SnrLaw,
    fit_snr_law,
    snr_law_sigma,
)
from bayesslam.catalog.table import SNR_DEFINITIONS, build_catalog, failed_table, write_catalog

__all__ = [
    "DEFAULT_MISFIT_TOLERANCE",
    "PAPER_SNR_LAWS",
    "PAPER_SNR_RANGE",
    "FLAG_MEANINGS",
    "SNR_DEFINITIONS",
    "Flag",
    "FlagThresholds",
    "SnrLaw",
    "TrainingDomain",
    "build_catalog",
    "chi2_p_value",
    "failed_table",
    "describe_flags",
    "flag_names",
    "fit_snr_law",
    "misfit_amplitude",
    "misfit_tolerance",
    "sampling_thresholds",
    "snr_law_sigma",
    "write_catalog",
]

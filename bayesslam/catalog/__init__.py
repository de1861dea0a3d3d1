"""The catalog stage: one FITS row per star with labels, raw and calibrated errors, SNR-law errors and flags.

:mod:`~bayesslam.catalog.table` (the columns), :mod:`~bayesslam.catalog.flags`
(flag bits and thresholds), :mod:`~bayesslam.catalog.domain` (how far labels lie
from the training set); the SNR laws (sigma = a SNR^b) live in
:mod:`bayesslam.calibration.snr_law` and are re-exported here.
"""

from bayesslam.catalog.domain import TrainingDomain
from bayesslam.catalog.flags import (
    FLAG_MEANINGS,
    Flag,
    FlagThresholds,
    describe_flags,
    flag_names,
    sampling_thresholds,
)
from bayesslam.calibration.snr_law import (
    PAPER_SNR_LAWS,
    PAPER_SNR_RANGE,
    SnrLaw,
    fit_snr_law,
    snr_law_sigma,
)
from bayesslam.catalog.table import build_catalog, failed_table, write_catalog

__all__ = [
    "PAPER_SNR_LAWS",
    "PAPER_SNR_RANGE",
    "FLAG_MEANINGS",
    "Flag",
    "FlagThresholds",
    "SnrLaw",
    "TrainingDomain",
    "build_catalog",
    "failed_table",
    "describe_flags",
    "flag_names",
    "fit_snr_law",
    "sampling_thresholds",
    "snr_law_sigma",
    "write_catalog",
]

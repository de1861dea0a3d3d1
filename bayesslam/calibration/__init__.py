"""Error calibration: coverage of label uncertainties, and a measured scale and systematic floor.

The math and the records only (numpy and scipy): :mod:`~bayesslam.calibration.intervals`
(coverage, probability integral transforms, calibrated widths and quantiles) and
:mod:`~bayesslam.calibration.scale_floor` (fitting a scale and floor per label on
stars with known labels; :class:`ErrorCalibration` and :class:`ModelCalibration`,
the records a model file carries) and :mod:`~bayesslam.calibration.snr_law`
(empirical errors as power laws of SNR, the paper's and fitted ones). It imports nothing of bayesslam but its errors,
so that a model file can hold its calibration; studies that run samplers to
measure calibration live above :mod:`bayesslam.infer`.
"""

from bayesslam.calibration.intervals import (
    KINDS,
    LEVELS,
    NINETY_FIVE,
    ONE_SIGMA,
    CalibrationError,
    calibrated_draws,
    calibrated_quantiles,
    calibrated_sigma,
    coverage,
    draws_pit,
    gaussian_pit,
    half_width,
    pit_coverage,
)
from bayesslam.calibration.sbc import (
    RankHistogram,
    RankUniformity,
    default_rank_bins,
    ecdf_difference,
    rank_histogram,
    rank_pit,
    rank_uniformity,
    sbc_ranks,
    thin_draws,
)
from bayesslam.calibration.coverage_curves import (
    COVERAGE_LEVELS,
    BinnedCoverage,
    CoverageCurve,
    binned_coverage_curves,
    binned_pit_coverage_curves,
    coverage_curve,
    pit_coverage_curve,
    truth_pit,
)
from bayesslam.calibration.snr_law import (
    PAPER_SNR_LAWS,
    PAPER_SNR_RANGE,
    SnrLaw,
    fit_snr_law,
    snr_law_sigma,
    spectrum_snr,
)
from bayesslam.calibration.scale_floor import (
    CalibrationFit,
    ErrorCalibration,
    ModelCalibration,
    fit_error_calibration,
    fit_posterior_calibration,
)

__all__ = [
    "BinnedCoverage",
    "COVERAGE_LEVELS",
    "CoverageCurve",
    "RankHistogram",
    "RankUniformity",
    "binned_coverage_curves",
    "binned_pit_coverage_curves",
    "coverage_curve",
    "default_rank_bins",
    "ecdf_difference",
    "pit_coverage_curve",
    "rank_histogram",
    "rank_pit",
    "rank_uniformity",
    "sbc_ranks",
    "thin_draws",
    "truth_pit",
    "CalibrationError",
    "CalibrationFit",
    "ErrorCalibration",
    "ModelCalibration",
    "PAPER_SNR_LAWS",
    "PAPER_SNR_RANGE",
    "SnrLaw",
    "LEVELS",
    "ONE_SIGMA",
    "NINETY_FIVE",
    "KINDS",
    "calibrated_draws",
    "calibrated_quantiles",
    "calibrated_sigma",
    "coverage",
    "draws_pit",
    "fit_snr_law",
    "fit_error_calibration",
    "fit_posterior_calibration",
    "gaussian_pit",
    "half_width",
    "pit_coverage",
    "snr_law_sigma",
    "spectrum_snr",
]

"""Validation studies that run inference: simulation-based calibration and coverage reports.

Above :mod:`bayesslam.infer` (they run its samplers) and beside
:mod:`bayesslam.train` and :mod:`bayesslam.population`; the statistics
themselves are the pure functions of :mod:`bayesslam.calibration`
(:mod:`~bayesslam.calibration.sbc`, :mod:`~bayesslam.calibration.coverage_curves`).
:mod:`~bayesslam.validation.simulators` (labels from a prior, spectra from the
emulator's own generative model or the mock generator),
:mod:`~bayesslam.validation.sbc` (:func:`run_sbc`, :class:`SbcResult`),
:mod:`~bayesslam.validation.coverage` (:func:`coverage_report` for held-out
stars with known labels) and :mod:`~bayesslam.validation.plotting` (the figures).
See docs/calibration-research.md.
"""

from bayesslam.validation.coverage import CoverageReport, coverage_report
from bayesslam.validation.errors import ValidationError
from bayesslam.validation.sbc import SAMPLERS, SbcResult, ecdf_in_band, run_sbc
from bayesslam.validation.simulators import EmulatorSimulator, MockSimulator, Simulator, draw_from_prior

__all__ = [
    "CoverageReport",
    "EmulatorSimulator",
    "MockSimulator",
    "SAMPLERS",
    "SbcResult",
    "Simulator",
    "ValidationError",
    "coverage_report",
    "draw_from_prior",
    "ecdf_in_band",
    "run_sbc",
]

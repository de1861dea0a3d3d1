"""The emulate stage: the trained SVR bank as a frozen JAX function, and the model file that carries it.

:mod:`~bayesslam.emulator.svr_bank` (the :class:`Emulator` pytree: labels ->
normalized flux, exact and differentiable), :mod:`~bayesslam.emulator.error_model`
(what the emulator gets wrong: :class:`EmulatorErrorModel`),
:mod:`~bayesslam.emulator.laplace_correction` (how much the Laplace intervals must widen: :class:`LaplaceCorrection`), :mod:`~bayesslam.emulator.modelfile`
(:class:`SlamModel`, arrays + JSON metadata, never pickle) and
:mod:`~bayesslam.emulator.default_model` (the model shipped with the package).
"""

from bayesslam.emulator.default_model import DEFAULT_MODEL_NAME, default_model_path
from bayesslam.emulator.error_model import EmulatorErrorModel, ErrorModelError, error_factor, marginal_precision
from bayesslam.emulator.laplace_correction import LaplaceCorrection
from bayesslam.emulator.modelfile import (
    MODEL_FORMAT,
    SCHEMA_VERSION,
    ModelFileError,
    OutOfFoldLabels,
    SlamModel,
    TrainingSummary,
    library_versions,
    load_model,
    model_checksum,
    save_model,
    utc_now,
)
from bayesslam.emulator.svr_bank import (
    EMULATOR_ARRAYS,
    Emulator,
    EmulatorError,
    LeastSquaresTerms,
    build_emulator,
    flux_and_jacobian,
    flux_grouped,
    flux_plain,
    gamma_groups,
    label_jacobian,
    least_squares_terms,
    squared_distances,
    weighted_flux_derivatives,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "EMULATOR_ARRAYS",
    "MODEL_FORMAT",
    "SCHEMA_VERSION",
    "Emulator",
    "EmulatorError",
    "EmulatorErrorModel",
    "ErrorModelError",
    "LaplaceCorrection",
    "error_factor",
    "marginal_precision",
    "LeastSquaresTerms",
    "ModelFileError",
    "OutOfFoldLabels",
    "SlamModel",
    "TrainingSummary",
    "build_emulator",
    "default_model_path",
    "flux_and_jacobian",
    "flux_grouped",
    "flux_plain",
    "gamma_groups",
    "label_jacobian",
    "least_squares_terms",
    "library_versions",
    "load_model",
    "model_checksum",
    "save_model",
    "squared_distances",
    "utc_now",
    "weighted_flux_derivatives",
]

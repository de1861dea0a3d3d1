"""The train stage: one RBF support vector regression per pixel, hyperparameters by cross-validation.

:class:`SlamTrainer` (:mod:`~bayesslam.train.trainer`) is the scikit-learn-style
estimator; it runs either backend on chunks of pixels
(:mod:`~bayesslam.train.chunk`): scikit-learn's libsvm
(:mod:`~bayesslam.train.libsvm`, the reference) or the batched JAX solver
(:mod:`~bayesslam.train.batched_svr`, :mod:`~bayesslam.train.batched`), with
resumable checkpoints (:mod:`~bayesslam.train.checkpoint`), label-level cross-validation
(:mod:`~bayesslam.train.label_cv`), the emulator error model learnt from it
(:mod:`~bayesslam.train.error_model`), the Laplace correction learnt from the
model's own generative model (:mod:`~bayesslam.train.laplace_correction`) and the grids and
defaults of :mod:`~bayesslam.train.settings`. scikit-learn is imported only
inside this package.
"""

from bayesslam.train.checkpoint import CheckpointError, remove_checkpoint, training_set_hash
from bayesslam.train.chunk import assign_folds, standardize
from bayesslam.train.error_model import ErrorModelFitError, deconvolved_pixel_variance, fit_label_covariance
from bayesslam.train.label_cv import (
    fold_emulators,
    label_cv_calibration,
    label_cv_snr_laws,
    learn_error_model,
    out_of_fold_labels,
    with_label_cv,
)
from bayesslam.train.laplace_correction import learn_laplace_correction
from bayesslam.train.libsvm import rbf_kernel
from bayesslam.train.settings import (
    BACKENDS,
    BATCHED_CV_TOL,
    BATCHED_FINAL_TOL_FACTOR,
    BATCHED_MAX_ITER,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_LABEL_UNITS,
    PRESETS,
    TrainerSettingsError,
    TrainingDataError,
    resolve_grid,
)
from bayesslam.train.trainer import SlamTrainer

__all__ = [
    "BACKENDS",
    "BATCHED_CV_TOL",
    "BATCHED_FINAL_TOL_FACTOR",
    "BATCHED_MAX_ITER",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_LABEL_UNITS",
    "PRESETS",
    "CheckpointError",
    "SlamTrainer",
    "TrainerSettingsError",
    "TrainingDataError",
    "assign_folds",
    "fold_emulators",
    "label_cv_calibration",
    "label_cv_snr_laws",
    "learn_error_model",
    "learn_laplace_correction",
    "ErrorModelFitError",
    "deconvolved_pixel_variance",
    "fit_label_covariance",
    "out_of_fold_labels",
    "rbf_kernel",
    "remove_checkpoint",
    "resolve_grid",
    "standardize",
    "training_set_hash",
    "with_label_cv",
]

"""The train stage: one RBF support vector regression per pixel, hyperparameters by cross-validation.

:class:`SlamTrainer` (:mod:`~bayesslam.train.trainer`) is the scikit-learn-style
estimator; it runs either backend on chunks of pixels
(:mod:`~bayesslam.train.chunk`): scikit-learn's libsvm
(:mod:`~bayesslam.train.libsvm`, the reference) or the batched JAX solver
(:mod:`~bayesslam.train.batched_svr`, :mod:`~bayesslam.train.batched`), with
resumable checkpoints (:mod:`~bayesslam.train.checkpoint`) and the grids and
defaults of :mod:`~bayesslam.train.settings`. scikit-learn is imported only
inside this package.
"""

from bayesslam.train.checkpoint import CheckpointError, training_set_hash
from bayesslam.train.chunk import assign_folds, standardize
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
    "rbf_kernel",
    "resolve_grid",
    "standardize",
    "training_set_hash",
]

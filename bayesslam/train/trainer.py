"""Training SLAM's per-pixel RBF support-vector-regression bank (the only scikit-learn import).

:class:`SlamTrainer` follows scikit-learn's estimator conventions: settings
in ``__init__``, ``fit`` returns ``self``, fitted attributes end in ``_``.

What ``fit`` does, for normalized spectra on one grid:

1. **Standardize** the labels (mean 0, variance 1 over the training stars)
   and each pixel's flux (mean 0, variance 1 over the stars *used* for that
   pixel, i.e. with ``ivar > 0``; a pixel whose flux does not vary keeps
   scale 1).
2. **Cross-validate** one RBF ``sklearn.svm.SVR`` per pixel over a grid of
   ``C``, ``epsilon`` and ``gamma`` with k-fold CV (``KFold`` shuffled with
   ``random_state``; the same folds for every pixel). The score of a grid
   point is the mean over folds of the fold's MSE (standardized units), as
   ``GridSearchCV(scoring="neg_mean_squared_error")`` computes it; the lowest
   wins, ties going to the first grid point in scikit-learn's
   ``ParameterGrid`` order (``C`` slowest, ``gamma`` fastest). CV fits use a
   precomputed kernel matrix shared by all pixels of a chunk (the same
   libsvm problem as ``kernel="rbf"``, computed once per gamma and fold).
3. **Refit** each pixel with its chosen hyperparameters on all its used stars
   with ``SVR(kernel="rbf")``: the emulator reproduces these fits exactly.
4. **Keep** per pixel the hyperparameters, the CV MSE (standardized and
   normalized-flux units), the MSE of every grid point, and the emulator
   variance ``s_j^2``; per training star the out-of-fold predicted spectrum.

``s_j^2`` is the mean squared out-of-fold residual of the chosen
hyperparameters in normalized-flux units, over the stars used for the pixel:
``mean_i (flux_ij - oof_ij)^2``. It is the variance the likelihood adds to
``1 / ivar`` (a systematic offset counts as error, hence the mean square and
not the variance about the mean residual). It includes the training spectra's
own noise, so it is conservative for noisy training sets; ``oof_flux_`` and
the training ivar allow a noise-subtracted estimate.

Stars with ``ivar = 0`` at a pixel are left out of that pixel's
standardization, CV fits and scores, final fit and ``s_j^2``: their dual
coefficient is 0 there. They still get an out-of-fold prediction (from the
fold model that never saw them). A pixel with fewer usable stars than
``max(min_stars_per_pixel, n_folds)`` (or a fold without two usable training
stars) is not trained: the emulator returns its mean flux there, its
``model_variance`` is ``inf`` and ``pixel_mask`` is ``True``.

Grids: ``"auto"`` gamma means ``1 / n_labels`` (scikit-learn's definition).
After resolving it, duplicate grid points are dropped (the paper's grid with
4 labels has ``"auto" = 0.25`` twice): identical fits give identical scores,
and with first-wins ties the chosen hyperparameters are exactly those of the
undeduplicated grid, at 20% less cost.

Training is parallel over chunks of pixels (joblib, ``n_jobs``) with a
progress bar (tqdm), and resumable: with ``checkpoint_dir`` every finished
chunk is written atomically as ``chunk-NNNNN.npz`` (no pickle) next to a
``manifest.json`` holding a hash of the training set and of the settings; a
later ``fit`` with the same data and settings loads the finished chunks and
trains only the rest, a different one is refused with
:class:`CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn import __version__ as _sklearn_version
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from bayesslam._precision import in_float64
from bayesslam.emulator import (
    Emulator,
    SlamModel,
    TrainingSummary,
    build_emulator,
    library_versions,
    utc_now,
)
from bayesslam.errors import SpectrumValidationError
from bayesslam.spectra import check_arrays
from bayesslam.train.batched import CV_RANK_TOL, CVRace, KernelCache
from bayesslam.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    Checkpoint,
    training_set_hash,
)
from bayesslam.train.chunk import (
    CHUNK_ARRAYS,
    assign_folds,
    indexed_chunk,
    standardize,
    train_chunk,
)
from bayesslam.train.settings import (
    BACKENDS,
    BATCHED_CV_TOL,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_LABEL_UNITS,
    TrainerSettingsError,
    TrainingDataError,
    resolve_grid,
)

__all__ = ["SlamTrainer"]

logger = logging.getLogger(__name__)


def _as_2d_float(name: str, value: Any) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TrainingDataError(
            f"{name} cannot be read as one numeric array ({exc}); spectra must share one wavelength grid "
            "(resample them with bayesslam.preparation.prepare first)"
        ) from exc
    if array.ndim != 2:
        raise TrainingDataError(f"{name} must be 2-D (n_star, ...), got shape {array.shape}")
    return array


class _ProgressLog:
    """Log lines of a long training's progress where no progress bar shows (batch jobs, log files).

    At most one line per ``interval`` seconds, and one when the last step is
    done: steps done, elapsed time and the time left at the rate so far.
    """

    def __init__(self, total: int, enabled: bool, interval: float = 60.0) -> None:
        self.total, self.enabled, self.interval = total, enabled, interval
        self.done = 0
        self.start = self.last = time.perf_counter()

    def step(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if not self.enabled or (now - self.last < self.interval and self.done < self.total):
            return
        self.last = now
        elapsed = now - self.start
        left = elapsed / self.done * (self.total - self.done)
        logger.info("SLAM training: %d of %d chunks (%.0f%%), %.0f s so far, about %.0f s left",
                    self.done, self.total, 100.0 * self.done / max(self.total, 1), elapsed, left)


class SlamTrainer(BaseEstimator):
    """Train one RBF SVR per pixel with cross-validated hyperparameters (SLAM).

    Parameters
    ----------
    grid : str or Mapping, default "fast"
        Hyperparameter grid: a key of :data:`PRESETS` (``"paper"``,
        ``"fast"``) or a mapping ``{"C": [...], "epsilon": [...], "gamma":
        [...]}`` (gamma may include ``"auto"`` = 1 / n_labels).
    n_folds : int, default 10
        Number of cross-validation folds (shared by all pixels).
    random_state : int or None, default 0
        Seed of the fold shuffling.
    backend : {"libsvm", "batched"}, default "libsvm"
        ``"libsvm"``: scikit-learn's ``SVR`` (libsvm), one problem at a time,
        parallel over chunks of pixels (the reference). ``"batched"``: the
        solver of :mod:`bayesslam.train.batched_svr`, all pixels of a chunk together
        per (gamma, fold) with libsvm's stopping rule (the final fits at
        ``tol / 100``, so that they are the exact SVRs), in JAX
        (multithreaded, and on a GPU when JAX has one; ``n_jobs`` is
        ignored). Same folds, grid, scores and tie-breaking; see
        ``docs/training.md`` for its agreement with libsvm and its cost.
    tol : float, default 1e-3
        Stopping tolerance on libsvm's maximal-violating-pair gap
        (scikit-learn's default), for both backends.
    cv_tol : float or None, default None
        Tolerance of the cross-validation solves (the final fits always use
        ``tol``). None: ``tol`` for libsvm, :data:`BATCHED_CV_TOL` (3e-2) for
        the batched backend, several times cheaper than ``1e-3`` (float32
        instead of float64, fewer iterations) while the CV MSE stays within
        ~0.3% of the exact solutions' at every grid point
        (``docs/training.md``; costs in ``docs/benchmarks.md``); set it to
        ``tol`` to cross-validate at libsvm's tolerance.
    cv_race : bool or None, default None
        Race the grid points through the folds (:class:`~bayesslam.train.batched.CVRace`):
        after the third fold, a pixel's point whose partial CV MSE exceeds its
        best point's by more than 2% and 3 standard errors of the paired
        fold differences is not scored on the remaining folds; the choice is
        made among the points scored on every fold, and dropped points get a
        NaN ``cv_grid_mse_``. None: on for the batched backend (it saves
        time on grids with many C and epsilon values per gamma, such as the
        paper grid, and none on the fast grid; ``docs/training.md`` gives its
        agreement with the full grid, ``docs/benchmarks.md`` its measured
        gain), off for libsvm (which does not race). False: score every point
        on every fold.
    cache_size : float, default 200
        libsvm kernel cache in MB for the final ``kernel="rbf"`` fits.
    shrinking : bool, default True
        libsvm shrinking heuristic.
    max_iter : int, default -1
        Iteration limit per problem (-1: none for libsvm,
        :data:`BATCHED_MAX_ITER` ADMM iterations for the batched backend).
    min_stars_per_pixel : int, default 10
        Fewest usable (ivar > 0) stars a pixel needs to be trained (at least
        ``n_folds`` are always required).
    chunk_size : int or None, default None
        Pixels per task and per checkpoint file (None:
        :data:`DEFAULT_CHUNK_SIZE` of the backend, 32 for libsvm, 256 for batched).
    n_jobs : int or None, default 1
        Parallel workers (joblib; -1 = all cores).
    checkpoint_dir : str, os.PathLike or None, default None
        Directory for resumable training (see the module docstring).
    progress : bool, default True
        Show a tqdm progress bar; without one (e.g. the command line when
        stderr is not a terminal), log a progress line with the time left at
        most once a minute.

    Attributes
    ----------
    label_names_, label_units_ : tuple of str
    wave_ : numpy.ndarray, shape (n_pix,)
        Wavelength grid of the training spectra.
    training_labels_ : numpy.ndarray, shape (n_star, n_label)
        Training labels (physical units).
    label_mean_, label_scale_ : numpy.ndarray, shape (n_label,)
    train_x_ : numpy.ndarray, shape (n_star, n_label)
        Standardized labels, as the SVRs saw them.
    flux_mean_, flux_scale_ : numpy.ndarray, shape (n_pix,)
        Per-pixel flux standardization (over the stars used).
    param_grid_ : numpy.ndarray, shape (n_grid, 3)
        Resolved grid (C, epsilon, gamma).
    fold_ : numpy.ndarray of int, shape (n_star,)
        CV fold of each star.
    C_, epsilon_, gamma_ : numpy.ndarray, shape (n_pix,)
        Chosen hyperparameters (NaN on untrained pixels).
    best_index_ : numpy.ndarray of int, shape (n_pix,)
        Row of ``param_grid_`` chosen (-1 on untrained pixels).
    cv_mse_, cv_mse_flux_ : numpy.ndarray, shape (n_pix,)
        CV MSE of the chosen point, standardized and normalized-flux units.
    cv_grid_mse_ : numpy.ndarray, shape (n_pix, n_grid)
        CV MSE (standardized) of every grid point (NaN where ``cv_race``
        dropped the point).
    model_variance_ : numpy.ndarray, shape (n_pix,)
        ``s_j^2``: mean squared out-of-fold residual, normalized-flux units
        (``inf`` on untrained pixels).
    oof_flux_ : numpy.ndarray, shape (n_star, n_pix)
        Out-of-fold predicted spectra (normalized flux).
    dual_coef_ : numpy.ndarray, shape (n_pix, n_star)
        Dense dual coefficients of the final fits (standardized units).
    intercept_ : numpy.ndarray, shape (n_pix,)
    n_used_ : numpy.ndarray of int, shape (n_pix,)
        Stars used per pixel.
    pixel_trained_ : numpy.ndarray of bool, shape (n_pix,)
    training_hash_ : str
        sha256 of the training set (labels, flux, ivar).
    settings_ : dict
        The settings that determine the result (resolved grid, folds,
        random_state, libsvm options, scikit-learn version), as stored in
        checkpoints and model metadata.
    normalization_ : dict
        Normalization settings of the spectra (from :meth:`fit_prepared`;
        empty after :meth:`fit`).
    n_chunks_resumed_ : int
        Chunks read from the checkpoint instead of trained.
    """

    def __init__(
        self,
        grid: str | Mapping[str, Sequence[Any]] = "fast",
        *,
        backend: str = "libsvm",
        n_folds: int = 10,
        random_state: int | None = 0,
        tol: float = 1e-3,
        cv_tol: float | None = None,
        cv_race: bool | None = None,
        cache_size: float = 200.0,
        shrinking: bool = True,
        max_iter: int = -1,
        min_stars_per_pixel: int = 10,
        chunk_size: int | None = None,
        n_jobs: int | None = 1,
        checkpoint_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> None:
        self.grid = grid
        self.backend = backend
        self.n_folds = n_folds
        self.random_state = random_state
        self.tol = tol
        self.cv_tol = cv_tol
        self.cv_race = cv_race
        self.cache_size = cache_size
        self.shrinking = shrinking
        self.max_iter = max_iter
        self.min_stars_per_pixel = min_stars_per_pixel
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress

    @property
    def _cv_tol(self) -> float:
        if self.cv_tol is not None:
            return float(self.cv_tol)
        return BATCHED_CV_TOL if self.backend == "batched" else float(self.tol)

    @property
    def _cv_race(self) -> CVRace | None:
        racing = self.backend == "batched" if self.cv_race is None else bool(self.cv_race)
        return CVRace() if racing else None

    @property
    def _chunk_size(self) -> int:
        return DEFAULT_CHUNK_SIZE[self.backend] if self.chunk_size is None else int(self.chunk_size)

    def _check_settings(self) -> None:
        if self.backend not in BACKENDS:
            raise TrainerSettingsError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.chunk_size is not None and (isinstance(self.chunk_size, bool)
                                            or not isinstance(self.chunk_size, (int, np.integer))):
            raise TrainerSettingsError(f"chunk_size must be an integer or None, got {self.chunk_size!r}")
        for name in ("n_folds", "min_stars_per_pixel", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TrainerSettingsError(f"{name} must be an integer, got {value!r}")
        if self.n_folds < 2:
            raise TrainerSettingsError(f"n_folds must be at least 2, got {self.n_folds}")
        if self._chunk_size < 1 or self.min_stars_per_pixel < 1:
            raise TrainerSettingsError("chunk_size and min_stars_per_pixel must be positive")
        if not (np.isfinite(self.tol) and self.tol > 0):
            raise TrainerSettingsError(f"tol must be positive, got {self.tol!r}")
        if self.cv_tol is not None and not (np.isfinite(self.cv_tol) and self.cv_tol > 0):
            raise TrainerSettingsError(f"cv_tol must be positive or None, got {self.cv_tol!r}")
        if self.cv_race is not None and not isinstance(self.cv_race, (bool, np.bool_)):
            raise TrainerSettingsError(f"cv_race must be True, False or None, got {self.cv_race!r}")
        if self.cv_race and self.backend != "batched":
            raise TrainerSettingsError("cv_race needs backend='batched' (the libsvm backend scores every point)")
        if not (np.isfinite(self.cache_size) and self.cache_size > 0):
            raise TrainerSettingsError(f"cache_size must be positive, got {self.cache_size!r}")
        if self.random_state is not None and not isinstance(self.random_state, (int, np.integer)):
            raise TrainerSettingsError(
                f"random_state must be an int or None (a RandomState instance cannot be hashed for "
                f"checkpoints), got {self.random_state!r}"
            )

    def _validate(
        self,
        labels: Any,
        flux: Any,
        ivar: Any,
        label_names: Sequence[str] | None,
        label_units: Sequence[str] | None,
        wave: Any,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...], np.ndarray]:
        if isinstance(labels, Mapping):
            if label_names is None:
                label_names = list(labels)
            missing = [name for name in label_names if name not in labels]
            if missing:
                raise TrainingDataError(f"labels have no columns {missing}; they have {list(labels)}")
            labels = np.column_stack([np.asarray(labels[name], dtype=np.float64) for name in label_names])
        labels = _as_2d_float("labels", labels)
        flux = _as_2d_float("flux", flux)
        ivar = _as_2d_float("ivar", ivar)
        n_star, n_label = labels.shape
        if flux.shape != ivar.shape:
            raise TrainingDataError(
                f"flux {flux.shape} and ivar {ivar.shape} differ in shape; spectra must share one grid"
            )
        if flux.shape[0] != n_star:
            raise TrainingDataError(f"{n_star} label rows but {flux.shape[0]} spectra")
        n_pix = flux.shape[1]
        if n_pix == 0 or n_label == 0:
            raise TrainingDataError("no pixels or no labels to train on")
        if not np.all(np.isfinite(labels)):
            bad = np.unique(np.nonzero(~np.isfinite(labels))[0])
            raise TrainingDataError(
                f"labels have NaN or infinite values for {bad.size} stars (first rows {bad[:5].tolist()}); "
                "drop those stars"
            )
        if n_star < self.n_folds:
            raise TrainingDataError(
                f"{n_star} stars are fewer than n_folds={self.n_folds}; add stars or lower n_folds"
            )
        flat = np.ptp(labels, axis=0) == 0
        if np.any(flat):
            raise TrainingDataError(
                f"label columns {np.flatnonzero(flat).tolist()} have zero spread (one value for all stars); "
                "drop them from the labels"
            )
        with np.errstate(invalid="ignore"):
            if not np.all(np.isfinite(flux) | ~(ivar > 0)):
                raise TrainingDataError("flux is not finite at pixels with ivar > 0; set ivar = 0 there")
        if label_names is None:
            label_names = [f"label_{i}" for i in range(n_label)]
        label_names = tuple(str(name) for name in label_names)
        if len(label_names) != n_label or len(set(label_names)) != n_label:
            raise TrainingDataError(f"need {n_label} distinct label names, got {list(label_names)}")
        if label_units is None:
            label_units = [DEFAULT_LABEL_UNITS.get(name, "") for name in label_names]
        label_units = tuple(str(unit) for unit in label_units)
        if len(label_units) != n_label:
            raise TrainingDataError(f"need {n_label} label units, got {list(label_units)}")
        if wave is None:
            raise TrainingDataError(
                "the spectra's wavelength grid is required (wave=..., vacuum Angstrom): a model records the grid "
                "it was trained on, so that spectra on another grid are refused"
            )
        try:
            names = ("wave", "flux", "ivar", "mask")
            wave, flux, ivar, _ = check_arrays(wave, flux, ivar, what="training spectra", names=names)
        except SpectrumValidationError as exc:
            raise TrainingDataError(str(exc)) from exc
        return labels, flux, ivar, label_names, label_units, wave

    def _settings_record(self, grid: np.ndarray) -> dict[str, Any]:
        return {
            "grid": grid.tolist(),
            "grid_preset": self.grid if isinstance(self.grid, str) else None,
            "backend": str(self.backend),
            "n_folds": int(self.n_folds),
            "random_state": None if self.random_state is None else int(self.random_state),
            "tol": float(self.tol),
            "cv_tol": self._cv_tol,
            # the batched backend's CV kernel truncation changes its scores: part of the checkpoint key
            "cv_rank_tol": CV_RANK_TOL if self.backend == "batched" else None,
            "cv_race": None if self._cv_race is None else self._cv_race.to_dict(),
            "cache_size": float(self.cache_size),
            "shrinking": bool(self.shrinking),
            "max_iter": int(self.max_iter),
            "min_stars_per_pixel": int(self.min_stars_per_pixel),
            "scikit-learn": _sklearn_version,
        }

    @in_float64
    def fit(
        self,
        labels: Any,
        flux: Any,
        ivar: Any,
        *,
        label_names: Sequence[str] | None = None,
        label_units: Sequence[str] | None = None,
        wave: Any = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> "SlamTrainer":
        """Train the SVR bank on normalized spectra on one grid.

        Parameters
        ----------
        labels : array_like, shape (n_star, n_label), or Mapping of name -> (n_star,)
            Training labels in physical units (a mapping gives the names).
        flux, ivar : array_like, shape (n_star, n_pix)
            Normalized flux and inverse variance. ``ivar = 0`` leaves a star
            out of that pixel's fit; flux may be NaN there.
        label_names, label_units : sequence of str, optional
            Label names (default ``label_0...``) and units (default from
            :data:`DEFAULT_LABEL_UNITS`, else empty).
        wave : array_like, shape (n_pix,)
            The wavelength grid of the spectra (vacuum Angstrom); required.
        callback : callable, optional
            ``callback(n_chunks_done, n_chunks)`` after each finished chunk
            (after it is checkpointed). An exception raised by it stops the
            training; finished chunks stay in ``checkpoint_dir``.

        Returns
        -------
        SlamTrainer
            ``self``.

        Raises
        ------
        TrainingDataError
            On NaN labels, fewer stars than folds, a label with zero spread,
            flux/ivar/label/wave shapes that disagree, negative or non-finite
            ivar, non-finite flux where ``ivar > 0``, or no trainable pixel.
        TrainerSettingsError
            On invalid settings.
        CheckpointError
            If ``checkpoint_dir`` holds another training's checkpoint.
        """
        start_time = time.perf_counter()
        self._check_settings()
        labels, flux, ivar, label_names, label_units, wave = self._validate(
            labels, flux, ivar, label_names, label_units, wave
        )
        n_star, n_label = labels.shape
        n_pix = flux.shape[1]
        grid = resolve_grid(self.grid, n_label)
        x, label_mean, label_scale = standardize(labels)
        fold = assign_folds(n_star, self.n_folds, self.random_state)
        training_hash = training_set_hash(labels, flux, ivar)
        flux = np.where(ivar > 0, flux, 0.0)
        settings = self._settings_record(grid)
        worker_keys = ("backend", "n_folds", "tol", "cv_tol", "cv_rank_tol", "cv_race", "cache_size", "shrinking",
                       "max_iter")
        worker_settings = {key: settings[key] for key in worker_keys}
        worker_settings["min_stars"] = max(int(self.min_stars_per_pixel), int(self.n_folds))
        chunk_size = self._chunk_size
        bounds = [(start, min(start + chunk_size, n_pix)) for start in range(0, n_pix, chunk_size)]
        results: dict[int, dict[str, np.ndarray]] = {}
        checkpoint = None
        if self.checkpoint_dir is not None:
            manifest = {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "training_set_sha256": training_hash,
                "settings": settings,
                "chunk_size": chunk_size,
                "n_pixels": n_pix,
                "n_chunks": len(bounds),
            }
            key = hashlib.sha256(
                json.dumps({k: manifest[k] for k in sorted(manifest)}, sort_keys=True).encode()
            ).hexdigest()
            checkpoint = Checkpoint(Path(self.checkpoint_dir), key, manifest)
            checkpoint.open()
            for index, (start, stop) in enumerate(bounds):
                chunk = checkpoint.load(index, start, stop)
                if chunk is not None:
                    results[index] = chunk
        self.n_chunks_resumed_ = len(results)
        todo = [index for index in range(len(bounds)) if index not in results]
        logger.info(
            "training %d pixels x %d stars, %d labels, %d grid points, %d folds: %d of %d chunks to train",
            n_pix, n_star, n_label, len(grid), self.n_folds, len(todo), len(bounds),
        )
        done_pixels = sum(bounds[i][1] - bounds[i][0] for i in results)

        progress_log = _ProgressLog(len(todo), enabled=not self.progress)

        def finish(index: int, result: dict[str, np.ndarray]) -> None:
            if checkpoint is not None:
                checkpoint.save(index, *bounds[index], result)
            results[index] = result
            progress_log.step()
            if callback is not None:
                callback(len(results), len(bounds))

        if self.backend == "batched":
            # one process: JAX uses the cores; the kernels' eigendecompositions are shared by the chunks
            cache = KernelCache(x, fold, rank_tol=settings["cv_rank_tol"])
            steps = len(np.unique(grid[:, 2])) * int(self.n_folds)
            bar = tqdm(total=len(todo) * steps, unit="step", desc="SLAM training (batched; fold x gamma x chunk)",
                       disable=not self.progress)
            with bar:
                for index in todo:
                    lo, hi = bounds[index]
                    finish(index, train_chunk(x, flux[:, lo:hi], ivar[:, lo:hi], fold, grid, worker_settings,
                                               cache=cache, step_callback=lambda: bar.update(1)))
        else:
            bar = tqdm(total=n_pix, initial=done_pixels, unit="px", desc="SLAM training", disable=not self.progress)
            with bar:
                if todo:
                    tasks = (
                        delayed(indexed_chunk)(
                            index, x, flux[:, bounds[index][0] : bounds[index][1]],
                            ivar[:, bounds[index][0] : bounds[index][1]], fold, grid, worker_settings,
                        )
                        for index in todo
                    )
                    for index, result in Parallel(n_jobs=self.n_jobs, return_as="generator_unordered")(tasks):
                        finish(index, result)
                        bar.update(bounds[index][1] - bounds[index][0])

        merged = {
            name: np.concatenate([results[i][name] for i in range(len(bounds))], axis=1 if name == "oof_flux" else 0)
            for name in CHUNK_ARRAYS
        }
        logger.info("trained %d pixels in %.1f s", n_pix, time.perf_counter() - start_time)
        trained = merged["trained"].astype(bool)
        if not trained.any():
            raise TrainingDataError(
                f"no pixel has {worker_settings['min_stars']} stars with ivar > 0 spread over the folds; "
                "nothing could be trained"
            )
        if not trained.all():
            logger.warning("%d of %d pixels had too few usable stars and were not trained", (~trained).sum(), n_pix)
        gamma = merged["gamma"]
        values, counts = np.unique(gamma[trained], return_counts=True)
        gamma = np.where(trained, gamma, values[np.argmax(counts)])

        self.label_names_ = label_names
        self.label_units_ = label_units
        self.wave_ = wave
        self.training_labels_ = labels
        self.label_mean_ = label_mean
        self.label_scale_ = label_scale
        self.train_x_ = x
        self.param_grid_ = grid
        self.fold_ = fold
        self.flux_mean_ = merged["flux_mean"]
        self.flux_scale_ = merged["flux_scale"]
        self.pixel_trained_ = trained
        self.n_used_ = merged["n_used"].astype(np.int64)
        self.best_index_ = merged["best_index"].astype(np.int64)
        self.C_ = merged["C"]
        self.epsilon_ = merged["epsilon"]
        self.gamma_ = gamma
        self.cv_mse_ = merged["cv_mse"]
        self.cv_mse_flux_ = merged["cv_mse"] * merged["flux_scale"] ** 2
        self.cv_grid_mse_ = merged["cv_grid_mse"]
        self.dual_coef_ = merged["dual_coef"]
        self.intercept_ = merged["intercept"]
        self.model_variance_ = merged["model_variance"]
        self.oof_flux_ = merged["oof_flux"]
        self.training_hash_ = training_hash
        self.settings_ = settings
        self.normalization_ = {}
        return self

    def fit_prepared(
        self,
        labels: Any,
        prepared: Any,
        *,
        label_names: Sequence[str] | None = None,
        label_units: Sequence[str] | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> "SlamTrainer":
        """Train on a :class:`bayesslam.preparation.prepare.PreparedSpectra` (keeps its normalization settings).

        Parameters
        ----------
        labels : array_like or Mapping
            Training labels, one row per prepared spectrum, in order.
        prepared : PreparedSpectra
            Normalized spectra on one grid (``prepared.spectra``) and the
            settings that normalized them (``prepared.settings``).
        label_names, label_units, callback
            As in :meth:`fit`.

        Returns
        -------
        SlamTrainer
        """
        batch = prepared.spectra
        self.fit(
            labels,
            batch.flux,
            batch.ivar,
            label_names=label_names,
            label_units=label_units,
            wave=batch.wave,
            callback=callback,
        )
        self.normalization_ = dict(prepared.settings)
        return self

    @in_float64
    def to_emulator(self, dtype: Any = np.float64) -> Emulator:
        """The trained bank as a JAX :class:`~bayesslam.emulator.Emulator`.

        Parameters
        ----------
        dtype : dtype, optional
            Floating dtype (default float64).
        """
        check_is_fitted(self, "dual_coef_")
        return build_emulator(**self._emulator_arrays(), label_names=self.label_names_,
                              label_units=self.label_units_, dtype=dtype)

    @in_float64
    def predict(self, labels: Any) -> np.ndarray:
        """Normalized spectra at ``labels``, as the trained SVRs predict them (computed in float64).

        Parameters
        ----------
        labels : array_like, shape (n_label,) or (n_star, n_label)
            Labels in physical units, in the order of ``label_names_``.

        Returns
        -------
        numpy.ndarray, shape (n_pix,) or (n_star, n_pix)
            Normalized flux (the pixels' mean flux on untrained pixels).
        """
        check_is_fitted(self, "dual_coef_")
        return np.asarray(self.to_emulator()(np.asarray(labels, dtype=np.float64)))

    def _emulator_arrays(self) -> dict[str, np.ndarray]:
        return {
            "dual_coef": self.dual_coef_,
            "intercept": self.intercept_,
            "gamma": self.gamma_,
            "train_x": self.train_x_,
            "label_mean": self.label_mean_,
            "label_scale": self.label_scale_,
            "flux_mean": self.flux_mean_,
            "flux_scale": self.flux_scale_,
            "model_variance": self.model_variance_,
            "wave": self.wave_,
            "training_labels": self.training_labels_,
            "pixel_mask": ~self.pixel_trained_,
        }

    def to_model(
        self,
        *,
        normalization: Mapping[str, Any] | None = None,
        description: str = "",
        **extra: Any,
    ) -> SlamModel:
        """Bundle the trained bank, its training summary and metadata into a :class:`SlamModel`.

        Parameters
        ----------
        normalization : Mapping, optional
            Continuum-normalization settings of the training spectra (e.g.
            ``ContinuumSettings().to_dict()``); default: those recorded by
            :meth:`fit_prepared`, else empty.
        description : str
            Free text stored in the metadata.
        **extra
            Further JSON-serializable metadata, stored under ``"extra"``.

        Returns
        -------
        SlamModel
        """
        check_is_fitted(self, "dual_coef_")
        normalization = dict(self.normalization_ if normalization is None else normalization)
        lo = self.training_labels_.min(axis=0)
        hi = self.training_labels_.max(axis=0)
        trained = self.pixel_trained_
        metadata = {
            "created": utc_now(),
            "description": str(description),
            "label_names": list(self.label_names_),
            "label_units": list(self.label_units_),
            "n_pixels": int(self.dual_coef_.shape[0]),
            "n_train": int(self.dual_coef_.shape[1]),
            "n_trained_pixels": int(trained.sum()),
            "normalization": normalization,
            "training_domain": {
                name: {"min": float(lo[i]), "max": float(hi[i])} for i, name in enumerate(self.label_names_)
            },
            "training_set_sha256": self.training_hash_,
            "library_versions": library_versions(),
            "trainer": {"class": f"{type(self).__module__}.{type(self).__name__}", **self.settings_},
            "cv_summary": {
                "median_cv_mse": float(np.median(self.cv_mse_[trained])),
                "median_cv_mse_flux": float(np.median(self.cv_mse_flux_[trained])),
                "median_model_variance": float(np.median(self.model_variance_[trained])),
            },
            "extra": dict(extra),
        }
        training = TrainingSummary(
            C=self.C_,
            epsilon=self.epsilon_,
            cv_mse=self.cv_mse_,
            cv_mse_flux=self.cv_mse_flux_,
            param_grid=self.param_grid_,
            cv_grid_mse=self.cv_grid_mse_,
            oof_flux=self.oof_flux_,
            fold=self.fold_,
            n_used=self.n_used_,
        )
        return SlamModel(emulator_arrays=self._emulator_arrays(), training=training, metadata=metadata)

"""Trained SLAM models on disk: arrays plus JSON metadata in one ``.npz``, checksummed.

A :class:`SlamModel` bundles what inference needs (the numpy arrays of the
:class:`~bayesslam.emulator.Emulator`) with what training learnt about itself
(:class:`TrainingSummary`: per-pixel hyperparameters and cross-validation
scores, out-of-fold predicted spectra) and JSON metadata (label names and
units, normalization settings, training domain, training-set hash, library
versions, trainer settings, creation date).

File layout (one compressed ``numpy.savez_compressed`` archive; read with
``allow_pickle=False``, so loading runs no code and imports no scikit-learn):

``__metadata__``
    uint8 array: the UTF-8 JSON metadata. It holds ``format``
    (:data:`MODEL_FORMAT`), ``schema_version`` (:data:`SCHEMA_VERSION`) and
    ``arrays``, the name, dtype and shape of every other array.
``__checksum__``
    uint8 array: the hex sha256 of the metadata and all arrays
    (:func:`model_checksum`), verified on load.
``emulator/<name>``
    The arrays of :data:`bayesslam.emulator.EMULATOR_ARRAYS`, float64
    (``pixel_mask`` bool), dual coefficients in pixel order.
``training/<name>``
    The arrays of :class:`TrainingSummary`.
``label_cv/<name>``
    Optional: the arrays of :class:`OutOfFoldLabels` (label-level
    cross-validation of the training stars).
``error_model/pixel_variance``, ``error_model/label_covariance``
    Optional (schema 2): the emulator's error model
    (:class:`~bayesslam.emulator.error_model.EmulatorErrorModel`), with its
    settings in the metadata ``error_model``. A model that carries one uses
    it in every likelihood; version-1 files (which never do) still load and
    use the diagonal likelihood ``1/ivar + s_j^2``, said once in the log.

The metadata may carry ``calibration``, the model's measured label-error
calibration (:class:`bayesslam.calibration.ModelCalibration`), and
``snr_laws``, its own SNR laws (:class:`bayesslam.calibration.SnrLaw` per
label), validated on load like everything else.

A file that is truncated, damaged, of another format or schema version, or
edited by hand is refused with :class:`ModelFileError`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import logging
import os
import platform
import struct
import zipfile
import zlib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bayesslam._files import atomic_write
from bayesslam._precision import in_float64
from bayesslam.calibration import CalibrationError, ModelCalibration, SnrLaw
from bayesslam.emulator.error_model import EmulatorErrorModel, ErrorModelError
from bayesslam.emulator.laplace_correction import LaplaceCorrection
from bayesslam.emulator.svr_bank import (
    EMULATOR_ARRAYS,
    Emulator,
    EmulatorError,
    build_emulator,
)
from bayesslam.errors import CorruptFileError

__all__ = [
    "MODEL_FORMAT",
    "SCHEMA_VERSION",
    "ModelFileError",
    "TrainingSummary",
    "OutOfFoldLabels",
    "SlamModel",
    "library_versions",
    "model_checksum",
    "save_model",
    "load_model",
    "utc_now",
]

logger = logging.getLogger(__name__)

#: Format name stored in every model file.
MODEL_FORMAT: str = "bayesslam.slam-model"
#: Version of the file layout that this module writes and reads.
SCHEMA_VERSION: int = 2
#: Older schema versions this module still reads.
READABLE_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)

_METADATA_KEY = "__metadata__"
_CHECKSUM_KEY = "__checksum__"
_EMULATOR_PREFIX = "emulator/"
_TRAINING_PREFIX = "training/"
_LABEL_CV_PREFIX = "label_cv/"
_ERROR_MODEL_PREFIX = "error_model/"
_REQUIRED_METADATA = (
    "format",
    "schema_version",
    "arrays",
    "created",
    "label_names",
    "label_units",
    "training_set_sha256",
    "library_versions",
)


#: Fixed part of a zip local file header.
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


class ModelFileError(CorruptFileError):
    """A model file cannot be used: damaged, truncated, edited, of another format or schema version."""


@dataclass(frozen=True, eq=False)
class TrainingSummary:
    """What training learnt about itself, per pixel and per training star.

    Attributes
    ----------
    C, epsilon : numpy.ndarray, shape (n_pix,)
        Chosen SVR hyperparameters (the gamma of each pixel is the
        emulator's ``gamma``); NaN on untrained pixels.
    cv_mse : numpy.ndarray, shape (n_pix,)
        Cross-validated MSE of the chosen hyperparameters, standardized flux
        units (mean over folds of the per-fold MSE).
    cv_mse_flux : numpy.ndarray, shape (n_pix,)
        The same in normalized-flux units (``cv_mse * flux_scale**2``).
    param_grid : numpy.ndarray, shape (n_grid, 3)
        The hyperparameter grid searched: columns C, epsilon, gamma.
    cv_grid_mse : numpy.ndarray, shape (n_pix, n_grid)
        Cross-validated MSE (standardized units) of every grid point (NaN on
        untrained pixels and where the batched trainer's race dropped a point).
    oof_flux : numpy.ndarray, shape (n_train, n_pix)
        Out-of-fold predicted spectra (normalized flux) of the training stars
        with each pixel's chosen hyperparameters: star ``i`` predicted by the
        SVR trained without its fold. NaN on untrained pixels.
    fold : numpy.ndarray of int, shape (n_train,)
        Cross-validation fold of each training star.
    n_used : numpy.ndarray of int, shape (n_pix,)
        Number of stars (ivar > 0) each pixel was trained on.
    """

    C: np.ndarray
    epsilon: np.ndarray
    cv_mse: np.ndarray
    cv_mse_flux: np.ndarray
    param_grid: np.ndarray
    cv_grid_mse: np.ndarray
    oof_flux: np.ndarray
    fold: np.ndarray
    n_used: np.ndarray

    def __post_init__(self) -> None:
        n_pix = np.shape(self.C)[0] if np.ndim(self.C) == 1 else -1
        n_train = np.shape(self.fold)[0] if np.ndim(self.fold) == 1 else -1
        expected = {
            "C": (n_pix,),
            "epsilon": (n_pix,),
            "cv_mse": (n_pix,),
            "cv_mse_flux": (n_pix,),
            "n_used": (n_pix,),
            "oof_flux": (n_train, n_pix),
            "fold": (n_train,),
        }
        for name, shape in expected.items():
            if np.shape(getattr(self, name)) != shape or min(shape) < 0:
                raise ModelFileError(
                    f"training summary {name!r} has shape {np.shape(getattr(self, name))}, expected {shape}"
                )
        grid = np.shape(self.param_grid)
        if len(grid) != 2 or grid[1] != 3 or np.shape(self.cv_grid_mse) != (n_pix, grid[0]):
            raise ModelFileError(
                f"param_grid {grid} and cv_grid_mse {np.shape(self.cv_grid_mse)} do not match {n_pix} pixels"
            )

    def arrays(self) -> dict[str, np.ndarray]:
        """The summary's arrays by field name."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True, eq=False)
class OutOfFoldLabels:
    """Label-level cross-validation: every training star fitted by the model trained without its fold.

    With the folds and per-pixel hyperparameters of training, each fold's
    SVR bank is refitted on the other folds' stars; the stars of the fold are
    then fitted (MAP + Laplace, the model's box prior) with it. Their labels
    against the training labels measure the model's label errors on stars it
    has not seen, at the training set's own SNR (for a model trained on real
    labelled spectra: on real spectra).

    Attributes
    ----------
    labels, sigma : numpy.ndarray, shape (n_train, n_label)
        Out-of-fold MAP labels and Laplace sigmas (NaN where the fit failed).
    status : numpy.ndarray of int, shape (n_train,)
        :class:`bayesslam.infer.FitStatus` code of each fit.
    snr : numpy.ndarray, shape (n_train,)
        SNR of each training spectrum (median of ``flux * sqrt(ivar)`` over
        its usable pixels).
    """

    labels: np.ndarray
    sigma: np.ndarray
    status: np.ndarray
    snr: np.ndarray

    def __post_init__(self) -> None:
        shape = np.shape(self.labels)
        if len(shape) != 2 or min(shape) < 1:
            raise ModelFileError(f"out-of-fold labels have shape {shape}, expected (n_train, n_label)")
        expected = {"sigma": shape, "status": shape[:1], "snr": shape[:1]}
        for name, want in expected.items():
            if np.shape(getattr(self, name)) != want:
                raise ModelFileError(f"out-of-fold {name!r} has shape {np.shape(getattr(self, name))}, expected {want}")
        if np.asarray(self.status).dtype.kind not in "iu":
            raise ModelFileError("out-of-fold 'status' must be integer fit-status codes")

    def arrays(self) -> dict[str, np.ndarray]:
        """The record's arrays by field name."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True, eq=False)
class SlamModel:
    """A trained SLAM model: emulator arrays, training summary and metadata.

    Attributes
    ----------
    emulator_arrays : Mapping[str, numpy.ndarray]
        The arrays named in :data:`bayesslam.emulator.EMULATOR_ARRAYS`
        (float64 numpy, independent of JAX's precision setting).
    training : TrainingSummary
        Per-pixel hyperparameters, CV scores, out-of-fold spectra.
    metadata : Mapping[str, Any]
        JSON-serializable metadata; ``label_names`` and ``label_units`` are
        required.
    label_cv : OutOfFoldLabels, optional
        Label-level cross-validation of the training stars (None: not run).
    error_model : EmulatorErrorModel, optional
        The emulator's error model, learnt from the label-level CV (None:
        the likelihood is diagonal with the out-of-fold variance ``s_j^2``).

    Notes
    -----
    :attr:`emulator` is a float64 :class:`~bayesslam.emulator.Emulator`, built
    once (in a scoped 64-bit JAX context, whatever the global setting) and
    cached. bayesslam's functions run it in 64 bits; in your own JAX code, call
    it inside :func:`bayesslam.float64` (or with ``jax_enable_x64`` on), else
    JAX computes it in float32. :meth:`build_emulator` builds one of any
    dtype; :meth:`predict` gives numpy spectra.
    """

    emulator_arrays: Mapping[str, np.ndarray]
    training: TrainingSummary
    metadata: Mapping[str, Any]
    label_cv: OutOfFoldLabels | None = None
    error_model: EmulatorErrorModel | None = None

    def __post_init__(self) -> None:
        missing = set(EMULATOR_ARRAYS) - set(self.emulator_arrays)
        extra = set(self.emulator_arrays) - set(EMULATOR_ARRAYS)
        if missing or extra:
            raise ModelFileError(f"emulator arrays: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for key in ("label_names", "label_units"):
            if key not in self.metadata:
                raise ModelFileError(f"model metadata lacks {key!r}")
        n_pix = np.shape(self.emulator_arrays["intercept"])
        if np.shape(self.training.C) != n_pix:
            raise ModelFileError(
                f"training summary covers {np.shape(self.training.C)} pixels, the emulator {n_pix}"
            )
        if self.label_cv is not None:
            want = (np.shape(self.training.fold)[0], len(self.metadata["label_names"]))
            if np.shape(self.label_cv.labels) != want:
                raise ModelFileError(
                    f"out-of-fold labels have shape {np.shape(self.label_cv.labels)}, expected {want} "
                    "(training stars, labels)"
                )
        if self.error_model is not None:
            try:
                self.error_model.check_shape(len(self.training.C), tuple(self.metadata["label_names"]))
            except ErrorModelError as exc:
                raise ModelFileError(f"error model: {exc}") from exc
        if self.metadata.get("calibration") is not None:
            _read_calibration(self.metadata["calibration"], self.metadata["label_names"])
        if self.metadata.get("snr_laws") is not None:
            _read_snr_laws(self.metadata["snr_laws"], self.metadata["label_names"])
        if self.metadata.get("laplace_correction") is not None:
            _read_laplace_correction(self.metadata["laplace_correction"], self.metadata["label_names"])

    @in_float64
    def build_emulator(self, dtype: Any = np.float64) -> Emulator:
        """Build a JAX emulator of the given floating ``dtype`` (default float64)."""
        arrays = dict(self.emulator_arrays)
        label_error = None
        if self.error_model is not None:
            arrays["model_variance"] = self.error_model.pixel_variance
            label_error = self.error_model.label_covariance
        try:
            return build_emulator(
                **arrays,
                label_names=self.metadata["label_names"],
                label_units=self.metadata["label_units"],
                label_error_covariance=label_error,
                dtype=dtype,
            )
        except EmulatorError as exc:
            raise ModelFileError(f"the model's arrays do not make an emulator: {exc}") from exc

    @functools.cached_property
    def emulator(self) -> Emulator:
        """The float64 JAX emulator, built once (see the class notes on precision)."""
        return self.build_emulator(np.float64)

    @in_float64
    def predict(self, labels: Any) -> np.ndarray:
        """Normalized model spectra at ``labels`` (physical units), computed in float64.

        Parameters
        ----------
        labels : array_like, shape (n_label,) or (n_star, n_label)
            Labels in the order and units of :attr:`label_names` / :attr:`label_units`.

        Returns
        -------
        numpy.ndarray, shape (n_pix,) or (n_star, n_pix)
        """
        return np.asarray(self.emulator(np.asarray(labels, dtype=np.float64)))

    @property
    def normalization(self) -> dict[str, Any]:
        """The continuum-normalization settings the training spectra were prepared with (may be empty)."""
        return dict(self.metadata.get("normalization") or {})

    @property
    def label_bounds(self) -> np.ndarray:
        """Per-label minimum and maximum of the training labels, shape (n_label, 2)."""
        labels = self.training_labels
        return np.column_stack([labels.min(axis=0), labels.max(axis=0)])

    @property
    def label_names(self) -> tuple[str, ...]:
        """Label names, in order."""
        return tuple(self.metadata["label_names"])

    @property
    def label_units(self) -> tuple[str, ...]:
        """Label units, in order."""
        return tuple(self.metadata["label_units"])

    @property
    def wave(self) -> np.ndarray:
        """Pixel wavelengths (vacuum Angstrom)."""
        return np.asarray(self.emulator_arrays["wave"])

    @property
    def model_variance(self) -> np.ndarray:
        """Out-of-fold CV residual variance ``s_j^2`` per pixel (normalized-flux units).

        It contains the training spectra's own noise; with an error model the
        emulator's likelihood uses :attr:`EmulatorErrorModel.pixel_variance`
        instead (see :attr:`emulator`).
        """
        return np.asarray(self.emulator_arrays["model_variance"])

    @property
    def training_labels(self) -> np.ndarray:
        """Training labels in physical units, shape (n_train, n_label)."""
        return np.asarray(self.emulator_arrays["training_labels"])

    @property
    def error_calibration(self) -> ModelCalibration | None:
        """The model's measured label-error calibration (metadata ``calibration``), or None.

        See :mod:`bayesslam.calibration`; the record is validated when the
        model is constructed or loaded.
        """
        record = self.metadata.get("calibration")
        return None if record is None else _read_calibration(record, self.label_names)

    def with_calibration(self, calibration: ModelCalibration) -> "SlamModel":
        """A copy of this model whose metadata carries ``calibration`` (save it with :func:`save_model`).

        Raises
        ------
        ModelFileError
            If the calibration's labels differ from the model's.
        """
        if tuple(calibration.label_names) != self.label_names:
            raise ModelFileError(
                f"calibration labels {calibration.label_names} differ from the model's {self.label_names}"
            )
        return dataclasses.replace(self, metadata={**self.metadata, "calibration": calibration.to_metadata()})

    @property
    def snr_laws(self) -> dict[str, SnrLaw] | None:
        """The model's own SNR laws (metadata ``snr_laws``, e.g. from label-level CV), or None."""
        record = self.metadata.get("snr_laws")
        return None if record is None else _read_snr_laws(record, self.label_names)

    def with_snr_laws(self, laws: Mapping[str, SnrLaw]) -> "SlamModel":
        """A copy of this model carrying ``laws`` (label name -> :class:`~bayesslam.calibration.SnrLaw`).

        Raises
        ------
        ModelFileError
            For a label the model does not have.
        """
        record = {name: law.to_metadata() for name, law in laws.items()}
        return dataclasses.replace(self, metadata={**self.metadata, "snr_laws": record})

    def with_label_cv(self, label_cv: OutOfFoldLabels) -> "SlamModel":
        """A copy of this model carrying ``label_cv`` (save it with :func:`save_model`).

        Raises
        ------
        ModelFileError
            If its shape does not match the training stars and labels.
        """
        return dataclasses.replace(self, label_cv=label_cv)

    def with_error_model(self, error_model: EmulatorErrorModel | None) -> "SlamModel":
        """A copy of this model whose likelihood uses ``error_model`` (None: the diagonal ``s_j^2``).

        A Laplace correction the model carries was learnt under its former
        likelihood and is dropped (learn a new one with
        :func:`bayesslam.train.learn_laplace_correction`).

        Raises
        ------
        ModelFileError
            If its shapes do not match the model's pixels and labels.
        """
        metadata = {key: value for key, value in self.metadata.items() if key != "laplace_correction"}
        return dataclasses.replace(self, error_model=error_model, metadata=metadata)

    @property
    def laplace_correction(self) -> LaplaceCorrection | None:
        """The factors that make the model's Laplace intervals cover (metadata ``laplace_correction``), or None.

        See :mod:`bayesslam.emulator.laplace_correction`; validated when the
        model is constructed or loaded.
        """
        record = self.metadata.get("laplace_correction")
        return None if record is None else _read_laplace_correction(record, self.label_names)

    def with_laplace_correction(self, correction: LaplaceCorrection | None) -> "SlamModel":
        """A copy of this model carrying ``correction`` (None: none); save it with :func:`save_model`.

        Raises
        ------
        ModelFileError
            If the correction's labels differ from the model's.
        """
        metadata = {key: value for key, value in self.metadata.items() if key != "laplace_correction"}
        if correction is not None:
            if tuple(correction.label_names) != self.label_names:
                raise ModelFileError(f"Laplace correction labels {correction.label_names} differ from the model's "
                                     f"{self.label_names}")
            metadata["laplace_correction"] = correction.to_metadata()
        return dataclasses.replace(self, metadata=metadata)

    @property
    def hyperparameters(self) -> dict[str, np.ndarray]:
        """Chosen ``C``, ``epsilon`` and ``gamma`` per pixel."""
        return {
            "C": np.asarray(self.training.C),
            "epsilon": np.asarray(self.training.epsilon),
            "gamma": np.asarray(self.emulator_arrays["gamma"]),
        }


def _read_snr_laws(record: Any, label_names: Any) -> dict[str, SnrLaw]:
    if not isinstance(record, Mapping):
        raise ModelFileError(f"the model's snr_laws must be a JSON object, got {type(record).__name__}")
    unknown = set(record) - set(label_names)
    if unknown:
        raise ModelFileError(f"the model's snr_laws name labels {sorted(unknown)} it does not have")
    try:
        return {name: SnrLaw.from_metadata(value) for name, value in record.items()}
    except CalibrationError as exc:
        raise ModelFileError(f"the model's snr_laws are unusable: {exc}") from exc


def _read_laplace_correction(record: Any, label_names: Any) -> LaplaceCorrection:
    try:
        return LaplaceCorrection.from_metadata(record, tuple(label_names))
    except ErrorModelError as exc:
        raise ModelFileError(f"the model's Laplace correction is unusable: {exc}") from exc


def _read_calibration(record: Any, label_names: Any) -> ModelCalibration:
    try:
        return ModelCalibration.from_metadata(record, tuple(label_names))
    except CalibrationError as exc:
        raise ModelFileError(f"the model's calibration record is unusable: {exc}") from exc


def library_versions() -> dict[str, str]:
    """Versions of the libraries that matter for a model (read without importing them)."""
    versions = {"python": platform.python_version()}
    for name in ("bayesslam", "numpy", "scipy", "scikit-learn", "jax", "jaxlib"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def model_checksum(arrays: Mapping[str, np.ndarray], metadata_bytes: bytes) -> str:
    """Hex sha256 over the metadata and every array (name, dtype, shape, bytes).

    Parameters
    ----------
    arrays : Mapping[str, numpy.ndarray]
        The file's arrays except the metadata and checksum entries.
    metadata_bytes : bytes
        The UTF-8 JSON metadata exactly as stored.

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    digest.update(b"bayesslam-model-checksum-v1\0")
    digest.update(len(metadata_bytes).to_bytes(8, "little"))
    digest.update(metadata_bytes)
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        header = json.dumps({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)}).encode()
        digest.update(len(header).to_bytes(8, "little"))
        digest.update(header)
        data = array.tobytes()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _file_arrays(model: SlamModel) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name in EMULATOR_ARRAYS:
        value = np.asarray(model.emulator_arrays[name])
        dtype = np.dtype(bool) if name == "pixel_mask" else np.dtype("<f8")
        arrays[_EMULATOR_PREFIX + name] = np.ascontiguousarray(value, dtype=dtype)
    records = [(_TRAINING_PREFIX, model.training)]
    if model.label_cv is not None:
        records.append((_LABEL_CV_PREFIX, model.label_cv))
    if model.error_model is not None:
        arrays[_ERROR_MODEL_PREFIX + "pixel_variance"] = np.ascontiguousarray(model.error_model.pixel_variance, "<f8")
        arrays[_ERROR_MODEL_PREFIX + "label_covariance"] = np.ascontiguousarray(
            model.error_model.label_covariance, "<f8")
    for prefix, record in records:
        for name, value in record.arrays().items():
            dtype = np.dtype("<i8") if value.dtype.kind in "iu" else np.dtype("<f8")
            arrays[prefix + name] = np.ascontiguousarray(value, dtype=dtype)
    return arrays


def save_model(model: SlamModel, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` as one checksummed ``.npz`` file.

    The file is written to a temporary name beside ``path`` and renamed, so
    an interrupted save never leaves a half-written model.

    Parameters
    ----------
    model : SlamModel
    path : str or os.PathLike
        Destination (the name is used as given; ``.npz`` is conventional).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    ModelFileError
        If the metadata is not strict JSON (no NaN or infinity, string keys).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    arrays = _file_arrays(model)
    reserved = ("format", "schema_version", "arrays")
    metadata = {key: value for key, value in model.metadata.items() if key not in reserved + ("error_model",)}
    if model.error_model is not None:
        metadata["error_model"] = {**model.error_model.metadata, "rank": int(model.error_model.label_covariance.shape[0])}
    metadata["format"] = MODEL_FORMAT
    metadata["schema_version"] = SCHEMA_VERSION
    metadata["arrays"] = {name: {"dtype": a.dtype.str, "shape": list(a.shape)} for name, a in sorted(arrays.items())}
    try:
        metadata_bytes = json.dumps(metadata, sort_keys=True, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ModelFileError(
            f"model metadata is not strict JSON ({exc}); use str keys and finite numbers, lists not arrays"
        ) from exc
    checksum = model_checksum(arrays, metadata_bytes)
    payload = dict(arrays)
    payload[_METADATA_KEY] = np.frombuffer(metadata_bytes, dtype=np.uint8)
    payload[_CHECKSUM_KEY] = np.frombuffer(checksum.encode("ascii"), dtype=np.uint8)
    atomic_write(path, lambda stream: np.savez_compressed(stream, **payload))
    logger.info("saved model (%d pixels, checksum %s) to %s", len(model.training.C), checksum[:12], path)
    return path


def _dos_date_time(date_time: tuple[int, ...]) -> tuple[int, int]:
    """A zip member's ``date_time`` as the MS-DOS (time, date) fields of its headers."""
    year, month, day, hour, minute, second = date_time
    return hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day


def _check_local_headers(path: Path) -> None:
    """Each member's local zip header must repeat its central-directory record.

    zipfile reads members through the central directory and skips most of
    the local header, so a damaged local header (version, flags, method,
    time, CRC, sizes, the zip64 sizes) would otherwise go unnoticed.
    """
    with zipfile.ZipFile(path) as archive, open(path, "rb") as stream:
        for info in archive.infolist():
            stream.seek(info.header_offset)
            header = stream.read(_LOCAL_HEADER.size)
            if len(header) != _LOCAL_HEADER.size:
                raise zipfile.BadZipFile(f"member {info.filename!r}: truncated local header")
            (signature, version, flags, method, time_, date, crc, compressed, size, name_length,
             extra_length) = _LOCAL_HEADER.unpack(header)
            expected = (b"PK\x03\x04", info.extract_version, info.flag_bits, info.compress_type,
                        *_dos_date_time(info.date_time))
            if (signature, version, flags, method, time_, date) != expected:
                raise zipfile.BadZipFile(f"member {info.filename!r}: local header differs from the directory")
            stream.seek(name_length, os.SEEK_CUR)
            extra = stream.read(extra_length)
            zip64 = None  # (size, compressed) as 8-byte integers
            while extra:
                if len(extra) < 4:
                    raise zipfile.BadZipFile(f"member {info.filename!r}: damaged extra field")
                tag, length = struct.unpack("<HH", extra[:4])
                if 4 + length > len(extra) or (tag == 0x0001 and length != 16):
                    raise zipfile.BadZipFile(f"member {info.filename!r}: damaged extra field")
                if tag == 0x0001:
                    zip64 = struct.unpack("<QQ", extra[4:20])
                extra = extra[4 + length:]
            if zip64 is not None and (compressed, size) == (0xFFFFFFFF, 0xFFFFFFFF):
                compressed, size = zip64[1], zip64[0]
            sizes_differ = (crc, compressed, size) != (info.CRC, info.compress_size, info.file_size) or (
                zip64 is not None and zip64 != (info.file_size, info.compress_size))
            if not flags & 0x08 and sizes_differ:
                raise zipfile.BadZipFile(f"member {info.filename!r}: local header differs from the directory")


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    try:
        _check_local_headers(path)
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError, struct.error) as exc:
        raise ModelFileError(
            f"{path}: not a readable bayesslam model file ({type(exc).__name__}: {exc}); it is truncated, "
            "damaged or of another kind. Copy it again or re-save the model with bayesslam.emulator.modelfile.save_model."
        ) from exc


def _decode_metadata(path: Path, raw: dict[str, np.ndarray]) -> tuple[dict[str, Any], bytes]:
    if _METADATA_KEY not in raw or _CHECKSUM_KEY not in raw:
        raise ModelFileError(
            f"{path}: no bayesslam metadata or checksum inside; this .npz is not a model written by "
            "bayesslam.emulator.modelfile.save_model."
        )
    metadata_array = raw[_METADATA_KEY]
    if metadata_array.dtype != np.uint8 or metadata_array.ndim != 1:
        raise ModelFileError(f"{path}: the metadata entry is not a byte string; the file is damaged.")
    metadata_bytes = metadata_array.tobytes()
    try:
        metadata = json.loads(metadata_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the metadata is not valid JSON ({exc}); the file is damaged.") from exc
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: the metadata is not a JSON object; the file is damaged.")
    return metadata, metadata_bytes


def _check_version(path: Path, metadata: Mapping[str, Any]) -> None:
    if metadata.get("format") != MODEL_FORMAT:
        raise ModelFileError(
            f"{path}: format {metadata.get('format')!r} is not {MODEL_FORMAT!r}; this is not a bayesslam model."
        )
    schema = metadata.get("schema_version")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise ModelFileError(f"{path}: schema_version {schema!r} is not an integer; the file is damaged.")
    if schema > SCHEMA_VERSION:
        raise ModelFileError(
            f"{path}: model schema version {schema} is newer than this bayesslam reads ({SCHEMA_VERSION}); "
            "upgrade bayesslam."
        )
    if schema not in READABLE_SCHEMA_VERSIONS:
        raise ModelFileError(
            f"{path}: model schema version {schema} is older than this bayesslam reads ({SCHEMA_VERSION}); "
            "retrain the model (or load it with the bayesslam version that wrote it)."
        )


def load_model(path: str | os.PathLike) -> SlamModel:
    """Read a model written by :func:`save_model`, verifying its integrity.

    Loading uses ``numpy.load(allow_pickle=False)`` and ``json``: it runs no
    code from the file and imports no scikit-learn.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    SlamModel

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If the file is truncated or damaged, of another format or schema
        version, fails its checksum (edited by hand), or its arrays are
        inconsistent.
    """
    path = Path(path)
    raw = _read_archive(path)
    metadata, metadata_bytes = _decode_metadata(path, raw)
    _check_version(path, metadata)
    arrays = {name: value for name, value in raw.items() if name not in (_METADATA_KEY, _CHECKSUM_KEY)}
    stored = raw[_CHECKSUM_KEY].tobytes().decode("ascii", errors="replace")
    if model_checksum(arrays, metadata_bytes) != stored:
        raise ModelFileError(
            f"{path}: checksum mismatch: the arrays or metadata changed after the model was saved (edited by "
            "hand or damaged). Use the original file, or retrain and save the model again."
        )
    missing = [key for key in _REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ModelFileError(f"{path}: metadata lacks {missing}; re-save the model with save_model.")
    manifest = metadata["arrays"]
    actual = {name: {"dtype": a.dtype.str, "shape": list(a.shape)} for name, a in arrays.items()}
    if manifest != actual:
        raise ModelFileError(f"{path}: the arrays do not match the metadata's list of arrays; the file is damaged.")
    emulator_arrays = {name: arrays.get(_EMULATOR_PREFIX + name) for name in EMULATOR_ARRAYS}
    summary_fields = [f.name for f in dataclasses.fields(TrainingSummary)]
    summary_arrays = {name: arrays.get(_TRAINING_PREFIX + name) for name in summary_fields}
    absent = [k for k, v in {**emulator_arrays, **summary_arrays}.items() if v is None]
    if absent:
        raise ModelFileError(f"{path}: arrays {absent} are missing; the file is incomplete.")
    cv_fields = [f.name for f in dataclasses.fields(OutOfFoldLabels)]
    cv_arrays = {name: arrays.get(_LABEL_CV_PREFIX + name) for name in cv_fields}
    present = [name for name, value in cv_arrays.items() if value is not None]
    if present and len(present) != len(cv_fields):
        raise ModelFileError(f"{path}: label_cv arrays {sorted(set(cv_fields) - set(present))} are missing; "
                             "the file is incomplete.")
    try:
        model = SlamModel(
            emulator_arrays=emulator_arrays,
            training=TrainingSummary(**summary_arrays),
            metadata=metadata,
            label_cv=OutOfFoldLabels(**cv_arrays) if present else None,
            error_model=_read_error_model(arrays, metadata, len(summary_arrays["fold"])),
        )
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    _ = model.emulator  # building it checks the arrays; it is cached for later use
    if model.error_model is None:
        _log_diagonal_once(path, metadata["schema_version"])
    return model


def _read_error_model(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any],
                      n_train: int) -> EmulatorErrorModel | None:
    """The error model stored in a file's arrays and metadata, or None; malformed: :class:`ModelFileError`."""
    names = ("pixel_variance", "label_covariance")
    found = {name: arrays.get(_ERROR_MODEL_PREFIX + name) for name in names}
    record = metadata.get("error_model")
    if record is None and all(value is None for value in found.values()):
        return None
    if record is None or any(value is None for value in found.values()) or not isinstance(record, dict):
        raise ModelFileError("the error model is incomplete (arrays error_model/pixel_variance and "
                             "error_model/label_covariance and the metadata 'error_model' go together).")
    rank = record.get("rank")
    n_label = len(metadata["label_names"])
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 < rank <= min(n_label, n_train):
        raise ModelFileError(f"error model rank {rank!r} is not an integer between 1 and the number of labels "
                             f"({n_label}, at most the {n_train} training stars).")
    try:
        return EmulatorErrorModel(found["pixel_variance"], found["label_covariance"],
                                  {k: v for k, v in record.items() if k != "rank"})
    except ErrorModelError as exc:
        raise ModelFileError(f"error model: {exc}") from exc


@functools.lru_cache(maxsize=None)
def _log_diagonal_once(path: Path, schema: int) -> None:
    """Say once per file that its likelihood is diagonal (no emulator error model)."""
    level = logging.WARNING if schema < 2 else logging.INFO
    logger.log(level, "%s (schema %d) has no emulator error model: its likelihood is diagonal (1/ivar + s_j^2), so "
                "its raw uncertainties are too narrow; run label-level CV (bayesslam train, or "
                "bayesslam.train.with_label_cv) to add one.", path, schema)


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()

"""Tests of bayesslam.emulator: safe, checksummed model files that refuse damage."""

from __future__ import annotations

import json
import struct
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesslam.emulator import (
    MODEL_FORMAT,
    SCHEMA_VERSION,
    ModelFileError,
    load_model,
    model_checksum,
    save_model,
)
from bayesslam.errors import BayesSlamError, CorruptFileError
from bayesslam.preparation.continuum import ContinuumSettings
from bayesslam.train import SlamTrainer

LABEL_NAMES = ("teff", "logg", "fe_h", "alpha_m")


@pytest.fixture(scope="module", autouse=True)
def _in_float64(x64):
    """The tests here build JAX arrays and emulators themselves: 64 bits for them (see conftest.x64)."""


@pytest.fixture(scope="module")
def trained(x64):
    rng = np.random.default_rng(3)
    n_star, n_pix = 40, 12
    labels = np.column_stack([
        rng.uniform(3100.0, 3900.0, n_star), rng.uniform(4.45, 4.95, n_star),
        rng.uniform(-0.6, 0.5, n_star), rng.uniform(-0.05, 0.2, n_star),
    ])
    z = (labels - labels.mean(axis=0)) / labels.std(axis=0)
    flux = 1.0 - 0.2 * np.tanh(z @ rng.normal(size=(4, n_pix))) ** 2 + rng.normal(0.0, 0.01, (n_star, n_pix))
    ivar = np.full(flux.shape, 1e4)
    ivar[:32, 11] = 0.0
    grid = {"C": [1.0, 4.0], "epsilon": [0.05], "gamma": [0.2, 0.6]}
    trainer = SlamTrainer(grid, n_folds=4, progress=False)
    trainer.fit(labels, flux, ivar, label_names=LABEL_NAMES, wave=np.linspace(6000.0, 9000.0, n_pix))
    model = trainer.to_model(normalization=ContinuumSettings().to_dict(), description="unit test")
    return trainer, model


@pytest.fixture()
def saved(trained, tmp_path):
    return save_model(trained[1], tmp_path / "model.npz")


def _rewrite(path, edit_metadata=None, edit_arrays=None, fix_checksum=False):
    """Re-save a model file's arrays with numpy after editing them (a hand edit)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    metadata = json.loads(arrays.pop("__metadata__").tobytes())
    checksum = arrays.pop("__checksum__")
    if edit_metadata:
        edit_metadata(metadata)
    if edit_arrays:
        edit_arrays(arrays)
    metadata_bytes = json.dumps(metadata, sort_keys=True).encode()
    if fix_checksum:
        checksum = np.frombuffer(model_checksum(arrays, metadata_bytes).encode(), dtype=np.uint8)
    with open(path, "wb") as stream:
        np.savez(stream, __metadata__=np.frombuffer(metadata_bytes, dtype=np.uint8), __checksum__=checksum, **arrays)


def test_round_trip_is_bit_identical(trained, saved):
    trainer, model = trained
    loaded = load_model(saved)
    thetas = jnp.asarray(trainer.training_labels_[:7] * 1.002)
    before = np.asarray(jax.vmap(trainer.to_emulator())(thetas))
    after = np.asarray(jax.vmap(loaded.emulator)(thetas))
    np.testing.assert_array_equal(after, before)
    assert loaded.emulator.dtype == np.float64
    for name, value in model.emulator_arrays.items():
        np.testing.assert_array_equal(loaded.emulator_arrays[name], value, err_msg=name)
    for name, value in model.training.arrays().items():
        np.testing.assert_array_equal(getattr(loaded.training, name), value, err_msg=name)
    for key, value in model.metadata.items():
        assert loaded.metadata[key] == value, key
    assert loaded.metadata["format"] == MODEL_FORMAT and loaded.metadata["schema_version"] == SCHEMA_VERSION
    assert loaded.label_names == LABEL_NAMES and loaded.label_units == ("K", "dex", "dex", "dex")
    assert bool(loaded.emulator.pixel_mask[11]) and np.isinf(loaded.model_variance[11])


def test_metadata_content(saved, trained):
    trainer = trained[0]
    meta = load_model(saved).metadata
    assert meta["normalization"] == ContinuumSettings().to_dict()
    assert meta["training_set_sha256"] == trainer.training_hash_
    assert meta["training_domain"]["fe_h"] == {
        "min": trainer.training_labels_[:, 2].min(), "max": trainer.training_labels_[:, 2].max()
    }
    assert {"numpy", "scikit-learn", "jax", "bayesslam"} <= set(meta["library_versions"])
    assert meta["trainer"]["n_folds"] == 4 and meta["created"] and meta["description"] == "unit test"
    assert "training/cv_grid_mse" in meta["arrays"] and "emulator/dual_coef" in meta["arrays"]


def test_emulators_of_both_precisions(saved):
    """The model's emulator is float64 whatever JAX's global setting; other precisions on request."""
    loaded = load_model(saved)
    assert loaded.emulator.dtype == np.float64
    assert loaded.build_emulator(jnp.float32).dtype == np.float32


@pytest.mark.parametrize("where", [0.05, 0.3, 0.5, 0.8])
def test_flipped_byte_is_refused(saved, where):
    """A flipped bit in the compressed data is refused (zip CRC or the content checksum catches it)."""
    data = bytearray(saved.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        load_model(saved)


@pytest.mark.parametrize("field", ["local header", "deflate stream"])
def test_damaged_member_is_refused_with_a_named_error(saved, field):
    """zipfile skips most of a local header and zlib raises its own error: both become ModelFileError."""
    with zipfile.ZipFile(saved) as archive:
        member = max(archive.infolist(), key=lambda info: info.compress_size)
    data = bytearray(saved.read_bytes())
    start = member.header_offset
    name_length, extra_length = struct.unpack("<HH", data[start + 26:start + 30])
    position = start + 5 if field == "local header" else start + 30 + name_length + extra_length + 20
    data[position] ^= 0x10
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        load_model(saved)


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.99])
def test_truncated_file_is_refused(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError) as info:
        load_model(saved)
    assert isinstance(info.value, BayesSlamError) and isinstance(info.value, CorruptFileError)


@pytest.mark.parametrize("version, message", [(SCHEMA_VERSION + 1, "newer"), (0, "older"),
                                              ("1", "not an integer")])
def test_wrong_schema_version_is_refused(saved, version, message):
    _rewrite(saved, edit_metadata=lambda m: m.update(schema_version=version), fix_checksum=True)
    with pytest.raises(ModelFileError, match=message):
        load_model(saved)


def test_other_format_is_refused(saved):
    _rewrite(saved, edit_metadata=lambda m: m.update(format="someone.else"), fix_checksum=True)
    with pytest.raises(ModelFileError, match="not a bayesslam model"):
        load_model(saved)


def test_hand_edited_metadata_is_refused(saved):
    _rewrite(saved, edit_metadata=lambda m: m.update(label_units=["C", "dex", "dex", "dex"]))
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(saved)


def test_hand_edited_array_is_refused(saved):
    def edit(arrays):
        arrays["emulator/model_variance"] = arrays["emulator/model_variance"] * 0.5

    _rewrite(saved, edit_arrays=edit)
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(saved)


def test_unchanged_rewrite_still_loads(saved, trained):
    _rewrite(saved)
    np.testing.assert_array_equal(load_model(saved).training.C, trained[0].C_)


def test_pickled_or_foreign_npz_is_refused(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __metadata__=np.array([{"format": MODEL_FORMAT}], dtype=object), __checksum__=np.zeros(3))
    with pytest.raises(ModelFileError):
        load_model(pickled)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ModelFileError, match="not a model"):
        load_model(foreign)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ModelFileError):
        load_model(text)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.npz")


def test_save_refuses_overwrite_and_bad_metadata(trained, saved, tmp_path):
    with pytest.raises(FileExistsError):
        save_model(trained[1], saved)
    save_model(trained[1], saved, overwrite=True)
    bad = trained[0].to_model(weird=float("nan"))
    with pytest.raises(ModelFileError, match="JSON"):
        save_model(bad, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _calibration(names=LABEL_NAMES):
    from bayesslam.calibration import ErrorCalibration, ModelCalibration

    n = len(names)
    laplace = ErrorCalibration(names, "laplace", np.linspace(0.9, 2.4, n), np.linspace(0.0, 0.05, n),
                               np.full(n, 0.03), np.full(n, 0.01), 1000, "unit test", {}, {})
    posterior = ErrorCalibration(names, "posterior", np.linspace(0.8, 2.0, n), np.linspace(1.0, 0.04, n))
    return ModelCalibration(laplace, posterior)


def test_calibration_record_round_trip(trained, tmp_path):
    _, model = trained
    assert model.error_calibration is None
    calibration = _calibration()
    path = save_model(model.with_calibration(calibration), tmp_path / "calibrated.npz")
    back = load_model(path).error_calibration
    for kind in ("laplace", "posterior"):
        for name in ("scale", "floor", "scale_err", "floor_err"):
            np.testing.assert_array_equal(getattr(getattr(back, kind), name), getattr(getattr(calibration, kind), name))
    assert back.laplace.source == "unit test" and back.laplace.n_stars == 1000
    assert np.all(np.isnan(back.posterior.scale_err))
    # the emulator is untouched by the calibration
    np.testing.assert_array_equal(load_model(path).emulator_arrays["dual_coef"], model.emulator_arrays["dual_coef"])


def test_calibration_with_other_labels_is_refused(trained):
    with pytest.raises(ModelFileError, match="differ"):
        trained[1].with_calibration(_calibration(("teff", "logg", "fe_h", "vsini")))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["laplace"]["floor"].update(fe_h=-0.01), "floor"),
        (lambda c: c["posterior"]["scale"].pop("teff"), "no scale"),
        (lambda c: c.update(emcee={}), "unknown kinds"),
        (lambda c: c["laplace"].update(kind="posterior"), "kind"),
    ],
)
def test_corrupt_calibration_record_is_refused(trained, tmp_path, edit, match):
    path = save_model(trained[1].with_calibration(_calibration()), tmp_path / "calibrated.npz")
    _rewrite(path, edit_metadata=lambda m: edit(m["calibration"]), fix_checksum=True)
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path)
    assert "calibration record is unusable" in str(info.value)


def _with_error_model(model):
    from bayesslam.emulator import EmulatorErrorModel

    n_pix = len(model.training.C)
    variance = np.where(np.isfinite(model.model_variance), 0.1 * model.model_variance, np.inf)
    covariance = np.diag([30.0, 0.05, 0.1, 0.05]) ** 2
    covariance[0, 2] = covariance[2, 0] = 0.5 * 30.0 * 0.1
    assert variance.shape == (n_pix,)
    return model.with_error_model(EmulatorErrorModel(variance, covariance, {"source": "unit test"}))


def test_error_model_round_trip_and_use(trained, tmp_path):
    model = _with_error_model(trained[1])
    loaded = load_model(save_model(model, tmp_path / "v2.npz"))
    assert loaded.metadata["schema_version"] == SCHEMA_VERSION == 2
    assert loaded.metadata["error_model"] == {"source": "unit test", "rank": 4}
    np.testing.assert_array_equal(loaded.error_model.label_covariance, model.error_model.label_covariance)
    np.testing.assert_array_equal(loaded.error_model.pixel_variance, model.error_model.pixel_variance)
    # the emulator's likelihood uses it; the training record keeps s_j^2
    np.testing.assert_array_equal(np.asarray(loaded.emulator.model_variance), model.error_model.pixel_variance)
    np.testing.assert_array_equal(np.asarray(loaded.emulator.label_error_covariance), model.error_model.label_covariance)
    np.testing.assert_array_equal(loaded.model_variance, trained[1].model_variance)
    plain = load_model(save_model(model.with_error_model(None), tmp_path / "plain.npz"))
    assert plain.error_model is None and "error_model" not in plain.metadata
    assert not np.any(np.asarray(plain.emulator.label_error_covariance))


def test_version_1_file_loads_with_the_diagonal_likelihood_and_says_so_once(trained, saved, caplog):
    _rewrite(saved, edit_metadata=lambda m: m.update(schema_version=1), fix_checksum=True)
    with caplog.at_level("WARNING", logger="bayesslam.emulator.modelfile"):
        first = load_model(saved)
        load_model(saved)
    assert first.error_model is None
    np.testing.assert_array_equal(np.asarray(first.emulator.model_variance), trained[1].model_variance)
    said = [r for r in caplog.records if "no emulator error model" in r.getMessage()]
    assert len(said) == 1 and "diagonal" in said[0].getMessage()


@pytest.mark.parametrize("edit, message", [
    (lambda a, m: a.update({"error_model/pixel_variance": a["error_model/pixel_variance"][:-1]}), "pixels"),
    (lambda a, m: a.update({"error_model/label_covariance": np.full((4, 4), np.nan)}), "non-finite"),
    (lambda a, m: a.update({"error_model/label_covariance": np.eye(3)}), "labels"),
    (lambda a, m: a.update({"error_model/label_covariance": -np.eye(4)}), "semi-definite"),
    (lambda a, m: a.pop("error_model/label_covariance"), "incomplete"),
    (lambda a, m: m["error_model"].update(rank=41), "rank"),
])
def test_bad_error_model_arrays_are_refused_by_name(trained, tmp_path, edit, message):
    path = save_model(_with_error_model(trained[1]), tmp_path / "v2.npz")
    state = {}

    def edit_arrays(arrays):
        edit(arrays, state["metadata"])
        state["metadata"]["arrays"] = {name: {"dtype": a.dtype.str, "shape": list(a.shape)}
                                       for name, a in sorted(arrays.items())}

    _rewrite(path, edit_metadata=lambda m: state.update(metadata=m), edit_arrays=edit_arrays, fix_checksum=True)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)

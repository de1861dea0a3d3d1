"""End to end through the command line: a mock survey written as files, then prepared."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from bayesslam.cli import main
from bayesslam.preparation import read_prepared


def test_mock_then_prepare(tmp_path: Path):
    folder = tmp_path / "mock"
    assert main(["mock", "--n", "6", "--seed", "3", "--binaries", "1", "-o", str(folder)]) == 0
    files = sorted(folder.glob("spec-*.fits"))
    assert len(files) == 8
    with open(folder / "labels.csv") as handle:
        labels = list(csv.DictReader(handle))
    pair = [row for row in labels if row["group"] == "binary"]
    assert len(pair) == 2 and pair[0]["fe_h"] == pair[1]["fe_h"]
    out = tmp_path / "prepared.fits"
    assert main(["prepare", *map(str, files), "-o", str(out)]) == 0
    prepared = read_prepared(out)
    assert len(prepared) == 8 and not prepared.failures
    assert sorted(prepared.spectra.identifiers) == sorted(row["identifier"] for row in labels)
    assert np.all(np.isfinite(prepared.spectra.flux))


def test_fit_and_sample_with_the_default_model(tmp_path: Path, sdss_files):
    """The README's main job on two real SDSS M dwarfs, then a short emcee run on one of them."""
    import arviz as az
    from astropy.table import Table

    catalog = tmp_path / "catalog.fits"
    assert main(["fit", str(sdss_files[0]), str(sdss_files[3]), "-o", str(catalog)]) == 0
    table = Table.read(catalog, hdu="CATALOG")
    assert list(table["IDENTIFIER"]) == [sdss_files[0].stem, sdss_files[3].stem]
    assert np.all(table["FIT_STATUS"] == 0)
    assert np.all((table["TEFF_MAP"] > 3100) & (table["TEFF_MAP"] < 3900))
    assert np.all(np.isfinite(table["FE_H_SNR_ERR"])) and np.all(table["TEFF_MAP_ERR"] > 0)
    # the default model carries its own SNR laws (label-level CV), so [alpha/M] has one too
    assert table.meta["SNRLAWS"] == "model" and np.all(np.isfinite(table["ALPHA_M_SNR_ERR"]))
    posterior = tmp_path / "post.nc"
    assert main(["sample", str(sdss_files[0]), "-o", str(posterior), "--sampler", "emcee",
                 "--warmup", "100", "--draws", "200"]) == 0
    idata = az.from_netcdf(posterior)
    assert idata.posterior["teff"].shape == (32, 200, 1)
    sampled = Table.read(posterior.with_suffix(".fits"), hdu="CATALOG")
    # emcee: the ensemble's ESS from its autocorrelation time, no R-hat over walkers (so no RHAT_HIGH flag)
    assert np.isfinite(sampled["TEFF_MEDIAN"][0]) and np.isfinite(sampled["TEFF_ESS"][0])
    assert np.ma.is_masked(sampled["TEFF_RHAT"][0]) and not sampled["FLAGS"][0] & 8


def test_sample_groups_of_stars_that_share_labels(tmp_path: Path):
    """`sample --groups`: a mock wide binary and a made-up pair share [Fe/H] and [alpha/M]; the catalog has a
    GROUPS extension with one row per group; a table naming an unknown star is a named error (exit 2)."""
    import arviz as az
    from astropy.table import Table

    mock = Path(__file__).resolve().parents[1] / "examples" / "data" / "mock"
    pair = ["spec-90000-60000-0011", "spec-90000-60000-0012"]  # the mock's binary (labels.csv group_id 0)
    other = ["spec-90000-60000-0001", "spec-90000-60000-0002"]
    groups = tmp_path / "groups.csv"
    groups.write_text("identifier,group\n" + "".join(f"{s},b0\n" for s in pair) + "".join(f"{s},p1\n" for s in other))
    files = [str(mock / f"{s}.fits") for s in pair + other]
    posterior = tmp_path / "post.nc"
    assert main(["sample", *files, "--groups", str(groups), "-o", str(posterior), "--warmup", "60",
                 "--draws", "60"]) == 0
    idata = az.from_netcdf(posterior)
    assert idata.posterior["group_fe_h"].shape == (1, 60, 2)
    np.testing.assert_array_equal(idata.posterior["fe_h"].values[..., 0], idata.posterior["fe_h"].values[..., 1])
    catalog = Table.read(posterior.with_suffix(".fits"), hdu="CATALOG")
    assert list(catalog["GROUP"]) == ["b0", "b0", "p1", "p1"]
    assert catalog["FE_H_MEDIAN"][0] == catalog["FE_H_MEDIAN"][1]
    table = Table.read(posterior.with_suffix(".fits"), hdu="GROUPS")
    assert list(table["GROUP"]) == ["b0", "p1"] and list(table["N_STARS"]) == [2, 2]
    assert table["GROUP_FE_H_MEDIAN"][0] == pytest.approx(catalog["FE_H_MEDIAN"][0])
    groups.write_text(groups.read_text() + "spec-99999-60000-0001,p1\n")
    assert main(["sample", *files, "--groups", str(groups), "-o", str(posterior), "--overwrite"]) == 2


def test_fit_refuses_a_prepared_file_on_another_grid(tmp_path: Path, sdss_files):
    prepared = tmp_path / "prep.fits"
    assert main(["prepare", str(sdss_files[0]), "-o", str(prepared), "--window", "6500", "8000"]) == 0
    assert main(["fit", str(prepared), "-o", str(tmp_path / "c.fits")]) == 2


def _prepared_mock(tmp_path: Path, n: int, seed: int, window: tuple[str, str]) -> tuple[Path, Path]:
    """A mock survey written as files and prepared through the CLI: (prepared file, label table)."""
    folder = tmp_path / "mock"
    assert main(["mock", "--n", str(n), "--seed", str(seed), "--snr", "30", "80", "-o", str(folder)]) == 0
    prepared = tmp_path / "train.fits"
    files = [str(p) for p in sorted(folder.glob("spec-*.fits"))]
    assert main(["prepare", *files, "-o", str(prepared), "--window", *window]) == 0
    return prepared, folder / "labels.csv"


def test_train_command_with_checkpoint_and_resume(tmp_path: Path, caplog):
    from bayesslam.emulator import load_model

    prepared, labels = _prepared_mock(tmp_path, 24, 5, ("8100", "8250"))
    model = tmp_path / "model.npz"
    args = ["train", str(prepared), "--labels", str(labels), "-o", str(model), "--folds", "3"]
    checkpoint = model.with_suffix(".checkpoint")
    checkpoint.mkdir()
    assert main(args) == 2  # an existing checkpoint needs --resume
    with caplog.at_level("INFO", logger="bayesslam"):
        assert main([*args, "--resume"]) == 0
    # stderr is no terminal here: progress comes as log lines, the last at 100%
    assert "SLAM training: " in caplog.text and "(100%)" in caplog.text
    assert not checkpoint.exists()  # a finished training removes its checkpoint: --overwrite works at once
    assert main([*args, "--overwrite"]) == 0
    loaded = load_model(model)
    assert loaded.label_names == ("teff", "logg", "fe_h", "alpha_m")
    assert loaded.metadata["n_train"] == 24 and loaded.wave[0] >= 8100
    # label-level CV runs by default: every training star has out-of-fold labels
    assert loaded.label_cv is not None and loaded.label_cv.labels.shape == (24, 4)


def test_train_command_with_the_batched_backend_matches_libsvm(tmp_path: Path):
    from bayesslam.emulator import load_model
    from bayesslam.train.batched import CVRace

    prepared, labels = _prepared_mock(tmp_path, 30, 6, ("8100", "8200"))
    common = ["train", str(prepared), "--labels", str(labels), "--folds", "3"]
    models = {}
    for backend in ("libsvm", "batched"):
        path = tmp_path / f"{backend}.npz"
        assert main([*common, "-o", str(path), "--backend", backend, "--cv-tol", "1e-3"]) == 0
        models[backend] = load_model(path)
    reference, batched = models["libsvm"], models["batched"]
    assert batched.metadata["trainer"]["backend"] == "batched"
    same = np.mean(reference.hyperparameters["C"] == batched.hyperparameters["C"])
    assert same >= 0.95
    labels = reference.training_labels[:5]
    np.testing.assert_allclose(batched.predict(labels), reference.predict(labels), atol=1e-3)
    # the fold models of label-level CV agree across backends as the full models do
    ok = np.isfinite(reference.label_cv.labels[:, 0]) & np.isfinite(batched.label_cv.labels[:, 0])
    assert ok.sum() >= 25
    np.testing.assert_allclose(batched.label_cv.labels[ok, 0], reference.label_cv.labels[ok, 0], atol=5.0)
    assert main([*common, "-o", str(tmp_path / "x.npz"), "--cv-tol", "-1", "--backend", "batched"]) == 2
    # racing the grid points is the batched default; --no-cv-race scores every point (recorded in the model)
    assert batched.metadata["trainer"]["cv_race"] == CVRace().to_dict()
    assert main([*common, "-o", str(tmp_path / "full.npz"), "--backend", "batched", "--no-cv-race",
                 "--no-label-cv"]) == 0
    assert load_model(tmp_path / "full.npz").metadata["trainer"]["cv_race"] is None
    assert load_model(tmp_path / "full.npz").label_cv is None


def test_every_input_is_accounted_for(tmp_path: Path):
    """Good files, a truncated and a random-byte file, a prepared file with one bad star, a repeated
    identifier: every good star is in the catalog, every bad input in FAILED with its reason."""
    from astropy.io import fits
    from astropy.table import Table

    from bayesslam.catalog import flag_names

    mock = Path(__file__).resolve().parents[1] / "examples" / "data" / "mock"
    good = sorted(mock.glob("spec-*.fits"))[:3]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for path in good:
        (inputs / path.name).write_bytes(path.read_bytes())
    (inputs / "truncated.fits").write_bytes(good[0].read_bytes()[:20000])
    (inputs / "random.fits").write_bytes(np.random.default_rng(0).bytes(30000))
    prepared = tmp_path / "prepared.fits"
    assert main(["prepare", *map(str, good[:2]), str(sorted(mock.glob("spec-*.fits"))[3]), "-o", str(prepared)]) == 0
    with fits.open(prepared, mode="update") as hdul:
        hdul["IVAR"].data[2, 100:110] = -1.0  # the third star of the file: invalid
        hdul["IVAR"].data[1, :] = 0.0  # the second: no usable pixel
    bad_star = Table.read(prepared, hdu="META")["IDENTIFIER"][2].strip()
    args = [str(inputs), str(prepared)]
    for command in (["fit"], ["sample", "--sampler", "emcee", "--warmup", "20", "--draws", "40"]):
        out = tmp_path / ("catalog.fits" if command == ["fit"] else "post.nc")
        assert main([*command, *args, "-o", str(out), "--overwrite"]) == 0
        assert main([*command, *args, "-o", str(out), "--overwrite", "--strict"]) == 3
        catalog_path = out.with_suffix(".fits")
        catalog = Table.read(catalog_path, hdu="CATALOG", mask_invalid=False)
        failed = Table.read(catalog_path, hdu="FAILED")
        sampled = command[0] == "sample"
        # 3 good raw files + the 2 valid stars of the prepared file, the repeated identifiers renamed;
        # the star without data is a row with NaN in a MAP catalog, a failed input when sampling
        ids = list(catalog["IDENTIFIER"])
        assert len(ids) == 5 - sampled and len(set(ids)) == len(ids)
        assert sum(i.endswith("#2") for i in ids) == 2 - sampled
        # SOURCE is the file each spectrum was read from (for a prepared file's stars, their original file)
        assert {Path(s).name for s in catalog["SOURCE"]} == {p.name for p in good}
        names = [Path(s).name for s in failed["SOURCE"]]
        assert {"prepared.fits", "random.fits", "truncated.fits"} <= set(names) and len(names) == 3 + sampled
        assert bad_star in list(failed["IDENTIFIER"])
        assert set(failed["ERROR"]) == {"UnknownFormatError", "CorruptFileError", "SpectrumValidationError"}
        assert all(len(reason) > 20 for reason in failed["REASON"])
        assert fits.getheader(catalog_path, "CATALOG")["NFAILED"] == 3 + sampled
        nodata = catalog[catalog["FIT_STATUS"] == 3]
        if sampled:
            assert len(nodata) == 0 and any("nothing to sample" in reason for reason in failed["REASON"])
            assert np.all(np.isfinite(catalog["FE_H_MEDIAN"]))
        else:  # no numbers that look like a measurement
            assert len(nodata) == 1 and np.isnan(nodata["TEFF_MAP"][0]) and np.isnan(nodata["TEFF_ERR"][0])
            assert "FIT_FAILED" in flag_names(int(nodata["FLAGS"][0]))
        assert np.all(np.isfinite(catalog[catalog["FIT_STATUS"] != 3]["TEFF_MAP"]))


@pytest.mark.slow
def test_sigterm_stops_a_libsvm_training_with_its_workers_and_resume_finishes_it(tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from bayesslam.emulator import load_model

    # ~210 pixels: 7 libsvm chunks of 32, so the training is stopped after its first chunk, not after its last
    prepared, labels = _prepared_mock(tmp_path, 30, 8, ("8100", "8500"))
    model = tmp_path / "model.npz"
    command = [sys.executable, "-m", "bayesslam", "train", str(prepared), "--labels", str(labels),
               "-o", str(model), "--n-jobs", "2", "--folds", "3", "--no-label-cv"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoint = model.with_suffix(".checkpoint")
    deadline = time.time() + 120
    while not list(checkpoint.glob("chunk-*.npz")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    children_file = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    workers = [int(pid) for pid in children_file.read_text().split()]
    assert workers, "the training should run parallel workers"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "--resume" in stderr
    assert not model.exists() and list(checkpoint.glob("chunk-*.npz"))

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"

    deadline = time.time() + 10
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers), "worker processes outlived the stopped training"
    # the interrupted training finishes from its checkpoint, which is then removed
    assert subprocess.run([*command, "--resume"], capture_output=True).returncode == 0
    assert load_model(model).metadata["n_train"] == 30 and not checkpoint.exists()

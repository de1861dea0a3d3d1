"""``bayesslam population``: a label's population distribution from per-star posteriors, through the command line.

The posteriors are analytic (no sampler runs): 40 stars whose true [Fe/H]
come from N(-0.1, 0.1) truncated to the training box, each with draws from
its likelihood (a truncated normal around a noisy observation) under the
uniform box prior, written as ``bayesslam sample`` writes them.
"""

from __future__ import annotations

from pathlib import Path

import arviz as az
import numpy as np
import pytest
from scipy.stats import truncnorm

from bayesslam.cli import main
from bayesslam.infer.priors import box_prior, prior_record
from bayesslam.infer.results import PRIOR_ATTRIBUTE, to_inference_data
from toymodel import BOUNDS, LABELS

TRUE_MEAN, TRUE_SD, ERROR = -0.1, 0.1, 0.08
N_STAR, N_CHAIN, N_DRAW = 40, 2, 200
#: Cheap NUTS settings shared by every run, so that runs of one model reuse its compiled sampler.
NUTS = ["--warmup", "200", "--samples", "300", "--chains", "1"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _truncated_normal(rng: np.random.Generator, loc, scale, low: float, high: float, size) -> np.ndarray:
    return truncnorm.rvs((low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale, size=size,
                         random_state=rng)


def _posterior(seed: int = 6) -> az.InferenceData:
    rng = np.random.default_rng(seed)
    k = LABELS.index("fe_h")
    low, high = BOUNDS[k]
    truth = _truncated_normal(rng, TRUE_MEAN, TRUE_SD, low, high, N_STAR)
    observed = truth + ERROR * rng.standard_normal(N_STAR)
    samples = {}
    for name, (lo, hi) in zip(LABELS, BOUNDS):
        if name == "fe_h":
            samples[name] = _truncated_normal(rng, observed, ERROR, lo, hi, (N_CHAIN, N_DRAW, N_STAR))
        else:
            samples[name] = rng.uniform(lo, hi, (N_CHAIN, N_DRAW, N_STAR))
    ids = [f"star-{i:03d}" for i in range(N_STAR)]
    return to_inference_data(samples, None, ids, "nuts", prior_record(box_prior(LABELS, BOUNDS)))


@pytest.fixture(scope="module")
def posteriors(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("population") / "post.nc"
    _posterior().to_netcdf(str(path))
    return path


def test_population_command_recovers_the_gaussian(tmp_path: Path, posteriors: Path, caplog):
    output = tmp_path / "hyper.nc"
    args = ["population", str(posteriors), "--label", "fe_h", "--model", "gaussian", "-o", str(output), *NUTS]
    with caplog.at_level("INFO", logger="bayesslam"):
        assert main(args) == 0
    idata = az.from_netcdf(output)
    assert {"mean", "sd"} <= set(idata.posterior.data_vars)
    mean = idata.posterior["mean"].values.ravel()
    assert mean.size == 300
    lo, hi = np.quantile(mean, [0.025, 0.975])
    assert lo < TRUE_MEAN < hi
    assert idata.posterior.attrs["population_label"] == "fe_h"
    assert idata.constant_data["star_median"].shape == (N_STAR,)
    png = output.with_suffix(".png")
    assert png.read_bytes()[:8] == PNG_MAGIC
    # the log: each hyperparameter (median and 68% interval, in dex) and the fewest effective draws
    assert "median and 68% interval, dex" in caplog.text
    assert "  mean " in caplog.text and "  sd " in caplog.text
    assert "smallest effective number of draws per star" in caplog.text
    # an existing output needs --overwrite; then it is replaced (the sampler is cached: no recompilation)
    caplog.clear()
    with caplog.at_level("INFO", logger="bayesslam"):
        assert main(args) == 2
    assert "exists; pass --overwrite" in caplog.text
    plot = tmp_path / "figures" / "population.png"
    assert main([*args, "--overwrite", "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_population_command_with_a_histogram(tmp_path: Path, posteriors: Path):
    """The free-form model through the command (``mixture:K`` is left out: its sampler compiles for ~40 s on two
    cores, more than this file's budget)."""
    output = tmp_path / "hyper.nc"
    assert main(["population", str(posteriors), "--label", "fe_h", "--model", "histogram:6", "-o", str(output),
                 *NUTS, "--draws-per-star", "50"]) == 0
    idata = az.from_netcdf(output)
    assert {"smoothness", "weight"} <= set(idata.posterior.data_vars)
    assert idata.posterior["weight"].shape[-1] == 6
    np.testing.assert_allclose(idata.posterior["weight"].values.sum(axis=-1), 1.0, rtol=1e-5)
    assert output.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC


def test_population_command_errors(tmp_path: Path, posteriors: Path, caplog):
    output = tmp_path / "hyper.nc"
    common = ["-o", str(output), *NUTS]

    def fails(args: list[str], message: str) -> None:
        caplog.clear()
        with caplog.at_level("INFO", logger="bayesslam"):
            assert main(["population", *args, *common]) == 2
        assert message in caplog.text, caplog.text
        assert not output.exists()

    fails([str(posteriors), "--label", "mass", "--model", "gaussian"], "no label 'mass'")
    fails([str(posteriors), "--label", "fe_h", "--model", "foo"], "unknown population model 'foo'")
    fails([str(tmp_path / "missing.nc"), "--label", "fe_h", "--model", "gaussian"], "no posterior file")
    fails([str(posteriors), str(posteriors), "--label", "fe_h", "--model", "gaussian"], "more than one posterior")
    fails([str(posteriors), "--label", "fe_h", "--model", "gaussian", "--draws-per-star", "1"],
          "--draws-per-star must be at least 2")
    unrecorded = _posterior()
    del unrecorded.posterior.attrs[PRIOR_ATTRIBUTE]
    bare = tmp_path / "bare.nc"
    unrecorded.to_netcdf(str(bare))
    fails([str(bare), "--label", "fe_h", "--model", "gaussian"], "do not record the prior")

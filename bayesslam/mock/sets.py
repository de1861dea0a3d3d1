"""Prepared mock sets: mock surveys normalized on the model grid, with their true labels, cached on disk.

What tests, benchmarks and the default model's recipe (:mod:`bayesslam.default_recipe`)
need of a mock survey: the spectra as users would prepare them
(:func:`bayesslam.preparation.prepare_spectra`: rest frame, rebinning onto the
production-window grid, SLAM normalization), the true labels and the SNR.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bayesslam.mock.observe import ObservingSetup
from bayesslam.mock.population import LABEL_NAMES
from bayesslam.mock.survey import make_survey
from bayesslam.preparation import PreparedSpectra, prepare_spectra

__all__ = ["MockSet", "prepare_mock", "mock_set"]

logger = logging.getLogger(__name__)


def prepare_mock(n: int, seed: int, snr_range: tuple[float, float], progress: bool = True,
                 wave: np.ndarray | None = None) -> tuple[PreparedSpectra, np.ndarray, np.ndarray]:
    """A mock survey of ``n`` stars prepared on a model grid (default: the production window).

    Returns
    -------
    (PreparedSpectra, numpy.ndarray, numpy.ndarray)
        The prepared spectra, their true labels ``(n, 4)`` in the order of
        :data:`bayesslam.mock.LABEL_NAMES`, and their SNR.

    Raises
    ------
    RuntimeError
        If a mock spectrum fails to prepare (a bug: mock spectra are valid).
    """
    batch, table = make_survey(n, np.random.default_rng(seed), setup=ObservingSetup(snr_range=snr_range))
    prepared = prepare_spectra(iter(batch), wave, progress=progress, total=len(batch))
    if prepared.failures:
        raise RuntimeError(f"{len(prepared.failures)} mock spectra failed to prepare: {prepared.failures[:3]}")
    order = {name: i for i, name in enumerate(table["identifier"])}
    rows = [order[i] for i in prepared.spectra.identifiers]
    labels = np.column_stack([np.asarray(table[name], dtype=float)[rows] for name in LABEL_NAMES])
    return prepared, labels, np.asarray(table["snr"], dtype=float)[rows]


@dataclass(frozen=True)
class MockSet:
    """A prepared mock survey: normalized spectra on the model grid, true labels and SNR."""

    flux: np.ndarray
    ivar: np.ndarray
    wave: np.ndarray
    truth: np.ndarray
    snr: np.ndarray
    seed: int


def mock_set(n: int, seed: int, snr_range: tuple[float, float] = (3.0, 50.0), cache: Path | None = None,
             progress: bool = True) -> MockSet:
    """A prepared mock survey, cached as ``.npz`` under ``cache`` (None: no cache).

    The cache key is ``(n, seed, snr_range)``; a mock survey is a pure function
    of them (and of the installed bayesslam), so delete the cache after
    changing :mod:`bayesslam.mock` or :mod:`bayesslam.preparation`.
    """
    path = None if cache is None else Path(cache) / f"mock-{n}-{seed}-snr{snr_range[0]:g}-{snr_range[1]:g}.npz"
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as data:
            return MockSet(data["flux"], data["ivar"], data["wave"], data["truth"], data["snr"], seed)
    t0 = time.time()
    prepared, truth, snr = prepare_mock(n, seed, snr_range, progress=progress)
    out = MockSet(prepared.spectra.flux, prepared.spectra.ivar, prepared.wave, truth, snr, seed)
    logger.info("mock set of %d stars (seed %d) prepared in %.0f s", n, seed, time.time() - t0)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, flux=out.flux, ivar=out.ivar, wave=out.wave, truth=out.truth, snr=out.snr)
    return out

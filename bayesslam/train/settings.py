"""Trainer settings: hyperparameter grids, backends and their defaults, and the trainer's named errors."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from bayesslam.errors import BayesSlamError

__all__ = [
    "PRESETS",
    "DEFAULT_LABEL_UNITS",
    "BACKENDS",
    "DEFAULT_CHUNK_SIZE",
    "BATCHED_CV_TOL",
    "BATCHED_FINAL_TOL_FACTOR",
    "BATCHED_MAX_ITER",
    "TrainingDataError",
    "TrainerSettingsError",
    "resolve_grid",
]

#: Hyperparameter grids by name.
#:
#: ``"paper"`` is astroslam's default grid (Zhang et al. 2020; Qiu et al. 2025):
#: 11 x 4 x 5 = 220 points, 176 distinct ones with 4 labels.
#: ``"fast"`` (8 points) keeps the middle of the paper's grid: C in {0.5, 2}
#: (2^-1 and 2^1, the centre of the paper's 2^-5..2^5 range; large C costs
#: libsvm several times more and rarely wins on noisy standardized fluxes),
#: epsilon in {0.05, 0.1} (the paper's two central tube widths) and gamma at
#: both ends of the paper's gamma range, 0.2 and 0.5 (smooth vs. sharp label
#: dependence). On synthetic M-dwarf-like spectra its best CV MSE is within
#: ~1% of the paper grid's at ~1/20 of the cost (docs/training.md;
#: ``benchmarks/bench_train_emulator.py --compare-paper`` measures it).
PRESETS: dict[str, dict[str, list[Any]]] = {
    "paper": {
        "C": [2.0**k for k in range(-5, 6)],
        "epsilon": [0.01, 0.05, 0.1, 0.15],
        "gamma": ["auto", 0.2, 0.25, 0.3, 0.5],
    },
    "fast": {
        "C": [0.5, 2.0],
        "epsilon": [0.05, 0.1],
        "gamma": [0.2, 0.5],
    },
}

#: Units assumed for the default label names when none are given.
DEFAULT_LABEL_UNITS: dict[str, str] = {"teff": "K", "logg": "dex", "fe_h": "dex", "alpha_m": "dex"}

#: Trainer backends: scikit-learn/libsvm (one QP at a time, the reference) and the batched solver.
BACKENDS: tuple[str, ...] = ("libsvm", "batched")
#: Default chunk size per backend (pixels per task and checkpoint file).
DEFAULT_CHUNK_SIZE: dict[str, int] = {"libsvm": 32, "batched": 256}
#: Default tolerance of the batched backend's cross-validation solves.
BATCHED_CV_TOL: float = 3e-2
#: The batched backend solves the final fits to ``tol`` times this: its models are then the exact
#: SVRs (to ~1e-5 in standardized flux), and differ from libsvm's by libsvm's own inexactness.
BATCHED_FINAL_TOL_FACTOR: float = 1e-2
#: ADMM iteration limit of the batched backend when ``max_iter=-1``.
BATCHED_MAX_ITER: int = 20000

_GRID_KEYS = ("C", "epsilon", "gamma")


class TrainingDataError(BayesSlamError, ValueError):
    """The training labels or spectra cannot be trained on (NaN labels, shapes, too few stars...)."""


class TrainerSettingsError(BayesSlamError, ValueError):
    """A :class:`SlamTrainer` setting is invalid (grid, number of folds, chunk size...)."""


def resolve_grid(grid: str | Mapping[str, Sequence[Any]], n_labels: int) -> np.ndarray:
    """Turn a preset name or a grid mapping into the list of grid points.

    Parameters
    ----------
    grid : str or Mapping
        A key of :data:`PRESETS`, or a mapping with exactly the keys ``"C"``,
        ``"epsilon"`` and ``"gamma"``, each a non-empty sequence of positive
        numbers (``gamma`` may also hold ``"auto"`` = ``1 / n_labels``).
    n_labels : int
        Number of labels (resolves ``"auto"``).

    Returns
    -------
    numpy.ndarray, shape (n_grid, 3)
        Columns C, epsilon, gamma, in ``sklearn.model_selection.ParameterGrid``
        order (C slowest, gamma fastest), duplicates removed (first kept).

    Raises
    ------
    TrainerSettingsError
        If the grid is unknown or malformed.
    """
    if isinstance(grid, str):
        if grid not in PRESETS:
            raise TrainerSettingsError(
                f"unknown grid preset {grid!r}; choose one of {sorted(PRESETS)} or pass a dict"
            )
        grid = PRESETS[grid]
    if not isinstance(grid, Mapping) or set(grid) != set(_GRID_KEYS):
        keys = sorted(grid) if isinstance(grid, Mapping) else type(grid).__name__
        raise TrainerSettingsError(f"a grid needs exactly the keys {list(_GRID_KEYS)}, got {keys}")
    values: dict[str, list[float]] = {}
    for key in _GRID_KEYS:
        raw = grid[key]
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or len(raw) == 0:
            raise TrainerSettingsError(f"grid[{key!r}] must be a non-empty list, got {raw!r}")
        resolved = []
        for value in raw:
            if key == "gamma" and isinstance(value, str):
                if value != "auto":
                    raise TrainerSettingsError(f"gamma {value!r} not understood; use 'auto' or a positive number")
                value = 1.0 / n_labels
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TrainerSettingsError(f"grid[{key!r}] holds {value!r}; use positive numbers")
            value = float(value)
            if not (np.isfinite(value) and value > 0):
                raise TrainerSettingsError(f"grid[{key!r}] holds {value!r}; use positive numbers")
            resolved.append(value)
        values[key] = resolved
    points: list[tuple[float, float, float]] = []
    for c in values["C"]:
        for eps in values["epsilon"]:
            for gamma in values["gamma"]:
                if (c, eps, gamma) not in points:
                    points.append((c, eps, gamma))
    return np.array(points, dtype=np.float64)

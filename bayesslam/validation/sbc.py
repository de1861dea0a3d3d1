"""Simulation-based calibration of a model's inference: :func:`run_sbc` and its :class:`SbcResult`.

Talts et al. (2018): for ``n_sim`` simulations, labels are drawn from the
prior, a spectrum is simulated from them
(:mod:`~bayesslam.validation.simulators`: through the emulator with its
error model and noise at the chosen SNRs, or through the mock generator),
the labels' posterior is sampled (all simulations in one batched NUTS call,
:func:`bayesslam.infer.sample_nuts`, or MAP + Laplace, :func:`bayesslam.infer.fit_map`,
as a cheap option) and the rank of each true label among ``L`` evenly
thinned posterior draws is recorded (:func:`bayesslam.calibration.sbc_ranks`).
When the simulator is the likelihood's own generative model and the sampler
samples it, every label's ranks are uniform over ``0 .. L``;
:meth:`SbcResult.uniformity` tests that (chi-square and Kolmogorov-Smirnov
p-values), :meth:`SbcResult.plot` draws the rank histograms, the ECDF
differences with ArviZ's simultaneous bands and the coverage curves, and
:meth:`SbcResult.summary` holds every number for a report.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from bayesslam._files import atomic_write
from bayesslam.calibration import (
    BinnedCoverage,
    CoverageCurve,
    RankUniformity,
    binned_pit_coverage_curves,
    pit_coverage_curve,
    rank_pit,
    rank_uniformity,
    sbc_ranks,
    thin_draws,
)
from bayesslam.emulator import SlamModel
from bayesslam.infer import LabelPrior, default_prior, fit_map, sample_nuts
from bayesslam.preparation import ContinuumSettings
from bayesslam.validation import plotting
from bayesslam.validation.errors import ValidationError
from bayesslam.validation.simulators import EmulatorSimulator, MockSimulator, Simulator, draw_from_prior

__all__ = ["SAMPLERS", "SbcResult", "run_sbc", "ecdf_in_band"]

logger = logging.getLogger(__name__)

#: The samplers :func:`run_sbc` runs.
SAMPLERS: tuple[str, ...] = ("nuts", "map")


@functools.lru_cache(maxsize=32)
def _uniform_band(n: int, prob: float) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's simultaneous ``prob`` band of the ECDF of ``n`` uniform values at 0.01 ... 0.99 (kept: it takes ~0.3 s)."""
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    z = np.arange(1, 100) / 100.0
    return ecdf_confidence_band(n, z, z, prob=prob, method="optimized")


def ecdf_in_band(pit: np.ndarray, prob: float = plotting.ECDF_BAND) -> np.ndarray:
    """Whether each label's ECDF of ``pit`` stays inside ArviZ's simultaneous ``prob`` band of uniform values.

    The band is :func:`arviz.stats.ecdf_utils.ecdf_confidence_band` (method
    ``"optimized"``, Säilynoja et al. 2022) at 0.01 ... 0.99, the band that
    :func:`bayesslam.validation.plotting.plot_rank_ecdf` draws.
    """
    pit = np.asarray(pit, dtype=float)
    z = np.arange(1, 100) / 100.0
    inside = np.zeros(pit.shape[1], dtype=bool)
    for k in range(pit.shape[1]):
        values = np.sort(pit[np.isfinite(pit[:, k]), k])
        lower, upper = _uniform_band(int(values.size), float(prob))
        ecdf = np.searchsorted(values, z, side="right") / values.size
        inside[k] = bool(np.all((ecdf >= lower - 1e-12) & (ecdf <= upper + 1e-12)))
    return inside


def _list(values: np.ndarray) -> list:
    """JSON-ready nested lists, NaN and inf as None."""
    array = np.asarray(values, dtype=float).astype(object)
    array[~np.isfinite(np.asarray(values, dtype=float))] = None
    return array.tolist()


@dataclass(frozen=True)
class SbcResult:
    """The ranks of an SBC run, with the true labels, the SNRs and the sampler's diagnostics.

    Attributes
    ----------
    label_names : tuple of str
    truth : numpy.ndarray, ``(n_sim, n_label)``
        Labels drawn from the prior.
    snr : numpy.ndarray, ``(n_sim,)``
    ranks : numpy.ndarray, ``(n_sim, n_label)``
        Rank of each true label among :attr:`num_draws` thinned posterior
        draws (NaN where a fit failed).
    num_draws : int
        ``L``: ranks are ``0 .. L``.
    sampler : str
        ``"nuts"`` or ``"map"``.
    simulator : str
        How the spectra were made.
    seed : int
    median, sd : numpy.ndarray, ``(n_sim, n_label)``
        Posterior median and standard deviation of each simulation's labels.
    diagnostics : dict of numpy.ndarray
        Per simulation: NUTS ``r_hat_max``, ``ess_bulk_min``, ``n_divergent``;
        MAP ``status``.
    settings : dict
        The sampler's settings.
    """

    label_names: tuple[str, ...]
    truth: np.ndarray
    snr: np.ndarray
    ranks: np.ndarray
    num_draws: int
    sampler: str
    simulator: str
    seed: int
    median: np.ndarray
    sd: np.ndarray
    diagnostics: Mapping[str, np.ndarray] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_sim(self) -> int:
        """Simulations."""
        return int(self.truth.shape[0])

    def pit(self) -> np.ndarray:
        """Normalized ranks ``(rank + U) / (L + 1)`` (:func:`bayesslam.calibration.rank_pit`, seeded by :attr:`seed`)."""
        return rank_pit(self.ranks, self.num_draws, self.seed)

    def uniformity(self, n_bins: int | None = None) -> RankUniformity:
        """Chi-square and KS tests of uniform ranks per label (:func:`bayesslam.calibration.rank_uniformity`)."""
        return rank_uniformity(self.ranks, self.num_draws, n_bins=n_bins, rng=self.seed, label_names=self.label_names)

    def ecdf_in_band(self, prob: float = plotting.ECDF_BAND) -> np.ndarray:
        """Per label: the ECDF of the normalized ranks stays inside the simultaneous ``prob`` band (:func:`ecdf_in_band`)."""
        return ecdf_in_band(self.pit(), prob)

    def coverage_curve(self, *, levels: Sequence[float] | None = None, band: float = 0.95) -> CoverageCurve:
        """Coverage of the posteriors' central intervals at every level (from the normalized ranks)."""
        return pit_coverage_curve(self.pit(), levels=levels, band=band, label_names=self.label_names)

    def binned_coverage(self, by: str | np.ndarray = "snr", *, bins: int | Sequence[float] = 4,
                        levels: Sequence[float] | None = None, band: float = 0.95) -> BinnedCoverage:
        """Coverage curves in bins of ``by``: ``"snr"``, ``"truth"`` (each label's quartiles) or an array."""
        if isinstance(by, str):
            if by not in ("snr", "truth"):
                raise ValidationError(f"by must be 'snr', 'truth' or an array, got {by!r}")
            name, values = by, (self.snr if by == "snr" else self.truth)
        else:
            name, values = "by", np.asarray(by, dtype=float)
        return binned_pit_coverage_curves(self.pit(), values, bins=bins, name=name, levels=levels, band=band,
                                          label_names=self.label_names)

    def summary(self) -> dict[str, Any]:
        """Every number of the run, JSON-ready: settings, uniformity tests, ECDF bands, coverage, diagnostics, ranks."""
        uniformity = self.uniformity()
        curve = self.coverage_curve()
        in_band = self.ecdf_in_band()
        out: dict[str, Any] = {
            "sampler": self.sampler,
            "simulator": self.simulator,
            "seed": int(self.seed),
            "n_sim": self.n_sim,
            "num_draws": int(self.num_draws),
            "settings": dict(self.settings),
            "snr": {"min": float(np.min(self.snr)), "median": float(np.median(self.snr)),
                    "max": float(np.max(self.snr))},
            "uniformity": uniformity.to_dict(),
            "ecdf_in_band": {"prob": plotting.ECDF_BAND,
                             "labels": {name: bool(in_band[k]) for k, name in enumerate(self.label_names)}},
            "coverage": curve.to_dict(),
            "coverage_68": {name: float(curve.at(0.68)[k]) for k, name in enumerate(self.label_names)},
            "coverage_95": {name: float(curve.at(0.95)[k]) for k, name in enumerate(self.label_names)},
            "diagnostics": {key: _summary_of(np.asarray(value)) for key, value in self.diagnostics.items()},
            "per_simulation": {
                "truth": _list(self.truth),
                "snr": _list(self.snr),
                "ranks": _list(self.ranks),
                "median": _list(self.median),
                "sd": _list(self.sd),
                **{key: _list(value) for key, value in self.diagnostics.items()},
            },
            "label_names": list(self.label_names),
        }
        if np.unique(self.snr).size > 1:
            out["coverage_by_snr"] = self.binned_coverage("snr").to_dict()
        return out

    def to_json(self, path: str | Path | None = None) -> str:
        """:meth:`summary` as JSON text, also written to ``path`` when given."""
        text = json.dumps(self.summary(), indent=1)
        if path is not None:
            atomic_write(path, text.encode())
        return text

    def plot(self, folder: str | Path, prefix: str = "sbc") -> dict[str, Path]:
        """Write the figures of the run as PNGs in ``folder``.

        ``<prefix>_ranks.png`` (rank histograms with the 99% band of uniform
        ranks), ``<prefix>_ecdf.png`` (ECDF differences with ArviZ's 95%
        simultaneous bands), ``<prefix>_coverage.png`` (coverage curves) and,
        with several SNRs, ``<prefix>_coverage_snr.png``.

        Returns
        -------
        dict of str to pathlib.Path
            ``"ranks"``, ``"ecdf"``, ``"coverage"`` (and ``"coverage_snr"``).
        """
        folder = Path(folder)
        uniformity = self.uniformity()
        what = f"SBC: {self.n_sim} simulations ({self.simulator}), {self.sampler}, seed {self.seed}"
        paths = {
            "ranks": plotting.plot_rank_histograms(self.ranks, self.num_draws, folder / f"{prefix}_ranks.png",
                                                   label_names=self.label_names, n_bins=uniformity.n_bins,
                                                   pvalues=uniformity.chi2_pvalue, title=what),
            "ecdf": plotting.plot_rank_ecdf(self.pit(), folder / f"{prefix}_ecdf.png", label_names=self.label_names,
                                            title=what),
            "coverage": plotting.plot_coverage_curves({self.sampler: self.coverage_curve()},
                                                      folder / f"{prefix}_coverage.png", title=what),
        }
        if np.unique(self.snr).size > 1:
            paths["coverage_snr"] = plotting.plot_binned_coverage(self.binned_coverage("snr"),
                                                                  folder / f"{prefix}_coverage_snr.png", title=what)
        return paths


def _summary_of(values: np.ndarray) -> dict[str, float | None]:
    finite = values[np.isfinite(values)].astype(float)
    if finite.size == 0:
        return {"min": None, "median": None, "max": None, "sum": None}
    return {"min": float(finite.min()), "median": float(np.median(finite)), "max": float(finite.max()),
            "sum": float(finite.sum())}


def _snr_values(snr: float | Sequence[float] | np.ndarray, n_sim: int) -> np.ndarray:
    """One SNR per simulation: a number for all, ``n_sim`` values, or fewer values given to the stars in turn."""
    values = np.atleast_1d(np.asarray(snr, dtype=float))
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values) & (values > 0)):
        raise ValidationError(f"snr must be a positive number or a sequence of them, got {snr!r}")
    return values if values.size == n_sim else values[np.arange(n_sim) % values.size]


def _simulator(simulator: str | Callable, model: Any, slam_model: SlamModel | None) -> Callable:
    if callable(simulator):
        return simulator
    if simulator == "emulator":
        return EmulatorSimulator(model)
    if simulator == "mock":
        if not hasattr(model, "wave"):
            raise ValidationError("the mock simulator needs a model with a wavelength grid (wave)")
        settings = None
        if slam_model is not None:
            known = set(ContinuumSettings.__dataclass_fields__)
            settings = ContinuumSettings(**{k: v for k, v in slam_model.normalization.items() if k in known})
        return MockSimulator(np.asarray(model.wave), tuple(model.label_names), settings)
    raise ValidationError(f"simulator must be 'emulator', 'mock' or a callable (truth, snr, rng) -> (flux, ivar); "
                          f"got {simulator!r}")


def _describe(simulator: Callable) -> str:
    describe = getattr(simulator, "describe", None)
    return describe() if callable(describe) else getattr(simulator, "__name__", type(simulator).__name__)


def _laplace_draws(labels: np.ndarray, covariance: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of ``N(labels, covariance)`` per star, ``(n_star, n, n_label)`` (NaN for unfitted stars)."""
    good = np.all(np.isfinite(labels), axis=1) & np.all(np.isfinite(covariance), axis=(1, 2))
    safe = np.where(good[:, None, None], covariance, np.eye(labels.shape[1]))
    values, vectors = np.linalg.eigh(0.5 * (safe + np.swapaxes(safe, 1, 2)))
    root = vectors * np.sqrt(np.clip(values, 0.0, None))[:, None, :]
    z = rng.standard_normal((labels.shape[0], n, labels.shape[1]))
    draws = labels[:, None, :] + np.einsum("sjk,sdk->sdj", root, z)
    draws[~good] = np.nan
    return draws


def run_sbc(
    model: Any,
    n_sim: int,
    snr: float | Sequence[float] | np.ndarray,
    *,
    sampler: str = "nuts",
    prior: LabelPrior | None = None,
    seed: int = 0,
    simulator: str | Simulator = "emulator",
    num_draws: int = 99,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 1,
    batch_size: int = 128,
    progress: bool = False,
) -> SbcResult:
    """Simulation-based calibration: labels from the prior, simulated spectra, posteriors, ranks.

    Parameters
    ----------
    model : SlamModel or ForwardModel
        A model file's model (its emulator is used) or any forward model
        with the emulator's interface.
    n_sim : int
        Simulations (stars).
    snr : float or sequence of float
        SNR of every simulation: one value, ``n_sim`` values, or a few
        values given to the simulations in turn.
    sampler : {"nuts", "map"}
        ``"nuts"``: :func:`bayesslam.infer.sample_nuts`, all simulations in
        one batched call; ``"map"``: MAP + Laplace, ``num_draws`` draws of the
        Laplace Gaussian per star (cheap; tests the Laplace approximation too).
    prior : LabelPrior, optional
        Both the prior the labels are drawn from and the inference prior;
        default the model's box. A prior with a joint term cannot be drawn from.
    seed : int
        Seeds the labels, the spectra, the sampler and the randomization of ties.
    simulator : {"emulator", "mock"} or callable
        ``"emulator"``: :class:`~bayesslam.validation.simulators.EmulatorSimulator`
        (the likelihood's own generative model); ``"mock"``:
        :class:`~bayesslam.validation.simulators.MockSimulator`; or
        ``simulator(truth, snr, rng) -> (flux, ivar)``.
    num_draws : int
        ``L``, the draws each rank is among (thinned evenly from
        ``num_chains * num_samples``); 99 gives ranks 0..99 (100 values).
    num_warmup, num_samples, num_chains, batch_size
        NUTS settings (per simulation).
    progress : bool
        Progress bars.

    Returns
    -------
    SbcResult

    Raises
    ------
    ValidationError
        On an unknown sampler or simulator, fewer draws than ``num_draws``,
        bad sizes or SNRs, or spectra of the wrong shape from the simulator.
    """
    if sampler not in SAMPLERS:
        raise ValidationError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    n_sim, num_draws = int(n_sim), int(num_draws)
    if n_sim < 2 or num_draws < 1:
        raise ValidationError(f"SBC needs n_sim >= 2 and num_draws >= 1, got {n_sim} and {num_draws}")
    if sampler == "nuts" and num_chains * num_samples < num_draws:
        raise ValidationError(f"{num_chains} x {num_samples} NUTS draws cannot be thinned to num_draws={num_draws}")
    slam_model = model if isinstance(model, SlamModel) else None
    forward = slam_model.emulator if slam_model is not None else model
    prior = prior or default_prior(forward)
    simulate = _simulator(simulator, forward, slam_model)
    rng = np.random.default_rng(seed)
    truth = draw_from_prior(prior, n_sim, rng)
    snr_values = _snr_values(snr, n_sim)
    flux, ivar = (np.asarray(a, dtype=float) for a in simulate(truth, snr_values, rng))
    if flux.shape != ivar.shape or flux.ndim != 2 or flux.shape[0] != n_sim:
        raise ValidationError(f"the simulator returned flux {flux.shape} and ivar {ivar.shape}; expected "
                              f"({n_sim}, n_pix) each")
    logger.info("SBC: %d simulations (%s), SNR %.3g-%.3g, sampler %s", n_sim, _describe(simulate),
                snr_values.min(), snr_values.max(), sampler)
    names = tuple(prior.names)
    if sampler == "nuts":
        settings = {"num_warmup": num_warmup, "num_samples": num_samples, "num_chains": num_chains,
                    "batch_size": batch_size}
        post = sample_nuts(forward, flux, ivar, rng_key=jax.random.key(seed), prior=prior, num_warmup=num_warmup,
                           num_samples=num_samples, num_chains=num_chains, batch_size=batch_size, progress=progress,
                           log_likelihood=False)
        values = np.stack([post.idata.posterior[name].values for name in names], axis=-1)  # chain, draw, star, label
        draws = np.moveaxis(values, 2, 0).reshape(n_sim, -1, len(names))
        diagnostics = {"r_hat_max": np.max(post.summary["r_hat"], axis=1),
                       "ess_bulk_min": np.min(post.summary["ess_bulk"], axis=1),
                       "n_divergent": np.asarray(post.summary["n_divergent"], dtype=float)}
        low_ess = float(np.mean(diagnostics["ess_bulk_min"] < num_draws))
        if low_ess > 0.1:
            logger.warning("SBC: %.0f%% of the simulations have a bulk ESS below num_draws=%d: the thinned draws are "
                           "autocorrelated and the ranks not uniform even for exact inference; sample more draws",
                           100 * low_ess, num_draws)
    else:
        settings = {}
        fit = fit_map(forward, flux, ivar, prior=prior, progress=progress,
                      laplace_correction=None if slam_model is None else slam_model.laplace_correction)
        draws = _laplace_draws(fit.labels, fit.covariance, num_draws, rng)
        diagnostics = {"status": np.asarray(fit.status, dtype=float)}
    draws = thin_draws(draws, num_draws)
    ranks = sbc_ranks(truth, draws, rng=rng)
    with np.errstate(invalid="ignore"):
        median, sd = np.median(draws, axis=1), np.std(draws, axis=1, ddof=1)
    return SbcResult(names, truth, snr_values, ranks, num_draws, sampler, _describe(simulate), int(seed),
                     median, sd, diagnostics, settings)

"""The catalog's flag bits and the thresholds that set them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bayesslam.calibration.snr_law import PAPER_SNR_RANGE
from bayesslam.catalog.misfit import DEFAULT_MISFIT_TOLERANCE

__all__ = ["Flag", "FLAG_MEANINGS", "FlagThresholds", "describe_flags", "flag_names", "misfit_tolerance",
           "sampling_thresholds"]


class Flag(enum.IntFlag):
    """Bits of the catalog's ``FLAGS`` column (0 = no warning); :data:`FLAG_MEANINGS` says what each means."""

    OUTSIDE_DOMAIN = 1 << 0
    AT_PRIOR_EDGE = 1 << 1
    FIT_FAILED = 1 << 2
    RHAT_HIGH = 1 << 3
    LOW_ESS = 1 << 4
    DIVERGENCES = 1 << 5
    LOW_SNR = 1 << 6
    POOR_FIT = 1 << 7
    RV_UNKNOWN = 1 << 8
    SNR_LAW_EXTRAPOLATED = 1 << 9


#: What each flag bit means.
FLAG_MEANINGS: dict[Flag, str] = {
    Flag.OUTSIDE_DOMAIN: "MAP labels rarer than the training set's low-density tail, or posterior mass outside its hull.",
    Flag.AT_PRIOR_EDGE: "A MAP label sits at the edge of the prior box.",
    Flag.FIT_FAILED: "The optimizer did not converge (or produced non-finite values).",
    Flag.RHAT_HIGH: "A label's R-hat exceeds the threshold (1.01 with 4+ chains, 1.05 with fewer): not converged.",
    Flag.LOW_ESS: "A label's bulk ESS is below the threshold (100 per NUTS chain, 400 for an emcee ensemble).",
    Flag.DIVERGENCES: "NUTS reported divergent transitions.",
    Flag.LOW_SNR: "SNR below the range over which the SNR-law errors were calibrated (2.3).",
    Flag.POOR_FIT: ("The model does not describe the spectrum (e.g. not an M dwarf, or garbage): chi2 significantly "
                    "above its expectation (CHI2_P below 1e-3) and an rms misfit MISFIT above the tolerance (header "
                    "MISFITOL; default 1.5% of the normalized flux). Without MISFIT: reduced chi2 above 3."),
    Flag.RV_UNKNOWN: "No radial velocity was known: the spectrum was fitted in its observed frame.",
    Flag.SNR_LAW_EXTRAPOLATED: "SNR outside the range the SNR laws were fitted over: L_SNR_ERR is extrapolated.",
}


@dataclass(frozen=True)
class FlagThresholds:
    """Thresholds used to set :class:`Flag` bits (documented defaults).

    ``r_hat`` and ``ess`` default to None: chosen from the run, following
    Vehtari et al. (2021). R-hat above 1.01 with four or more chains, above
    1.05 with fewer (with one chain R-hat compares its two halves, a noisier
    test); bulk ESS below 100 per chain (NUTS), or below 400 for an emcee
    ensemble (its ESS comes from the autocorrelation time of all walkers).
    On an exact forward model, the default run (one chain, 1000 + 1000)
    then flags no star (``tests/test_sample.py``).

    ``POOR_FIT`` (:mod:`bayesslam.catalog.misfit`) needs both a significant
    chi2 excess, ``CHI2_P < poor_fit_p``, and a misfit amplitude ``MISFIT``
    above ``misfit`` (normalized-flux units). ``misfit`` defaults to None:
    the model's own tolerance when its metadata carries one
    (``misfit_tolerance``), else :data:`DEFAULT_MISFIT_TOLERANCE` (0.015,
    1.5% rms: above the misfit of the real M dwarfs inside the default
    model's domain, 0-0.9%, and of its mock stars, below 0.4% at SNR > 30;
    below the real K2, G8, F4 and A9 dwarfs, 1.9-3.7%; docs/bad-inputs.md).
    Give a number to override both. ``reduced_chi2`` is used only by
    catalogs built without ``MISFIT`` (no spectra at hand): ``POOR_FIT``
    is then a reduced chi2 above it.
    """

    r_hat: float | None = None
    ess: float | None = None
    low_snr: float = PAPER_SNR_RANGE[0]
    misfit: float | None = None
    poor_fit_p: float = 1e-3
    reduced_chi2: float = 3.0
    hull_fraction: float = 0.5
    density_percentile: float = 1.0


def sampling_thresholds(thresholds: FlagThresholds, n_chains: int, method: str) -> tuple[float, float]:
    """The R-hat and ESS thresholds of a run with ``n_chains`` chains (walkers for emcee) of ``method``."""
    r_hat = thresholds.r_hat if thresholds.r_hat is not None else (1.01 if n_chains >= 4 else 1.05)
    if thresholds.ess is not None:
        ess = thresholds.ess
    else:
        ess = 400.0 if method == "emcee" else 100.0 * n_chains
    return float(r_hat), float(ess)


def misfit_tolerance(thresholds: FlagThresholds, model_tolerance: float | None = None) -> tuple[float, str]:
    """The ``MISFIT`` tolerance of ``POOR_FIT`` and where it came from (``user``, ``model`` or ``default``)."""
    if thresholds.misfit is not None:
        return float(thresholds.misfit), "user"
    if model_tolerance is not None:
        return float(model_tolerance), "model"
    return DEFAULT_MISFIT_TOLERANCE, "default"


def describe_flags() -> str:
    """Human-readable table of flag bits: ``bit N NAME: meaning`` per line."""
    return "\n".join(f"bit {int(f).bit_length() - 1:2d} {f.name}: {FLAG_MEANINGS[f]}" for f in Flag)


def flag_names(value: int) -> list[str]:
    """The names of the bits set in a ``FLAGS`` value, e.g. ``flag_names(24) == ["RHAT_HIGH", "LOW_ESS"]``."""
    return [flag.name for flag in Flag if int(value) & int(flag)]

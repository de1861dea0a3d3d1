"""Empirical uncertainties that scale with signal-to-noise: sigma = a * SNR**b.

Qiu et al. (2025) fitted the cross-validation scatter of SLAM labels of BOSS
M dwarfs as power laws of the spectrum's SNR, in equal-number SNR bins (about
20 stars a bin) over SNR 2.3-19:

* sigma([Fe/H]) = 0.34 SNR**-0.25 dex
* sigma(Teff)   = 388.88 SNR**-0.47 K
* sigma(log g)  = 0.13 SNR**-0.13 dex

(at SNR 15: 0.19 dex, 132 K, 0.1 dex). The paper gives no law for
[alpha/M]. :func:`fit_snr_law` fits the same form to new CV results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from bayesslam.errors import BayesSlamError

__all__ = ["SnrLaw", "PAPER_SNR_LAWS", "PAPER_SNR_RANGE", "snr_law_sigma", "fit_snr_law"]

#: SNR range over which the paper's laws were fitted.
PAPER_SNR_RANGE: tuple[float, float] = (2.3, 19.0)


@dataclass(frozen=True)
class SnrLaw:
    """``sigma = a * snr**b`` for one label."""

    a: float
    b: float

    def __call__(self, snr: np.ndarray | float) -> np.ndarray:
        """Return sigma at ``snr`` (NaN where the SNR is not positive and finite)."""
        snr = np.asarray(snr, dtype=float)
        ok = np.isfinite(snr) & (snr > 0)
        return np.where(ok, self.a * np.where(ok, snr, 1.0) ** self.b, np.nan)


#: The laws of Qiu et al. (2025), by bayesslam label name.
PAPER_SNR_LAWS: dict[str, SnrLaw] = {
    "fe_h": SnrLaw(0.34, -0.25),
    "teff": SnrLaw(388.88, -0.47),
    "logg": SnrLaw(0.13, -0.13),
}


def snr_law_sigma(
    snr: np.ndarray | float, labels: tuple[str, ...], laws: Mapping[str, SnrLaw] | None = None
) -> np.ndarray:
    """Return the SNR-law sigma of each label, shape ``snr.shape + (len(labels),)``.

    Labels without a law (e.g. ``alpha_m`` in the paper) get NaN.
    """
    laws = PAPER_SNR_LAWS if laws is None else laws
    snr = np.asarray(snr, dtype=float)
    columns = [laws[name](snr) if name in laws else np.full(snr.shape, np.nan) for name in labels]
    return np.stack(columns, axis=-1)


def fit_snr_law(
    snr: np.ndarray, errors: np.ndarray, stars_per_bin: int = 20
) -> tuple[SnrLaw, np.ndarray, np.ndarray]:
    """Fit ``sigma = a * SNR**b`` to label errors in equal-number SNR bins, as the paper does.

    Parameters
    ----------
    snr : numpy.ndarray
        SNR of each star.
    errors : numpy.ndarray
        Estimated minus true label of each star.
    stars_per_bin : int
        Stars per SNR bin.

    Returns
    -------
    (SnrLaw, numpy.ndarray, numpy.ndarray)
        The law, and the bins' median SNR and scatter (standard deviation).

    Raises
    ------
    BayesSlamError
        With fewer than two bins' worth of stars.
    """
    snr = np.asarray(snr, dtype=float)
    errors = np.asarray(errors, dtype=float)
    ok = np.isfinite(snr) & (snr > 0) & np.isfinite(errors)
    snr, errors = snr[ok], errors[ok]
    n_bins = snr.size // stars_per_bin
    if n_bins < 2:
        raise BayesSlamError(
            f"need at least {2 * stars_per_bin} stars with finite SNR and errors to fit an SNR law, got {snr.size}."
        )
    order = np.argsort(snr)
    bins = np.array_split(order, n_bins)
    bin_snr = np.array([np.median(snr[b]) for b in bins])
    bin_sigma = np.array([np.std(errors[b], ddof=1) for b in bins])
    b, log_a = np.polyfit(np.log(bin_snr), np.log(bin_sigma), 1)
    return SnrLaw(float(np.exp(log_a)), float(b)), bin_snr, bin_sigma

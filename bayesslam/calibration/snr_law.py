"""Empirical uncertainties that scale with signal-to-noise: sigma = a * SNR**b.

Qiu et al. (2025) fitted the cross-validation scatter of SLAM labels of BOSS
M dwarfs as power laws of the spectrum's SNR, in equal-number SNR bins (about
20 stars a bin) over SNR 2.3-19:

* sigma([Fe/H]) = 0.34 SNR**-0.25 dex
* sigma(Teff)   = 388.88 SNR**-0.47 K
* sigma(log g)  = 0.13 SNR**-0.13 dex

(at SNR 15: 0.19 dex, 132 K, 0.1 dex). The paper gives no law for
[alpha/M]. :func:`fit_snr_law` fits the same form to new CV results, with
the errors of ``a`` and ``b``; a trained model fits its own from its
out-of-fold labels (:mod:`bayesslam.train.label_cv`) and carries them
(:meth:`SnrLaw.to_metadata`), and catalogs use them instead of the paper's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from bayesslam.calibration.intervals import CalibrationError
from bayesslam.errors import BayesSlamError

__all__ = ["SnrLaw", "PAPER_SNR_LAWS", "PAPER_SNR_RANGE", "snr_law_sigma", "fit_snr_law", "spectrum_snr"]

#: SNR range over which the paper's laws were fitted.
PAPER_SNR_RANGE: tuple[float, float] = (2.3, 19.0)


@dataclass(frozen=True)
class SnrLaw:
    """``sigma = a * snr**b`` for one label.

    Attributes
    ----------
    a, b : float
        The law.
    a_err, b_err : float
        Standard errors of ``a`` and ``b`` (NaN: not known).
    snr_range : (float, float) or None
        SNR range of the stars the law was fitted to (None: not known).
    """

    a: float
    b: float
    a_err: float = math.nan
    b_err: float = math.nan
    snr_range: tuple[float, float] | None = None

    def to_metadata(self) -> dict[str, Any]:
        """JSON record (``null`` for unknown errors and range)."""
        def number(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {"a": float(self.a), "b": float(self.b), "a_err": number(self.a_err), "b_err": number(self.b_err),
                "snr_range": None if self.snr_range is None else [float(v) for v in self.snr_range]}

    @classmethod
    def from_metadata(cls, record: Any) -> "SnrLaw":
        """Read :meth:`to_metadata`'s record.

        Raises
        ------
        CalibrationError
            If the record is not a mapping with finite ``a > 0`` and ``b``.
        """
        try:
            a, b = float(record["a"]), float(record["b"])
            a_err, b_err = (math.nan if record.get(k) is None else float(record[k]) for k in ("a_err", "b_err"))
            snr_range = record.get("snr_range")
            snr_range = None if snr_range is None else (float(snr_range[0]), float(snr_range[1]))
        except (TypeError, KeyError, ValueError, IndexError) as exc:
            raise CalibrationError(f"unusable SNR-law record {record!r}: {exc}") from exc
        if not (math.isfinite(a) and a > 0 and math.isfinite(b)):
            raise CalibrationError(f"SNR law needs finite a > 0 and b, got a = {a}, b = {b}")
        return cls(a, b, a_err, b_err, snr_range)

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
        The law (with the standard errors of ``a`` and ``b`` from the
        scatter of the bins about the fitted line, NaN with fewer than four
        bins, and the SNR range of the stars), and the bins' median SNR and
        scatter (standard deviation).

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
    if n_bins >= 4:
        (b, log_a), cov = np.polyfit(np.log(bin_snr), np.log(bin_sigma), 1, cov=True)
        b_err, log_a_err = np.sqrt(np.diag(cov))
    else:
        b, log_a = np.polyfit(np.log(bin_snr), np.log(bin_sigma), 1)
        b_err = log_a_err = math.nan
    a = float(np.exp(log_a))
    law = SnrLaw(a, float(b), a * float(log_a_err), float(b_err), (float(snr.min()), float(snr.max())))
    return law, bin_snr, bin_sigma


def spectrum_snr(flux: np.ndarray, ivar: np.ndarray) -> np.ndarray:
    """Median ``flux * sqrt(ivar)`` over each spectrum's usable pixels (NaN for a spectrum with none).

    The SNR that models' own SNR laws are fitted against and evaluated at
    (of the prepared, normalized spectra on the model grid).
    """
    flux, ivar = np.atleast_2d(flux), np.atleast_2d(ivar)
    good = (ivar > 0) & np.isfinite(flux) & np.isfinite(ivar)
    values = np.where(good, np.where(good, flux, 0.0) * np.sqrt(np.where(good, ivar, 0.0)), np.nan)
    out = np.full(len(flux), np.nan)
    some = good.any(axis=1)
    out[some] = np.nanmedian(values[some], axis=1)
    return out

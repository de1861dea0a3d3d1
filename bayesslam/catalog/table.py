"""Catalogs: one FITS row per star with MAP and posterior labels, raw and calibrated sigmas, and flags.

Columns, for each label ``L`` of the model (e.g. ``TEFF``):

``L_MAP``, ``L_MAP_ERR``
    MAP label and its Laplace sigma.
``L_MEDIAN``, ``L_MEAN``, ``L_P16``, ``L_P84``, ``L_POST_ERR``
    Posterior median, mean, 15.87/84.13 percentiles and standard deviation
    (only when a posterior was sampled).
``L_SNR_ERR``
    The empirical SNR-law sigma: the model's own laws (fitted to its
    out-of-fold labels, evaluated at the SNR of the prepared spectrum) when
    it has them, else those of Qiu et al. (2025) at ``SNR`` (NaN for labels
    without one). The header keyword ``SNRLAWS`` says which (``model`` or
    ``paper``).
``L_ERR``, ``L_SYS_ERR``
    The recommended, calibrated sigma and the systematic floor it contains,
    from the model's error calibration (:mod:`bayesslam.calibration`):
    ``sqrt((scale * L_POST_ERR)**2 + floor**2)`` with the posterior
    calibration when a posterior was sampled and the model has one, else
    ``sqrt((scale * L_MAP_ERR)**2 + floor**2)`` with the Laplace
    calibration for MAP fits (a Laplace calibration describes Laplace
    sigmas, not posteriors). Without a calibration of the kind that applies
    ``L_ERR`` is the statistical sigma (``L_POST_ERR``, else ``L_MAP_ERR``)
    and there is no ``L_SYS_ERR``.
``L_CAL_P16``, ``L_CAL_P84``, ``L_CAL_P2_5``, ``L_CAL_P97_5``
    Calibrated central 68.27% and 95% intervals: quantiles of the
    calibrated posterior (draws moved from the median by ``scale`` and
    convolved with ``N(0, floor**2)``), or ``L_MAP -+ z * L_ERR`` with the
    Laplace calibration; absent without a calibration. The header keyword
    ``ERRCALIB`` says which calibration was used (``posterior``,
    ``laplace`` or ``none``), ``ERRMODEL`` which likelihood
    (``label+pixel``: the model's emulator error model; ``diagonal``),
    ``LAPCORR`` whether ``L_MAP_ERR`` includes the model's Laplace
    correction (``T``; :mod:`bayesslam.emulator.laplace_correction`).
``L_RHAT``, ``L_ESS``
    Posterior diagnostics (only when a posterior was sampled).
``RHO_L1_L2``
    Laplace correlation coefficient of each label pair.

Plus ``IDENTIFIER``, ``SOURCE`` (the input file), ``SNR`` (as the reader
reports it: header ``SNRDEF`` says how, see below), ``SNR_PREP`` (one
definition for every input), ``CHI2``, ``REDUCED_CHI2``, ``CHI2_P`` and
``MISFIT`` (the poor-fit test, :mod:`bayesslam.catalog.misfit`), ``N_PIX``,
``FIT_STATUS``, ``N_ITER``, ``N_DIVERGENT``
(with a posterior), ``PPC_CHI2_P`` (with a posterior that has
posterior-predictive checks: the posterior-predictive p-value of chi2,
:mod:`bayesslam.infer.predictive`; it sets no flag), ``OUTSIDE_HULL_FRAC``,
``DENSITY_PERCENTILE``, ``FLAGS`` (bits in :class:`Flag`) and
``FLAG_NAMES`` (the names of the bits set).
Every column carries a description (FITS ``TCOMM``), label columns their
unit (``TUNIT``; units FITS cannot express, such as dex, in the
description). A star that
could not be fitted (``FIT_STATUS`` ``NO_DATA`` or ``NOT_FINITE``) has NaN in
every label and error column.

``SNR`` is what each reader reports, and readers define it differently
(:data:`SNR_DEFINITIONS`): SDSS ``spec`` files their ``SN_MEDIAN_ALL``,
SDSS-V mwmStar files their ``snr``, LAMOST its i-band ``SNRI``. The header
keyword ``SNRDEF`` gives the definition when all rows share one; when
inputs of several readers are mixed, ``SNRDEF`` says so, the column
``SNR_DEF`` names each row's reader and ``SNRDEF1``, ``SNRDEF2``, ...
give the definitions. ``SNR_PREP`` is the same for every reader: the median
of ``flux * sqrt(ivar)`` of the prepared (normalized) spectrum over its
usable pixels on the model grid, the SNR the model's own SNR laws are
evaluated at.

``POOR_FIT`` is set when ``CHI2_P`` is below ``FlagThresholds.poor_fit_p``
(1e-3) and ``MISFIT`` above the tolerance (header ``MISFITOL``;
``MISFITSR`` says whether it is the ``default``, the ``model``'s own or the
``user``'s); a catalog built without ``MISFIT`` falls back to a reduced
chi2 above ``FlagThresholds.reduced_chi2`` (header ``POORFIT``: ``misfit``
or ``reduced_chi2``).

:func:`write_catalog` writes the table as the FITS extension ``CATALOG`` and
the inputs that failed as the extension ``FAILED`` (``SOURCE``,
``IDENTIFIER``, ``ERROR``, ``REASON``; :func:`failed_table`), so every input
is accounted for; read them with ``Table.read(path, hdu="CATALOG")`` and
``Table.read(path, hdu="FAILED")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from bayesslam._files import atomic_write
from bayesslam.calibration import LEVELS, PAPER_SNR_RANGE, ModelCalibration, SnrLaw, snr_law_sigma
from bayesslam.catalog.domain import TrainingDomain
from bayesslam.catalog.flags import Flag, FlagThresholds, flag_names, misfit_tolerance, sampling_thresholds
from bayesslam.catalog.misfit import chi2_p_value
from bayesslam.infer import FitStatus, MapResult, Posterior
from bayesslam.preparation import Failure

__all__ = ["SNR_DEFINITIONS", "build_catalog", "failed_table", "write_catalog"]

#: How each source of spectra defines the SNR it reports (the catalog's ``SNR``), by reader name
#: (:func:`bayesslam.io.registered_readers`), plus ``mock`` (in-memory mock spectra), ``given``
#: (spectrum records built by the caller) and ``unknown`` (the source file cannot be identified).
SNR_DEFINITIONS: dict[str, str] = {
    "sdss-spec": "SN_MEDIAN_ALL of the spec file's SPECOBJ/SPALL row: SDSS pipeline median S/N per pixel",
    "sdssv-mwm": "snr of the mwmStar BOSS row: SDSS-V pipeline median S/N per pixel",
    "lamost": "SNRI header card (LAMOST S/N in the i band, which the M-dwarf window overlaps), else SNRR",
    "table": "the file's own snr value (FITS card SNR, npz scalar snr), NaN when absent",
    "mock": "target median S/N per pixel drawn by bayesslam.mock",
    "given": "SpectrumMeta.snr as set by the caller (NaN when not set)",
    "unknown": "reported by a reader that cannot be identified now (the source file is not at hand)",
}


def build_catalog(
    identifiers: Sequence[str],
    snr: np.ndarray,
    fit: MapResult,
    posterior: Posterior | None = None,
    domain: TrainingDomain | None = None,
    thresholds: FlagThresholds = FlagThresholds(),
    calibration: ModelCalibration | None = None,
    snr_laws: Mapping[str, SnrLaw] | None = None,
    law_snr: np.ndarray | None = None,
    sources: Sequence[str] | None = None,
    label_units: Sequence[str] | None = None,
    v_rad: np.ndarray | None = None,
    rest_frame: np.ndarray | None = None,
    n_model_pixels: int | None = None,
    error_model: bool = False,
    laplace_correction: bool = False,
    misfit: np.ndarray | None = None,
    model_misfit_tolerance: float | None = None,
    snr_readers: Sequence[str] | None = None,
) -> Table:
    """Assemble the catalog table.

    Parameters
    ----------
    identifiers : sequence of str
        Star identifiers, in the order of ``fit``.
    snr : numpy.ndarray
        SNR per star (NaN when unknown).
    fit : MapResult
        MAP results.
    posterior : Posterior, optional
        Sampling results for the same stars, same order.
    domain : TrainingDomain, optional
        For the out-of-domain measures.
    thresholds : FlagThresholds
        Flag thresholds.
    calibration : ModelCalibration, optional
        The model's error calibration (``SlamModel.error_calibration``).
    snr_laws : Mapping of str to SnrLaw, optional
        The model's own SNR laws (``SlamModel.snr_laws``); default: the paper's.
    law_snr : numpy.ndarray, optional
        The SNR the model's laws are evaluated at (default ``snr``); when
        given it is also the column ``SNR_PREP``.
    sources : sequence of str, optional
        The input each star came from (``SOURCE``; default empty).
    label_units : sequence of str, optional
        The labels' units (FITS ``TUNIT`` of their columns).
    v_rad : numpy.ndarray, optional
        Radial velocity applied per star (``V_RAD``; NaN when unknown).
    rest_frame : numpy.ndarray of bool, optional
        Whether each spectrum was fitted in its rest frame; False sets
        ``RV_UNKNOWN``.
    n_model_pixels : int, optional
        Pixels the model can use; gives ``MASKED_FRAC = 1 - N_PIX / n``.
    error_model : bool
        Whether the likelihood used the model's emulator error model
        (header ``ERRMODEL``: ``label+pixel``, else ``diagonal``).
    laplace_correction : bool
        Whether the Laplace covariances of ``fit`` were widened by the
        model's Laplace correction (header ``LAPCORR``).
    misfit : numpy.ndarray, optional
        Each star's misfit amplitude at the MAP
        (:func:`bayesslam.catalog.misfit.misfit_amplitude`; column ``MISFIT``).
        With it ``POOR_FIT`` is ``CHI2_P < thresholds.poor_fit_p`` and
        ``MISFIT`` above the tolerance; without it, a reduced chi2 above
        ``thresholds.reduced_chi2``.
    model_misfit_tolerance : float, optional
        The model's own ``MISFIT`` tolerance (used unless
        ``thresholds.misfit`` is set; default
        :data:`~bayesslam.catalog.misfit.DEFAULT_MISFIT_TOLERANCE`).
    snr_readers : sequence of str, optional
        Per star, the reader its ``SNR`` came from (a key of
        :data:`SNR_DEFINITIONS` or another reader's name): header ``SNRDEF``
        and, when several are mixed, the column ``SNR_DEF``.

    Columns that were not computed are not written: the posterior columns
    (``L_MEDIAN``, ``L_MEAN``, ``L_P16``, ``L_P84``, ``L_POST_ERR``,
    ``L_RHAT``, ``L_ESS``, ``N_DIVERGENT``) only with a posterior (and
    ``PPC_CHI2_P`` only with its posterior-predictive p-values), the
    calibrated ones (``L_SYS_ERR``, ``L_CAL_*``) only with a calibration.
    Every column has a description (FITS ``TCOMM``) and label columns their
    unit (``TUNIT``).
    """
    n_star = len(fit)
    names = fit.label_names
    snr = np.asarray(snr, dtype=float)
    table = Table()
    table["IDENTIFIER"] = np.asarray(identifiers, dtype=str)
    table["SOURCE"] = np.asarray(sources if sources is not None else [""] * n_star, dtype=str)
    table["SNR"] = snr
    if law_snr is not None:
        table["SNR_PREP"] = np.asarray(law_snr, dtype=float)
    if snr_readers is not None:
        readers = [str(r) for r in snr_readers]
        kinds = list(dict.fromkeys(readers))
        if len(kinds) == 1:
            table.meta["SNRDEF"] = f"{kinds[0]}: {_snr_definition(kinds[0])}"
        elif kinds:
            table["SNR_DEF"] = np.asarray(readers, dtype=str)
            table.meta["SNRDEF"] = "mixed: column SNR_DEF names each row's reader, SNRDEFn define them"
            for number, kind in enumerate(kinds, start=1):
                table.meta[f"SNRDEF{number}"] = f"{kind}: {_snr_definition(kind)}"
    if v_rad is not None:
        table["V_RAD"] = np.asarray(v_rad, dtype=float)
        table["V_RAD"].unit = "km / s"
    flags = np.zeros(n_star, dtype=np.int64)
    if snr_laws is None:
        laws = snr_law_sigma(snr, names)
    else:
        laws = snr_law_sigma(snr if law_snr is None else np.asarray(law_snr, dtype=float), names, snr_laws)
    summary = posterior.summary if posterior is not None else {}
    calibrated = _calibrated_columns(fit, posterior, calibration)
    unfitted = (fit.status == FitStatus.NO_DATA) | (fit.status == FitStatus.NOT_FINITE)
    if np.any(unfitted):
        summary = {key: _blank(value, unfitted) if key != "n_divergent" else value for key, value in summary.items()}
        calibrated = {key: _blank(value, unfitted) for key, value in calibrated.items()}
    units = tuple(label_units) if label_units is not None else ("",) * len(names)
    posterior_columns = (("MEDIAN", "median"), ("MEAN", "mean"), ("P16", "q16"), ("P84", "q84"), ("POST_ERR", "sd"))
    for k, name in enumerate(names):
        col = name.upper()
        table[f"{col}_MAP"] = fit.labels[:, k]
        table[f"{col}_MAP_ERR"] = fit.sigma[:, k]
        if posterior is not None:
            for suffix, key in posterior_columns:
                table[f"{col}_{suffix}"] = summary[key][:, k]
        table[f"{col}_SNR_ERR"] = laws[:, k]
        for suffix, values in calibrated.items():
            table[f"{col}_{suffix}"] = values[:, k]
        if posterior is not None:
            table[f"{col}_RHAT"] = summary["r_hat"][:, k]
            table[f"{col}_ESS"] = summary["ess_bulk"][:, k]
        fits_unit = _fits_unit(units[k])
        for suffix in _LABEL_COLUMNS:
            if f"{col}_{suffix}" in table.colnames:
                column = table[f"{col}_{suffix}"]
                column.description = _LABEL_COLUMNS[suffix].format(label=name)
                if suffix in ("RHAT", "ESS") or not units[k]:
                    continue
                if fits_unit is not None:
                    column.unit = fits_unit
                else:  # e.g. dex, which FITS units cannot express: say it in the description
                    column.description += f" [{units[k]}]"
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            table[f"RHO_{names[i].upper()}_{names[j].upper()}"] = fit.correlation[:, i, j]
            table[f"RHO_{names[i].upper()}_{names[j].upper()}"].description = (
                f"Laplace correlation coefficient of {names[i]} and {names[j]} at the MAP")
    table["CHI2"] = fit.chi2
    table["REDUCED_CHI2"] = fit.reduced_chi2
    chi2_p = chi2_p_value(fit.chi2, fit.n_good, len(names))
    table["CHI2_P"] = chi2_p
    if misfit is not None:
        misfit = np.where(unfitted, np.nan, np.asarray(misfit, dtype=float))
        table["MISFIT"] = misfit
    table["N_PIX"] = fit.n_good
    if n_model_pixels:
        table["MASKED_FRAC"] = 1.0 - np.asarray(fit.n_good, dtype=float) / float(n_model_pixels)
    table["FIT_STATUS"] = fit.status
    table["N_ITER"] = fit.n_iter
    n_div = summary.get("n_divergent", np.zeros(n_star, dtype=int))
    if posterior is not None:
        table["N_DIVERGENT"] = n_div
    if "ppc_chi2_p" in summary:
        table["PPC_CHI2_P"] = np.asarray(summary["ppc_chi2_p"], dtype=float)
    hull = np.full(n_star, np.nan)
    percentile = np.full(n_star, np.nan)
    if domain is not None:
        percentile = domain.density_percentile(fit.labels)
        if posterior is not None:
            hull = np.array([domain.fraction_outside_hull(posterior.draws(i)) for i in range(n_star)])
        else:
            hull = np.where(unfitted, np.nan, (~domain.inside_hull(fit.labels)).astype(float))
        outside = ((percentile < thresholds.density_percentile) | (hull > thresholds.hull_fraction)) & ~unfitted
        flags |= np.where(outside, int(Flag.OUTSIDE_DOMAIN), 0)
    table["OUTSIDE_HULL_FRAC"] = hull
    table["DENSITY_PERCENTILE"] = percentile
    flags |= np.where(np.any(fit.at_bound, axis=1), int(Flag.AT_PRIOR_EDGE), 0)
    flags |= np.where(fit.status != FitStatus.CONVERGED, int(Flag.FIT_FAILED), 0)
    if posterior is not None:
        n_chains = int(posterior.idata.posterior.sizes["chain"])
        r_hat_max, ess_min = sampling_thresholds(thresholds, n_chains, posterior.method)
        flags |= np.where(np.any(summary["r_hat"] > r_hat_max, axis=1), int(Flag.RHAT_HIGH), 0)
        flags |= np.where(np.any(summary["ess_bulk"] < ess_min, axis=1), int(Flag.LOW_ESS), 0)
        table.meta["RHATMAX"] = r_hat_max
        table.meta["ESSMIN"] = ess_min
        flags |= np.where(n_div > 0, int(Flag.DIVERGENCES), 0)
    flags |= np.where(~(snr >= thresholds.low_snr), int(Flag.LOW_SNR), 0)
    if misfit is not None:
        tolerance, origin = misfit_tolerance(thresholds, model_misfit_tolerance)
        poor = (chi2_p < thresholds.poor_fit_p) & (misfit > tolerance)
        table.meta["POORFIT"] = "misfit"
        table.meta["POORFITP"] = float(thresholds.poor_fit_p)
        table.meta["MISFITOL"] = tolerance
        table.meta["MISFITSR"] = origin
    else:
        poor = ~(fit.reduced_chi2 <= thresholds.reduced_chi2)
        table.meta["POORFIT"] = "reduced_chi2"
        table.meta["CHI2MAX"] = float(thresholds.reduced_chi2)
    flags |= np.where(poor & ~unfitted, int(Flag.POOR_FIT), 0)
    if rest_frame is not None:
        flags |= np.where(~np.asarray(rest_frame, dtype=bool), int(Flag.RV_UNKNOWN), 0)
    law_range = _law_range(snr_laws)
    at = snr if snr_laws is None or law_snr is None else np.asarray(law_snr, dtype=float)
    flags |= np.where(np.isfinite(at) & ((at < law_range[0]) | (at > law_range[1])), int(Flag.SNR_LAW_EXTRAPOLATED), 0)
    table["FLAGS"] = flags
    table["FLAG_NAMES"] = np.array([",".join(flag_names(int(value))) for value in flags] or [""], dtype=str)[:n_star]
    for column, description in _COLUMNS.items():
        if column in table.colnames:
            table[column].description = description
    table.meta["LABELS"] = ",".join(names)
    table.meta["ERRCALIB"] = _calibration_kind(posterior, calibration)
    table.meta["ERRMODEL"] = "label+pixel" if error_model else "diagonal"
    table.meta["LAPCORR"] = bool(laplace_correction)
    table.meta["SNRLAWS"] = "paper" if snr_laws is None else "model"
    for flag in Flag:
        table.meta[f"FLAGBIT{int(flag).bit_length() - 1}"] = flag.name
    return table


#: Descriptions (FITS ``TCOMM``) of the per-label columns, by suffix.
_LABEL_COLUMNS: dict[str, str] = {
    "MAP": "MAP {label}",
    "MAP_ERR": "Laplace sigma of {label} at the MAP (raw statistical)",
    "MEDIAN": "posterior median of {label}",
    "MEAN": "posterior mean of {label}",
    "P16": "posterior 15.87 percentile of {label}",
    "P84": "posterior 84.13 percentile of {label}",
    "POST_ERR": "posterior standard deviation of {label} (raw statistical)",
    "SNR_ERR": "SNR-law sigma of {label} (header SNRLAWS: the model's or the paper's)",
    "ERR": "recommended sigma of {label}: calibrated (header ERRCALIB), else raw",
    "SYS_ERR": "systematic floor of {label} within its calibrated sigma",
    "CAL_P16": "calibrated 15.87 percentile of {label}",
    "CAL_P84": "calibrated 84.13 percentile of {label}",
    "CAL_P2_5": "calibrated 2.5 percentile of {label}",
    "CAL_P97_5": "calibrated 97.5 percentile of {label}",
    "RHAT": "split R-hat of {label} (NaN for emcee: walkers are not independent)",
    "ESS": "bulk effective sample size of {label} (emcee: from the autocorrelation time)",
}

#: Descriptions (FITS ``TCOMM``) of the other columns.
_COLUMNS: dict[str, str] = {
    "IDENTIFIER": "star identifier (NAME#2, NAME#3 for repeated ones)",
    "SOURCE": "file the spectrum was read from",
    "SNR": "signal-to-noise ratio as its reader reports it (definition: header SNRDEF, column SNR_DEF)",
    "SNR_DEF": "the reader whose SNR definition applies to this row (header SNRDEFn)",
    "SNR_PREP": "median flux*sqrt(ivar) of the prepared spectrum on the model grid (same for every reader)",
    "CHI2": "chi-square at the MAP with the likelihood's variance",
    "REDUCED_CHI2": "CHI2 / (N_PIX - number of labels)",
    "CHI2_P": "chi2 survival function of CHI2 with N_PIX - n_label dof: P(a chi2 this large | model right)",
    "MISFIT": "rms misfit at the MAP beyond the likelihood's variance (normalized flux; POOR_FIT above MISFITOL)",
    "N_PIX": "pixels used in the fit",
    "MASKED_FRAC": "fraction of the model's pixels masked in this spectrum",
    "V_RAD": "radial velocity removed before fitting (NaN: unknown, flag RV_UNKNOWN)",
    "FIT_STATUS": "MAP status: 0 converged, 1 iteration limit, 2 not finite, 3 no data",
    "N_ITER": "MAP iterations",
    "N_DIVERGENT": "divergent NUTS transitions",
    "PPC_CHI2_P": "posterior-predictive p-value of chi2: fraction of draws whose replicated chi2 >= the observed",
    "OUTSIDE_HULL_FRAC": "fraction of the labels (draws) outside the training set's convex hull",
    "DENSITY_PERCENTILE": "percentile of the training-label density at the MAP labels",
    "FLAGS": "flag bits (header FLAGBITn, column FLAG_NAMES)",
    "FLAG_NAMES": "names of the flag bits set, comma-separated",
}


def _snr_definition(reader: str) -> str:
    """The SNR definition of a reader (:data:`SNR_DEFINITIONS`), or a line naming an unlisted one."""
    return SNR_DEFINITIONS.get(reader, f"as the reader {reader!r} reports it")


def _law_range(snr_laws: Mapping[str, SnrLaw] | None) -> tuple[float, float]:
    """The SNR range all the laws hold over (the paper's when no model laws are given)."""
    if snr_laws is None:
        return PAPER_SNR_RANGE
    ranges = [law.snr_range for law in snr_laws.values() if law.snr_range is not None]
    if not ranges:
        return (0.0, np.inf)
    return (max(r[0] for r in ranges), min(r[1] for r in ranges))


def _fits_unit(unit: str) -> u.UnitBase | None:
    """``unit`` as a FITS-expressible astropy unit, or None (e.g. ``dex``, or no unit)."""
    if not unit:
        return None
    try:
        parsed = u.Unit(unit, format="fits")
    except ValueError:
        return None
    return parsed


def _blank(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A float copy of ``values`` with NaN in ``rows``."""
    out = np.array(values, dtype=float)
    out[rows] = np.nan
    return out


def _calibration_kind(posterior: Posterior | None, calibration: ModelCalibration | None) -> str:
    """Which calibration ``L_ERR`` uses: the posterior's for a sampled posterior, the Laplace one for MAP fits."""
    if calibration is None:
        return "none"
    if posterior is not None:
        return "posterior" if calibration.posterior is not None else "none"
    return "laplace" if calibration.laplace is not None else "none"


def _calibrated_columns(fit: MapResult, posterior: Posterior | None,
                        calibration: ModelCalibration | None) -> dict[str, np.ndarray]:
    """``ERR``, ``SYS_ERR`` and the calibrated interval columns, each ``(n_star, n_label)``."""
    kind = _calibration_kind(posterior, calibration)
    shape = fit.labels.shape
    probs = [0.5 - LEVELS[0] / 2, 0.5 + LEVELS[0] / 2, 0.5 - LEVELS[1] / 2, 0.5 + LEVELS[1] / 2]
    names = ("CAL_P16", "CAL_P84", "CAL_P2_5", "CAL_P97_5")
    if kind == "none":
        statistical = posterior.summary["sd"] if posterior is not None else fit.sigma
        return {"ERR": statistical}
    if kind == "posterior":
        cal = calibration.posterior
        quantiles = np.full((shape[0], len(probs), shape[1]), np.nan)
        for i in range(shape[0]):
            draws = posterior.draws(i)
            if np.all(np.isfinite(draws)):
                quantiles[i] = cal.quantiles(draws, probs)
        out = {"ERR": cal.apply(posterior.summary["sd"])}
    else:
        cal = calibration.laplace
        lo68, hi68 = cal.gaussian_intervals(fit.labels, fit.sigma, LEVELS[0])
        lo95, hi95 = cal.gaussian_intervals(fit.labels, fit.sigma, LEVELS[1])
        quantiles = np.stack([lo68, hi68, lo95, hi95], axis=1)
        out = {"ERR": cal.apply(fit.sigma)}
    out["SYS_ERR"] = np.broadcast_to(cal.floor, shape).copy()
    out.update({name: quantiles[:, j] for j, name in enumerate(names)})
    return out


def failed_table(failures: Sequence[Failure]) -> Table:
    """The inputs that failed, one row each: ``SOURCE``, ``IDENTIFIER`` (when known), ``ERROR``, ``REASON``."""
    table = Table()
    for column, attribute in (("SOURCE", "source"), ("IDENTIFIER", "identifier"), ("ERROR", "error"),
                              ("REASON", "reason")):
        table[column] = np.array([str(getattr(f, attribute)) for f in failures], dtype=str) if failures else \
            np.zeros(0, dtype="U1")
    table.meta["EXTNAME"] = "FAILED"
    return table


def _table_hdu(table: Table, name: str) -> fits.BinTableHDU:
    """A named FITS table extension with each column's description as ``TCOMMn``."""
    hdu = fits.table_to_hdu(table)
    hdu.name = name
    for number, column in enumerate(table.itercols(), start=1):
        if column.description:
            hdu.header[f"TCOMM{number}"] = column.description
    return hdu


def write_catalog(table: Table, path: str | Path, *, failures: Sequence[Failure] = (),
                  extensions: Mapping[str, Table] | None = None, overwrite: bool = False) -> Path:
    """Write the catalog (extension ``CATALOG``) and the failed inputs (extension ``FAILED``) to FITS, atomically.

    Parameters
    ----------
    table : astropy.table.Table
        The catalog (:func:`build_catalog`).
    path : str or pathlib.Path
    failures : sequence of Failure
        The inputs that could not be used (written even when empty, so
        every catalog says how many failed: header ``NFAILED``).
    extensions : mapping of str to astropy.table.Table, optional
        More tables, each written as the extension of its name (e.g.
        ``GROUPS``: one row per group of stars that share labels).
    overwrite : bool
        Replace an existing file.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    catalog = _table_hdu(table, "CATALOG")
    catalog.header["NFAILED"] = (len(failures), "inputs that failed: extension FAILED")
    hdul = fits.HDUList([fits.PrimaryHDU(), catalog, _table_hdu(failed_table(failures), "FAILED")])
    hdul.extend(_table_hdu(extra, name) for name, extra in (extensions or {}).items())
    return atomic_write(path, lambda stream: hdul.writeto(stream))

"""Comparing two catalogs of the same stars: cross-match, offsets and scatter per label, and their z-scores.

Two catalogs A and B (bayesslam against ASPCAP, two bayesslam runs, a
survey against a benchmark sample) are cross-matched by an identifier
column or by sky position (astropy's ``SkyCoord.match_to_catalog_sky``,
nearest neighbour within a radius, 1 arcsec by default, one B row per A
row; unmatched rows are dropped). For each label :func:`compare_catalogs`
reports, over the matched stars with finite values,

* ``n``; ``bias``, the median of ``B - A``; ``mean``; ``std`` (ddof=1);
  ``mad_std`` (1.4826 times the median absolute deviation, robust to
  outliers);
* with error columns in both catalogs, the z-score
  ``z = (B - A) / sqrt(err_A**2 + err_B**2)``: its standard deviation and
  robust standard deviation (1 when the errors describe the differences
  and there is no offset) and the fractions of stars with ``|z| < 1`` and
  ``|z| < 1.96`` (0.683 and 0.95 then);
* optionally the same in equal-number bins of a second quantity (SNR,
  Teff, [Fe/H] ...).

Labels are found by name: for a bayesslam catalog the posterior median
``<L>_MEDIAN`` (else the MAP ``<L>_MAP``) with the recommended error
``<L>_ERR``; for other catalogs a column ``<L>`` (upper or lower case, e.g.
ASPCAP's ``TEFF``, ``FE_H``) with ``<L>_ERR``, ``<L>_err`` or ``e_<L>``.
A mapping from A's column to B's names them explicitly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.stats import mad_std
from astropy.table import Table

from bayesslam._files import atomic_write
from bayesslam.relations._tables import float_column, read_table, text_column, write_table
from bayesslam.relations.errors import MissingColumnError, NoMatchError, RelationsError, UnitsError, require_columns

__all__ = [
    "DEFAULT_LABELS",
    "DEFAULT_MATCH_RADIUS",
    "ID_COLUMNS",
    "LabelComparison",
    "CatalogComparison",
    "label_column",
    "error_column",
    "match_by_id",
    "match_on_sky",
    "parse_radius",
    "binned_statistics",
    "compare_catalogs",
    "plot_comparison",
]

logger = logging.getLogger(__name__)

#: The labels compared by default (those both catalogs have).
DEFAULT_LABELS = ("teff", "logg", "fe_h", "alpha_m")
#: Default radius of the sky cross-match.
DEFAULT_MATCH_RADIUS = 1.0 * u.arcsec
#: Identifier columns tried, in order, when neither a match column nor coordinates are given.
ID_COLUMNS = ("IDENTIFIER", "identifier", "source_id", "SOURCE_ID", "gaia_dr3_source_id", "sdss_id", "SDSS_ID",
              "APOGEE_ID", "apogee_id")
_Z95 = 1.959964


def label_column(table: Table, label: str) -> str | None:
    """The column that holds ``label`` in ``table``, or None.

    Tried in order: ``label`` itself, ``<LABEL>_MEDIAN`` and ``<LABEL>_MAP``
    (a bayesslam catalog: posterior median, else MAP), ``<LABEL>`` and
    ``<label>`` (e.g. ASPCAP's ``FE_H``, a plain ``fe_h``).
    """
    upper, lower = label.upper(), label.lower()
    for name in (label, f"{upper}_MEDIAN", f"{upper}_MAP", upper, lower):
        if name in table.colnames:
            return name
    return None


def error_column(table: Table, column: str) -> str | None:
    """The one-sigma error column of a value column, or None.

    For a bayesslam column ``<L>_MEDIAN``, ``<L>_MAP`` or ``<L>_MEAN``: the
    recommended error ``<L>_ERR``. Otherwise the first of ``<col>_ERR``,
    ``<col>_err``, ``e_<col>``, ``E_<col>``, ``<col>_error``, ``<col>_ERROR``
    that exists.
    """
    candidates = []
    for suffix in ("_MEDIAN", "_MAP", "_MEAN"):
        if column.upper().endswith(suffix):
            candidates.append(column[: -len(suffix)] + "_ERR")
    candidates += [f"{column}_ERR", f"{column}_err", f"e_{column}", f"E_{column}", f"{column}_error",
                   f"{column}_ERROR"]
    return next((name for name in candidates if name in table.colnames), None)


# --- cross-matching -------------------------------------------------------------------------------------------

def match_by_id(table_a: Table, table_b: Table, column_a: str, column_b: str | None = None,
                *, names: tuple[str, str] = ("A", "B")) -> tuple[np.ndarray, np.ndarray]:
    """Rows of A and B with the same identifier.

    Parameters
    ----------
    table_a, table_b : astropy.table.Table
    column_a : str
        Identifier column of A.
    column_b : str, optional
        Identifier column of B (default ``column_a``).
    names : (str, str)
        The catalogs' names, for messages.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Row indices into A and B of each matched pair, in A's order.
        Identifiers are compared as stripped strings; empty ones never match.

    Raises
    ------
    MissingColumnError
        A column is missing.
    RelationsError
        An identifier appears twice in one catalog.
    NoMatchError
        No identifier is in both.
    """
    column_b = column_b or column_a
    require_columns(table_a.colnames, [column_a], table=f"catalog {names[0]}",
                    hint="Name the identifier column with match_on (--match-on), or match on the sky.")
    require_columns(table_b.colnames, [column_b], table=f"catalog {names[1]}",
                    hint="Name the identifier column with match_on (--match-on), or match on the sky.")
    ids_a, ids_b = text_column(table_a, column_a), text_column(table_b, column_b)
    for ids, name, column in ((ids_a, names[0], column_a), (ids_b, names[1], column_b)):
        used = ids[ids != ""]
        unique, counts = np.unique(used, return_counts=True)
        if np.any(counts > 1):
            repeated = unique[counts > 1]
            raise RelationsError(f"{len(repeated)} identifiers are repeated in column {column} of {name} (e.g. "
                                 f"{', '.join(repeated[:5])}); keep one row per star before comparing.")
    row_b = {x: i for i, x in enumerate(ids_b) if x}
    pairs = [(i, row_b[x]) for i, x in enumerate(ids_a) if x and x in row_b]
    if not pairs:
        raise NoMatchError(f"no identifier of {names[0]}'s {column_a} is in {names[1]}'s {column_b} (e.g. "
                           f"{', '.join(ids_a[:3])} against {', '.join(ids_b[:3])}); check the columns, or match on "
                           "the sky.")
    index = np.array(pairs, dtype=int)
    return index[:, 0], index[:, 1]


def _coordinates(table: Table, columns: tuple[str, str], name: str) -> tuple[np.ndarray, np.ndarray]:
    """RA and Dec in degrees (a column with a unit converted), checked to lie in range."""
    require_columns(table.colnames, columns, table=f"catalog {name}",
                    hint="Name the RA and Dec columns (ra_dec_a=, ra_dec_b=; --radec-a, --radec-b), or match on "
                         "an identifier column (match_on=, --match-on).")
    ra = float_column(table, columns[0], unit="deg", what=f"catalog {name}")
    dec = float_column(table, columns[1], unit="deg", what=f"catalog {name}")
    good = np.isfinite(ra) & np.isfinite(dec)
    if not good.any():
        raise UnitsError(f"catalog {name} has no row with finite {columns[0]} and {columns[1]}; check the columns.")
    if np.any((ra[good] < 0) | (ra[good] > 360)):
        raise UnitsError(f"{columns[0]} of {name} has values outside 0-360 deg (from {np.min(ra[good]):.4g} to "
                         f"{np.max(ra[good]):.4g}); give RA in degrees (hours times 15).")
    if np.any(np.abs(dec[good]) > 90):
        raise UnitsError(f"{columns[1]} of {name} has values outside -90..90 deg (from {np.min(dec[good]):.4g} to "
                         f"{np.max(dec[good]):.4g}); give Dec in degrees.")
    if good.sum() >= 10 and np.max(ra[good]) <= 2 * np.pi and np.max(np.abs(dec[good])) <= np.pi / 2:
        logger.warning("RA and Dec of %s all lie within 0-2pi and -pi/2..pi/2: if they are radians, convert them "
                       "to degrees.", name)
    return ra, dec


def match_on_sky(table_a: Table, table_b: Table, *, radius: u.Quantity | float | str = DEFAULT_MATCH_RADIUS,
                 ra_dec_a: tuple[str, str] = ("ra", "dec"), ra_dec_b: tuple[str, str] = ("ra", "dec"),
                 names: tuple[str, str] = ("A", "B")) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest-neighbour sky cross-match within ``radius``, one-to-one.

    Each A row is paired with its nearest B row on the sky
    (``SkyCoord.match_to_catalog_sky``) if that is closer than ``radius``;
    a B row claimed by several A rows keeps the closest. Rows without
    coordinates never match.

    Parameters
    ----------
    table_a, table_b : astropy.table.Table
    radius : astropy.units.Quantity, float or str
        Match radius: an angle, a number of arcsec, or a string such as
        ``"1arcsec"``.
    ra_dec_a, ra_dec_b : (str, str)
        RA and Dec columns of A and B, degrees (a column with an angle unit
        is converted).
    names : (str, str)
        The catalogs' names, for messages.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Row indices into A and B of each pair, in A's order, and the
        separations in arcsec.

    Raises
    ------
    MissingColumnError, UnitsError
        Missing coordinate columns, or RA/Dec out of range.
    NoMatchError
        No pair within the radius.
    """
    from astropy.coordinates import SkyCoord

    radius = parse_radius(radius)
    ra_a, dec_a = _coordinates(table_a, tuple(ra_dec_a), names[0])
    ra_b, dec_b = _coordinates(table_b, tuple(ra_dec_b), names[1])
    rows_a = np.flatnonzero(np.isfinite(ra_a) & np.isfinite(dec_a))
    rows_b = np.flatnonzero(np.isfinite(ra_b) & np.isfinite(dec_b))
    coords_a = SkyCoord(ra_a[rows_a] * u.deg, dec_a[rows_a] * u.deg)
    coords_b = SkyCoord(ra_b[rows_b] * u.deg, dec_b[rows_b] * u.deg)
    nearest, separation, _ = coords_a.match_to_catalog_sky(coords_b)
    separation = separation.to_value(u.arcsec)
    close = np.flatnonzero(separation < radius.to_value(u.arcsec))
    if close.size == 0:
        raise NoMatchError(f"no pair within {radius.to_value(u.arcsec):g} arcsec (the closest is "
                           f"{np.min(separation):.3g} arcsec); check the units of ra/dec (degrees expected), or "
                           "pass a larger match radius, or match on an identifier column.")
    by_distance = close[np.argsort(separation[close], kind="stable")]
    _, first = np.unique(nearest[by_distance], return_index=True)  # each B row: its closest A row
    kept = np.sort(by_distance[first])
    if kept.size < close.size:
        logger.info("sky match: %d B rows were nearest to several A rows; each kept its closest", close.size - kept.size)
    return rows_a[kept], rows_b[nearest[kept]], separation[kept]


def parse_radius(radius: u.Quantity | float | str) -> u.Quantity:
    """A match radius as an angle: a Quantity, a number of arcsec, or a string such as ``"1arcsec"``, ``"2 deg"``."""
    try:
        if isinstance(radius, str):
            value = u.Quantity(radius)
            if value.unit == u.dimensionless_unscaled:
                value = value.value * u.arcsec
        elif isinstance(radius, u.Quantity):
            value = radius
        else:
            value = float(radius) * u.arcsec
        value = value.to(u.arcsec)
    except (TypeError, ValueError, u.UnitsError) as exc:
        raise UnitsError(f"match radius {radius!r} is not an angle; give e.g. 1arcsec, 0.5 arcsec or 2.") from exc
    if not value.value > 0:
        raise UnitsError(f"match radius {radius!r} must be positive.")
    return value


# --- statistics -----------------------------------------------------------------------------------------------

def _number(x: float) -> float | None:
    """A float for JSON (None for NaN)."""
    return float(x) if np.isfinite(x) else None


def _statistics(delta: np.ndarray, z: np.ndarray | None) -> dict[str, float | int | None]:
    """n, bias (median), mean, std, mad_std of ``delta``; z statistics when ``z`` is given."""
    n = int(delta.size)
    out: dict[str, float | int | None] = {
        "n": n,
        "bias": _number(np.median(delta)) if n else None,
        "mean": _number(np.mean(delta)) if n else None,
        "std": _number(np.std(delta, ddof=1)) if n > 1 else None,
        "mad_std": _number(mad_std(delta)) if n else None,
    }
    if z is not None:
        zn = int(z.size)
        out.update({
            "n_z": zn,
            "z_std": _number(np.std(z, ddof=1)) if zn > 1 else None,
            "z_mad_std": _number(mad_std(z)) if zn else None,
            "fraction_within_1sigma": _number(np.mean(np.abs(z) < 1.0)) if zn else None,
            "fraction_within_2sigma": _number(np.mean(np.abs(z) < _Z95)) if zn else None,
        })
    return out


def binned_statistics(delta: np.ndarray, quantity: np.ndarray, n_bins: int = 5, z: np.ndarray | None = None
                      ) -> list[dict[str, float | int | None]]:
    """The statistics of ``delta`` (and ``z``) in equal-number bins of ``quantity``.

    Parameters
    ----------
    delta : numpy.ndarray
        ``B - A`` per star.
    quantity : numpy.ndarray
        The binning quantity per star (rows where it is not finite are left out).
    n_bins : int
        Bins with (nearly) equal numbers of stars, edges at quantiles (tied
        values can merge bins).
    z : numpy.ndarray, optional
        z-scores per star (NaN where unknown).

    Returns
    -------
    list of dict
        Per bin ``lo``, ``hi`` (edges) and the keys of the per-label summary.
    """
    delta, quantity = np.asarray(delta, dtype=float), np.asarray(quantity, dtype=float)
    if n_bins < 1:
        raise RelationsError(f"n_bins must be at least 1, got {n_bins}.")
    good = np.isfinite(delta) & np.isfinite(quantity)
    if not good.any():
        return []
    edges = np.unique(np.quantile(quantity[good], np.linspace(0.0, 1.0, n_bins + 1)))
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
    which = np.clip(np.searchsorted(edges, quantity, side="right") - 1, 0, edges.size - 2)
    out = []
    for k in range(edges.size - 1):
        rows = good & (which == k)
        zk = None
        if z is not None:
            zk = np.asarray(z, dtype=float)[rows]
            zk = zk[np.isfinite(zk)]
        out.append({"lo": float(edges[k]), "hi": float(edges[k + 1]), **_statistics(delta[rows], zk)})
    return out


@dataclass(frozen=True)
class LabelComparison:
    """One label compared between the matched rows of two catalogs.

    Attributes
    ----------
    label : str
        The key of the label in reports (a canonical name such as
        ``"fe_h"``, or A's column name).
    column_a, column_b : str
        The value columns.
    error_a, error_b : str or None
        The error columns (None: not found; no z-score then).
    value_a, value_b : numpy.ndarray
        Values of the matched rows (NaN where missing).
    sigma_a, sigma_b : numpy.ndarray or None
        Errors of the matched rows.
    """

    label: str
    column_a: str
    column_b: str
    error_a: str | None
    error_b: str | None
    value_a: np.ndarray = field(repr=False)
    value_b: np.ndarray = field(repr=False)
    sigma_a: np.ndarray | None = field(default=None, repr=False)
    sigma_b: np.ndarray | None = field(default=None, repr=False)

    @property
    def delta(self) -> np.ndarray:
        """``B - A`` of every matched row (NaN where either is missing)."""
        return self.value_b - self.value_a

    @property
    def z(self) -> np.ndarray | None:
        """``(B - A) / sqrt(err_A**2 + err_B**2)`` (NaN where an error is missing or not positive), or None."""
        if self.sigma_a is None or self.sigma_b is None:
            return None
        sigma = np.hypot(self.sigma_a, self.sigma_b)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sigma > 0, self.delta / sigma, np.nan)

    @property
    def usable(self) -> np.ndarray:
        """Rows with finite values in both catalogs."""
        return np.isfinite(self.delta)

    def statistics(self) -> dict[str, Any]:
        """The summary of this label: ``n``, ``bias``, ``mean``, ``std``, ``mad_std`` and the z statistics."""
        good = self.usable
        z = self.z
        zs = None if z is None else z[good & np.isfinite(z)]
        out: dict[str, Any] = {"column_a": self.column_a, "column_b": self.column_b, "error_a": self.error_a,
                               "error_b": self.error_b}
        return out | _statistics(self.delta[good], zs)


@dataclass(frozen=True)
class CatalogComparison:
    """What :func:`compare_catalogs` returns: the matched rows and every label's comparison.

    Attributes
    ----------
    matched : astropy.table.Table
        One row per matched pair: A's columns with suffix ``_A``, B's with
        ``_B``, ``SEPARATION`` (arcsec, sky match only), and per label
        ``DELTA_<LABEL>`` (B - A) and ``Z_<LABEL>`` (with errors).
    labels : dict of str to LabelComparison
    names : (str, str)
        The catalogs' names (for reports and plots).
    match : str
        How the rows were matched.
    n_a, n_b : int
        Rows of A and B.
    bin_by : str or None
        The column of ``matched`` the statistics are binned in.
    n_bins : int
    """

    matched: Table = field(repr=False)
    labels: dict[str, LabelComparison]
    names: tuple[str, str] = ("A", "B")
    match: str = ""
    n_a: int = 0
    n_b: int = 0
    bin_by: str | None = None
    n_bins: int = 5

    @property
    def n_matched(self) -> int:
        """Matched pairs."""
        return len(self.matched)

    def binned(self) -> dict[str, list[dict[str, Any]]]:
        """Per label, the statistics in equal-number bins of :attr:`bin_by` (empty without it)."""
        if self.bin_by is None:
            return {}
        quantity = float_column(self.matched, self.bin_by, what="the matched table")
        return {key: binned_statistics(c.delta, quantity, self.n_bins, c.z) for key, c in self.labels.items()}

    def summary(self) -> dict[str, Any]:
        """Everything as JSON-able numbers: per label under ``"labels"`` (``n``, ``bias``, ``std``, ``mad_std`` ...)."""
        out: dict[str, Any] = {"names": list(self.names), "match": self.match, "n_a": self.n_a, "n_b": self.n_b,
                               "n_matched": self.n_matched,
                               "labels": {key: c.statistics() for key, c in self.labels.items()}}
        if self.bin_by is not None:
            out["bin_by"] = self.bin_by
            out["binned"] = self.binned()
        return out

    def log_summary(self, log: logging.Logger | None = None) -> None:
        """Log one line per label (n, bias, std, mad_std, and the z statistics when there are errors)."""
        log = log or logger
        log.info("%s vs %s: %d of %d / %d rows matched (%s)", self.names[0], self.names[1], self.n_matched, self.n_a,
                 self.n_b, self.match)
        log.info("  %-10s %6s %11s %11s %11s %7s %7s", "label", "n", "bias(B-A)", "std", "mad_std", "sd(z)", "|z|<1")
        for key, c in self.labels.items():
            s = c.statistics()
            show = [("%11.4g" % s[k]) if s[k] is not None else "%11s" % "-" for k in ("bias", "std", "mad_std")]
            z = [("%7.3f" % s[k]) if s.get(k) is not None else "%7s" % "-" for k in ("z_std", "fraction_within_1sigma")]
            log.info("  %-10s %6d %s %s", key, s["n"], " ".join(show), " ".join(z))

    def write(self, report_dir: str | Path, *, table_format: str = "fits", overwrite: bool = False) -> list[Path]:
        """Write the report: the matched table, the figures and ``summary.json``.

        Parameters
        ----------
        report_dir : str or pathlib.Path
            Folder (created if needed).
        table_format : str
            ``"fits"`` (``matched.fits``) or ``"csv"`` (``matched.csv``).
        overwrite : bool
            Replace existing report files.

        Returns
        -------
        list of pathlib.Path
            The files written: ``matched.fits`` (or ``.csv``),
            ``one_to_one.png``, ``residuals.png``, ``zscores.png`` (when a
            label has errors in both catalogs) and ``summary.json``.

        Raises
        ------
        RelationsError
            A report file exists and ``overwrite`` is false, or an unknown format.
        """
        if table_format not in ("fits", "csv"):
            raise RelationsError(f"table_format must be 'fits' or 'csv', not {table_format!r}.")
        folder = Path(report_dir)
        has_z = any(c.z is not None for c in self.labels.values())
        planned = [folder / f"matched.{table_format}", folder / "one_to_one.png", folder / "residuals.png",
                   *([folder / "zscores.png"] if has_z else []), folder / "summary.json"]
        existing = [p for p in planned if p.exists()]
        if existing and not overwrite:
            raise RelationsError(f"{', '.join(str(p) for p in existing)} exist(s); pass overwrite=True (--overwrite) "
                                 "to replace the report.")
        folder.mkdir(parents=True, exist_ok=True)
        try:
            write_table(self.matched, planned[0], overwrite=True)
        except RelationsError:
            raise
        except Exception as exc:  # e.g. multidimensional columns in CSV
            raise RelationsError(f"cannot write the matched table as {table_format} ({exc}); use table_format='fits'."
                                 ) from exc
        written = [planned[0], *plot_comparison(self, folder)]
        text = json.dumps(self.summary(), indent=2, allow_nan=False) + "\n"
        written.append(atomic_write(folder / "summary.json", text.encode()))
        return written


def _resolve_labels(table_a: Table, table_b: Table, labels: Mapping[str, str] | Sequence[str] | None,
                    names: tuple[str, str]) -> dict[str, tuple[str, str]]:
    """``{key: (column in A, column in B)}`` from the ``labels`` argument of :func:`compare_catalogs`."""
    if labels is None:
        found = {}
        for label in DEFAULT_LABELS:
            a, b = label_column(table_a, label), label_column(table_b, label)
            if a is not None and b is not None:
                found[label] = (a, b)
        if not found:
            tried = ", ".join(f"{label.upper()}_MEDIAN/{label.upper()}_MAP/{label.upper()}/{label}"
                              for label in DEFAULT_LABELS)
            raise MissingColumnError(f"{names[0]} and {names[1]} have no label column in common (looked for {tried}; "
                                     f"{names[0]} has {', '.join(table_a.colnames[:20])}; {names[1]} has "
                                     f"{', '.join(table_b.colnames[:20])}); name them: labels={{A column: B column}} "
                                     "(--labels A_COL:B_COL,...).")
        return found
    if isinstance(labels, Mapping):
        pairs = {str(a): (str(a), str(b)) for a, b in labels.items()}
    else:
        pairs = {}
        for label in labels:
            a, b = label_column(table_a, label) or label, label_column(table_b, label) or label
            pairs[label] = (a, b)
    if not pairs:
        raise RelationsError("no labels to compare; name at least one.")
    require_columns(table_a.colnames, [a for a, _ in pairs.values()], table=f"catalog {names[0]}",
                    hint="Name existing columns in labels= (--labels A_COL:B_COL).")
    require_columns(table_b.colnames, [b for _, b in pairs.values()], table=f"catalog {names[1]}",
                    hint="Name existing columns in labels= (--labels A_COL:B_COL).")
    return pairs


def _suffixed(table: Table, rows: np.ndarray, suffix: str) -> Table:
    out = table[rows]
    out.meta = {}
    out.rename_columns(list(out.colnames), [f"{name}_{suffix}" for name in out.colnames])
    return out


def compare_catalogs(
    catalog_a: Table | str | Path,
    catalog_b: Table | str | Path,
    *,
    labels: Mapping[str, str] | Sequence[str] | None = None,
    errors: Mapping[str, tuple[str | None, str | None]] | None = None,
    match_on: str | tuple[str, str] | None = None,
    match_radius: u.Quantity | float | str = DEFAULT_MATCH_RADIUS,
    ra_dec_a: tuple[str, str] = ("ra", "dec"),
    ra_dec_b: tuple[str, str] = ("ra", "dec"),
    bin_by: str | None = None,
    n_bins: int = 5,
    names: tuple[str, str] = ("A", "B"),
) -> CatalogComparison:
    """Cross-match two catalogs and compare their labels: offsets, scatter, z-scores.

    Parameters
    ----------
    catalog_a, catalog_b : astropy.table.Table, str or pathlib.Path
        Tables or files (FITS, CSV, ECSV, VOTable). Offsets are ``B - A``.
    labels : mapping of str to str, or sequence of str, optional
        A mapping from A's column to B's (``{"FE_H": "fe_h_median"}``), or
        label names found in both by :func:`label_column`. Default: every
        label of :data:`DEFAULT_LABELS` both catalogs have.
    errors : mapping of str to (str or None, str or None), optional
        Per label key, the error columns of A and B (default: found by
        :func:`error_column`; None: no error).
    match_on : str or (str, str), optional
        Match on this identifier column (or A's and B's). Default: on the
        sky when both catalogs have ``ra_dec_a`` / ``ra_dec_b``, else on
        the first column of :data:`ID_COLUMNS` both have.
    match_radius : astropy.units.Quantity, float or str
        Sky-match radius (default 1 arcsec; a number is arcsec).
    ra_dec_a, ra_dec_b : (str, str)
        RA and Dec columns (degrees), default ``ra``, ``dec``.
    bin_by : str, optional
        Also give the statistics in equal-number bins of this column (a
        column of the matched table such as ``SNR_B``, or a column of A or,
        failing that, of B).
    n_bins : int
        Number of bins.
    names : (str, str)
        Names of the catalogs in reports and plots.

    Returns
    -------
    CatalogComparison

    Raises
    ------
    MissingColumnError
        A label, error, identifier or coordinate column is missing.
    NoMatchError
        Fewer than two matched pairs.
    UnitsError
        RA/Dec out of range, a match radius that is no angle.
    RelationsError
        A file cannot be read, repeated identifiers.
    """
    names = (str(names[0]), str(names[1]))
    table_a = read_table(catalog_a, what=f"catalog {names[0]}")
    table_b = read_table(catalog_b, what=f"catalog {names[1]}")
    for table, name in ((table_a, names[0]), (table_b, names[1])):
        if len(table) == 0:
            raise NoMatchError(f"catalog {name} has no rows; nothing to compare.")
    pairs = _resolve_labels(table_a, table_b, labels, names)
    separation = None
    if match_on is None:
        sky = all(c in table_a.colnames for c in ra_dec_a) and all(c in table_b.colnames for c in ra_dec_b)
        if not sky:
            common = [c for c in ID_COLUMNS if c in table_a.colnames and c in table_b.colnames]
            if not common:
                raise MissingColumnError(
                    f"cannot cross-match: {names[0]} and {names[1]} do not both have RA/Dec columns "
                    f"({'/'.join(ra_dec_a)}, {'/'.join(ra_dec_b)}) or a common identifier column "
                    f"({', '.join(ID_COLUMNS)}); pass match_on= (--match-on COLUMN) or ra_dec_a=/ra_dec_b=.")
            match_on = common[0]
    if match_on is None:
        radius = parse_radius(match_radius)
        rows_a, rows_b, separation = match_on_sky(table_a, table_b, radius=radius, ra_dec_a=ra_dec_a,
                                                  ra_dec_b=ra_dec_b, names=names)
        how = f"sky, within {radius.to_value(u.arcsec):g} arcsec"
    else:
        column_a, column_b = (match_on, match_on) if isinstance(match_on, str) else tuple(match_on)
        rows_a, rows_b = match_by_id(table_a, table_b, column_a, column_b, names=names)
        how = f"identifier {column_a}" + (f" = {column_b}" if column_b != column_a else "")
    if rows_a.size < 2:
        raise NoMatchError(f"only {rows_a.size} pair matched ({how}); at least 2 are needed to compare.")
    logger.info("matched %d of %d rows of %s and %d of %s (%s)", rows_a.size, len(table_a), names[0], len(table_b),
                names[1], how)
    from astropy.table import hstack

    matched = hstack([_suffixed(table_a, rows_a, "A"), _suffixed(table_b, rows_b, "B")], join_type="exact")
    if separation is not None:
        matched["SEPARATION"] = separation
        matched["SEPARATION"].unit = u.arcsec
    comparisons = {}
    for key, (column_a, column_b) in pairs.items():
        if errors is not None and key in errors:
            error_a, error_b = errors[key]
            require_columns(table_a.colnames, [e for e in (error_a,) if e], table=f"catalog {names[0]}")
            require_columns(table_b.colnames, [e for e in (error_b,) if e], table=f"catalog {names[1]}")
        else:
            error_a, error_b = error_column(table_a, column_a), error_column(table_b, column_b)
        value_a = float_column(table_a, column_a, what=f"catalog {names[0]}")[rows_a]
        value_b = float_column(table_b, column_b, what=f"catalog {names[1]}")[rows_b]
        sigma_a = float_column(table_a, error_a, what=f"catalog {names[0]}")[rows_a] if error_a else None
        sigma_b = float_column(table_b, error_b, what=f"catalog {names[1]}")[rows_b] if error_b else None
        if sigma_a is None or sigma_b is None:  # a z-score needs both
            sigma_a = sigma_b = None
        elif np.any(sigma_a < 0) or np.any(sigma_b < 0):
            raise UnitsError(f"the error columns of {key} ({error_a}, {error_b}) have negative values; one-sigma "
                             "errors are needed.")
        comparison = LabelComparison(key, column_a, column_b, error_a, error_b, value_a, value_b, sigma_a, sigma_b)
        if not comparison.usable.any():
            logger.warning("%s: no matched row has finite values in both catalogs", key)
        comparisons[key] = comparison
        tag = key.upper()
        matched[f"DELTA_{tag}"] = comparison.delta
        matched[f"DELTA_{tag}"].description = f"{names[1]} {column_b} - {names[0]} {column_a}"
        if comparison.z is not None:
            matched[f"Z_{tag}"] = comparison.z
            matched[f"Z_{tag}"].description = f"DELTA_{tag} / sqrt({error_a}**2 + {error_b}**2)"
    binned_column = None
    if bin_by is not None:
        for candidate in (bin_by, f"{bin_by}_A", f"{bin_by}_B"):
            if candidate in matched.colnames:
                binned_column = candidate
                break
        else:
            require_columns(matched.colnames, [bin_by], table="the matched table",
                            hint="bin_by names a column of A or B (or of the matched table, e.g. SNR_B).")
    result = CatalogComparison(matched, comparisons, names, how, len(table_a), len(table_b), binned_column,
                               int(n_bins))
    if bin_by is not None:
        result.binned()  # check now that the column is numeric
    return result


def plot_comparison(comparison: CatalogComparison, folder: str | Path) -> list[Path]:
    """Save the comparison's figures as PNGs in ``folder``.

    ``one_to_one.png``: per label, B against A with the 1:1 line and the
    statistics. ``residuals.png``: per label, ``B - A`` against A (and
    against :attr:`CatalogComparison.bin_by`, with the binned median and
    standard deviation). ``zscores.png`` (labels with errors in both
    catalogs): the histogram of z with ``N(0, 1)``.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    items = list(comparison.labels.values())
    name_a, name_b = comparison.names
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        try:
            written.append(atomic_write(folder / name, lambda stream: fig.savefig(stream, format="png", dpi=110)))
        finally:
            plt.close(fig)

    n = len(items)
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n + 0.4, 4.2), squeeze=False)
    for ax, c in zip(axes[0], items):
        good = c.usable
        s = c.statistics()
        ax.scatter(c.value_a[good], c.value_b[good], s=6, c="tab:blue", lw=0, alpha=0.7)
        if good.any():
            lo = float(min(np.min(c.value_a[good]), np.min(c.value_b[good])))
            hi = float(max(np.max(c.value_a[good]), np.max(c.value_b[good])))
            ax.plot([lo, hi], [lo, hi], "k-", lw=1)
        ax.set_xlabel(f"{name_a} {c.column_a}")
        ax.set_ylabel(f"{name_b} {c.column_b}")
        text = f"n={s['n']}"
        if s["bias"] is not None:
            text += f"\nbias {s['bias']:+.4g}\nstd {s['std'] if s['std'] is not None else float('nan'):.4g}" \
                    f"\nmad_std {s['mad_std']:.4g}"
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=8)
        ax.set_title(c.label)
    save(fig, "one_to_one.png")

    binned = comparison.binned()
    rows = 2 if comparison.bin_by is not None else 1
    fig, axes = plt.subplots(rows, n, figsize=(4.0 * n + 0.4, 3.4 * rows + 0.4), squeeze=False)
    for k, c in enumerate(items):
        good = c.usable
        s = c.statistics()
        ax = axes[0, k]
        ax.scatter(c.value_a[good], c.delta[good], s=6, c="tab:blue", lw=0, alpha=0.7)
        ax.axhline(0.0, color="k", lw=1)
        if s["bias"] is not None:
            ax.axhline(s["bias"], color="tab:red", lw=1, ls="--", label=f"median {s['bias']:+.3g}")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_xlabel(f"{name_a} {c.column_a}")
        ax.set_ylabel(f"{name_b} - {name_a}")
        ax.set_title(c.label)
        if rows == 2:
            ax = axes[1, k]
            quantity = float_column(comparison.matched, comparison.bin_by, what="the matched table")
            ax.scatter(quantity[good], c.delta[good], s=6, c="0.6", lw=0, alpha=0.7)
            bins = [b for b in binned.get(c.label, []) if b["n"]]
            centres = [0.5 * (b["lo"] + b["hi"]) for b in bins]
            widths = [0.5 * (b["hi"] - b["lo"]) for b in bins]
            ax.errorbar(centres, [b["bias"] for b in bins], xerr=widths,
                        yerr=[b["std"] if b["std"] is not None else 0.0 for b in bins], fmt="o", color="tab:red",
                        ms=4, lw=1, label="binned median +- std")
            ax.axhline(0.0, color="k", lw=1)
            ax.set_xlabel(comparison.bin_by)
            ax.set_ylabel(f"{name_b} - {name_a}")
            ax.legend(fontsize=7, loc="upper right")
    save(fig, "residuals.png")

    with_z = [c for c in items if c.z is not None]
    if with_z:
        fig, axes = plt.subplots(1, len(with_z), figsize=(4.0 * len(with_z) + 0.4, 3.6), squeeze=False)
        x = np.linspace(-5, 5, 300)
        for ax, c in zip(axes[0], with_z):
            z = c.z[c.usable & np.isfinite(c.z)]
            s = c.statistics()
            if z.size:
                ax.hist(np.clip(z, -6, 6), bins=min(40, max(5, z.size // 5)), range=(-6, 6), density=True,
                        color="0.6")
            ax.plot(x, np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi), color="tab:red", lw=1.2)
            if s.get("z_std") is not None:
                ax.text(0.03, 0.97, f"sd(z) {s['z_std']:.3f}\n|z|<1: {s['fraction_within_1sigma']:.3f} (0.683)",
                        transform=ax.transAxes, va="top", fontsize=8)
            ax.set_xlabel(f"z = ({name_b} - {name_a}) / sigma   (red: N(0, 1))")
            ax.set_title(c.label)
        save(fig, "zscores.png")
    return written

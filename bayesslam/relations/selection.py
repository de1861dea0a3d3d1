"""M dwarfs from a Gaia table: absolute magnitudes, dereddening and the colour-magnitude cuts of Qiu et al. (2025).

The absolute G magnitude from the parallax ``varpi`` in milliarcseconds is

    M_G = G + 5 log10(varpi / 1000) + 5 = G + 5 log10(varpi) - 10,

dereddened ``M_G0 = M_G - A_G`` and ``(BP-RP)_0 = (BP-RP) - E(BP-RP)``. The
extinctions are constants (default 0, right for the nearby stars of an
M-dwarf sample) or, when asked, Gaia DR3's GSP-Phot columns ``ag_gspphot``
and ``ebpminrp_gspphot`` (the constants fill the rows where they are
missing). Qiu et al. (2025) kept the stars with

* ``M_G0 > 6``,
* ``M_G0 < 3.75 (BP-RP)_0 + 7.50`` (the faint edge of the main sequence),
* ``M_G0 > 3.28 (BP-RP)_0 + 0.10`` (the bright edge: giants and
  unresolved binaries above it),
* ``RUWE < 1.4`` (a single-star astrometric solution);

and :class:`MDwarfCuts` adds parallax quality options (a positive parallax
is always required; a minimum ``parallax_over_error`` on request).
:func:`select_mdwarfs` reads the Gaia archive's column names and returns
every row with one boolean column per cut, so that a rejected star shows
which cut rejected it; :func:`plot_cmd` draws the colour-magnitude diagram
with the cuts.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table

from bayesslam._files import atomic_write
from bayesslam.relations._tables import float_column, read_table, write_table
from bayesslam.relations.errors import MissingColumnError, UnitsError, require_columns

__all__ = [
    "GAIA_COLUMNS",
    "EXTINCTION_COLUMNS",
    "CUT_COLUMNS",
    "MDwarfCuts",
    "MDwarfSelection",
    "absolute_magnitude",
    "deredden",
    "apply_cuts",
    "select_mdwarfs",
    "plot_cmd",
]

logger = logging.getLogger(__name__)

#: Gaia archive columns :func:`select_mdwarfs` needs.
GAIA_COLUMNS = ("source_id", "parallax", "phot_g_mean_mag", "bp_rp", "ruwe")
#: Gaia DR3 GSP-Phot extinction columns used with ``extinction_columns=True``: A_G and E(BP-RP).
EXTINCTION_COLUMNS = ("ag_gspphot", "ebpminrp_gspphot")
#: The boolean columns :func:`select_mdwarfs` adds, one per cut (True: the star passes it), and ``selected``.
CUT_COLUMNS = ("pass_mg0", "pass_upper", "pass_lower", "pass_ruwe", "pass_parallax")


@dataclass(frozen=True)
class MDwarfCuts:
    """The selection: the colour-magnitude and RUWE cuts of Qiu et al. (2025) and parallax quality options.

    A star is selected when it passes every cut (strict inequalities):

    * ``pass_mg0``: ``M_G0 > mg0_min``;
    * ``pass_upper``: ``M_G0 < upper_slope * (BP-RP)_0 + upper_intercept``;
    * ``pass_lower``: ``M_G0 > lower_slope * (BP-RP)_0 + lower_intercept``;
    * ``pass_ruwe``: ``RUWE < ruwe_max``;
    * ``pass_parallax``: ``parallax > 0``, and ``parallax_over_error >=
      min_parallax_over_error`` when that is set.

    Attributes
    ----------
    mg0_min : float
        6.0 (paper).
    upper_slope, upper_intercept : float
        3.75, 7.50 (paper).
    lower_slope, lower_intercept : float
        3.28, 0.10 (paper).
    ruwe_max : float
        1.4 (paper).
    min_parallax_over_error : float, optional
        None (no cut; not the paper's). Needs a column
        ``parallax_over_error`` or ``parallax_error``.
    """

    mg0_min: float = 6.0
    upper_slope: float = 3.75
    upper_intercept: float = 7.50
    lower_slope: float = 3.28
    lower_intercept: float = 0.10
    ruwe_max: float = 1.4
    min_parallax_over_error: float | None = None

    def upper_line(self, bp_rp0: np.ndarray | float) -> np.ndarray:
        """``upper_slope * bp_rp0 + upper_intercept``: the faintest ``M_G0`` kept at a colour."""
        return self.upper_slope * np.asarray(bp_rp0, dtype=float) + self.upper_intercept

    def lower_line(self, bp_rp0: np.ndarray | float) -> np.ndarray:
        """``lower_slope * bp_rp0 + lower_intercept``: the brightest ``M_G0`` kept at a colour."""
        return self.lower_slope * np.asarray(bp_rp0, dtype=float) + self.lower_intercept

    def describe(self) -> dict[str, str]:
        """Each cut column with the inequality it tests (for reports and plot legends)."""
        parallax = "parallax > 0" + (f", parallax_over_error >= {self.min_parallax_over_error:g}"
                                     if self.min_parallax_over_error is not None else "")
        return {"pass_mg0": f"M_G0 > {self.mg0_min:g}",
                "pass_upper": f"M_G0 < {self.upper_slope:g} (BP-RP)_0 + {self.upper_intercept:.2f}",
                "pass_lower": f"M_G0 > {self.lower_slope:g} (BP-RP)_0 + {self.lower_intercept:.2f}",
                "pass_ruwe": f"RUWE < {self.ruwe_max:g}",
                "pass_parallax": parallax}


def absolute_magnitude(magnitude: np.ndarray | float, parallax_mas: np.ndarray | float) -> np.ndarray:
    """Absolute magnitude from an apparent magnitude and a parallax in milliarcseconds.

    ``M = m + 5 log10(parallax / 1000) + 5 = m + 5 log10(parallax) - 10``.

    Parameters
    ----------
    magnitude : array_like
        Apparent magnitude (e.g. Gaia ``phot_g_mean_mag``).
    parallax_mas : array_like
        Parallax in mas (Gaia ``parallax``).

    Returns
    -------
    numpy.ndarray
        NaN where the parallax is not positive or not finite.

    Examples
    --------
    >>> float(absolute_magnitude(10.0, 100.0))  # 10 pc: M = m
    10.0
    """
    magnitude = np.asarray(magnitude, dtype=float)
    parallax = np.asarray(parallax_mas, dtype=float)
    positive = np.isfinite(parallax) & (parallax > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_parallax = np.log10(np.where(positive, parallax, 1.0))
    return np.where(positive, magnitude + 5.0 * log_parallax - 10.0, np.nan)


def deredden(m_g: np.ndarray | float, bp_rp: np.ndarray | float, a_g: np.ndarray | float = 0.0,
             e_bp_rp: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Dereddened absolute magnitude and colour: ``(M_G - A_G, (BP-RP) - E(BP-RP))``.

    Parameters
    ----------
    m_g, bp_rp : array_like
        Absolute G magnitude and BP-RP colour.
    a_g, e_bp_rp : array_like
        Extinction in G and colour excess (constants or per star).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``M_G0`` and ``(BP-RP)_0``.
    """
    return (np.asarray(m_g, dtype=float) - np.asarray(a_g, dtype=float),
            np.asarray(bp_rp, dtype=float) - np.asarray(e_bp_rp, dtype=float))


def apply_cuts(m_g0: np.ndarray, bp_rp0: np.ndarray, ruwe: np.ndarray, parallax: np.ndarray | None = None,
               parallax_over_error: np.ndarray | None = None, *, cuts: MDwarfCuts = MDwarfCuts()
               ) -> dict[str, np.ndarray]:
    """Which stars pass each cut of ``cuts`` (a NaN value fails the cut that uses it).

    Parameters
    ----------
    m_g0, bp_rp0 : array_like
        Dereddened absolute G magnitude and colour.
    ruwe : array_like
        Gaia RUWE.
    parallax : array_like, optional
        Parallax (mas); without it ``pass_parallax`` is all True.
    parallax_over_error : array_like, optional
        Needed when ``cuts.min_parallax_over_error`` is set.
    cuts : MDwarfCuts

    Returns
    -------
    dict of str to numpy.ndarray of bool
        The keys of :data:`CUT_COLUMNS`, in that order, and ``selected``
        (every cut passed).
    """
    m_g0, bp_rp0, ruwe = (np.asarray(x, dtype=float) for x in (m_g0, bp_rp0, ruwe))
    passed = {
        "pass_mg0": m_g0 > cuts.mg0_min,
        "pass_upper": m_g0 < cuts.upper_line(bp_rp0),
        "pass_lower": m_g0 > cuts.lower_line(bp_rp0),
        "pass_ruwe": ruwe < cuts.ruwe_max,
    }
    good_parallax = np.ones(m_g0.shape, dtype=bool) if parallax is None else np.asarray(parallax, dtype=float) > 0
    if cuts.min_parallax_over_error is not None:
        if parallax_over_error is None:
            raise MissingColumnError("a minimum parallax_over_error needs the parallax_over_error (or parallax and "
                                     "parallax_error) values; pass them or leave min_parallax_over_error unset.")
        good_parallax = good_parallax & (np.asarray(parallax_over_error, dtype=float) >= cuts.min_parallax_over_error)
    passed["pass_parallax"] = good_parallax
    passed["selected"] = np.logical_and.reduce([passed[name] for name in CUT_COLUMNS])
    return passed


@dataclass(frozen=True)
class MDwarfSelection:
    """What :func:`select_mdwarfs` returns: every input row with the computed columns and one column per cut.

    Attributes
    ----------
    table : astropy.table.Table
        The input rows and columns, plus ``m_g`` (absolute G), ``a_g_used``
        and ``e_bp_rp_used`` (the extinctions applied), ``m_g0``,
        ``bp_rp0``, the cut columns (:data:`CUT_COLUMNS`, True: passed) and
        ``selected``.
    cuts : MDwarfCuts
        The cuts applied.
    extinction : str
        ``"constant"`` or ``"columns"`` (GSP-Phot, constants where missing).
    """

    table: Table
    cuts: MDwarfCuts
    extinction: str = "constant"

    @property
    def selected(self) -> Table:
        """The selected rows (all columns)."""
        return self.table[np.asarray(self.table["selected"], dtype=bool)]

    @property
    def n_selected(self) -> int:
        """Number of selected stars."""
        return int(np.sum(self.table["selected"]))

    def counts(self) -> dict[str, int]:
        """Rows in all, rows failing each cut (a star can fail several) and rows selected."""
        out = {"n_rows": len(self.table)}
        out.update({f"fail_{name[5:]}": int(np.sum(~np.asarray(self.table[name], dtype=bool)))
                    for name in CUT_COLUMNS})
        out["n_selected"] = self.n_selected
        return out

    def write(self, path: str | Path, *, all_rows: bool = False, overwrite: bool = False) -> Path:
        """Write the selected rows (or, with ``all_rows``, every row with its cut columns) to FITS, CSV, ECSV or VOTable.

        The format follows the file's ending (:func:`~bayesslam.relations._tables.write_table`).
        """
        table = (self.table if all_rows else self.selected).copy(copy_data=False)
        table.meta["SELCUTS"] = "; ".join(self.cuts.describe().values())
        table.meta["EXTINCT"] = self.extinction
        return write_table(table, path, overwrite=overwrite)


def _check_parallax(parallax: np.ndarray, check_units: bool) -> None:
    finite = parallax[np.isfinite(parallax)]
    if finite.size == 0:
        raise UnitsError("column parallax has no finite value; a Gaia parallax in mas is needed for every star "
                         "to be selected.")
    if np.all(finite <= 0):
        raise UnitsError("every parallax is <= 0; Gaia's parallax is positive for most stars (in mas): check the "
                         "column's sign and units.")
    # In arcsec every parallax is below 0.77 (Proxima Cen) and an M-dwarf sample's median is ~0.003-0.02; in mas a
    # table whose stars are all beyond 1 kpc, most beyond 5 kpc, holds hardly any M dwarf bright enough for Gaia.
    if check_units and np.all(np.abs(finite) < 1.0) and np.median(np.abs(finite)) < 0.2:
        raise UnitsError(f"the parallaxes look like arcseconds (median |parallax| {np.median(np.abs(finite)):.3g}, "
                         "all below 1): Gaia's parallax is in mas, so multiply them by 1000 (or give the column a "
                         "unit); if they really are in mas, pass check_units=False.")


def _check_finite(values: np.ndarray, name: str) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise UnitsError(f"column {name} has no finite value (all NaN or masked); check that it was downloaded "
                         "with the table.")
    return finite


def select_mdwarfs(table: Table | str | Path, *, cuts: MDwarfCuts = MDwarfCuts(), extinction_columns: bool = False,
                   a_g: float = 0.0, e_bp_rp: float = 0.0, min_parallax_over_error: float | None = None,
                   check_units: bool = True) -> MDwarfSelection:
    """Select M dwarfs from a Gaia table with the cuts of Qiu et al. (2025).

    Parameters
    ----------
    table : astropy.table.Table, str or pathlib.Path
        A table, or a file astropy reads (FITS, CSV, ECSV, VOTable), with
        the Gaia archive's columns ``source_id``, ``parallax`` (mas),
        ``phot_g_mean_mag``, ``bp_rp``, ``ruwe``; and ``parallax_error`` or
        ``parallax_over_error`` for a parallax-quality cut,
        ``ag_gspphot`` and ``ebpminrp_gspphot`` for
        ``extinction_columns``. A parallax column with a unit is converted
        to mas.
    cuts : MDwarfCuts
        The cuts (default: the paper's, no parallax-quality cut).
    extinction_columns : bool
        Take A_G and E(BP-RP) per star from ``ag_gspphot`` and
        ``ebpminrp_gspphot``; rows where they are missing get ``a_g`` and
        ``e_bp_rp``.
    a_g, e_bp_rp : float
        Constant extinction and colour excess (default 0: nearby stars).
    min_parallax_over_error : float, optional
        Shorthand for ``cuts.min_parallax_over_error``.
    check_units : bool
        Refuse parallaxes that look like arcseconds (all below 1, median
        below 0.2).

    Returns
    -------
    MDwarfSelection
        Every row with the computed and cut columns; ``.selected`` the
        selected rows.

    Raises
    ------
    MissingColumnError
        A needed column is missing (the message lists the table's columns).
    UnitsError
        A column with no finite value, parallaxes all <= 0 or in arcsec,
        magnitudes that look like fluxes, a negative RUWE.
    RelationsError
        The file cannot be read.
    """
    table = read_table(table, what="Gaia table")
    if min_parallax_over_error is not None:
        cuts = dataclasses.replace(cuts, min_parallax_over_error=float(min_parallax_over_error))
    hint = "Use the Gaia archive's column names (rename others with Table.rename_column)."
    require_columns(table.colnames, GAIA_COLUMNS, table="the Gaia table", hint=hint)
    if extinction_columns:
        require_columns(table.colnames, EXTINCTION_COLUMNS, table="the Gaia table",
                        hint="Add Gaia DR3's GSP-Phot columns, or leave extinction_columns off (constants).")
    parallax = float_column(table, "parallax", unit="mas", what="the Gaia table")
    _check_parallax(parallax, check_units)
    g = float_column(table, "phot_g_mean_mag", unit="mag", what="the Gaia table")
    median_g = float(np.median(_check_finite(g, "phot_g_mean_mag")))
    if not -2.0 < median_g < 30.0:
        raise UnitsError(f"phot_g_mean_mag has median {median_g:.4g}: that is no Gaia G magnitude (a flux?); give "
                         "the magnitude column phot_g_mean_mag.")
    bp_rp = float_column(table, "bp_rp", unit="mag", what="the Gaia table")
    _check_finite(bp_rp, "bp_rp")
    ruwe = float_column(table, "ruwe", what="the Gaia table")
    if np.any(_check_finite(ruwe, "ruwe") < 0):
        raise UnitsError("column ruwe has negative values; the RUWE is positive (is it the right column?).")
    over_error = None
    if cuts.min_parallax_over_error is not None:
        if "parallax_over_error" in table.colnames:
            over_error = float_column(table, "parallax_over_error")
        elif "parallax_error" in table.colnames:
            with np.errstate(divide="ignore", invalid="ignore"):
                over_error = parallax / float_column(table, "parallax_error", unit="mas", what="the Gaia table")
        else:
            require_columns(table.colnames, ["parallax_error"], table="the Gaia table",
                            hint="A minimum parallax_over_error needs parallax_error or parallax_over_error.")
    a_g_used = np.full(len(table), float(a_g))
    e_used = np.full(len(table), float(e_bp_rp))
    if extinction_columns:
        column_a = float_column(table, "ag_gspphot", unit="mag", what="the Gaia table")
        column_e = float_column(table, "ebpminrp_gspphot", unit="mag", what="the Gaia table")
        have = np.isfinite(column_a) & np.isfinite(column_e)
        a_g_used = np.where(have, column_a, a_g_used)
        e_used = np.where(have, column_e, e_used)
        if not np.all(have):
            logger.info("%d of %d rows have no GSP-Phot extinction: A_G = %g, E(BP-RP) = %g used for them",
                        int(np.sum(~have)), len(table), a_g, e_bp_rp)
    m_g = absolute_magnitude(g, parallax)
    m_g0, bp_rp0 = deredden(m_g, bp_rp, a_g_used, e_used)
    passed = apply_cuts(m_g0, bp_rp0, ruwe, parallax, over_error, cuts=cuts)
    out = table.copy(copy_data=True)
    descriptions = cuts.describe()
    for name, values, description in (
        ("m_g", m_g, "absolute G magnitude, phot_g_mean_mag + 5 log10(parallax / mas) - 10"),
        ("a_g_used", a_g_used, "extinction A_G applied"),
        ("e_bp_rp_used", e_used, "colour excess E(BP-RP) applied"),
        ("m_g0", m_g0, "dereddened absolute G magnitude, m_g - a_g_used"),
        ("bp_rp0", bp_rp0, "dereddened colour, bp_rp - e_bp_rp_used"),
    ):
        out[name] = values
        out[name].description = description
    for name in (*CUT_COLUMNS, "selected"):
        out[name] = passed[name]
        out[name].description = f"passes {descriptions[name]}" if name in descriptions else "passes every cut"
    selection = MDwarfSelection(out, cuts, "columns" if extinction_columns else "constant")
    counts = selection.counts()
    logger.info("selected %d of %d stars (failing: %s)", counts["n_selected"], counts["n_rows"],
                ", ".join(f"{descriptions['pass_' + k[5:]]}: {v}" for k, v in counts.items() if k.startswith("fail_")))
    return selection


def plot_cmd(selection: MDwarfSelection, path: str | Path, *, title: str | None = None) -> Path:
    """Save a PNG of the colour-magnitude diagram: selected and rejected stars with the cuts drawn.

    Parameters
    ----------
    selection : MDwarfSelection
    path : str or pathlib.Path
        PNG file to write (atomically).
    title : str, optional

    Returns
    -------
    pathlib.Path
        The file written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table, cuts = selection.table, selection.cuts
    colour, magnitude = np.asarray(table["bp_rp0"], dtype=float), np.asarray(table["m_g0"], dtype=float)
    chosen = np.asarray(table["selected"], dtype=bool)
    shown = np.isfinite(colour) & np.isfinite(magnitude)
    fig, ax = plt.subplots(figsize=(5.6, 6.4))
    size = 4 if len(table) < 5000 else 1
    ax.scatter(colour[shown & ~chosen], magnitude[shown & ~chosen], s=size, c="0.6", lw=0, rasterized=True,
               label=f"rejected ({int(np.sum(~chosen))})")
    ax.scatter(colour[shown & chosen], magnitude[shown & chosen], s=size, c="tab:red", lw=0, rasterized=True,
               label=f"selected ({int(np.sum(chosen))})")
    lo = min(float(np.min(colour[shown])) if shown.any() else 0.5, 0.5) - 0.2
    hi = max(float(np.max(colour[shown])) if shown.any() else 5.0, 5.0) + 0.2
    x = np.linspace(lo, hi, 200)
    text = cuts.describe()
    ax.plot(x, cuts.upper_line(x), "k--", lw=1, label=text["pass_upper"])
    ax.plot(x, cuts.lower_line(x), "k-.", lw=1, label=text["pass_lower"])
    ax.axhline(cuts.mg0_min, color="k", ls=":", lw=1, label=text["pass_mg0"])
    top = min(float(np.min(magnitude[shown])) if shown.any() else 4.0, cuts.mg0_min) - 1.0
    bottom = max(float(np.max(magnitude[shown])) if shown.any() else 16.0, 16.0) + 0.5
    ax.set_xlim(lo, hi)
    ax.set_ylim(bottom, top)
    ax.set_xlabel("(BP-RP)$_0$")
    ax.set_ylabel("$M_{G,0}$")
    ax.set_title(title or f"M-dwarf selection ({selection.extinction} extinction)\n{text['pass_ruwe']}; "
                 f"{text['pass_parallax']}", fontsize=8)
    ax.legend(loc="lower left", fontsize=7, markerscale=2)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda stream: fig.savefig(stream, format="png", dpi=110))
    finally:
        plt.close(fig)

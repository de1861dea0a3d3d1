"""Named errors of :mod:`bayesslam.relations`: bad tables, no cross-matches, values in the wrong units.

All derive from :class:`RelationsError` (a :class:`~bayesslam.errors.BayesSlamError`
and a :class:`ValueError`), and each message says what is wrong and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable

from bayesslam.errors import BayesSlamError

__all__ = ["RelationsError", "MissingColumnError", "NoMatchError", "UnitsError"]


class RelationsError(BayesSlamError, ValueError):
    """Base class of the errors of :mod:`bayesslam.relations` (bad tables, settings or values)."""


class MissingColumnError(RelationsError):
    """A table lacks a column that is needed; the message names the missing and the present ones."""


class NoMatchError(RelationsError):
    """A cross-match between two catalogs found no pair (or too few to compare)."""


class UnitsError(RelationsError):
    """Values that look like they are in the wrong units (parallax in arcsec, RA outside 0-360 deg, ...)."""


def require_columns(colnames: Iterable[str], needed: Iterable[str], *, table: str = "the table",
                    hint: str = "") -> None:
    """Raise :class:`MissingColumnError` naming the columns of ``needed`` that ``colnames`` lacks.

    Parameters
    ----------
    colnames : iterable of str
        The columns the table has.
    needed : iterable of str
        The columns that must be present.
    table : str
        How to call the table in the message (e.g. a file name).
    hint : str
        What to do, appended to the message.
    """
    present = list(colnames)
    missing = [name for name in needed if name not in present]
    if missing:
        shown = ", ".join(present[:30]) + (f", ... ({len(present)} in all)" if len(present) > 30 else "")
        raise MissingColumnError(f"{table} has no column {', '.join(missing)} (its columns: {shown or 'none'})."
                                 + (f" {hint}" if hint else ""))

"""Label tables: the labels of given spectra, matched by identifier or file name, from a CSV or FITS table."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bayesslam.errors import BayesSlamError

__all__ = ["STANDARD_LABELS", "LabelTableError", "label_table_names", "read_label_table", "table_label_names"]


class LabelTableError(BayesSlamError, ValueError):
    """A label table cannot give the labels asked for (unreadable, missing columns or rows, bad values)."""


#: Label names bayesslam knows, in the order a model takes them by default.
STANDARD_LABELS: tuple[str, ...] = ("teff", "logg", "fe_h", "alpha_m")


def table_label_names(columns: Sequence[str], source: str | Path = "the label table") -> tuple[str, ...]:
    """The :data:`STANDARD_LABELS` among ``columns``, in that order.

    Raises
    ------
    LabelTableError
        If there is none.
    """
    found = tuple(name for name in STANDARD_LABELS if name in columns)
    if not found:
        raise LabelTableError(
            f"{source} has none of the label columns {list(STANDARD_LABELS)} (it has {list(columns)}); "
            "name the label columns (--label-names)."
        )
    return found


def _read_table(path: Path) -> Any:
    from astropy.table import Table

    fmt = "ascii.csv" if path.suffix.lower() in (".csv", ".txt") else None
    try:
        return Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many kinds for unreadable tables
        raise LabelTableError(f"{path}: cannot read the label table ({exc}).") from exc


def label_table_names(path: str | Path) -> tuple[str, ...]:
    """The :data:`STANDARD_LABELS` a label table has, in that order (:func:`table_label_names`).

    Raises
    ------
    LabelTableError
        If the table cannot be read or has none of them.
    """
    path = Path(path)
    return table_label_names(_read_table(path).colnames, path)


def read_label_table(
    path: str | Path,
    identifiers: Sequence[str],
    label_names: Sequence[str] | None,
    id_column: str = "identifier",
    aliases: Sequence[Sequence[str]] | None = None,
) -> np.ndarray:
    """Labels of the given identifiers from a CSV or FITS table, in that order.

    A spectrum whose identifier is not in the table is matched by its
    ``aliases`` (e.g. its file name, for tables keyed by file name such as
    LAMOST ones, whose spectra are identified by OBSID).

    Parameters
    ----------
    path : str or pathlib.Path
        A CSV (``.csv``, ``.txt``) or any table astropy reads (FITS, ECSV...).
    identifiers : sequence of str
        The spectra whose labels are wanted, in the order wanted.
    label_names : sequence of str or None
        The label columns (None: :data:`STANDARD_LABELS` the table has, in
        that order; :func:`table_label_names`).
    id_column : str
        The column holding the identifiers (or file names).
    aliases : sequence of sequences of str, optional
        Other keys of each spectrum, tried in order when its identifier is
        not in the table.

    Returns
    -------
    numpy.ndarray, shape (n_identifier, n_label)

    Raises
    ------
    LabelTableError
        If the table cannot be read, a column or an identifier is missing, an
        identifier appears more than once, or a label is not a finite number.
    """
    path = Path(path)
    table = _read_table(path)
    if label_names is None:
        label_names = table_label_names(table.colnames, path)
    missing_cols = [c for c in (id_column, *label_names) if c not in table.colnames]
    if missing_cols:
        raise LabelTableError(f"{path}: missing column(s) {missing_cols}; it has {table.colnames}.")
    names = [str(v).strip() for v in table[id_column]]
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise LabelTableError(
            f"{path}: {len(repeated)} identifier(s) appear more than once in column {id_column!r}, e.g. "
            f"{repeated[:3]}; keep one row per spectrum."
        )
    index = {name: i for i, name in enumerate(names)}
    keys = []
    for n, identifier in enumerate(identifiers):
        candidates = [identifier, *(aliases[n] if aliases is not None else ())]
        keys.append(next((key for key in candidates if key in index), None))
    absent = [identifiers[n] for n, key in enumerate(keys) if key is None]
    if absent:
        raise LabelTableError(
            f"{len(absent)} spectra have no row in {path} (matched on column {id_column!r} by identifier"
            f"{' or file name' if aliases is not None else ''}), e.g. {absent[:3]}."
        )
    rows = [index[key] for key in keys]
    columns = []
    for name in label_names:
        try:
            columns.append(np.asarray(table[name], dtype=float)[rows])
        except (TypeError, ValueError) as exc:
            raise LabelTableError(f"{path}: column {name!r} is not numeric ({exc}).") from exc
    labels = np.column_stack(columns)
    if not np.all(np.isfinite(labels)):
        bad = [identifiers[i] for i in np.where(~np.all(np.isfinite(labels), axis=1))[0][:3]]
        raise LabelTableError(f"{path}: labels must be finite; NaN or inf for e.g. {bad}.")
    return labels

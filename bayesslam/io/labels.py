"""Label tables: the labels of given spectra, matched by identifier, from a CSV or FITS table."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from bayesslam.errors import BayesSlamError

__all__ = ["LabelTableError", "read_label_table"]


class LabelTableError(BayesSlamError, ValueError):
    """A label table cannot give the labels asked for (unreadable, missing columns or rows, bad values)."""


def read_label_table(
    path: str | Path, identifiers: Sequence[str], label_names: Sequence[str], id_column: str = "identifier"
) -> np.ndarray:
    """Labels of the given identifiers from a CSV or FITS table, in that order.

    Parameters
    ----------
    path : str or pathlib.Path
        A CSV (``.csv``, ``.txt``) or any table astropy reads (FITS, ECSV...).
    identifiers : sequence of str
        The spectra whose labels are wanted, in the order wanted.
    label_names : sequence of str
        The label columns.
    id_column : str
        The column holding the identifiers.

    Returns
    -------
    numpy.ndarray, shape (n_identifier, n_label)

    Raises
    ------
    LabelTableError
        If the table cannot be read, a column or an identifier is missing, an
        identifier appears more than once, or a label is not a finite number.
    """
    from astropy.table import Table

    path = Path(path)
    fmt = "ascii.csv" if path.suffix.lower() in (".csv", ".txt") else None
    try:
        table = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many kinds for unreadable tables
        raise LabelTableError(f"{path}: cannot read the label table ({exc}).") from exc
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
    absent = [i for i in identifiers if i not in index]
    if absent:
        raise LabelTableError(
            f"{len(absent)} spectra have no row in {path} (matched on column {id_column!r}), e.g. {absent[:3]}."
        )
    rows = [index[i] for i in identifiers]
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

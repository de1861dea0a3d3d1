"""Label tables: every bad table is a named error that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bayesslam.io import LabelTableError, read_label_table

NAMES = ("teff", "fe_h")


def _table(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_labels_are_read_in_the_order_asked(tmp_path: Path):
    path = _table(tmp_path, "identifier,teff,fe_h,extra\nb,3400,0.1,x\na,3500,-0.2,y\n")
    np.testing.assert_array_equal(read_label_table(path, ["a", "b"], NAMES), [[3500, -0.2], [3400, 0.1]])


@pytest.mark.parametrize(
    "text, match",
    [
        ("identifier,teff\na,3500\n", r"missing column\(s\) \['fe_h'\]"),
        ("identifier,teff,fe_h\na,3500,0.1\na,3510,0.1\n", "appear more than once"),
        ("identifier,teff,fe_h\nc,3500,0.1\n", "have no row"),
        ("identifier,teff,fe_h\na,3500,abc\n", "'fe_h' is not numeric"),
        ("identifier,teff,fe_h\na,3500,nan\n", "must be finite"),
        ("identifier,teff,fe_h\na,3500,0.1,7,8\n", "cannot read"),
    ],
    ids=["missing-column", "duplicate-identifier", "missing-identifier", "non-numeric", "nan", "unreadable"],
)
def test_bad_label_tables_are_named_errors(tmp_path: Path, text: str, match: str):
    with pytest.raises(LabelTableError, match=match):
        read_label_table(_table(tmp_path, text), ["a"], NAMES)

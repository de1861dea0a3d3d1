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


def test_label_names_default_to_the_standard_ones_the_table_has(tmp_path: Path):
    from bayesslam.io import label_table_names

    assert label_table_names(_table(tmp_path, "identifier,fe_h,teff,snr\na,0.1,3500,20\n")) == ("teff", "fe_h")
    with pytest.raises(LabelTableError, match="none of the label columns"):
        label_table_names(_table(tmp_path, "identifier,mass\na,0.3\n"))


def test_spectra_are_matched_by_file_name_when_the_identifier_is_not_in_the_table(tmp_path: Path):
    path = _table(tmp_path, "file,teff,fe_h\nspec-55859-F5902_sp01-001.fits,3500,0.1\n")
    labels = read_label_table(path, ["123456789"], NAMES, "file", aliases=[("spec-55859-F5902_sp01-001.fits",)])
    np.testing.assert_array_equal(labels, [[3500, 0.1]])
    with pytest.raises(LabelTableError, match="by identifier or file name"):
        read_label_table(path, ["123456789"], NAMES, "file", aliases=[("other.fits",)])

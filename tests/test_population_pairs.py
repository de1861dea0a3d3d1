"""The wide-binary test as a tool: Delta[label] within pairs and its z-score (bayesslam.population.pairs)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from astropy.table import Table

from bayesslam.errors import BayesSlamError
from bayesslam.population.pairs import (
    PairComparison,
    PairError,
    compare_pairs,
    pairs_from_groups,
    pairs_from_table,
    plot_pair_comparison,
)


def _simulate(n=2000, s_true=0.0, seed=1):
    """Pairs sharing a true label, measured with known errors (plus an extra per-pair scatter s_true)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(-0.8, 0.3, n)
    err_a, err_b = rng.uniform(0.025, 0.045, n), rng.uniform(0.025, 0.045, n)
    a = truth + err_a * rng.standard_normal(n)
    b = truth + err_b * rng.standard_normal(n) + s_true * rng.standard_normal(n) + 0.01
    return a, b, err_a, err_b


def test_right_errors_pass_the_check():
    a, b, ea, eb = _simulate()
    c = compare_pairs(a, b, ea, eb)
    assert isinstance(c, PairComparison) and c.n == 2000 and c.n_dropped == 0
    assert 0.9 < c.z_std < 1.1 and 0.9 < c.z_mad_std < 1.1
    assert abs(c.fraction_within_1sigma - 0.6827) < 0.03
    assert abs(c.fraction_within_2sigma - 0.95) < 0.02
    assert c.excess_scatter < 0.02
    assert abs(c.median_delta - 0.01) < 0.005 and abs(c.mean_delta - 0.01) < 0.005
    np.testing.assert_allclose(c.delta, b - a)
    np.testing.assert_allclose(c.sigma, np.hypot(ea, eb))
    np.testing.assert_allclose(c.z, (b - a) / np.hypot(ea, eb))


def test_excess_scatter_recovered():
    a, b, ea, eb = _simulate(s_true=0.08, seed=2)
    c = compare_pairs(a, b, ea, eb)
    assert c.median_sigma == pytest.approx(0.05, abs=0.005)
    assert abs(c.excess_scatter - 0.08) < 0.015
    assert c.excess_scatter_per_star == pytest.approx(c.excess_scatter / np.sqrt(2))
    # with the excess added in quadrature the z-scores have unit variance again
    z = c.delta / np.sqrt(c.sigma**2 + c.excess_scatter**2)
    assert abs(np.std(z) - 1) < 0.05


def test_halved_errors_fail_the_check():
    a, b, ea, eb = _simulate(seed=3)
    c = compare_pairs(a, b, ea / 2, eb / 2)
    assert c.z_std > 1.5
    assert c.fraction_within_1sigma < 0.5
    assert c.excess_scatter > 0.03


def test_non_finite_rows_dropped_and_to_dict_is_json():
    a, b, ea, eb = _simulate(n=50)
    a[3], eb[7] = np.nan, np.inf
    c = compare_pairs(a, b, ea, eb, label="m_h")
    assert c.n == 48 and c.n_dropped == 2
    d = c.to_dict()
    json.dumps(d)
    assert d["label"] == "m_h" and d["n"] == 48 and d["n_dropped"] == 2
    for key in ("median_delta", "mean_delta", "std_delta", "mad_std_delta", "median_sigma", "z_std", "z_mad_std",
                "fraction_within_1sigma", "fraction_within_2sigma", "excess_scatter", "excess_scatter_per_star"):
        assert type(d[key]) is float


def _catalog():
    t = Table()
    t["IDENTIFIER"] = ["A1", "B1", "A2", "B2", "A3", "B3"]
    t["FE_H_MAP"] = [0.0, 0.5, 0.0, 0.5, 0.0, 0.5]
    t["FE_H_MEDIAN"] = [0.0, 0.1, -0.2, -0.1, 0.3, 0.2]
    t["FE_H_ERR"] = [0.1] * 6
    t["FE_H_POST_ERR"] = [0.2] * 6
    return t


def test_pairs_from_table_prefers_median():
    pairs = [("A1", "B1"), ("A2", "B2"), ("A3", "B3")]
    c = pairs_from_table(_catalog(), pairs, label="fe_h")
    np.testing.assert_allclose(c.delta, [0.1, 0.1, -0.1])
    np.testing.assert_allclose(c.sigma, np.hypot(0.1, 0.1))
    t = _catalog()
    t.remove_column("FE_H_MEDIAN")
    np.testing.assert_allclose(pairs_from_table(t, pairs, label="fe_h").delta, [0.5, 0.5, 0.5])


def test_pairs_from_table_explicit_columns():
    c = pairs_from_table(_catalog(), [("B1", "A1"), ("B2", "A2")], label="fe_h", value_column="FE_H_MAP",
                         error_column="FE_H_POST_ERR")
    np.testing.assert_allclose(c.delta, [-0.5, -0.5])
    np.testing.assert_allclose(c.sigma, np.hypot(0.2, 0.2))


def test_pairs_from_groups(caplog):
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    groups = [1, 2, 1, 3, 2, 3, 3]
    with caplog.at_level(logging.INFO, logger="bayesslam.population.pairs"):
        assert pairs_from_groups(ids, groups) == [("a", "c"), ("b", "e")]
    assert "1 groups" in caplog.text
    assert pairs_from_groups(["x", "y"], ["g", "g"]) == [("x", "y")]


@pytest.mark.parametrize("args, match", [
    (([0.0, 1.0], [0.0, 1.0, 2.0], [0.1, 0.1], [0.1, 0.1]), "lengths"),
    (([np.nan, np.nan], [0.0, 1.0], [0.1, 0.1], [0.1, 0.1]), "only 0 of 2"),
    (([0.0], [0.1], [0.1], [0.1]), "only 1 of 1"),
    (([0.0, 1.0], [0.0, 1.0], [0.1, 0.0], [0.1, 0.1]), "error <= 0"),
    (([0.0, 1.0], [0.0, 1.0], [0.1, 0.1], [-0.1, 0.1]), "error <= 0"),
])
def test_compare_pairs_errors(args, match):
    with pytest.raises(PairError, match=match) as info:
        compare_pairs(*args)
    assert isinstance(info.value, BayesSlamError) and isinstance(info.value, ValueError)


def test_table_errors():
    t = _catalog()
    with pytest.raises(PairError, match=r"not in column IDENTIFIER.*\(Z9\)"):
        pairs_from_table(t, [("A1", "Z9"), ("A2", "B2")], label="fe_h")
    with pytest.raises(PairError, match=r"paired with themselves.*\(A1\)"):
        pairs_from_table(t, [("A1", "A1"), ("A2", "B2")], label="fe_h")
    with pytest.raises(PairError, match="ALPHA_M_MAP"):
        pairs_from_table(t, [("A1", "B1"), ("A2", "B2")], label="alpha_m")
    t["IDENTIFIER"][2] = "A1"
    with pytest.raises(PairError, match=r"repeated in the table.*\(A1\)"):
        pairs_from_table(t, [("A1", "B1"), ("B3", "B2")], label="fe_h")
    with pytest.raises(PairError, match="fewer|only 1"):
        pairs_from_table(_catalog(), [("A1", "B1")], label="fe_h")
    with pytest.raises(PairError, match="length"):
        pairs_from_groups(["a", "b"], [1])


def test_plot_writes_png(tmp_path):
    a, b, ea, eb = _simulate(n=300)
    comparisons = [compare_pairs(a, b, ea, eb), compare_pairs(b, a, ea / 2, eb / 2, label="alpha_m")]
    path = plot_pair_comparison(comparisons, tmp_path / "sub" / "pairs.png")
    assert path == tmp_path / "sub" / "pairs.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["pairs.png"]
    with pytest.raises(PairError, match="at least one"):
        plot_pair_comparison([], tmp_path / "empty.png")

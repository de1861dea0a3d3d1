"""Cross-survey corrections (bayesslam.relations.corrections): the paper's ASPCAP [Fe/H] correction and the learner.

The learner's tests share one compiled sampler: every call uses the same
NUTS settings and catalogs of 200 rows (padded to the same shapes inside),
so the first call compiles and the others only run.
"""

from __future__ import annotations

import numpy as np
import pytest

from bayesslam.relations import (
    ASPCAP_FEH_RANGE,
    ASPCAP_TEFF_RANGE,
    PAPER_ASPCAP_COEFFICIENTS,
    RelationsError,
    aspcap_feh_correction,
    design_matrix,
    learn_offset,
    learn_offsets,
    polynomial_terms,
    term_names,
)
from bayesslam.relations.corrections import _Standardization

#: Synthetic ASPCAP x bayesslam cross-matches: 200 stars each, ASPCAP Teff and [Fe/H] uniform over the correction's
#: domain, the paper's offset injected with an intrinsic scatter of 0.03 dex, errors 0.03-0.08 dex in each catalog.
N_ROWS, N_CATALOGS, SEED, SCATTER = 200, 25, 20250, 0.03
#: NUTS settings of every learner call here (one compiled sampler).
NUTS = {"num_warmup": 300, "num_samples": 300}
TRUTH = np.array([PAPER_ASPCAP_COEFFICIENTS[k] for k in ("1", "x", "y", "x^2", "x*y", "y^2")])


def _cross_match(rng: np.random.Generator) -> dict[str, np.ndarray]:
    teff = rng.uniform(*ASPCAP_TEFF_RANGE, N_ROWS)
    fe_h = rng.uniform(*ASPCAP_FEH_RANGE, N_ROWS)
    err_a, err_b = rng.uniform(0.03, 0.08, N_ROWS), rng.uniform(0.03, 0.08, N_ROWS)
    offset = aspcap_feh_correction(teff, fe_h).delta
    noise = np.sqrt(err_a**2 + err_b**2 + SCATTER**2) * rng.standard_normal(N_ROWS)
    return {"teff": teff, "fe_h": fe_h, "a": fe_h, "b": fe_h + offset + noise, "err_a": err_a, "err_b": err_b}


@pytest.fixture(scope="module")
def cross_matches() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(SEED)
    return [_cross_match(rng) for _ in range(N_CATALOGS)]


def _learn(cm: dict[str, np.ndarray], **kwargs):
    return learn_offset({"teff": cm["teff"], "fe_h": cm["fe_h"]}, cm["a"], cm["b"], cm["err_a"], cm["err_b"],
                        scales={"teff": 1000.0}, **NUTS, **kwargs)


# --- the paper's correction ----------------------------------------------------------------------------------

def test_aspcap_correction_equals_the_paper_at_hand_computed_points():
    # Delta = -0.427 x^2 - 0.158 y^2 + 0.431 x y + 2.767 x - 2.156 y - 4.405, x = Teff / 1000, y = [Fe/H], e.g.
    # (3200, -0.5): -4.37248 - 0.0395 - 0.6896 + 8.8544 + 1.078 - 4.405 = 0.42582
    teff = [3500.0, 3200.0, 3800.0, 3000.0, 4000.0]
    fe_h = [0.0, -0.5, 0.3, -1.0, 0.5]
    delta, valid = aspcap_feh_correction(teff, fe_h)
    np.testing.assert_allclose(delta, [0.04875, 0.42582, -0.22596, 0.758, -0.4245], atol=1e-10)
    assert valid.all()  # the domain's corners are inside


def test_aspcap_correction_is_flagged_outside_its_domain(caplog):
    with caplog.at_level("INFO", logger="bayesslam"):
        result = aspcap_feh_correction([4500.0, 3500.0, 2900.0, 3500.0], [0.0, -1.5, 0.0, 0.6])
    assert not result.valid.any()
    assert np.isnan(result.delta).all()  # not silently extrapolated
    assert "4 of 4 stars outside" in caplog.text
    forced = aspcap_feh_correction(4500.0, 0.0, extrapolate=True)
    assert float(forced.delta) == pytest.approx(-0.60025, abs=1e-10) and not forced.valid
    assert ASPCAP_TEFF_RANGE == (3000.0, 4000.0) and ASPCAP_FEH_RANGE == (-1.0, 0.5)


# --- polynomials and the standardization ---------------------------------------------------------------------

def test_polynomial_terms_and_the_exact_map_back_to_raw_coefficients():
    terms = polynomial_terms(2, 2)
    assert terms == [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    assert term_names(["x", "y"], terms) == list(PAPER_ASPCAP_COEFFICIENTS)
    assert len(polynomial_terms(3, 3)) == 20
    rng = np.random.default_rng(1)
    values = np.column_stack([rng.uniform(3000, 4000, 50), rng.uniform(-1, 0.5, 50)])
    scales = np.array([1000.0, 1.0])
    standard = _Standardization.fit(values, polynomial_terms(2, 3), scales, ["teff", "fe_h"])
    design = standard.design(values)
    np.testing.assert_allclose(design[:, 1:].mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(design[:, 1:].std(axis=0), 1.0, atol=1e-10)
    # design = monomials of the raw (scaled) variables @ M, exactly
    raw = design_matrix(values / scales, polynomial_terms(2, 3))
    np.testing.assert_allclose(raw @ standard.to_raw(), design, atol=1e-8)


# --- the learner ---------------------------------------------------------------------------------------------

def test_learner_recovers_the_paper_offset(cross_matches):
    cm = cross_matches[0]
    post = _learn(cm)
    assert post.names == ("1", "(teff/1000)", "fe_h", "(teff/1000)^2", "(teff/1000)*fe_h", "fe_h^2")
    assert post.n == N_ROWS and post.n_dropped == 0 and post.n_divergent == 0
    mean, sd = post.coefficient_draws.mean(axis=0), post.coefficient_draws.std(axis=0)
    assert np.all(np.abs(mean - TRUTH) < 3 * sd), (mean, sd)  # every coefficient within its posterior
    low, high = post.scatter_interval(0.95)
    assert low < SCATTER < high
    # the correction at new points: the paper's value within the prediction's uncertainty
    teff, fe_h = np.array([3200.0, 3500.0, 3800.0]), np.array([-0.6, 0.0, 0.3])
    prediction = post.predict(teff=teff, fe_h=fe_h)
    paper = aspcap_feh_correction(teff, fe_h).delta
    assert np.all(np.abs(prediction.mean - paper) < 3 * prediction.sd) and np.all(prediction.sd < 0.05)
    np.testing.assert_allclose(post.predict(teff, fe_h).mean, prediction.mean)
    assert np.all(prediction.q16 < prediction.median) and np.all(prediction.median < prediction.q84)
    # the posterior as ArviZ InferenceData, and a JSON-able summary
    assert post.idata.posterior["coefficients"].dims == ("chain", "draw", "term")
    assert list(post.idata.posterior["term"].values) == list(post.names)
    summary = post.summary()
    assert set(summary["coefficients"]) == set(post.names) and {"mean", "sd", "q16", "q84"} <= set(summary["scatter"])


def test_negative_control_ignoring_the_errors_inflates_the_scatter(cross_matches):
    """Without the catalogs' errors in the likelihood the scatter absorbs them: sqrt(0.03^2 + <err_a^2 + err_b^2>)."""
    cm = cross_matches[0]
    post = _learn(cm, ignore_errors=True)
    absorbed = np.sqrt(SCATTER**2 + np.mean(cm["err_a"] ** 2 + cm["err_b"] ** 2))  # ~0.086
    median = float(np.median(post.scatter_draws))
    assert median > 2.5 * SCATTER
    assert median == pytest.approx(absorbed, rel=0.15)
    assert post.scatter_interval(0.99)[0] > SCATTER and post.ignore_errors


@pytest.mark.slow
def test_coefficient_intervals_cover_the_truth_over_repeated_catalogs(cross_matches):
    """68% coverage of the six coefficients pooled over 25 catalogs (one batched call), within a binomial band."""
    posts = learn_offsets([{"teff": cm["teff"], "fe_h": cm["fe_h"]} for cm in cross_matches],
                          [cm["a"] for cm in cross_matches], [cm["b"] for cm in cross_matches],
                          [cm["err_a"] for cm in cross_matches], [cm["err_b"] for cm in cross_matches],
                          scales={"teff": 1000.0}, seed=1, **NUTS)
    assert len(posts) == N_CATALOGS and sum(p.n_divergent for p in posts) == 0
    inside = np.array([(p.interval(0.6827)[0] <= TRUTH) & (TRUTH <= p.interval(0.6827)[1]) for p in posts])
    coverage = float(inside.mean())
    band = 3 * np.sqrt(0.6827 * (1 - 0.6827) / inside.size)  # 150 intervals: +-0.114
    assert abs(coverage - 0.6827) < band, coverage
    # the intrinsic scatter too, looser (it sits near zero relative to the errors)
    scatter_inside = np.mean([p.scatter_interval(0.95)[0] <= SCATTER <= p.scatter_interval(0.95)[1] for p in posts])
    assert scatter_inside >= 0.8


def test_learner_refuses_bad_input(cross_matches):
    cm = cross_matches[0]
    variables = {"teff": cm["teff"], "fe_h": cm["fe_h"]}
    with pytest.raises(RelationsError, match="needs errors_a and errors_b"):
        learn_offset(variables, cm["a"], cm["b"])
    with pytest.raises(RelationsError, match="have lengths"):
        learn_offset(variables, cm["a"][:10], cm["b"], cm["err_a"], cm["err_b"])
    with pytest.raises(RelationsError, match="usable rows for a polynomial of 6 terms"):
        learn_offset({k: v[:5] for k, v in variables.items()}, cm["a"][:5], cm["b"][:5], cm["err_a"][:5],
                     cm["err_b"][:5])
    with pytest.raises(RelationsError, match="fe_h take a single value"):
        learn_offset({"teff": cm["teff"], "fe_h": np.zeros(N_ROWS)}, cm["a"], cm["b"], cm["err_a"], cm["err_b"])
    with pytest.raises(RelationsError, match="errors must be >= 0"):
        learn_offset(variables, cm["a"], cm["b"], -cm["err_a"], cm["err_b"])
    with pytest.raises(RelationsError, match="not variables"):
        learn_offset(variables, cm["a"], cm["b"], cm["err_a"], cm["err_b"], scales={"logg": 2.0})

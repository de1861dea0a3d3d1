"""Coverage of the default model on mock spectra it does not describe by construction (issue 18, point 4).

The stars come from the mock generator with its template model perturbed
(:func:`bayesslam.mock.perturbed_mock_set`, as ``benchmarks/bench_misfit.py``,
which measures 1000 stars per kind): a continuum ripple that the SLAM
normalization does not remove, absorption depths scaled per star, the real
templates' residuals from the template model, and another instrument's
resolution. One survey seed (20251212, used nowhere else) for every kind, so
the stars, SNRs and noise draws are the same and only the perturbation differs.

What holds today, and is asserted: the per-star misfit scaling fires on the
ripple and (almost) never on unperturbed stars; on the ripple the raw MAP +
Laplace 68% intervals of Teff and [Fe/H] cover within issue 18's band
0.55-0.80, which the diagonal likelihood (no emulator error model) fails for
[Fe/H] on the same spectra (the negative control). The misfit scaling is not
what keeps that coverage: undone, the coverage moves by less than 1% (the
benchmark refits without it), so it is not the negative control here. What
does not hold today (``benchmarks/bench_misfit.py``, docs/calibration.md): the
band on perturbed templates (line depths, template residuals) and on another
resolution, whose Teff or [Fe/H] errors are coherent with the labels while
the reduced chi2 barely rises; it is not asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest

from bayesslam.calibration import ONE_SIGMA, coverage
from bayesslam.emulator import default_model_path, load_model
from bayesslam.infer import FitStatus, fit_map
from bayesslam.mock import LABEL_NAMES, perturbed_mock_set

pytestmark = pytest.mark.slow

SEED = 20251212
N_STARS = 300
BAND = (0.55, 0.80)
TEFF, FE_H = LABEL_NAMES.index("teff"), LABEL_NAMES.index("fe_h")


@pytest.fixture(scope="module")
def model():
    return load_model(default_model_path())


@pytest.fixture(scope="module")
def fits(model):
    """Default-model MAP + Laplace fits (Laplace correction and misfit scaling on, as ``bayesslam fit``) per kind."""
    out = {}
    for kind in ("none", "ripple"):
        flux, ivar, truth, snr = perturbed_mock_set(N_STARS, SEED, kind)
        fit = fit_map(model.emulator, flux, ivar, laplace_correction=model.laplace_correction)
        out[kind] = dict(fit=fit, truth=truth, snr=snr, flux=flux, ivar=ivar)
    return out


def _fired(fit) -> np.ndarray:
    """Stars whose misfit scaling fired (bayesslam.infer.misfit_scale: reduced chi2 > 1 + 3 sqrt(2 / dof))."""
    dof = np.maximum(fit.n_good - len(fit.label_names), 1)
    return fit.reduced_chi2 > 1.0 + 3.0 * np.sqrt(2.0 / dof)


def _coverage68(fit, truth) -> np.ndarray:
    ok = fit.status == FitStatus.CONVERGED
    assert ok.mean() > 0.98
    return coverage(fit.labels[ok] - truth[ok], fit.sigma[ok], ONE_SIGMA)


def test_misfit_scaling_fires_on_a_bad_continuum_not_on_the_model_s_own_stars(fits):
    clean, ripple = _fired(fits["none"]["fit"]), _fired(fits["ripple"]["fit"])
    assert clean.mean() <= 0.01
    assert ripple.mean() >= 0.15
    # a fixed relative misfit raises the chi2 excess with SNR^2: it fires on the brighter half
    bright = fits["ripple"]["snr"] > np.median(fits["ripple"]["snr"])
    assert ripple[bright].mean() > 3 * ripple[~bright].mean()


def test_coverage_in_band_on_a_bad_continuum_and_the_diagonal_likelihood_fails_it(fits, model):
    fit, truth = fits["ripple"]["fit"], fits["ripple"]["truth"]
    c = _coverage68(fit, truth)
    assert BAND[0] <= c[TEFF] <= BAND[1], c
    assert BAND[0] <= c[FE_H] <= BAND[1], c
    # negative control: the same spectra without the emulator error model (diagonal likelihood)
    diagonal = model.with_error_model(None)
    flux, ivar = fits["ripple"]["flux"], fits["ripple"]["ivar"]
    c0 = _coverage68(fit_map(diagonal.emulator, flux, ivar, laplace_correction=diagonal.laplace_correction), truth)
    assert c0[FE_H] < BAND[0], c0

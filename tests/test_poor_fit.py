"""The poor-fit test (POOR_FIT, MISFIT, CHI2_P) and the SNR definition in the catalog header.

The default model (trained on a mock M-dwarf survey) must flag the real F, G, K and A dwarfs of
tests/data/non_m_dwarfs and garbage spectra as poor fits, and not the real M dwarfs inside its domain;
a fixed reduced-chi2 threshold (the old test) misses the K and A dwarfs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from bayesslam.catalog import (
    DEFAULT_MISFIT_TOLERANCE,
    SNR_DEFINITIONS,
    Flag,
    FlagThresholds,
    build_catalog,
    chi2_p_value,
    misfit_amplitude,
    write_catalog,
)
from bayesslam.emulator import ModelFileError
from bayesslam.io import read_spectrum
from bayesslam.pipeline import (
    fit_labels,
    load_model,
    model_misfit_tolerance,
    snr_readers,
)
from bayesslam.spectra import Spectrum, SpectrumMeta

DATA = Path(__file__).parent / "data"
#: Real M dwarfs inside the default model's domain (SDSS classes M1, M1/M2, M1/M2 [Fe/H] > 0).
M_DWARFS = ("spec-0618-52049-0372", "spec-1079-52621-0509", "spec-5047-55833-0936")
#: Real non-M dwarfs: K2, G8, F4, A9 (tests/data/README.md).
NON_M = ("spec-7454-56751-0770", "spec-7332-56683-0788", "spec-4961-55719-0378", "spec-4068-55445-0924")
K2, A9 = "spec-7454-56751-0770", "spec-4068-55445-0924"


# ---------------------------------------------------------------- the pure function, on synthetic numbers


def _variances(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise ivar, model variance and their total variance per pixel (SNR about 20-100, v about 1e-4)."""
    sigma = rng.uniform(0.01, 0.05, n)
    v = rng.uniform(0.2e-4, 2e-4, n)
    return 1.0 / sigma**2, v, sigma**2 + v


def test_misfit_solves_its_equation_exactly() -> None:
    """Residuals with r_j^2 = (var_j + delta^2) (n - k) / n: the chi2 with the extra variance is exactly its dof."""
    rng = np.random.default_rng(1)
    n, k = 1500, 4
    ivar, v, var = _variances(n, rng)
    for delta in (1e-4, 0.004, 0.015, 0.2):
        resid = np.sqrt((var + delta**2) * (n - k) / n) * rng.choice([-1.0, 1.0], n)
        got = misfit_amplitude(1.0 + resid, ivar, np.ones(n), v, k)
        assert got.shape == (1,) and got[0] == pytest.approx(delta, rel=1e-9)
    # to first order it is the method-of-moments value (chi2 - dof) / sum_j 1/var_j
    delta = 0.002
    resid = np.sqrt((var + delta**2) * (n - k) / n)
    chi2 = np.sum(resid**2 / var)
    assert misfit_amplitude(resid, ivar, 0 * resid, v, k)[0] ** 2 == pytest.approx(
        (chi2 - (n - k)) / np.sum(1 / var), rel=0.02)
    # no chi2 excess: exactly 0
    resid = np.sqrt(var * (n - k) / n)
    assert misfit_amplitude(resid, ivar, 0 * resid, v, k)[0] == 0.0
    assert misfit_amplitude(0.5 * resid, ivar, 0 * resid, v, k)[0] == 0.0


def test_misfit_uses_only_the_likelihoods_pixels() -> None:
    """Masked pixels (ivar 0) and pixels without a model variance (inf) do not count, whatever their flux."""
    rng = np.random.default_rng(2)
    n, k, delta = 800, 4, 0.02
    ivar, v, var = _variances(n, rng)
    resid = np.sqrt((var + delta**2) * (n - k) / n)
    # three more pixels: masked (ivar 0), no model variance (inf), NaN flux
    flux_bad = np.concatenate([1.0 + resid, [50.0, -3.0, np.nan]])
    ivar_bad = np.concatenate([ivar, [0.0, 1e4, 1e4]])
    v_bad = np.concatenate([v, [1e-4, np.inf, 1e-4]])
    got = misfit_amplitude(flux_bad, ivar_bad, np.ones(n + 3), v_bad, k)
    assert got[0] == pytest.approx(delta, rel=1e-9)
    # a star with no more pixels than labels, or an unfitted star (NaN model), has no misfit
    two = misfit_amplitude(np.ones((2, n)), np.stack([np.where(np.arange(n) < 3, ivar, 0.0), ivar]),
                           np.stack([np.ones(n), np.full(n, np.nan)]), v, k)
    assert np.all(np.isnan(two))


def test_pure_noise_realizations_of_the_model_have_no_misfit() -> None:
    """Flux = model + noise of exactly the likelihood's variance: MISFIT ~ 0 and no POOR_FIT; an injected misfit is found.

    Negative control: the same misfit at SNR 40 and 160 gives the same MISFIT, while its reduced
    chi2 grows with SNR^2 (why a fixed reduced-chi2 threshold cannot separate misfits from bright stars).
    """
    rng = np.random.default_rng(3)
    n, k, n_star = 1700, 4, 300
    model = 1.0 - 0.3 * rng.random(n)
    v = rng.uniform(0.2e-4, 2e-4, n)
    snr = np.exp(rng.uniform(np.log(3.0), np.log(100.0), n_star))
    ivar = (snr[:, None] / model) ** 2 * np.ones((n_star, n))
    var = 1.0 / ivar + v
    flux = model + np.sqrt(var) * rng.standard_normal((n_star, n))
    misfit = misfit_amplitude(flux, ivar, np.broadcast_to(model, flux.shape), v, k)
    chi2 = np.sum((flux - model) ** 2 / var, axis=1)
    p = chi2_p_value(chi2, np.full(n_star, n + k), k)  # the true model, not fitted: n degrees of freedom
    print("pure noise: misfit 50/99/100 percentiles", np.percentile(misfit, [50, 99, 100]).round(4),
          "smallest p", p.min())
    # the estimate is noise only: 0 whenever chi2 <= dof (about half the stars), never beyond 4 sigma of
    # its noise (sd of delta^2 about sqrt(2 n) / sum_j 1/var_j), far below the tolerance at high SNR
    assert np.mean(misfit == 0.0) > 0.3
    assert np.all(misfit**2 < 4.0 * np.sqrt(2.0 * n) / np.sum(1.0 / var, axis=1))
    assert np.all(misfit[snr > 50] < DEFAULT_MISFIT_TOLERANCE / 2)
    # POOR_FIT on pure noise only at the test's false-positive rate (p < 1e-3: 0.3 of 300 expected)
    flagged = (p < 1e-3) & (misfit > DEFAULT_MISFIT_TOLERANCE)
    print("pure noise flagged:", int(flagged.sum()), "of", n_star, "at SNR", snr[flagged].round(1))
    assert flagged.sum() <= 3 and np.all(snr[flagged] < 10)
    # an injected 2% rms misfit, the same at SNR 40 and 160
    injected, reduced = [], []
    for level in (40.0, 160.0):
        iv = np.full(n, level**2)
        total = 1.0 / iv + v
        f = model + np.sqrt(total + 0.02**2) * rng.standard_normal(n)
        injected.append(misfit_amplitude(f, iv, model, v, k)[0])
        reduced.append(np.sum((f - model) ** 2 / total) / (n - k))
    print("injected 0.02 at SNR 40, 160: misfit", np.round(injected, 4), "reduced chi2", np.round(reduced, 2))
    assert injected == pytest.approx([0.02, 0.02], rel=0.1)
    assert reduced[0] < 3.0 < reduced[1]  # the old fixed threshold: missed at SNR 40, caught at SNR 160


# ---------------------------------------------------------------- the default model on real spectra


@pytest.fixture(scope="module")
def real_fit():
    """MAP fits of 3 real M dwarfs, 4 real F/G/K/A dwarfs and 2 garbage spectra with the default model."""
    files = [DATA / f"{name}.fits" for name in M_DWARFS] + [DATA / "non_m_dwarfs" / f"{name}.fits" for name in NON_M]
    spectra = [read_spectrum(path) for path in files]
    rng = np.random.default_rng(5)
    m = spectra[1]  # spec-1079: its pixels shuffled (the flux distribution of a real star, no spectrum left)
    perm = rng.permutation(m.flux.size)
    shuffled = Spectrum(m.wave, m.flux[perm], m.ivar[perm], m.mask[perm],
                        SpectrumMeta("garbage-shuffled", m.meta.snr, m.meta.v_rad))
    level = float(np.nanmedian(m.flux))  # a featureless spectrum with honest noise at SNR 50
    flat = Spectrum(m.wave, level * (1.0 + 0.02 * rng.standard_normal(m.wave.size)),
                    np.full(m.wave.size, (50.0 / level) ** 2), None, SpectrumMeta("garbage-flat", 50.0, 0.0))
    return fit_labels(spectra + [shuffled, flat])


def test_default_model_flags_non_m_dwarfs_and_garbage_but_not_real_m_dwarfs(real_fit, tmp_path: Path) -> None:
    table = real_fit.catalog
    rows = {str(row["IDENTIFIER"]): row for row in table}
    for name, row in rows.items():
        print(f"{name:22s} SNR {row['SNR']:5.1f} reduced chi2 {row['REDUCED_CHI2']:7.2f} CHI2_P {row['CHI2_P']:8.1e} "
              f"MISFIT {row['MISFIT']:.4f} {row['FLAG_NAMES']}")
    poor = {name: bool(int(row["FLAGS"]) & Flag.POOR_FIT) for name, row in rows.items()}
    assert not any(poor[name] for name in M_DWARFS), poor
    assert all(poor[name] for name in NON_M), poor
    assert poor["garbage-shuffled"] and poor["garbage-flat"]
    # real M dwarfs inside the domain miss the mock-trained model by < 1% rms; the non-M dwarfs by > 1.5%
    assert all(rows[name]["MISFIT"] < 0.01 for name in M_DWARFS)
    assert all(rows[name]["MISFIT"] > DEFAULT_MISFIT_TOLERANCE for name in NON_M)
    # negative controls: the old fixed threshold (reduced chi2 > 3) misses the K and A dwarfs, and the p-value
    # alone would flag the bright real M dwarf spec-0618 (its 0.8% misfit is highly significant at SNR 50)
    assert rows[K2]["REDUCED_CHI2"] < 3.0 and rows[A9]["REDUCED_CHI2"] < 3.0
    assert rows["spec-0618-52049-0372"]["CHI2_P"] < 1e-3
    old = build_catalog(table["IDENTIFIER"], table["SNR"], real_fit.map)  # no MISFIT: the reduced-chi2 fallback
    old_poor = dict(zip(old["IDENTIFIER"], (np.asarray(old["FLAGS"]) & Flag.POOR_FIT) > 0))
    assert not old_poor[K2] and not old_poor[A9] and old.meta["POORFIT"] == "reduced_chi2"
    # the header says which test and tolerance were used; MISFIT has a description with its unit
    assert table.meta["POORFIT"] == "misfit" and table.meta["MISFITSR"] == "default"
    assert table.meta["MISFITOL"] == DEFAULT_MISFIT_TOLERANCE and table.meta["POORFITP"] == 1e-3
    path = write_catalog(table, tmp_path / "catalog.fits")
    header = fits.getheader(path, "CATALOG")
    names = [header[f"TTYPE{i}"] for i in range(1, header["TFIELDS"] + 1)]
    assert "normalized flux" in header[f"TCOMM{names.index('MISFIT') + 1}"]
    assert header["MISFITOL"] == DEFAULT_MISFIT_TOLERANCE


def test_the_tolerance_comes_from_the_user_then_the_model_then_the_default(real_fit) -> None:
    model = load_model()
    assert model_misfit_tolerance(model) is None  # the shipped model does not know its own (docs/bad-inputs.md)
    own = dataclasses.replace(model, metadata={**model.metadata, "misfit_tolerance": 0.05})
    assert model_misfit_tolerance(own) == 0.05
    batch, fit = real_fit.prepared.spectra, real_fit.map
    misfit = misfit_amplitude(batch.flux, batch.ivar, fit.model_flux, np.asarray(model.emulator.model_variance), 4)
    np.testing.assert_allclose(misfit, real_fit.catalog["MISFIT"])

    def poor(table: Table) -> dict[str, bool]:
        return dict(zip(table["IDENTIFIER"], (np.asarray(table["FLAGS"]) & Flag.POOR_FIT) > 0))

    looser = build_catalog(batch.identifiers, np.full(len(batch), 30.0), fit, misfit=misfit,
                           model_misfit_tolerance=model_misfit_tolerance(own))
    assert looser.meta["MISFITSR"] == "model" and looser.meta["MISFITOL"] == 0.05
    assert not any(poor(looser)[name] for name in NON_M) and poor(looser)["garbage-shuffled"]  # they miss by < 4%
    user = build_catalog(batch.identifiers, np.full(len(batch), 30.0), fit, misfit=misfit, model_misfit_tolerance=0.05,
                         thresholds=FlagThresholds(misfit=0.005))
    assert user.meta["MISFITSR"] == "user" and user.meta["MISFITOL"] == 0.005
    assert poor(user)["spec-0618-52049-0372"] and not poor(user)["spec-5047-55833-0936"]  # 0.0079 > 0.005; 0 misfit
    for bad in (-0.1, "0.02", float("nan"), True):
        broken = dataclasses.replace(model, metadata={**model.metadata, "misfit_tolerance": bad})
        with pytest.raises(ModelFileError, match="misfit_tolerance"):
            model_misfit_tolerance(broken)


# ---------------------------------------------------------------- the SNR definition


def test_snr_definition_is_in_the_catalog(real_fit, tmp_path: Path) -> None:
    """One reader: header SNRDEF; readers mixed: a column SNR_DEF per row and SNRDEFn in the header."""
    table = real_fit.catalog  # SDSS files and in-memory records ("given") mixed
    readers = list(table["SNR_DEF"])
    assert readers == ["sdss-spec"] * 7 + ["given"] * 2
    assert table.meta["SNRDEF"].startswith("mixed")
    path = write_catalog(table, tmp_path / "mixed.fits")
    header = fits.getheader(path, "CATALOG")
    assert header["SNRDEF1"] == f"sdss-spec: {SNR_DEFINITIONS['sdss-spec']}" and "SN_MEDIAN_ALL" in header["SNRDEF1"]
    assert header["SNRDEF2"].startswith("given:")
    names = [header[f"TTYPE{i}"] for i in range(1, header["TFIELDS"] + 1)]
    assert "SNRDEF" in header[f"TCOMM{names.index('SNR') + 1}"]
    assert "every reader" in header[f"TCOMM{names.index('SNR_PREP') + 1}"]
    # the prepared spectra's SNR is one definition for all, and not the reader's (SN_MEDIAN_ALL: both arms)
    assert np.all(np.isfinite(table["SNR_PREP"])) and np.all(table["SNR_PREP"][:7] != table["SNR"][:7])
    # one reader only: the header alone
    sdss = build_catalog(table["IDENTIFIER"][:7], table["SNR"][:7], real_fit.map.take(np.arange(7)),
                         snr_readers=readers[:7])
    assert sdss.meta["SNRDEF"].startswith("sdss-spec: SN_MEDIAN_ALL") and "SNR_DEF" not in sdss.colnames
    lamost = build_catalog(["a"], [12.0], real_fit.map.take(np.arange(1)), snr_readers=["lamost"])
    assert "SNRI" in lamost.meta["SNRDEF"]
    custom = build_catalog(["a"], [12.0], real_fit.map.take(np.arange(1)), snr_readers=["my-survey"])
    assert custom.meta["SNRDEF"] == "my-survey: as the reader 'my-survey' reports it"


def test_snr_readers_of_each_source(tmp_path: Path) -> None:
    gone = SpectrumMeta("x", source=str(tmp_path / "gone.fits"))
    metas = [SpectrumMeta("a", source=str(DATA / "spec-1079-52621-0509.fits")), SpectrumMeta("b", source="bayesslam.mock"),
             SpectrumMeta("c"), gone]
    assert snr_readers(metas) == ["sdss-spec", "mock", "given", "unknown"]
    assert set(SNR_DEFINITIONS) >= {"sdss-spec", "sdssv-mwm", "lamost", "table", "mock", "given", "unknown"}

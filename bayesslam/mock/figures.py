"""Diagnostic figure: mock spectra next to the real normalized BOSS templates they are built from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesslam.grid import PRODUCTION_WINDOW
from bayesslam.mock.observe import ObservingSetup
from bayesslam.mock.population import make_labels
from bayesslam.mock.survey import (
    default_template_model,
    noiseless_normalized,
    observe_labels,
)
from bayesslam.mock.template_model import TemplateModel

__all__ = ["plot_mock_vs_templates"]

_TEFF_SEQUENCE = ("K7_+0.0_Dwarf", "M0_+0.0_Dwarf", "M1_+0.0_Dwarf", "M2_+0.0_Dwarf",
                  "M3_+0.0_Dwarf", "M4_+0.0_Dwarf", "M5_+0.0_Dwarf")
_FE_H_SEQUENCE = ("M1_-0.5_Dwarf", "M1_+0.0_Dwarf", "M1_+0.5_Dwarf",
                  "M3_-0.5_Dwarf", "M3_+0.0_Dwarf", "M3_+0.5_Dwarf")


def plot_mock_vs_templates(path: str | Path, model: TemplateModel | None = None, seed: int = 2025) -> Path:
    """Draw templates vs model, and a raw and a prepared mock spectrum; save a PNG.

    Panels: (a) the real normalized templates of a Teff sequence at [Fe/H] =
    -0.25 (black) with the template model at their labels (colour); (b) the
    same for [Fe/H] sequences at M1 and M3; (c) raw observed-frame mock
    spectra across Teff (masked pixels in grey); (d) one mock spectrum at
    SNR 20 after the package's prepare (rest frame, rebin, normalize) with
    its noise-free normalized model spectrum.

    Parameters
    ----------
    path : str or pathlib.Path
        Output PNG.
    model : TemplateModel, optional
        Default: the shipped model.
    seed : int
        Seed of the mock spectra drawn.

    Returns
    -------
    pathlib.Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bayesslam.preparation import prepare_spectrum

    model = model or default_template_model()
    names = list(model.meta["train_names"])
    wave = model.boss_wave
    window = (wave >= PRODUCTION_WINDOW[0]) & (wave <= PRODUCTION_WINDOW[1])
    fig, axes = plt.subplots(2, 2, figsize=(15, 11), constrained_layout=True)
    cmap = plt.get_cmap("plasma")

    def compare(ax, sequence, title):
        for k, name in enumerate(sequence):
            i = names.index(name)
            teff, fe_h = model.train_teff[i], model.train_fe_h[i]
            fitted = model.bin_to_boss(model.normalized_flux(teff, fe_h, check_range=False))[0]
            offset = 0.6 * k
            ax.plot(wave[window], model.train_norm_boss[i, window] + offset, color="k", lw=0.7)
            ax.plot(wave[window], fitted[window] + offset, color=cmap(k / len(sequence)), lw=0.8, alpha=0.85)
            ax.text(wave[window][-1] + 20, 1.0 + offset, f"{name.split('_Dwarf')[0]}\n{teff:.0f} K {fe_h:+.2f}",
                    fontsize=8, va="center")
        ax.set_xlim(wave[window][0], wave[window][-1] + 420)
        ax.set_title(title)
        ax.set_xlabel("vacuum wavelength (A)")
        ax.set_ylabel("normalized flux + offset")

    compare(axes[0, 0], _TEFF_SEQUENCE,
            "(a) real Kesseli+2017 BOSS templates (black) vs template model (colour), [Fe/H] = -0.25")
    compare(axes[0, 1], _FE_H_SEQUENCE, "(b) [Fe/H] bins -0.75, -0.25, +0.25 at M1 and M3: templates vs model")

    labels = make_labels([3150.0, 3450.0, 3850.0], [4.9, 4.85, 4.7], [0.3, -0.4, 0.0], 0.0)
    batch, table = observe_labels(labels, np.random.default_rng(seed),
                                  setup=ObservingSetup(snr_range=(30.0, 30.0)))
    ax = axes[1, 0]
    for k, spectrum in enumerate(batch):
        flux = spectrum.flux / np.median(spectrum.flux) + 1.2 * k
        good = np.where(spectrum.mask, np.nan, flux)
        ax.plot(spectrum.wave, flux, color="0.75", lw=0.5)
        ax.plot(spectrum.wave, good, color=cmap(k / 3), lw=0.6)
        ax.text(spectrum.wave[-1] + 20, 1.0 + 1.2 * k,
                f"{table['teff'][k]:.0f} K\n{table['fe_h'][k]:+.2f}\nv={table['v_rad'][k]:.0f}", fontsize=8)
    ax.set_xlim(batch.wave[0], batch.wave[-1] + 350)
    ax.set_title("(c) raw mock BOSS spectra, observed frame, SNR 30 (masked pixels grey)")
    ax.set_xlabel("vacuum wavelength (A)")
    ax.set_ylabel("flux / median + offset")

    ax = axes[1, 1]
    one = make_labels([3450.0], [4.85], [-0.4], 0.0)
    batch, table = observe_labels(one, np.random.default_rng(seed + 1), setup=ObservingSetup(snr_range=(20.0, 20.0)))
    prepared, _ = prepare_spectrum(batch[0])
    truth = noiseless_normalized(one["teff"], one["fe_h"], model=model)[0]
    ax.plot(prepared.wave, np.where(prepared.mask, np.nan, prepared.flux), color="0.5", lw=0.5,
            label="mock (SNR 20) after prepare")
    ax.plot(prepared.wave, truth, color="C3", lw=0.9, label="noise-free normalized model")
    ax.set_title("(d) 3450 K, [Fe/H] = -0.40: pipeline-prepared mock vs truth")
    ax.set_xlabel("rest-frame vacuum wavelength (A)")
    ax.set_ylabel("normalized flux")
    ax.legend(loc="lower right", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

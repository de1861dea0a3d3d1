"""Figures people look at rather than read (matplotlib, imported only when plotting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesslam.preparation.prepared_file import PreparedSpectra

__all__ = ["plot_prepared"]


def plot_prepared(prepared: PreparedSpectra, path: str | Path, max_spectra: int = 8) -> Path:
    """Save a PNG of prepared spectra: raw flux with continuum, and normalized flux.

    Parameters
    ----------
    prepared : PreparedSpectra
        Output of :func:`bayesslam.preparation.prepare.prepare_files`.
    path : str or pathlib.Path
        PNG file to write.
    max_spectra : int
        Plot at most this many spectra (the first ones).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(prepared), max_spectra)
    fig, axes = plt.subplots(n, 2, figsize=(13, 2.1 * n + 0.6), squeeze=False, sharex=True)
    wave = prepared.wave
    for i in range(n):
        spectrum = prepared.spectra[i]
        good = ~spectrum.mask
        raw = spectrum.flux * prepared.continuum[i]
        left, right = axes[i]
        left.plot(wave, np.where(good, raw, np.nan), lw=0.5, color="k")
        left.plot(wave, prepared.continuum[i], lw=1.2, color="tab:red")
        left.set_ylabel("flux")
        left.set_title(f"{spectrum.meta.identifier}  SNR {spectrum.meta.snr:.1f}", fontsize=9, loc="left")
        right.plot(wave, np.where(good, spectrum.flux, np.nan), lw=0.5, color="k")
        right.axhline(1.0, color="tab:red", lw=0.8)
        right.set_ylim(0, 1.5)
        right.set_ylabel("normalized")
    axes[-1, 0].set_xlabel("rest-frame vacuum wavelength [A]")
    axes[-1, 1].set_xlabel("rest-frame vacuum wavelength [A]")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

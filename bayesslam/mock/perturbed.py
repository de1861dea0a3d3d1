"""Mock spectra the emulator does not describe, by construction: the template model perturbed.

For testing what a model's uncertainties do on spectra it was not trained to
describe (another instrument, templates that differ from the model's, a bad
continuum). :class:`PerturbedTemplates` is the mock's template model with its
``rest_flux`` perturbed; :func:`bayesslam.mock.make_survey` observes it
through its ``model=`` hook like the real one, so the perturbation sits in the
rest-frame spectrum and everything after it is the mock's (Doppler shift,
BOSS pixels, calibration distortion, noise, sky lines, bad pixels).
:func:`perturbed_mock_set` prepares such stars like users' spectra. Kinds
(:data:`KINDS`):

* ``none``: the unperturbed mock (the reference);
* ``resolution``: another instrument's resolution, R = 1300 instead of the
  templates' BOSS R ~ 2000: the raw rest-frame flux convolved with a Gaussian
  of FWHM ``c sqrt(1/1300**2 - 1/2000**2)`` = 175 km/s;
* ``line_depth``: every absorption depth scaled by a per-star factor
  ``s = 1 + N(0, 0.1)``: normalized flux ``1 - s (1 - n)``;
* ``ripple``: a bad continuum, the raw flux times
  ``1 + 0.02 sin(2 pi lambda / P + phi)``, ``P ~ U(100, 300) A``,
  ``phi ~ U(0, 2 pi)`` per star, shorter than the SLAM continuum follows;
* ``template_residual``: the star's normalized flux plus what one of the 21
  real Kesseli et al. (2017) templates (drawn per star) differs from the
  template model at its own labels.

``benchmarks/bench_misfit.py`` measures a model's coverage on each kind.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import gaussian_filter1d

from bayesslam.mock.observe import ObservingSetup
from bayesslam.mock.population import LABEL_NAMES
from bayesslam.mock.survey import default_template_model, make_survey
from bayesslam.mock.template_model import TemplateModel
from bayesslam.preparation import prepare_spectra
from bayesslam.wavelength import SPEED_OF_LIGHT_KMS

__all__ = ["KINDS", "PerturbedTemplates", "perturbed_mock_set"]

#: Kinds of mock spectra, in the order they run; ``none`` is the unperturbed reference.
KINDS = ("none", "resolution", "line_depth", "ripple", "template_residual")
#: Resolution of the templates (BOSS) and of the other instrument.
TEMPLATE_RESOLUTION = 2000.0
OTHER_RESOLUTION = 1300.0
#: Standard deviation of the per-star line-depth factor.
DEPTH_SD = 0.1
#: Amplitude and period range (A) of the continuum ripple.
RIPPLE_AMPLITUDE = 0.02
RIPPLE_PERIOD = (100.0, 300.0)


@dataclasses.dataclass(frozen=True, eq=False)
class PerturbedTemplates(TemplateModel):
    """The mock's template model with a perturbed ``rest_flux`` (one of :data:`KINDS`); draws from ``rng``.

    ``make_survey(..., model=PerturbedTemplates.of(kind, rng))`` observes it
    like the real template model. The perturbation is drawn per star, in the
    order the survey asks for spectra (chunk by chunk), so a survey is fixed
    by its seed and ``rng``'s.
    """

    kind: str = "none"
    rng: np.random.Generator | None = None

    @classmethod
    def of(cls, kind: str, rng: np.random.Generator, base: TemplateModel | None = None) -> "PerturbedTemplates":
        """The template model ``base`` (default: the mock's) perturbed by ``kind``, drawing from ``rng``."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
        base = base or default_template_model()
        return cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(TemplateModel)}, kind=kind, rng=rng)

    def _template_residuals(self) -> np.ndarray:
        """The real templates minus the model at their labels, on BOSS pixels (0 where a template has no data)."""
        fit = self.bin_to_boss(self.normalized_flux(self.train_teff, self.train_fe_h, check_range=False))
        return np.nan_to_num(self.train_norm_boss - fit)

    def rest_flux(self, teff: np.ndarray, fe_h: np.ndarray, *, check_range: bool = True) -> np.ndarray:
        """The template model's rest-frame flux, perturbed (see the module docstring)."""
        norm = self.normalized_flux(teff, fe_h, check_range=check_range)
        n = norm.shape[0]
        if self.kind == "line_depth":
            depth = 1.0 + DEPTH_SD * self.rng.standard_normal((n, 1))
            norm = 1.0 - depth * (1.0 - norm)
        elif self.kind == "template_residual":
            residuals = self._template_residuals()
            pick = self.rng.integers(0, len(residuals), n)
            norm = norm + np.repeat(residuals[pick], self.oversample, axis=1)
        flux = norm * np.exp(self.log_continuum(teff))
        if self.kind == "resolution":
            fwhm = SPEED_OF_LIGHT_KMS * np.sqrt(OTHER_RESOLUTION**-2 - TEMPLATE_RESOLUTION**-2)  # km/s
            step = np.log(10.0) * self.sub_step * SPEED_OF_LIGHT_KMS  # km/s per sub-pixel
            flux = gaussian_filter1d(flux, fwhm / np.sqrt(8.0 * np.log(2.0)) / step, axis=1, mode="nearest")
        elif self.kind == "ripple":
            period = self.rng.uniform(*RIPPLE_PERIOD, (n, 1))
            phase = self.rng.uniform(0.0, 2.0 * np.pi, (n, 1))
            flux = flux * (1.0 + RIPPLE_AMPLITUDE * np.sin(2.0 * np.pi * self.wave / period + phase))
        return flux


def perturbed_mock_set(n: int, seed: int, kind: str, snr_range: tuple[float, float] = (3.0, 50.0)
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` mock stars of ``kind``, prepared (default grid and normalization): flux, ivar, true labels, SNR.

    The survey's stars (labels, SNR, radial velocities, distortions, noise) are
    fixed by ``seed`` whatever the kind, so kinds differ only by their
    perturbation, which draws from ``default_rng((seed, 1))``. Labels are in
    the order of :data:`bayesslam.mock.LABEL_NAMES`.

    Raises
    ------
    ValueError
        For an unknown kind.
    RuntimeError
        If a mock spectrum fails to prepare.
    """
    model = None if kind == "none" else PerturbedTemplates.of(kind, np.random.default_rng((seed, 1)))
    batch, table = make_survey(n, np.random.default_rng(seed), setup=ObservingSetup(snr_range=snr_range), model=model)
    prepared = prepare_spectra(iter(batch), progress=False, total=len(batch))
    if prepared.failures:
        raise RuntimeError(f"{len(prepared.failures)} mock spectra failed to prepare: {prepared.failures[:3]}")
    order = {name: i for i, name in enumerate(table["identifier"])}
    rows = [order[i] for i in prepared.spectra.identifiers]
    truth = np.column_stack([np.asarray(table[name], dtype=float)[rows] for name in LABEL_NAMES])
    return prepared.spectra.flux, prepared.spectra.ivar, truth, np.asarray(table["snr"], dtype=float)[rows]

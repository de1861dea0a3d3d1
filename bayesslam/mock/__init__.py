"""Mock BOSS M-dwarf surveys built from real BOSS spectra: ground truth for tests and benchmarks.

The spectral shapes come from a data-driven model of the real SDSS/BOSS
M-dwarf templates of Kesseli et al. (2017) (:mod:`bayesslam.mock.template_model`);
labels from the real APOGEE M-dwarf label distribution of Birky et al. (2020)
and published relations (:mod:`bayesslam.mock.population`,
:mod:`bayesslam.mock.relations`); observational effects from
:mod:`bayesslam.mock.observe`; survey products and files from
:mod:`bayesslam.mock.survey`; spectra the emulator does not describe, by
construction, from :mod:`bayesslam.mock.perturbed`. See docs/mock.md.

Typical use::

    import numpy as np
    from bayesslam.mock import make_survey, write_survey

    batch, labels = make_survey(870, np.random.default_rng(42))
    write_survey(batch, labels, "mock/", format="sdss-spec")
"""

from bayesslam.mock.errors import LabelRangeError, TemplateModelError
from bayesslam.mock.observe import ObservingSetup
from bayesslam.mock.population import (
    LABEL_DTYPE,
    LABEL_NAMES,
    PAPER_DOMAIN,
    Domain,
    draw_binary_labels,
    draw_cluster_labels,
    draw_labels,
    make_labels,
)
from bayesslam.mock.sets import MockSet, mock_set, prepare_mock
from bayesslam.mock.survey import (
    default_template_model,
    generate_survey_files,
    iter_observed,
    make_binaries,
    make_cluster,
    make_survey,
    noiseless_normalized,
    observe_labels,
    rest_frame_spectra,
    survey_mjd,
    survey_wavelength,
    write_survey,
)
from bayesslam.mock.perturbed import KINDS as PERTURBATION_KINDS
from bayesslam.mock.perturbed import PerturbedTemplates, perturbed_mock_set
from bayesslam.mock.template_model import TemplateModel, load_template_model

__all__ = [
    "PERTURBATION_KINDS",
    "PerturbedTemplates",
    "perturbed_mock_set",
    "LabelRangeError",
    "TemplateModelError",
    "ObservingSetup",
    "Domain",
    "PAPER_DOMAIN",
    "LABEL_NAMES",
    "LABEL_DTYPE",
    "make_labels",
    "draw_labels",
    "draw_binary_labels",
    "draw_cluster_labels",
    "TemplateModel",
    "load_template_model",
    "default_template_model",
    "survey_wavelength",
    "survey_mjd",
    "iter_observed",
    "observe_labels",
    "make_survey",
    "make_binaries",
    "make_cluster",
    "rest_frame_spectra",
    "noiseless_normalized",
    "write_survey",
    "generate_survey_files",
    "MockSet",
    "mock_set",
    "prepare_mock",
]
